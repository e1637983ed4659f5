/**
 * The PostgreSQL store: the Store port (src/core/ports/store.ts) over a pg
 * pool, through kysely, for one runner node or several sharing the database.
 *
 * Owns: the connection pool, the schema's migrations (numbered apart from
 * SQLite's), and how concurrent writes from every node see each other: locks
 * (session rows, advisory locks) and unique indexes whose collisions are
 * answered as what they mean (writes.ts, claim.ts). The statements every
 * dialect shares are src/store/shared's.
 *
 * Must not touch: the domain (src/core) beyond mapping rows and throwing its
 * RunnerError codes; policy (limits and retention come in as arguments; it
 * reads no config or env); the cluster's messages (src/cluster has its own
 * connection for LISTEN/NOTIFY). Only src/store/open.ts opens it.
 */
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import type { Store } from '../../core/ports/store.ts';
import type { WebhookOutbox } from '../../core/ports/webhook-outbox.ts';
import type { Database, Db } from '../schema.ts';
import { sharedStoreMethods, webhookOutbox } from '../shared/index.ts';
import { timedStore, type AroundCall } from '../timed.ts';
import { claimTasks } from './claim.ts';
import { ADVISORY_LOCKS, asRunnerError, createPool } from './connection.ts';
import { migrationProvider } from './migrations/index.ts';
import { createSession, enqueueTask } from './writes.ts';

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (any libpq connection URL pg accepts). */
  url: string;
  /** Connections at most (default 10); a transaction holds one start to end. */
  poolSize?: number;
  /** How long a call waits for a connection (to open, or to come free) before DATABASE_UNAVAILABLE (default 10 s). */
  connectTimeoutMs?: number;
  /** An idle pooled connection failed (a server restart, say); the pool replaces it when needed. */
  onIdleError?: (error: Error) => void;
}

export interface PostgresStore extends Store {
  /** Deliveries of task webhooks (a port of its own: only the dispatcher and its route use it). */
  webhookOutbox: WebhookOutbox;
}

const DEFAULT_POOL_SIZE = 10;

export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const pool = createPool({
    url: options.url, size: options.poolSize ?? DEFAULT_POOL_SIZE, connectTimeoutMs: options.connectTimeoutMs, onIdleError: options.onIdleError,
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db);
  } catch (error) {
    await db.destroy();
    throw asRunnerError(error);
  }

  // Calls under way: close waits for them, so nothing issued before it fails for want of a connection.
  const inFlight = new Set<Promise<unknown>>();
  const tracked: AroundCall = async (call) => {
    const running = call();
    inFlight.add(running);
    try {
      return await running;
    } catch (error) {
      throw asRunnerError(error);
    } finally {
      inFlight.delete(running);
    }
  };
  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    await Promise.allSettled([...inFlight]);
    await db.destroy();
  };

  return timedStore({
    close: () => (closing ??= close()),
    webhookOutbox: timedStore(webhookOutbox(db), tracked),
    ...sharedStoreMethods(db),
    createSession: (session, limits) => createSession(db, session, limits),
    enqueueTask: (task, limits) => enqueueTask(db, task, limits),
    claimTasks: (runnerId, limit, now) => claimTasks(db, runnerId, limit, now),
  }, tracked);
}

/** Migrates to the latest schema on one connection, under an advisory lock: nodes starting together take turns, the first one migrates. */
async function migrate(db: Db): Promise<void> {
  const [space, key] = ADVISORY_LOCKS.migrations;
  await db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${sql.lit(space)}, ${sql.lit(key)})`.execute(conn);
    try {
      const { error } = await new Migrator({ db: conn, provider: migrationProvider }).migrateToLatest();
      if (error) throw error;
    } finally {
      await sql`select pg_advisory_unlock(${sql.lit(space)}, ${sql.lit(key)})`.execute(conn);
    }
  });
}
