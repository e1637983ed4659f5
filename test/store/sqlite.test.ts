/** The store contract on SQLite (a temp file per test), and what only SQLite has. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Kysely, Migrator } from 'kysely';
import { NodeSqliteDatabase, NodeSqliteDialect } from '../../src/store/sqlite/dialect.ts';
import { openSqliteStore, sqliteIntegrityCheck } from '../../src/store/sqlite/index.ts';
import { migrationProvider } from '../../src/store/sqlite/migrations/index.ts';
import { makeOutcome, NO_ACTIVITY, makeSession, makeTask } from './fixtures.ts';
import { defineStoreSuite } from './store-suite.ts';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'runner-store-'));
}

defineStoreSuite('sqlite', async () => {
  const dir = await tempDir();
  const store = await openSqliteStore({ file: join(dir, 'runner.db') });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite store', () => {
  let dir = '';
  let file = '';
  beforeEach(async () => {
    dir = await tempDir();
    file = join(dir, 'runner.db');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('opens with WAL, synchronous=NORMAL (the store fsyncs the WAL itself), foreign keys on and a busy timeout', async () => {
    const store = await openSqliteStore({ file, busyTimeoutMs: 1234 });
    try {
      assert.deepEqual(await store.pragmas(), { journalMode: 'wal', synchronous: 1, foreignKeys: 1, busyTimeout: 1234 });
    } finally {
      await store.close();
    }
    const defaults = await openSqliteStore({ file });
    try {
      assert.ok((await defaults.pragmas()).busyTimeout > 0);
    } finally {
      await defaults.close();
    }
  });

  test('a write resolves only once the WAL is fsynced; concurrent writes share an fsync; a failed fsync fails the write', async () => {
    const synced: string[] = [];
    let hold: Promise<void> | undefined;
    let failNext = false;
    const store = await openSqliteStore({
      file,
      syncFile: async (path) => {
        await hold;
        if (failNext) {
          failNext = false;
          throw new Error('EIO: fsync failed');
        }
        synced.push(path);
      },
    });
    try {
      assert.deepEqual(synced, [`${file}-wal`], 'the migrations were fsynced before the store opened');
      let release!: () => void;
      hold = new Promise<void>((resolve) => { release = resolve; });
      let acknowledged = 0;
      const ack = <T>(write: Promise<T>): Promise<T> => write.then((value) => { acknowledged += 1; return value; });
      const key = makeSession(1).key;
      const event = (text: string) => ({ sessionKey: key, taskId: null, type: 'text' as const, data: { text } });
      const first = ack(store.createSession(makeSession(1), { maxSessions: 10 }));
      await new Promise((resolve) => setTimeout(resolve, 20));
      // Committed (the appends find the session) while its fsync is held: the appends queue behind it.
      const appends = [1, 2, 3].map((n) => ack(store.appendEvents([event(`e${n}`)], 1_000)));
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(acknowledged, 0, 'no write is acknowledged before the fsync that covers it');
      hold = undefined;
      release();
      await first;
      const stored = await Promise.all(appends);
      assert.deepEqual(stored.map((events) => events[0]!.seq), [1, 2, 3]);
      // The held fsync (the session), then one for the three appends together.
      assert.equal(synced.length, 3, `fsyncs: ${synced.length}`);
      failNext = true;
      await assert.rejects(store.appendEvents([event('unacknowledged')], 2_000), /EIO/);
      assert.deepEqual((await store.readEvents(key, 0, 10)).map((e) => e.seq), [1, 2, 3, 4], 'committed; only its acknowledgement failed');
    } finally {
      await store.close();
    }
  });

  test('integrity_check is ok, open and after close', async () => {
    const store = await openSqliteStore({ file });
    await store.createSession(makeSession(1), { maxSessions: 10 });
    assert.deepEqual(await store.integrityCheck(), ['ok']);
    await store.close();
    assert.deepEqual(sqliteIntegrityCheck(file), ['ok']);
  });

  test('sqliteIntegrityCheck reports a damaged file', async () => {
    const store = await openSqliteStore({ file });
    await store.createSession(makeSession(1), { maxSessions: 10 });
    await store.close();
    // Redefine an index behind SQLite's back: its stored entries no longer match the rows.
    const raw = new DatabaseSync(file, { defensive: false });
    raw.exec('PRAGMA writable_schema = ON');
    raw.exec(`update sqlite_schema set sql = 'CREATE INDEX "sessions_created_idx" on "sessions" ("agent")' where name = 'sessions_created_idx'`);
    raw.close();
    assert.deepEqual(sqliteIntegrityCheck(file), ['row 1 missing from index sessions_created_idx']);
  });

  test('sqliteIntegrityCheck reports a file too damaged to check, and refuses a missing one', async () => {
    await writeFile(file, 'not a database, just some text that is long enough to have a header');
    const result = sqliteIntegrityCheck(file);
    assert.equal(result.length, 1);
    assert.notEqual(result[0], 'ok');
    assert.match(result[0]!, /not a database/);
    assert.throws(() => sqliteIntegrityCheck(join(dir, 'missing.db')), /No database file/);
  });

  test('data survives close and reopen; migrations are not run twice', async () => {
    const s = makeSession(1);
    let store = await openSqliteStore({ file });
    await store.createSession(s, { maxSessions: 10 });
    await store.enqueueTask(makeTask(s, 't1', { idempotencyKey: 'k', requestHash: 'h' }), { maxQueued: 10 });
    await store.enqueueTask(makeTask(s, 't2'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 1, 1_000);
    await store.finishTask('t1', 'runner-1', makeOutcome(), NO_ACTIVITY);
    await store.appendEvents([{ sessionKey: s.key, taskId: 't1', type: 'text', data: { text: 'hello' } }], 1_000);
    const before = { session: await store.summarizeSession(s.key), tasks: await store.listTasks(s.key, { limit: 10 }) };
    await store.close();

    store = await openSqliteStore({ file });
    try {
      assert.deepEqual({ session: await store.summarizeSession(s.key), tasks: await store.listTasks(s.key, { limit: 10 }) }, before);
      assert.deepEqual((await store.readEvents(s.key, 0, 10)).map((e) => [e.seq, e.data]), [[1, { text: 'hello' }]]);
      assert.equal((await store.enqueueTask(makeTask(s, 't3', { idempotencyKey: 'k', requestHash: 'h' }), { maxQueued: 10 })).created, false);
      assert.deepEqual((await store.claimTasks('runner-2', 5, 2_000)).map((t) => t.id), [], 'the session is still runner-1\'s');
      assert.deepEqual((await store.claimTasks('runner-1', 5, 2_000)).map((t) => t.id), ['t2']);
      assert.deepEqual((await store.appendEvents([{ sessionKey: s.key, taskId: null, type: 'session_reset', data: {} }], 2_000)).map((e) => e.seq), [2]);
    } finally {
      await store.close();
    }
    const raw = new DatabaseSync(file);
    const migrations = raw.prepare('select name from kysely_migration order by name').all().map((r) => r.name);
    raw.close();
    assert.deepEqual(migrations, ['001_initial', '002_task_events_index', '003_webhooks', '004_pending_input', '005_nodes']);
  });

  test('a file of before nodes (migration 004) opens with its sessions unowned and its queue claimable', async () => {
    const old = new Kysely<any>({ dialect: new NodeSqliteDialect({ database: new NodeSqliteDatabase(new DatabaseSync(file)) }) });
    const { error } = await new Migrator({ db: old, provider: migrationProvider }).migrateTo('004_pending_input');
    assert.equal(error, undefined);
    const s = makeSession(1);
    await old.insertInto('sessions').values({
      key: s.key, tenant_id: s.tenantId, id: s.id, agent: s.agent, turns: 0, total_cost_usd: 0, created_at: 1, last_activity_at: 1,
    }).execute();
    await old.insertInto('tasks').values({ id: 'old-task', session_key: s.key, tenant_id: s.tenantId, session_id: s.id, status: 'queued', message: 'm', created_at: 2 }).execute();
    await old.destroy();
    const store = await openSqliteStore({ file });
    try {
      assert.equal(await store.sessionOwner(s.key), null);
      assert.deepEqual((await store.claimTasks('node-1', 5, 1_000)).map((t) => t.id), ['old-task']);
      assert.equal(await store.sessionOwner(s.key), 'node-1');
      assert.deepEqual(await store.listNodes(0), []);
    } finally {
      await store.close();
    }
  });

  test('an in-memory database works and close is idempotent', async () => {
    const store = await openSqliteStore({ file: ':memory:' });
    await store.createSession(makeSession(1), { maxSessions: 10 });
    assert.deepEqual(await store.listAllSessionKeys(), ['key-1']);
    assert.equal((await store.pragmas()).foreignKeys, 1);
    await store.close();
    await store.close();
  });

  test('a failed transaction leaves nothing behind and the store keeps working', async () => {
    const store = await openSqliteStore({ file });
    try {
      const s = makeSession(1);
      await store.createSession(s, { maxSessions: 10 });
      // The batch's first session takes its seqs, then the unknown second one fails the transaction.
      const event = (sessionKey: string) => ({ sessionKey, taskId: null, type: 'text' as const, data: { text: 'x' } });
      await assert.rejects(store.appendEvents([event(s.key), event('key-unknown')], 1_000), { code: 'SESSION_NOT_FOUND' });
      assert.deepEqual(await store.eventBounds(s.key), { firstSeq: 0, lastSeq: 0 });
      await assert.rejects(store.enqueueTask(makeTask(makeSession(2), 'orphan'), { maxQueued: 10 }), { code: 'SESSION_NOT_FOUND' });
      assert.equal(await store.getTask('orphan'), undefined);
      assert.equal((await store.enqueueTask(makeTask(s, 't1'), { maxQueued: 10 })).created, true);
    } finally {
      await store.close();
    }
  });

  test('one running task per session is enforced by the schema too', async () => {
    const store = await openSqliteStore({ file });
    const s = makeSession(1);
    await store.createSession(s, { maxSessions: 10 });
    await store.enqueueTask(makeTask(s, 't1'), { maxQueued: 10 });
    await store.enqueueTask(makeTask(s, 't2'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 1, 1_000);
    await store.close();
    const raw = new DatabaseSync(file);
    try {
      assert.throws(() => raw.prepare("update tasks set status = 'running' where id = 't2'").run(), /UNIQUE constraint failed/);
    } finally {
      raw.close();
    }
  });
});

test('close lets queries already issued finish first', async () => {
  const store = await openSqliteStore({ file: ':memory:' });
  await store.createSession(makeSession(1), { maxSessions: 10 });
  const pending = Array.from({ length: 5 }, (_, i) =>
    store.enqueueTask(makeTask(makeSession(1), `t${i}`), { maxQueued: 10 }));
  await store.close();
  const results = await Promise.all(pending);
  assert.deepEqual(results.map((r) => r.created), [true, true, true, true, true]);
});
