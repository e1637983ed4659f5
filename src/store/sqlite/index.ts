/**
 * The SQLite store: the Store port (src/core/ports/store.ts) over Node's
 * built-in node:sqlite, through kysely.
 *
 * Owns: the SQLite file (schema, migrations, pragmas), the node:sqlite ↔ kysely
 * adapter, and every SQL statement the store runs. Everything dialect-specific
 * stays in this folder, so another dialect can sit next to it behind the same port.
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
import { NodeSqliteDatabase, NodeSqliteDialect } from './dialect.ts';
import { appendEvents, eventBounds, readEvents, taskFirstEventSeq, trimEvents } from './events.ts';
import { abortQueuedTasks, claimTasks, finishTask, interruptRunningTasks, recordTaskSpend, recordTaskTool, setPendingInput } from './lifecycle.ts';
import { migrationProvider } from './migrations/index.ts';
import type { Database } from './schema.ts';
import {
  createSession, deleteSession, findSession, getSessionByKey, listAllSessionKeys, listIdleSessions,
  listSessions, resetSession, summarizeSession,
} from './sessions.ts';
import { sqliteWebhookOutbox } from './webhooks.ts';
import { countQueuedTasks, countRunningTasks, enqueueTask, getTask, listTasks, oldestUnfinishedTask, queuePosition } from './tasks.ts';

export interface SqliteStoreOptions {
  /** Path of the database file, or ':memory:'. */
  file: string;
  /**
   * How long a statement waits for another process's lock before failing. The
   * wait blocks the thread (node:sqlite is synchronous): open one store per
   * file per process.
   */
  busyTimeoutMs?: number;
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

function configure(raw: DatabaseSync, busyTimeoutMs: number): void {
  raw.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  raw.exec('PRAGMA journal_mode = WAL');
  // FULL: a commit is on disk before it returns, so an acknowledged write survives power loss.
  raw.exec('PRAGMA synchronous = FULL');
  raw.exec('PRAGMA foreign_keys = ON');
}

export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const raw = new DatabaseSync(options.file);
  try {
    configure(raw, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
  } catch (err) {
    raw.close();
    throw err;
  }
  const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ database: new NodeSqliteDatabase(raw) }) });
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    await db.destroy();
    throw error;
  }

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    // Queue behind the queries already waiting for the connection, so they finish before it closes.
    await sql`select 1`.execute(db).catch(() => undefined);
    await db.destroy();
  };
  return {
    close: () => (closing ??= close()),
    webhookOutbox: sqliteWebhookOutbox(db),

    findSession: (tenantId, id) => findSession(db, tenantId, id),
    getSessionByKey: (key) => getSessionByKey(db, key),
    createSession: (session, limits) => createSession(db, session, limits),
    listSessions: (tenantId, page) => listSessions(db, tenantId, page),
    summarizeSession: (key) => summarizeSession(db, key),
    resetSession: (key, at) => resetSession(db, key, at),
    deleteSession: (key) => deleteSession(db, key),
    listIdleSessions: (before) => listIdleSessions(db, before),
    listAllSessionKeys: () => listAllSessionKeys(db),

    enqueueTask: (task, limits) => enqueueTask(db, task, limits),
    getTask: (id) => getTask(db, id),
    listTasks: (sessionKey, page) => listTasks(db, sessionKey, page),
    queuePosition: (task) => queuePosition(db, task),
    countRunningTasks: () => countRunningTasks(db),
    countQueuedTasks: () => countQueuedTasks(db),
    oldestUnfinishedTask: (sessionKey) => oldestUnfinishedTask(db, sessionKey),
    claimTasks: (runnerId, limit, now) => claimTasks(db, runnerId, limit, now),
    recordTaskSpend: (taskId, spend) => recordTaskSpend(db, taskId, spend),
    recordTaskTool: (taskId, tool) => recordTaskTool(db, taskId, tool),
    setPendingInput: (taskId, pending) => setPendingInput(db, taskId, pending),
    finishTask: (taskId, runnerId, outcome, session) => finishTask(db, taskId, runnerId, outcome, session),
    abortQueuedTasks: (target, error, now) => abortQueuedTasks(db, target, error, now),
    interruptRunningTasks: (runnerId, error, now) => interruptRunningTasks(db, runnerId, error, now),

    appendEvents: (events, now) => appendEvents(db, events, now),
    readEvents: (sessionKey, afterSeq, limit) => readEvents(db, sessionKey, afterSeq, limit),
    eventBounds: (sessionKey) => eventBounds(db, sessionKey),
    taskFirstEventSeq: (sessionKey, taskId) => taskFirstEventSeq(db, sessionKey, taskId),
    trimEvents: (policy, now) => trimEvents(db, policy, now),

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
  };
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
