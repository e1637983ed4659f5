/**
 * The PostgreSQL store's migrations (numbered on their own, apart from
 * SQLite's), listed by hand: what runs is what is imported here. Names sort
 * in the order they must run.
 */
import type { Migration, MigrationProvider } from 'kysely';
import * as m001 from './001_initial.ts';

const migrations: Record<string, Migration> = {
  '001_initial': m001,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
