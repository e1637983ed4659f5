/**
 * The PostgreSQL store's connections (a pg pool, read back as the shared rows
 * expect), its advisory locks, and what its errors mean.
 */
import pg from 'pg';
import { RunnerError } from '../../core/errors.ts';

/** OID of bigint (int8): epoch ms, seqs and counts. */
const INT8_OID = 20;

/**
 * bigint columns come back as JS numbers (pg's default is a string, for
 * values past 2^53; epoch ms, seqs and counts stay far below). double
 * precision already comes back as a number.
 */
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? Number : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface PoolOptions {
  url: string;
  size: number;
  connectTimeoutMs?: number;
  /** An idle connection failed (the pool drops it and opens another when needed). */
  onIdleError?: (error: Error) => void;
}

/** How long a query waits for a connection by default: a new one to open, or one of the pool's to come free. */
const CONNECT_TIMEOUT_MS = 10_000;

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.size,
    types: typeParsers,
    application_name: 'claude-runner',
    keepAlive: true,
    // A database out of reach (or a pool that stays full) answers DATABASE_UNAVAILABLE instead of holding requests forever.
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
  // Without a listener, an idle connection's error (a server restart) would end the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  // The pool listens only while a connection is idle; one checked out (a transaction between its
  // queries, the bus's multi-part send) that breaks emits 'error' too, which would end the process.
  // Its queries fail on their own; the pool drops the connection when it is released.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * The store's advisory locks, (namespace, key) pairs: the two-key form never
 * meets a single-bigint key (the cluster leader's lock, src/cluster/pg-bus.ts).
 */
const LOCK_NAMESPACE = 0x52_55_4e_52; // "RUNR"
export const ADVISORY_LOCKS = {
  /** Held while migrating, so nodes starting together migrate one after the other. */
  migrations: [LOCK_NAMESPACE, 1],
  /** Held by createSession from its count to its insert: maxSessions counts every session of every node. */
  sessionCount: [LOCK_NAMESPACE, 2],
} as const satisfies Record<string, readonly [number, number]>;

interface PgError {
  code?: string;
  constraint?: string;
  message?: string;
}

/** The unique index or constraint a statement collided with, if it failed on one. */
export function uniqueViolation(error: unknown): string | undefined {
  const e = error as PgError | null;
  return e?.code === '23505' ? (e.constraint ?? '') : undefined;
}

/** Network failures of the connection itself (the server down, unreachable, or gone mid-query). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/**
 * Whether the error says the database could not be reached or went away (as
 * opposed to a statement it refused): SQLSTATE class 08 (connection), 57P0x
 * (shutting down, not accepting connections), 53300 (too many connections).
 */
export function isUnavailable(error: unknown): boolean {
  const e = error as PgError | null;
  const code = e?.code ?? '';
  if (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300') return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(e?.message ?? '');
}

/** DATABASE_UNAVAILABLE for an error that says so (keeping it as the cause); any other error as it is. */
export function asRunnerError(error: unknown): unknown {
  if (error instanceof RunnerError || !isUnavailable(error)) return error;
  return Object.assign(new RunnerError('DATABASE_UNAVAILABLE'), { cause: error });
}
