/**
 * Kysely's SQLite dialect over Node's built-in `node:sqlite`, with three changes
 * to kysely's own: transactions start with BEGIN IMMEDIATE, DDL is declared
 * transactional so migrations run inside one transaction, and row locks
 * (FOR UPDATE, SKIP LOCKED: the statements shared with PostgreSQL) are left
 * out, SQLite having none: its write transactions run one at a time, start to end.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  CompiledQuery,
  SqliteAdapter,
  SqliteDialect,
  SqliteDriver,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  type QueryCompiler,
  type SelectModifierNode,
  type SelectQueryNode,
  type SqliteDatabase,
  type SqliteDialectConfig,
  type SqliteStatement,
} from 'kysely';

type SqlValue = null | number | bigint | string | NodeJS.ArrayBufferView;

/** Statements are prepared once per SQL text; kysely emits the same text for the same query shape. */
const STATEMENT_CACHE_SIZE = 256;

/** Statements that only read; anything else (insert, update, delete, commit, DDL, pragmas) may write. */
const READ_ONLY = /^\s*select\b/i;

class NodeSqliteStatement implements SqliteStatement {
  readonly reader: boolean;
  readonly #stmt: StatementSync;
  /** Told when a statement that may write runs (wal-sync.ts: what the next fsync must cover). */
  readonly #wrote: (() => void) | undefined;

  constructor(stmt: StatementSync, sql: string, onWrite: (() => void) | undefined) {
    this.#stmt = stmt;
    // A statement that yields columns (SELECT, PRAGMA, ... RETURNING) must be read with all().
    this.reader = stmt.columns().length > 0;
    this.#wrote = onWrite && !READ_ONLY.test(sql) ? onWrite : undefined;
  }

  all(parameters: ReadonlyArray<unknown>): unknown[] {
    try {
      return this.#stmt.all(...(parameters as SqlValue[]));
    } finally {
      this.#wrote?.();
    }
  }

  run(parameters: ReadonlyArray<unknown>): { changes: number | bigint; lastInsertRowid: number | bigint } {
    try {
      return this.#stmt.run(...(parameters as SqlValue[]));
    } finally {
      this.#wrote?.();
    }
  }

  iterate(parameters: ReadonlyArray<unknown>): IterableIterator<unknown> {
    this.#wrote?.();
    return this.#stmt.iterate(...(parameters as SqlValue[])) as IterableIterator<unknown>;
  }
}

/** The subset of a database kysely calls (prepare, close), over a DatabaseSync. */
export class NodeSqliteDatabase implements SqliteDatabase {
  readonly raw: DatabaseSync;
  readonly #cache = new Map<string, NodeSqliteStatement>();
  readonly #onWrite: (() => void) | undefined;

  /** `onWrite` is called each time a statement that may write has run. */
  constructor(raw: DatabaseSync, onWrite?: () => void) {
    this.raw = raw;
    this.#onWrite = onWrite;
  }

  prepare(sql: string): SqliteStatement {
    let stmt = this.#cache.get(sql);
    if (stmt) {
      // Re-insert to mark as most recently used.
      this.#cache.delete(sql);
    } else {
      stmt = new NodeSqliteStatement(this.raw.prepare(sql), sql, this.#onWrite);
      if (this.#cache.size >= STATEMENT_CACHE_SIZE) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
    }
    this.#cache.set(sql, stmt);
    return stmt;
  }

  close(): void {
    this.#cache.clear();
    if (this.raw.isOpen) this.raw.close();
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  // A deferred BEGIN takes the write lock at the first write; if another
  // process wrote in between, SQLite fails with SQLITE_BUSY instead of waiting.
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  // SQLite does roll back DDL; kysely says false only to stay conservative.
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/** Row-lock clauses of a SELECT: meaningless where a write transaction holds the whole database. */
const ROW_LOCKS: ReadonlySet<SelectModifierNode['modifier']> = new Set(['ForUpdate', 'ForShare', 'ForKeyShare', 'ForNoKeyUpdate', 'SkipLocked', 'NoWait']);

class RowLockFreeSqliteQueryCompiler extends SqliteQueryCompiler {
  protected override visitSelectQuery(node: SelectQueryNode): void {
    const kept = node.endModifiers?.filter((m) => !m.modifier || !ROW_LOCKS.has(m.modifier));
    super.visitSelectQuery(kept?.length === node.endModifiers?.length ? node : { ...node, endModifiers: kept?.length ? kept : undefined });
  }
}

export class NodeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;

  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }

  override createQueryCompiler(): QueryCompiler {
    return new RowLockFreeSqliteQueryCompiler();
  }
}
