/**
 * The SQLite store: the Store port (src/core/ports/store.ts) over Node's
 * built-in node:sqlite, through kysely.
 *
 * Owns: the SQLite file (schema, migrations, pragmas), the node:sqlite ↔ kysely
 * adapter, the WAL's group commit, and the statements SQLite runs its own way
 * (writes.ts); the statements every dialect shares are src/store/shared's.
 * Everything SQLite-specific stays in this folder (PostgreSQL: src/store/postgres).
 *
 * Must not touch: the domain (src/core) — it only maps rows to the records
 * there and throws its RunnerError codes; nor policy — limits and retention
 * come in as arguments, it reads no config or env, emits no events and knows
 * no sandbox. Nothing outside src/store imports from here except src/app.ts,
 * which picks the store.
 *
 * node:sqlite is synchronous and kysely serializes every query on the one
 * connection; transactions hold it start to end, so they stay short and never
 * await anything but their own queries.
 */
import { existsSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { Kysely, Migrator, sql } from 'kysely';
import type { Store } from '../../core/ports/store.ts';
import type { WebhookOutbox } from '../../core/ports/webhook-outbox.ts';
import type { Database } from '../schema.ts';
import { sharedStoreMethods, webhookOutbox } from '../shared/index.ts';
import { timedStore, type AroundCall } from '../timed.ts';
import { NodeSqliteDatabase, NodeSqliteDialect } from './dialect.ts';
import { migrationProvider } from './migrations/index.ts';
import { fileSyncer, WalSync, type FileSyncer } from './wal-sync.ts';
import { claimTasks, createSession, enqueueTask } from './writes.ts';

export interface SqliteStoreOptions {
  /** Path of the database file, or ':memory:'. */
  file: string;
  /**
   * How long a statement waits for another process's lock before failing. The
   * wait blocks the thread (node:sqlite is synchronous): open one store per
   * file per process.
   */
  busyTimeoutMs?: number;
  /** How the WAL file is fsynced (tests fail it on purpose); fs by default. */
  syncFile?: (path: string) => Promise<void>;
}

export interface SqlitePragmas {
  journalMode: string;
  synchronous: number;
  foreignKeys: number;
  busyTimeout: number;
}

export interface SqliteStore extends Store {
  /** Deliveries of task webhooks (a port of its own: only the dispatcher and its route use it). */
  webhookOutbox: WebhookOutbox;
  /** Rows of PRAGMA integrity_check: ['ok'] when the file is sound. */
  integrityCheck(): Promise<string[]>;
  /** The pragmas in effect on the store's connection. */
  pragmas(): Promise<SqlitePragmas>;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** The pragmas; with a WAL (a file, not ':memory:'), the group commit that makes its writes durable. */
function configure(raw: DatabaseSync, options: SqliteStoreOptions, syncer: FileSyncer): WalSync | undefined {
  raw.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS))}`);
  const { journal_mode: mode } = raw.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string };
  raw.exec('PRAGMA foreign_keys = ON');
  if (mode !== 'wal') {
    // FULL: a commit is on disk before it returns, so an acknowledged write survives power loss.
    raw.exec('PRAGMA synchronous = FULL');
    return undefined;
  }
  // NORMAL: the commit does not fsync; every store call that wrote waits for the WAL's fsync (wal-sync.ts)
  // before it resolves, so an acknowledged write survives power loss all the same.
  raw.exec('PRAGMA synchronous = NORMAL');
  return new WalSync(`${options.file}-wal`, options.syncFile ?? ((path) => syncer.sync(path)));
}

export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const raw = new DatabaseSync(options.file);
  let wal: WalSync | undefined;
  const syncer = fileSyncer();
  try {
    wal = configure(raw, options, syncer);
  } catch (err) {
    raw.close();
    throw err;
  }
  const database = new NodeSqliteDatabase(raw, wal && (() => wal.wrote()));
  const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ database }) });
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    await db.destroy();
    throw error;
  }
  await wal?.sync();

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    // Queue behind the queries already waiting for the connection, so they finish before it closes.
    await sql`select 1`.execute(db).catch(() => undefined);
    // And behind the fsyncs under way, so the WAL's descriptor is not closed under them.
    await wal?.sync().catch(() => undefined);
    await db.destroy();
    await syncer.close();
  };
  // Every call resolves only once what was written until then is on disk (wal-sync.ts), its error aside.
  const durable: AroundCall = async (call) => {
    const result = await call();
    await wal?.sync();
    return result;
  };
  return timedStore({
    // Left out of `durable` (timedStore leaves close alone): the WAL is gone after it (checkpointed into the database, synced).
    close: () => (closing ??= close()),
    webhookOutbox: timedStore(webhookOutbox(db), durable),
    ...sharedStoreMethods(db),
    createSession: (session, limits) => createSession(db, session, limits),
    enqueueTask: (task, limits) => enqueueTask(db, task, limits),
    claimTasks: (runnerId, limit, now) => claimTasks(db, runnerId, limit, now),

    integrityCheck: async () => {
      const { rows } = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db);
      return rows.map((r) => r.integrity_check);
    },
    pragmas: async () => {
      const one = async <T>(name: string): Promise<T> => {
        // The column is not always named after the pragma (busy_timeout → timeout).
        const { rows } = await sql<Record<string, T>>`pragma ${sql.raw(name)}`.execute(db);
        return Object.values(rows[0] ?? {})[0] as T;
      };
      return {
        journalMode: await one<string>('journal_mode'),
        synchronous: await one<number>('synchronous'),
        foreignKeys: await one<number>('foreign_keys'),
        busyTimeout: await one<number>('busy_timeout'),
      };
    },
  }, durable);
}

/** SQLite result codes of a file too damaged to even check (SQLITE_CORRUPT, SQLITE_NOTADB). */
const DAMAGED = new Set([11, 26]);

/**
 * PRAGMA integrity_check on a database file that no store has open (after a
 * crash, say): ['ok'] when it is sound, else SQLite's list of problems — or
 * its error, when the damage stops the check itself. A missing file throws
 * rather than being created empty and called sound.
 */
export function sqliteIntegrityCheck(file: string): string[] {
  if (!existsSync(file)) throw new Error(`No database file at ${file}.`);
  let raw: DatabaseSync | undefined;
  try {
    raw = new DatabaseSync(file);
    const rows = raw.prepare('PRAGMA integrity_check').all() as Array<{ integrity_check: string }>;
    return rows.map((r) => r.integrity_check);
  } catch (err) {
    const errcode = (err as { errcode?: number }).errcode ?? -1;
    if (DAMAGED.has(errcode & 0xff)) return [(err as Error).message];
    throw err;
  } finally {
    if (raw?.isOpen) raw.close();
  }
}
