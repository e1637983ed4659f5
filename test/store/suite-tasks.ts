/** Store contract: adding and reading tasks. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../../src/core/ports/store.ts';
import type { Session, Task } from '../../src/core/model.ts';
import { makeSession, makeTask } from './fixtures.ts';

const roomy = { maxQueued: 100 };

async function withSession(store: Store, n: number | string = 1): Promise<Session> {
  const s = makeSession(n);
  await store.createSession(s, { maxSessions: 100 });
  return s;
}

export function defineTaskTests(getStore: () => Store): void {
  test('enqueueTask stores a queued task that getTask returns whole', async () => {
    const store = getStore();
    const s = await withSession(store);
    const t = makeTask(s, 't1', {
      context: 'some context', options: { maxTurns: 3, budgetUsd: 0.5, timeoutMs: 60_000 },
      idempotencyKey: 'idem-1', requestHash: 'hash-1', createdAt: 1_234,
    });
    const r = await store.enqueueTask(t, roomy);
    assert.deepEqual(r, { task: t, created: true });
    assert.deepEqual(await store.getTask('t1'), t);
    assert.equal(await store.getTask('t2'), undefined);
  });

  test('enqueueTask with a used idempotency key returns the first task, created=false', async () => {
    const store = getStore();
    const s = await withSession(store);
    const first = makeTask(s, 't1', { idempotencyKey: 'idem', requestHash: 'h' });
    await store.enqueueTask(first, roomy);
    const retry = await store.enqueueTask(makeTask(s, 't2', { idempotencyKey: 'idem', requestHash: 'h' }), roomy);
    assert.deepEqual(retry, { task: first, created: false });
    assert.equal(await store.getTask('t2'), undefined);
    // Keys are per session.
    const other = await withSession(store, 2);
    const elsewhere = await store.enqueueTask(makeTask(other, 't3', { idempotencyKey: 'idem', requestHash: 'x' }), roomy);
    assert.equal(elsewhere.created, true);
    // Tasks without a key never collide.
    assert.equal((await store.enqueueTask(makeTask(s, 't4'), roomy)).created, true);
    assert.equal((await store.enqueueTask(makeTask(s, 't5'), roomy)).created, true);
  });

  test('20 concurrent submits with one idempotency key make exactly one task', async () => {
    const store = getStore();
    const s = await withSession(store);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      store.enqueueTask(makeTask(s, `t${i}`, { idempotencyKey: 'same', requestHash: 'h' }), roomy)));
    assert.equal(results.filter((r) => r.created).length, 1);
    const ids = new Set(results.map((r) => r.task.id));
    assert.equal(ids.size, 1);
    const page = await store.listTasks(s.key, { limit: 50 });
    assert.deepEqual(page.items.map((t) => t.id), [...ids]);
  });

  test('the same idempotency key with a different request hash is IDEMPOTENCY_CONFLICT', async () => {
    const store = getStore();
    const s = await withSession(store);
    await store.enqueueTask(makeTask(s, 't1', { idempotencyKey: 'idem', requestHash: 'h1' }), roomy);
    await assert.rejects(
      store.enqueueTask(makeTask(s, 't2', { idempotencyKey: 'idem', requestHash: 'h2' }), roomy),
      { name: 'RunnerError', code: 'IDEMPOTENCY_CONFLICT' },
    );
    assert.equal(await store.getTask('t2'), undefined);
    // Concurrent conflicting submits: one wins, every other one conflicts.
    const settled = await Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
      store.enqueueTask(makeTask(s, `c${i}`, { idempotencyKey: 'race', requestHash: `h${i}` }), roomy)));
    assert.equal(settled.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of settled) {
      if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'IDEMPOTENCY_CONFLICT');
    }
  });

  test('enqueueTask throws QUEUE_FULL at maxQueued queued tasks; running ones do not count', async () => {
    const store = getStore();
    const s = await withSession(store);
    const limits = { maxQueued: 3 };
    for (let i = 0; i < 3; i++) await store.enqueueTask(makeTask(s, `t${i}`, { idempotencyKey: `k${i}`, requestHash: 'h' }), limits);
    await assert.rejects(store.enqueueTask(makeTask(s, 't3'), limits), { name: 'RunnerError', code: 'QUEUE_FULL' });
    assert.equal(await store.getTask('t3'), undefined);
    // A retry of an accepted request is still answered when the queue is full.
    const retry = await store.enqueueTask(makeTask(s, 'tx', { idempotencyKey: 'k1', requestHash: 'h' }), limits);
    assert.deepEqual([retry.created, retry.task.id], [false, 't1']);
    // Another session's queue is its own.
    const other = await withSession(store, 2);
    assert.equal((await store.enqueueTask(makeTask(other, 'o1'), limits)).created, true);
    await store.claimTasks('runner-1', 1, 100); // s: t0 starts running
    assert.equal((await store.enqueueTask(makeTask(s, 't3'), limits)).created, true);
    await assert.rejects(store.enqueueTask(makeTask(s, 't4'), limits), { code: 'QUEUE_FULL' });
  });

  test('concurrent submits never pass maxQueued', async () => {
    const store = getStore();
    const s = await withSession(store);
    const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => store.enqueueTask(makeTask(s, `t${i}`), { maxQueued: 5 })));
    assert.equal(settled.filter((r) => r.status === 'fulfilled').length, 5);
    assert.equal((await store.summarizeSession(s.key))?.queued, 5);
  });

  test('listTasks pages a session newest first with no duplicate and no gap', async () => {
    const store = getStore();
    const s = await withSession(store);
    const other = await withSession(store, 2);
    const order: string[] = [];
    for (let i = 0; i < 9; i++) {
      // Pairs share a createdAt: enqueue order decides between them.
      await store.enqueueTask(makeTask(s, `t${i}`, { createdAt: 100 + Math.floor(i / 2) }), roomy);
      order.push(`t${i}`);
    }
    await store.enqueueTask(makeTask(other, 'o1', { createdAt: 150 }), roomy);
    for (const limit of [1, 2, 4, 9, 20]) {
      const seen: Task[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await store.listTasks(s.key, { limit, cursor });
        assert.ok(page.items.length <= limit);
        seen.push(...page.items);
        cursor = page.nextCursor;
        assert.ok(++pages < 50);
      } while (cursor !== null);
      assert.deepEqual(seen.map((t) => t.id), [...order].reverse(), `limit ${limit}`);
      assert.equal(pages, Math.max(1, Math.ceil(9 / limit)));
    }
    assert.deepEqual(await store.listTasks('key-none', { limit: 5 }), { items: [], nextCursor: null });
    await assert.rejects(store.listTasks(s.key, { limit: 5, cursor: '%%%' }), { name: 'RunnerError', code: 'INVALID_REQUEST' });
    await assert.rejects(store.listTasks(s.key, { limit: 5, cursor: Buffer.from('["x","y"]').toString('base64url') }), { code: 'INVALID_REQUEST' });
  });

  test('queuePosition counts the queued tasks ahead in the same session', async () => {
    const store = getStore();
    const s = await withSession(store);
    const other = await withSession(store, 2);
    await store.enqueueTask(makeTask(other, 'o1', { createdAt: 1 }), roomy);
    const tasks: Task[] = [];
    for (let i = 0; i < 4; i++) {
      // t1 and t2 share a createdAt: enqueue order decides.
      const t = makeTask(s, `t${i}`, { createdAt: [10, 20, 20, 30][i]! });
      tasks.push((await store.enqueueTask(t, roomy)).task);
    }
    assert.deepEqual(await Promise.all(tasks.map((t) => store.queuePosition(t))), [0, 1, 2, 3]);
    await store.claimTasks('runner-1', 10, 100); // t0 and o1 start
    await store.abortQueuedTasks({ taskId: 't2' }, { code: 'TASK_ABORTED', message: 'aborted' }, 100);
    assert.equal(await store.queuePosition(tasks[1]!), 0);
    assert.equal(await store.queuePosition(tasks[3]!), 1);
  });

  test('countRunningTasks counts running tasks of every session', async () => {
    const store = getStore();
    assert.equal(await store.countRunningTasks(), 0);
    for (const n of [1, 2, 3]) {
      const s = await withSession(store, n);
      await store.enqueueTask(makeTask(s, `t${n}a`), roomy);
      await store.enqueueTask(makeTask(s, `t${n}b`), roomy);
    }
    await store.claimTasks('runner-1', 2, 100);
    assert.equal(await store.countRunningTasks(), 2);
    await store.claimTasks('runner-2', 10, 101);
    assert.equal(await store.countRunningTasks(), 3);
  });
}
