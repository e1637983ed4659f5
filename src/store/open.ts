/**
 * Picks the store: PostgreSQL when DATABASE_URL is set (several nodes may
 * share it), else SQLite in DATA_DIR (one node). Only src/app.ts calls it.
 */
import { join } from 'node:path';
import type { Store } from '../core/ports/store.ts';
import type { WebhookOutbox } from '../core/ports/webhook-outbox.ts';
import { openPostgresStore } from './postgres/index.ts';
import { openSqliteStore } from './sqlite/index.ts';

export interface OpenedStore extends Store {
  webhookOutbox: WebhookOutbox;
}

export async function openStore(options: { dataDir: string; databaseUrl: string | undefined }): Promise<OpenedStore> {
  if (options.databaseUrl) return openPostgresStore({ url: options.databaseUrl });
  return openSqliteStore({ file: join(options.dataDir, 'runner.db') });
}

/** The password of a database URL, to keep out of logs (undefined: none). */
export function databasePassword(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}
