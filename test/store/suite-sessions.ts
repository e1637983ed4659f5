/** Store contract: sessions. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../../src/core/ports/store.ts';
import type { SessionSummary } from '../../src/core/model.ts';
import type { TokenUsage } from '../../src/core/model.ts';
import { makeOutcome, NO_ACTIVITY, makeSession, makeTask } from './fixtures.ts';

const big = { maxSessions: 1_000 };

async function allPages(store: Store, tenantId: string | null, limit: number): Promise<{ items: SessionSummary[]; pages: number }> {
  const items: SessionSummary[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await store.listSessions(tenantId, { limit, cursor });
    assert.ok(page.items.length <= limit, 'a page holds at most limit items');
    items.push(...page.items);
    cursor = page.nextCursor;
    pages++;
    assert.ok(pages < 100, 'paging ends');
  } while (cursor !== null);
  return { items, pages };
}

export function defineSessionTests(getStore: () => Store): void {
  test('createSession stores a session that findSession and getSessionByKey return', async () => {
    const store = getStore();
    const s = makeSession(1, { agentSessionId: 'conv-1', turns: 2, totalCostUsd: 0.5, createdAt: 10, lastActivityAt: 20 });
    const r = await store.createSession(s, big);
    assert.deepEqual(r, { session: s, created: true });
    assert.deepEqual(await store.findSession('tenant-a', 'session-1'), s);
    assert.deepEqual(await store.getSessionByKey('key-1'), s);
    assert.equal(await store.findSession('tenant-b', 'session-1'), undefined);
    assert.equal(await store.findSession('tenant-a', 'session-2'), undefined);
    assert.equal(await store.getSessionByKey('key-2'), undefined);
  });

  test('createSession with an existing (tenant, id) returns the stored session, created=false', async () => {
    const store = getStore();
    const first = makeSession(1, { agent: 'coder' });
    await store.createSession(first, big);
    const again = await store.createSession(makeSession(1, { key: 'other-key', agent: 'writer' }), big);
    assert.deepEqual(again, { session: first, created: false });
    assert.deepEqual(await store.listAllSessionKeys(), ['key-1']);
    // The same id in another tenant is another session.
    const other = await store.createSession(makeSession(2, { id: 'session-1', tenantId: 'tenant-b' }), big);
    assert.equal(other.created, true);
    assert.equal((await store.findSession('tenant-b', 'session-1'))?.key, 'key-2');
  });

  test('createSession throws SESSION_LIMIT_REACHED past maxSessions, counted over all tenants', async () => {
    const store = getStore();
    await store.createSession(makeSession(1), { maxSessions: 2 });
    await store.createSession(makeSession(2, { tenantId: 'tenant-b' }), { maxSessions: 2 });
    await assert.rejects(store.createSession(makeSession(3), { maxSessions: 2 }), { name: 'RunnerError', code: 'SESSION_LIMIT_REACHED' });
    assert.equal(await store.getSessionByKey('key-3'), undefined);
    // An existing session is still found at the limit.
    const existing = await store.createSession(makeSession(1), { maxSessions: 2 });
    assert.equal(existing.created, false);
  });

  test('listSessions pages newest first with no duplicate and no gap, per tenant or over all', async () => {
    const store = getStore();
    const created: string[] = [];
    for (let i = 0; i < 11; i++) {
      // Several sessions share a createdAt: the order must still be total.
      const s = makeSession(i, { tenantId: i % 3 === 0 ? 'tenant-b' : 'tenant-a', createdAt: 100 + Math.floor(i / 2) });
      await store.createSession(s, big);
      created.push(s.key);
    }
    for (const limit of [1, 2, 3, 11, 50]) {
      const { items, pages } = await allPages(store, null, limit);
      const keys = items.map((s) => s.key);
      assert.equal(new Set(keys).size, keys.length, `no duplicate (limit ${limit})`);
      assert.deepEqual([...keys].sort(), [...created].sort(), `no gap (limit ${limit})`);
      assert.equal(pages, Math.max(1, Math.ceil(11 / limit)));
      for (let i = 1; i < items.length; i++) {
        assert.ok(items[i - 1]!.createdAt >= items[i]!.createdAt, 'newest first');
      }
    }
    const b = await allPages(store, 'tenant-b', 2);
    assert.deepEqual(b.items.map((s) => s.key).sort(), ['key-0', 'key-3', 'key-6', 'key-9']);
    assert.ok(b.items.every((s) => s.tenantId === 'tenant-b'));
    assert.deepEqual(await store.listSessions('tenant-c', { limit: 5 }), { items: [], nextCursor: null });
    const first = await store.listSessions(null, { limit: 3 });
    assert.deepEqual(first.items.map((s) => s.createdAt), [105, 104, 104]);
  });

  test('listSessions rejects a cursor it did not make with INVALID_REQUEST', async () => {
    const store = getStore();
    await store.createSession(makeSession(1), big);
    for (const cursor of ['not a cursor', 'abc', Buffer.from('{"a":1}').toString('base64url'), Buffer.from('[1]').toString('base64url')]) {
      await assert.rejects(store.listSessions(null, { limit: 2, cursor }), { name: 'RunnerError', code: 'INVALID_REQUEST' }, cursor);
    }
  });

  test('listSessions and summarizeSession count queued and running tasks', async () => {
    const store = getStore();
    const a = makeSession('a', { createdAt: 2 });
    const b = makeSession('b', { createdAt: 1 });
    await store.createSession(a, big);
    await store.createSession(b, big);
    for (let i = 0; i < 3; i++) await store.enqueueTask(makeTask(a, `a${i}`, { createdAt: 10 + i }), { maxQueued: 10 });
    await store.enqueueTask(makeTask(b, 'b0'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 1, 50); // a0, the oldest
    assert.deepEqual(await store.summarizeSession('key-a'), { ...a, queued: 2, running: 1 });
    assert.deepEqual(await store.summarizeSession('key-b'), { ...b, queued: 1, running: 0 });
    assert.equal(await store.summarizeSession('key-none'), undefined);
    const page = await store.listSessions(null, { limit: 10 });
    assert.deepEqual(page.items.map((s) => [s.key, s.queued, s.running]), [['key-a', 2, 1], ['key-b', 1, 0]]);
  });

  test('finishTask records the session\'s activity with the task: a turn when asked, the conversation, the time', async () => {
    const store = getStore();
    const s = makeSession(1, { agentSessionId: 'conv-0' });
    await store.createSession(s, big);
    for (const [id, activity, at] of [['f1', { turn: true, agentSessionId: 'conv-1' }, 5_000], ['f2', { turn: false }, 6_000], ['f3', { turn: true }, 7_000]] as const) {
      await store.enqueueTask(makeTask(s, id), { maxQueued: 10 });
      await store.claimTasks('runner-1', 1, at - 1);
      assert.equal(await store.finishTask(id, 'runner-1', makeOutcome({ finishedAt: at, costUsd: 0.25 }), activity), true);
    }
    const after = await store.getSessionByKey('key-1');
    assert.equal(after?.turns, 2);
    assert.equal(after?.totalCostUsd, 0.75);
    assert.equal(after?.agentSessionId, 'conv-1', 'kept when not given');
    assert.equal(after?.lastActivityAt, 7_000);
  });

  test('spend is recorded call by call on the running task and its session, and the end adds only what is missing', async () => {
    const store = getStore();
    const s = makeSession(1);
    await store.createSession(s, big);
    await store.enqueueTask(makeTask(s, 'p1'), { maxQueued: 10 });
    await store.recordTaskSpend('p1', { costUsd: 9, usage: usage(1) });
    assert.equal((await store.getSessionByKey('key-1'))?.totalCostUsd, 0, 'a queued task spends nothing');
    await store.claimTasks('runner-1', 1, 3_000);
    await store.recordTaskSpend('p1', { costUsd: 0.25, usage: usage(10) });
    await store.recordTaskSpend('p1', { costUsd: 0.5, usage: usage(5) });
    await store.recordTaskTool('p1', 'Bash');
    await store.recordTaskTool('p1', 'Read');
    await store.recordTaskTool('p1', 'Bash');
    const running = await store.getTask('p1');
    assert.equal(running?.status, 'running');
    assert.equal(running?.costUsd, 0.75);
    assert.deepEqual(running?.usage, usage(15));
    assert.deepEqual(running?.tools, ['Bash', 'Read']);
    assert.equal((await store.getSessionByKey('key-1'))?.totalCostUsd, 0.75);
    // The meter saw one more call than was recorded (a write that failed): the end adds it, once.
    assert.equal(await store.finishTask('p1', 'runner-1', makeOutcome({ costUsd: 1, usage: usage(20) }), { turn: true }), true);
    assert.equal((await store.getSessionByKey('key-1'))?.totalCostUsd, 1);
    assert.equal((await store.getTask('p1'))?.costUsd, 1);
    // A call cut at the end and metered later still counts, on the task and its session alike.
    await store.recordTaskSpend('p1', { costUsd: 0.5, usage: usage(1) });
    assert.equal((await store.getSessionByKey('key-1'))?.totalCostUsd, 1.5);
    assert.equal((await store.getTask('p1'))?.costUsd, 1.5);
  });

  test('a task interrupted elsewhere keeps its status; the session still gets its activity and its whole cost', async () => {
    const store = getStore();
    const s = makeSession(1);
    await store.createSession(s, big);
    await store.enqueueTask(makeTask(s, 'i1'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 1, 3_000);
    await store.recordTaskSpend('i1', { costUsd: 0.5, usage: usage(10) });
    await store.interruptRunningTasks(null, { code: 'TASK_INTERRUPTED', message: 'x' }, 4_000);
    const interrupted = await store.getTask('i1');
    assert.equal(interrupted?.status, 'interrupted');
    assert.equal(interrupted?.costUsd, 0.5, 'what it spent before the crash stays');
    assert.equal(await store.finishTask('i1', 'runner-1', makeOutcome({ costUsd: 0.75, usage: usage(12) }), { turn: true, agentSessionId: 'conv-9' }), false);
    assert.equal((await store.getTask('i1'))?.status, 'interrupted');
    assert.equal((await store.getTask('i1'))?.costUsd, 0.75);
    const after = await store.getSessionByKey('key-1');
    assert.equal(after?.totalCostUsd, 0.75);
    assert.equal(after?.agentSessionId, 'conv-9');
  });

  test('resetSession clears conversation and turns; cost, tasks and events stay', async () => {
    const store = getStore();
    const s = makeSession(1);
    await store.createSession(s, big);
    await store.enqueueTask(makeTask(s, 't0'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 1, 2_500);
    await store.finishTask('t0', 'runner-1', makeOutcome({ costUsd: 1.5, finishedAt: 3_000 }), { turn: true, agentSessionId: 'conv-1' });
    await store.enqueueTask(makeTask(s, 't1'), { maxQueued: 10 });
    await store.appendEvents([{ sessionKey: 'key-1', taskId: 't1', type: 'text', data: { text: 'hi' } }], 3_000);
    await store.resetSession('key-1', 4_000);
    assert.deepEqual(await store.getSessionByKey('key-1'), { ...s, agentSessionId: null, turns: 0, totalCostUsd: 1.5, lastActivityAt: 4_000 });
    assert.equal((await store.getTask('t1'))?.status, 'queued');
    assert.equal((await store.readEvents('key-1', 0, 10)).length, 1);
  });

  test('deleteSession removes the session with its tasks and events, and nothing else', async () => {
    const store = getStore();
    const a = makeSession('a');
    const b = makeSession('b');
    await store.createSession(a, big);
    await store.createSession(b, big);
    await store.enqueueTask(makeTask(a, 'a1'), { maxQueued: 10 });
    await store.enqueueTask(makeTask(a, 'a2', { idempotencyKey: 'k', requestHash: 'h' }), { maxQueued: 10 });
    await store.enqueueTask(makeTask(b, 'b1'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 10, 100);
    await store.appendEvents([
      { sessionKey: 'key-a', taskId: 'a1', type: 'text', data: { text: 'a' } },
      { sessionKey: 'key-b', taskId: 'b1', type: 'text', data: { text: 'b' } },
    ], 100);
    await store.deleteSession('key-a');
    assert.equal(await store.getSessionByKey('key-a'), undefined);
    assert.equal(await store.findSession('tenant-a', 'session-a'), undefined);
    assert.equal(await store.getTask('a1'), undefined);
    assert.equal(await store.getTask('a2'), undefined);
    assert.deepEqual(await store.readEvents('key-a', 0, 10), []);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 0, lastSeq: 0 });
    assert.equal(await store.countRunningTasks(), 1);
    assert.equal((await store.getTask('b1'))?.status, 'running');
    assert.equal((await store.readEvents('key-b', 0, 10)).length, 1);
    assert.deepEqual(await store.listAllSessionKeys(), ['key-b']);
    // The (tenant, id) and the idempotency key are free again.
    const again = makeSession('a', { key: 'key-a2' });
    assert.equal((await store.createSession(again, big)).created, true);
    assert.equal((await store.enqueueTask(makeTask(again, 'a3', { idempotencyKey: 'k', requestHash: 'other' }), { maxQueued: 10 })).created, true);
    await store.deleteSession('key-unknown'); // no error
  });

  test('listIdleSessions returns sessions idle since before, with no task queued or running', async () => {
    const store = getStore();
    const old = { lastActivityAt: 1_000 };
    const sessions = {
      idle: makeSession('idle', old),
      queued: makeSession('queued', old),
      running: makeSession('running', old),
      finished: makeSession('finished', { lastActivityAt: 900 }),
      recent: makeSession('recent', { lastActivityAt: 5_000 }),
      edge: makeSession('edge', { lastActivityAt: 2_000 }),
    };
    for (const s of Object.values(sessions)) await store.createSession(s, big);
    await store.enqueueTask(makeTask(sessions.running, 'r1'), { maxQueued: 10 });
    await store.enqueueTask(makeTask(sessions.finished, 'f1'), { maxQueued: 10 });
    await store.claimTasks('runner-1', 10, 1_500);
    assert.equal(await store.finishTask('f1', 'runner-1', makeOutcome({ finishedAt: 1_600 }), NO_ACTIVITY), true);
    await store.enqueueTask(makeTask(sessions.queued, 'q1'), { maxQueued: 10 });
    const idle = await store.listIdleSessions(2_000);
    assert.deepEqual(idle.map((s) => s.key).sort(), ['key-finished', 'key-idle']);
    assert.deepEqual(idle.find((s) => s.key === 'key-idle'), sessions.idle);
  });

  test('listAllSessionKeys lists every session of every tenant', async () => {
    const store = getStore();
    assert.deepEqual(await store.listAllSessionKeys(), []);
    await store.createSession(makeSession(1), big);
    await store.createSession(makeSession(2, { tenantId: 'tenant-b' }), big);
    assert.deepEqual((await store.listAllSessionKeys()).sort(), ['key-1', 'key-2']);
  });
}

function usage(n: number): TokenUsage {
  return { inputTokens: n, outputTokens: 2 * n, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
}
