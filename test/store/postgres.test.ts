/**
 * The store contract on PostgreSQL (one server for the file, a database per
 * test), and what only PostgreSQL shows: several store instances on one
 * database (separate pools, like separate nodes) writing at once, migrations
 * of nodes starting together, collisions with writes from outside the store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import pg from 'pg';
import type { Task } from '../../src/core/model.ts';
import { hotPath } from '../../src/metrics/hot-path.ts';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres/index.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { databaseLink } from '../cluster/database-link.ts';
import { interruptError, makeOutcome, makeSession, makeTask, NO_ACTIVITY } from './fixtures.ts';
import { defineStoreSuite } from './store-suite.ts';

let server: TestPostgres;
/** A database migrated once, that the contract's tests start from (a copy is made faster than a schema). */
let migrated = '';
before(async () => {
  server = await startPostgres();
  const url = await server.createDatabase();
  await (await openPostgresStore({ url })).close();
  migrated = new URL(url).pathname.slice(1);
});
after(async () => {
  await server?.stop();
});

defineStoreSuite('postgres', async () => {
  const store = await openPostgresStore({ url: await server.createDatabase({ template: migrated }) });
  return { store, cleanup: () => store.close() };
});

/** `count` stores on one fresh database, each with its own pool, as if on `count` nodes. */
async function nodes(count: number): Promise<{ url: string; stores: PostgresStore[]; close(): Promise<void> }> {
  const url = await server.createDatabase();
  const stores: PostgresStore[] = [];
  for (let i = 0; i < count; i++) stores.push(await openPostgresStore({ url, poolSize: 4 }));
  return { url, stores, close: async () => { await Promise.all(stores.map((s) => s.close())); } };
}

/** A plain connection, for what the store never does itself (raw writes, locks held open). */
async function rawClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** Waits until some statement of the database waits for a lock (the store's call is blocked behind `raw`). */
async function untilBlocked(raw: pg.Client): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await raw.query<{ n: string }>('select count(*) as n from pg_locks where not granted');
    if (Number(rows[0]!.n) > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('no statement waited for a lock');
}

const byCode = (settled: PromiseSettledResult<unknown>[]) => settled.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code ?? String(r.reason)));

describe('PostgreSQL store, several nodes on one database', () => {
  test('concurrent claims from four nodes never run two tasks of a session at once, nor one task twice', async () => {
    const { stores: [admin, ...workers], close } = await nodes(5);
    try {
      const sessions = 10;
      const perSession = 4;
      for (let s = 0; s < sessions; s++) {
        const session = makeSession(s);
        await admin!.createSession(session, { maxSessions: 100 });
        for (let t = 0; t < perSession; t++) await admin!.enqueueTask(makeTask(session, `s${s}t${t}`, { createdAt: 100 + t }), { maxQueued: 100 });
      }
      const runningIn = new Map<string, string>(); // session → task running there, as the workers see it
      const claims: Array<{ node: string; task: Task }> = [];
      let finished = 0;
      const work = async (store: PostgresStore, node: string) => {
        while (finished < sessions * perSession) {
          const claimed = await store.claimTasks(node, 3, Date.now());
          for (const task of claimed) {
            assert.equal(runningIn.get(task.sessionKey), undefined, `${task.id} claimed while ${runningIn.get(task.sessionKey)} runs`);
            runningIn.set(task.sessionKey, task.id);
            claims.push({ node, task });
          }
          await new Promise((resolve) => setTimeout(resolve, claimed.length > 0 ? 2 : 5));
          for (const task of claimed) {
            runningIn.delete(task.sessionKey); // before its end commits: the next claim of the session can only follow it
            assert.equal(await store.finishTask(task.id, node, makeOutcome({ finishedAt: Date.now() }), NO_ACTIVITY), true);
            finished += 1;
          }
          // Free the sessions again, so every node competes for every session.
          await store.releaseSessions(node);
        }
      };
      await Promise.all(workers.map((store, i) => work(store!, `node-${i}`)));
      const ids = claims.map((c) => c.task.id);
      assert.equal(ids.length, sessions * perSession);
      assert.equal(new Set(ids).size, ids.length, 'no task claimed twice');
      assert.ok(new Set(claims.map((c) => c.node)).size > 1, 'the nodes shared the work');
      for (const { node, task } of claims) {
        const stored = await admin!.getTask(task.id);
        assert.deepEqual([stored?.status, stored?.runnerId], ['succeeded', node]);
      }
      // Each session's tasks ran in their order.
      for (let s = 0; s < sessions; s++) {
        const order = claims.filter((c) => c.task.sessionKey === `key-${s}`).map((c) => c.task.id);
        assert.deepEqual(order, Array.from({ length: perSession }, (_, t) => `s${s}t${t}`));
      }
    } finally {
      await close();
    }
  });

  test('concurrent submits from four nodes admit exactly maxQueued tasks', async () => {
    const { stores, close } = await nodes(4);
    try {
      const s = makeSession(1);
      await stores[0]!.createSession(s, { maxSessions: 10 });
      const settled = await Promise.allSettled(stores.flatMap((store, n) =>
        Array.from({ length: 5 }, (_, i) => store.enqueueTask(makeTask(s, `n${n}t${i}`), { maxQueued: 7 }))));
      assert.deepEqual(byCode(settled).sort(), [...Array(7).fill('ok'), ...Array(13).fill('QUEUE_FULL')].sort());
      assert.equal((await stores[1]!.summarizeSession(s.key))?.queued, 7);
    } finally {
      await close();
    }
  });

  test('concurrent session creations from four nodes stop at maxSessions; one (tenant, id) is created once', async () => {
    const { stores, close } = await nodes(4);
    try {
      const settled = await Promise.allSettled(stores.flatMap((store, n) =>
        Array.from({ length: 4 }, (_, i) => store.createSession(makeSession(`${n}-${i}`), { maxSessions: 6 }))));
      assert.deepEqual(byCode(settled).sort(), [...Array(6).fill('ok'), ...Array(10).fill('SESSION_LIMIT_REACHED')].sort());
      assert.equal((await stores[0]!.listAllSessionKeys()).length, 6);
      const same = await Promise.all(stores.map((store, n) => store.createSession(makeSession('same', { key: `key-same-${n}` }), { maxSessions: 100 })));
      assert.equal(same.filter((r) => r.created).length, 1);
      assert.equal(new Set(same.map((r) => r.session.key)).size, 1, 'every node got the one stored session');
    } finally {
      await close();
    }
  });

  test('concurrent submits with one idempotency key from four nodes make one task; other requests under it conflict', async () => {
    const { stores, close } = await nodes(4);
    try {
      const s = makeSession(1);
      await stores[0]!.createSession(s, { maxSessions: 10 });
      const same = await Promise.all(stores.flatMap((store, n) => Array.from({ length: 3 }, (_, i) =>
        store.enqueueTask(makeTask(s, `n${n}t${i}`, { idempotencyKey: 'k', requestHash: 'h' }), { maxQueued: 100 }))));
      assert.equal(same.filter((r) => r.created).length, 1);
      assert.equal(new Set(same.map((r) => r.task.id)).size, 1);
      const conflicting = await Promise.allSettled(stores.map((store, n) =>
        store.enqueueTask(makeTask(s, `c${n}`, { idempotencyKey: 'race', requestHash: `h${n}` }), { maxQueued: 100 })));
      assert.deepEqual(byCode(conflicting).sort(), ['IDEMPOTENCY_CONFLICT', 'IDEMPOTENCY_CONFLICT', 'IDEMPOTENCY_CONFLICT', 'ok']);
      assert.equal((await stores[0]!.listTasks(s.key, { limit: 50 })).items.length, 2);
    } finally {
      await close();
    }
  });

  test('concurrent appends from two nodes to one session get consecutive, unique seqs, each batch in one block', async () => {
    const { stores, close } = await nodes(2);
    try {
      const s = makeSession(1);
      await stores[0]!.createSession(s, { maxSessions: 10 });
      const batches = await Promise.all(stores.flatMap((store, n) => Array.from({ length: 15 }, (_, i) =>
        store.appendEvents([1, 2, 3].map((k) => ({ sessionKey: s.key, taskId: null, type: 'text' as const, data: { text: `${n}.${i}.${k}` } })), 1_000))));
      const seqs = batches.flat().map((e) => e.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 90 }, (_, i) => i + 1));
      for (const batch of batches) assert.deepEqual(batch.map((e) => e.seq - batch[0]!.seq), [0, 1, 2]);
      const stored = await stores[1]!.readEvents(s.key, 0, 100);
      assert.deepEqual(stored.map((e) => e.seq), seqs);
      assert.deepEqual(stored, [...batches.flat()].sort((a, b) => a.seq - b.seq));
    } finally {
      await close();
    }
  });

  test('two nodes reaping at once take each dead node over once', async () => {
    const { stores: [a, b], close } = await nodes(2);
    try {
      for (let n = 0; n < 4; n++) {
        const s = makeSession(n);
        await a!.createSession(s, { maxSessions: 10 });
        await a!.enqueueTask(makeTask(s, `t${n}`), { maxQueued: 10 });
        await a!.registerNode({ id: `dead-${n}`, address: '', startedAt: 1, leaseExpiresAt: 5_000, dataDirMark: 'm' });
        await a!.claimTasks(`dead-${n}`, 1, 2_000);
      }
      const [byA, byB] = await Promise.all([a!.reapExpiredNodes('node-a', interruptError, 6_000), b!.reapExpiredNodes('node-b', interruptError, 6_000)]);
      const all = [...byA!, ...byB!];
      assert.deepEqual(all.map((t) => t.nodeId).sort(), ['dead-0', 'dead-1', 'dead-2', 'dead-3']);
      assert.deepEqual(all.flatMap((t) => t.interrupted.map((i) => i.id)).sort(), ['t0', 't1', 't2', 't3']);
      assert.deepEqual(all.flatMap((t) => t.releasedSessions).sort(), ['key-0', 'key-1', 'key-2', 'key-3']);
      assert.equal(await a!.countRunningTasks(), 0);
    } finally {
      await close();
    }
  });

  test('nodes starting together on an empty database migrate it once', async () => {
    const url = await server.createDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore({ url, poolSize: 2 })));
    try {
      await stores[0]!.createSession(makeSession(1), { maxSessions: 10 });
      assert.equal((await stores[3]!.getSessionByKey('key-1'))?.id, 'session-1');
      const raw = await rawClient(url);
      const { rows } = await raw.query<{ name: string }>('select name from kysely_migration order by name');
      await raw.end();
      assert.deepEqual(rows.map((r) => r.name), ['001_initial']);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

describe('PostgreSQL store, writes from outside it and the unreachable', () => {
  test('a session inserted meanwhile under the same (tenant, id) is returned, created=false, never an error', async () => {
    const url = await server.createDatabase();
    const store = await openPostgresStore({ url });
    const raw = await rawClient(url);
    try {
      await raw.query('begin');
      await raw.query(`insert into sessions (key, tenant_id, id, agent, created_at, last_activity_at) values ('key-raw', 'tenant-a', 'session-1', 'coder', 1, 1)`);
      const creating = store.createSession(makeSession(1), { maxSessions: 10 });
      await untilBlocked(raw); // its insert waits on the uncommitted one's unique index entry
      await raw.query('commit');
      const result = await creating;
      assert.deepEqual([result.created, result.session.key], [false, 'key-raw']);
    } finally {
      await raw.end();
      await store.close();
    }
  });

  test('a claim that collides with a running task on the unique index skips that session and claims the others', async () => {
    const url = await server.createDatabase();
    const store = await openPostgresStore({ url });
    const raw = await rawClient(url);
    try {
      for (const n of ['a', 'b']) {
        const s = makeSession(n);
        await store.createSession(s, { maxSessions: 10 });
        await store.enqueueTask(makeTask(s, `${n}0`, { createdAt: 100 }), { maxQueued: 10 });
        await store.enqueueTask(makeTask(s, `${n}1`, { createdAt: 200 }), { maxQueued: 10 });
      }
      // Out of turn and not yet committed: a1 runs, unseen by the claim's checks.
      await raw.query('begin');
      await raw.query(`update tasks set status = 'running', runner_id = 'elsewhere', started_at = 1 where id = 'a1'`);
      const claiming = store.claimTasks('node-1', 5, 1_000);
      await untilBlocked(raw);
      await raw.query('commit');
      assert.deepEqual((await claiming).map((t) => t.id), ['b0']);
      assert.deepEqual([(await store.getTask('a0'))?.status, (await store.getTask('a1'))?.status], ['queued', 'running']);
      assert.equal(await store.sessionOwner('key-a'), null, 'a session not claimed is not taken');
    } finally {
      await raw.end();
      await store.close();
    }
  });

  test('a claim skips a session whose row another transaction holds (an append in flight) rather than wait, and takes it later', async () => {
    const url = await server.createDatabase({ template: migrated });
    const store = await openPostgresStore({ url });
    const raw = await rawClient(url);
    try {
      for (const n of ['a', 'b']) {
        const s = makeSession(n);
        await store.createSession(s, { maxSessions: 10 });
        await store.enqueueTask(makeTask(s, `${n}0`), { maxQueued: 10 });
      }
      await raw.query('begin');
      await raw.query(`update sessions set last_event_seq = last_event_seq + 1 where key = 'key-a'`);
      let settled = false;
      const claiming = store.claimTasks('node-1', 5, 1_000).finally(() => { settled = true; });
      while (!settled) {
        const { rows } = await raw.query<{ n: string }>('select count(*) as n from pg_locks where not granted');
        assert.equal(Number(rows[0]!.n), 0, 'the claim waited for the held session row');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.deepEqual((await claiming).map((t) => t.id), ['b0']);
      await raw.query('commit');
      assert.deepEqual((await store.claimTasks('node-1', 5, 1_001)).map((t) => t.id), ['a0']);
    } finally {
      await raw.end();
      await store.close();
    }
  });

  test('numbers come back as numbers: epoch ms, seqs, counts and money', async () => {
    const store = await openPostgresStore({ url: await server.createDatabase() });
    try {
      const now = 1_760_000_000_123;
      const s = makeSession(1, { createdAt: now, lastActivityAt: now, totalCostUsd: 0.1 + 0.2 });
      await store.createSession(s, { maxSessions: 10 });
      await store.enqueueTask(makeTask(s, 't1', { createdAt: now, options: { webhookUrl: 'https://example.com/hook' } }), { maxQueued: 10 });
      assert.deepEqual(await store.getSessionByKey(s.key), s);
      const [claimed] = await store.claimTasks('node-1', 1, now + 1);
      assert.equal(claimed?.startedAt, now + 1);
      await store.finishTask('t1', 'node-1', makeOutcome({ finishedAt: now + 5, costUsd: 0.125, durationMs: 4 }), NO_ACTIVITY);
      const task = await store.getTask('t1');
      assert.deepEqual([task?.createdAt, task?.finishedAt, task?.costUsd, task?.durationMs], [now, now + 5, 0.125, 4]);
      assert.equal((await store.getSessionByKey(s.key))?.totalCostUsd, 0.1 + 0.2 + 0.125);
      assert.deepEqual(await store.listSessions(null, { limit: 1 }), { items: [{ ...s, totalCostUsd: 0.1 + 0.2 + 0.125, lastActivityAt: now + 5, queued: 0, running: 0 }], nextCursor: null });
      // The webhook outbox too.
      assert.equal(await store.webhookOutbox.nextDueAt(), 0);
      const [due] = await store.webhookOutbox.dueDeliveries(now, 10);
      assert.deepEqual([due?.delivery.attemptCount, due?.delivery.nextAttemptAt, due?.task.id], [0, 0, 't1']);
      await store.webhookOutbox.fixPayload('t1', { webhookId: 'w1', type: 'task.succeeded', body: '{}' });
      await store.webhookOutbox.recordAttempt('t1', { at: now + 6, statusCode: 500, error: null, durationMs: 3 }, { status: 'pending', nextAttemptAt: now + 1_000 });
      const [delivery] = await store.webhookOutbox.listDeliveries('t1');
      assert.deepEqual([delivery?.attemptCount, delivery?.nextAttemptAt, delivery?.attempts], [1, now + 1_000, [{ at: now + 6, statusCode: 500, error: null, durationMs: 3 }]]);
      assert.equal(await store.webhookOutbox.nextDueAt(), now + 1_000);
    } finally {
      await store.close();
    }
  });

  test('the calls of a task\'s path are timed as store writes and reads, the others not', async () => {
    const store = await openPostgresStore({ url: await server.createDatabase({ template: migrated }) });
    try {
      const count = (phase: 'store_write' | 'store_read') => hotPath.snapshot()[phase]?.count ?? 0;
      hotPath.reset();
      await store.createSession(makeSession(1), { maxSessions: 10 });
      await store.enqueueTask(makeTask(makeSession(1), 't1'), { maxQueued: 10 });
      await store.getTask('t1');
      await store.listAllSessionKeys();
      await store.countQueuedTasks();
      assert.deepEqual([count('store_write'), count('store_read')], [2, 1]);
    } finally {
      await store.close();
    }
  });

  test('an unreachable database is DATABASE_UNAVAILABLE', async () => {
    const url = new URL(server.url());
    url.port = '1'; // nothing listens there
    await assert.rejects(openPostgresStore({ url: url.toString() }), { name: 'RunnerError', code: 'DATABASE_UNAVAILABLE' });
  });

  test('a server that accepts but never answers is DATABASE_UNAVAILABLE after the connect timeout, not a hang', async () => {
    const accepted: Socket[] = [];
    const silent = createServer((socket) => void accepted.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const url = new URL(server.url());
      url.host = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const started = Date.now();
      await assert.rejects(openPostgresStore({ url: url.toString(), connectTimeoutMs: 300 }), { name: 'RunnerError', code: 'DATABASE_UNAVAILABLE' });
      assert.ok(Date.now() - started < 5_000, `gave up after ${Date.now() - started} ms`);
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a pool that stays full answers DATABASE_UNAVAILABLE after the connect timeout; the store works on after', async () => {
    const url = await server.createDatabase({ template: migrated });
    const store = await openPostgresStore({ url, poolSize: 1, connectTimeoutMs: 300 });
    try {
      const session = makeSession(1);
      await store.createSession(session, { maxSessions: 10 });
      // Another client locks the session's row: the store's enqueue waits on it, holding the pool's one connection.
      const outside = new pg.Client({ connectionString: url });
      await outside.connect();
      try {
        await outside.query('begin');
        await outside.query('select key from sessions where key = $1 for update', [session.key]);
        const enqueued = store.enqueueTask(makeTask(session, 't1'), { maxQueued: 10 });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await assert.rejects(store.getTask('t1'), { name: 'RunnerError', code: 'DATABASE_UNAVAILABLE' });
        await outside.query('commit');
        assert.equal((await enqueued).created, true);
      } finally {
        await outside.end();
      }
      assert.equal((await store.getTask('t1'))?.status, 'queued');
    } finally {
      await store.close();
    }
  });

  test('a connection that breaks while a transaction holds it fails that call, not the process; the store works on after', async () => {
    const url = await server.createDatabase({ template: migrated });
    const link = await databaseLink(url);
    const store = await openPostgresStore({ url: link.url, poolSize: 2, connectTimeoutMs: 1000 });
    const outside = new pg.Client({ connectionString: url });
    try {
      const session = makeSession(1);
      await store.createSession(session, { maxSessions: 10 });
      // The enqueue's transaction waits on a row lock taken outside the link, its connection checked out.
      await outside.connect();
      await outside.query('begin');
      await outside.query('select key from sessions where key = $1 for update', [session.key]);
      const enqueued = store.enqueueTask(makeTask(session, 't1'), { maxQueued: 10 });
      enqueued.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      link.cut(); // that connection ends under its transaction: pg emits 'error' on the checked-out client
      await assert.rejects(enqueued);
      await outside.query('commit');
      link.restore();
      assert.equal((await store.getTask('t1'))?.id, undefined, 'its transaction never committed');
      assert.equal((await store.enqueueTask(makeTask(session, 't2'), { maxQueued: 10 })).created, true);
    } finally {
      await outside.end().catch(() => undefined);
      await store.close();
      await link.close();
    }
  });

  test('close waits for the calls already issued', async () => {
    const store = await openPostgresStore({ url: await server.createDatabase(), poolSize: 2 });
    await store.createSession(makeSession(1), { maxSessions: 10 });
    const pending = Array.from({ length: 8 }, (_, i) => store.enqueueTask(makeTask(makeSession(1), `t${i}`), { maxQueued: 10 }));
    await store.close();
    assert.deepEqual((await Promise.all(pending)).map((r) => r.created), Array(8).fill(true));
  });
});
