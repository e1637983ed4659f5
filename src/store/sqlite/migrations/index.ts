/**
 * The migrations, listed by hand: what runs is what is imported here, whatever
 * files happen to sit in the folder. Names sort in the order they must run.
 */
import type { Migration, MigrationProvider } from 'kysely';
import * as m001 from './001_initial.ts';
import * as m002 from './002_task_events_index.ts';
import * as m003 from './003_webhooks.ts';
import * as m004 from './004_pending_input.ts';
import * as m005 from './005_nodes.ts';

const migrations: Record<string, Migration> = {
  '001_initial': m001,
  '002_task_events_index': m002,
  '003_webhooks': m003,
  '004_pending_input': m004,
  '005_nodes': m005,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
