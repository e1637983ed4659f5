/** Store contract: claiming tasks fairly, finishing, aborting and interrupting them. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../../src/core/ports/store.ts';
import type { Session, Task } from '../../src/core/model.ts';
import { abortError, interruptError, makeOutcome, NO_ACTIVITY, makeSession, makeTask } from './fixtures.ts';

const roomy = { maxQueued: 100 };

async function sessionWithTasks(store: Store, name: string, count: number, firstCreatedAt = 100): Promise<Session> {
  const s = makeSession(name);
  await store.createSession(s, { maxSessions: 100 });
  for (let i = 0; i < count; i++) {
    await store.enqueueTask(makeTask(s, `${name}${i}`, { createdAt: firstCreatedAt + i }), roomy);
  }
  return s;
}

async function runningOf(store: Store, key: string): Promise<Task[]> {
  return (await store.listTasks(key, { limit: 100 })).items.filter((t) => t.status === 'running');
}

export function defineClaimTests(getStore: () => Store): void {
  test('claimTasks takes one task per session, so a busy session cannot starve the others', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 10, 100); // all older than B's and C's
    await sessionWithTasks(store, 'b', 1, 500);
    await sessionWithTasks(store, 'c', 1, 600);
    const claimed = await store.claimTasks('runner-1', 3, 1_000);
    assert.deepEqual(claimed.map((t) => t.id).sort(), ['a0', 'b0', 'c0']);
    for (const t of claimed) {
      assert.equal(t.status, 'running');
      assert.equal(t.runnerId, 'runner-1');
      assert.equal(t.startedAt, 1_000);
      assert.deepEqual(await store.getTask(t.id), t);
    }
    // A session with a running task gets nothing more, whatever the limit.
    assert.deepEqual(await store.claimTasks('runner-2', 10, 1_001), []);
    assert.equal((await runningOf(store, 'key-a')).length, 1);
  });

  test('claimTasks serves the session served least recently first, oldest queued task on ties', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 3, 100); // a0..a2 are older than every b
    await sessionWithTasks(store, 'b', 2, 200);
    const order: string[] = [];
    for (let round = 0; round < 5; round++) {
      const now = 1_000 + round;
      const [t] = await store.claimTasks('runner-1', 1, now);
      assert.ok(t, `round ${round} claims a task`);
      order.push(t.id);
      assert.equal(await store.finishTask(t.id, 'runner-1', makeOutcome({ finishedAt: now }), NO_ACTIVITY), true);
    }
    // Oldest-first alone would give a0 a1 a2 b0 b1.
    assert.deepEqual(order, ['a0', 'b0', 'a1', 'b1', 'a2']);
    assert.deepEqual(await store.claimTasks('runner-1', 1, 2_000), []);
  });

  test('claimTasks keeps the order of a session, enqueue order breaking createdAt ties', async () => {
    const store = getStore();
    const s = makeSession('a');
    await store.createSession(s, { maxSessions: 10 });
    const ids = ['x', 'c', 'm', 'b', 'z', 'a'];
    for (const id of ids) await store.enqueueTask(makeTask(s, id, { createdAt: 500 }), roomy);
    const order: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const claimed = await store.claimTasks('runner-1', 5, 1_000 + i);
      assert.equal(claimed.length, 1, 'never two running in one session');
      order.push(claimed[0]!.id);
      assert.equal(await store.finishTask(claimed[0]!.id, 'runner-1', makeOutcome(), NO_ACTIVITY), true);
    }
    assert.deepEqual(order, ids);
  });

  test('a task never starts before the last task of its session ended, whatever the claimer\'s clock says', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'm', 2);
    const [first] = await store.claimTasks('runner-1', 1, 1_000);
    assert.equal(await store.finishTask(first!.id, 'runner-1', makeOutcome({ finishedAt: 5_000 }), NO_ACTIVITY), true);
    // Another node (the session released to it), whose clock was read before the end was written or runs behind.
    await store.releaseSessions('runner-1');
    const [second] = await store.claimTasks('runner-2', 1, 4_000);
    assert.deepEqual([second?.id, second?.startedAt], ['m1', 5_000]);
    assert.equal((await store.getTask('m1'))?.startedAt, 5_000);
  });

  test('claimTasks claims at most limit tasks and skips sessions with nothing queued', async () => {
    const store = getStore();
    for (const n of ['a', 'b', 'c', 'd', 'e']) await sessionWithTasks(store, n, 1);
    await sessionWithTasks(store, 'empty', 0);
    assert.deepEqual(await store.claimTasks('runner-1', 0, 1_000), []);
    const sizes = [];
    for (let i = 0; i < 4; i++) sizes.push((await store.claimTasks('runner-1', 2, 1_000 + i)).length);
    assert.deepEqual(sizes, [2, 2, 1, 0]);
    assert.equal(await store.countRunningTasks(), 5);
  });

  test('concurrent claimTasks never hand one task to two runners', async () => {
    const store = getStore();
    for (let i = 0; i < 8; i++) await sessionWithTasks(store, `s${i}`, 3);
    const batches = await Promise.all(Array.from({ length: 6 }, (_, i) => store.claimTasks(`runner-${i}`, 3, 1_000)));
    const ids = batches.flat().map((t) => t.id);
    assert.equal(ids.length, 8, 'one task for each of the 8 sessions');
    assert.equal(new Set(ids).size, 8);
    assert.equal(new Set(batches.flat().map((t) => t.sessionKey)).size, 8);
    for (let i = 0; i < 6; i++) {
      for (const t of batches[i]!) assert.equal((await store.getTask(t.id))?.runnerId, `runner-${i}`);
    }
  });

  test('finishTask ends a running task only for the runner that owns it, and erases sealedEnv', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 2);
    const [t] = await store.claimTasks('runner-1', 1, 1_000);
    assert.ok(t);
    assert.equal(t.sealedEnv, 'sealed(a0)');
    const outcome = makeOutcome({ finishedAt: 5_000 });
    assert.equal(await store.finishTask(t.id, 'runner-2', outcome, NO_ACTIVITY), false);
    assert.deepEqual(await store.getTask(t.id), t, 'untouched by another runner');
    assert.equal(await store.finishTask('a1', 'runner-1', outcome, NO_ACTIVITY), false, 'a queued task is not running');
    assert.equal((await store.getTask('a1'))?.status, 'queued');
    assert.equal(await store.finishTask('nope', 'runner-1', outcome, NO_ACTIVITY), false);
    assert.equal(await store.finishTask(t.id, 'runner-1', outcome, NO_ACTIVITY), true);
    assert.deepEqual(await store.getTask(t.id), {
      ...t,
      status: 'succeeded', finishedAt: 5_000, costUsd: 0.125, durationMs: 4_000, tools: ['Read', 'Bash'],
      output: outcome.output, error: null, resumed: true, usage: outcome.usage, sealedEnv: null,
    });
    assert.equal(await store.finishTask(t.id, 'runner-1', makeOutcome({ status: 'failed' }), NO_ACTIVITY), false, 'only once');
    assert.equal((await store.getTask(t.id))?.status, 'succeeded');
    // A failure keeps its error body.
    const [t2] = await store.claimTasks('runner-1', 1, 6_000);
    const error = { code: 'TASK_TIMEOUT' as const, message: 'late', details: { limitMs: 10 } };
    assert.equal(await store.finishTask(t2!.id, 'runner-1', makeOutcome({ status: 'timed_out', error, output: null, resumed: false, usage: null }), NO_ACTIVITY), true);
    const failed = await store.getTask(t2!.id);
    assert.deepEqual([failed?.status, failed?.error, failed?.output, failed?.resumed, failed?.usage], ['timed_out', error, null, false, null]);
  });

  test('abortQueuedTasks ends queued tasks of a session, or one task, and leaves the rest', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 4);
    await sessionWithTasks(store, 'b', 2);
    await store.claimTasks('runner-1', 10, 1_000); // a0, b0 running
    const ids = await store.abortQueuedTasks({ sessionKey: 'key-a' }, abortError, 2_000);
    assert.deepEqual(ids, ['a1', 'a2', 'a3']);
    for (const id of ids) {
      const t = await store.getTask(id);
      assert.deepEqual([t?.status, t?.finishedAt, t?.error, t?.sealedEnv], ['aborted', 2_000, abortError, null]);
    }
    assert.equal((await store.getTask('a0'))?.status, 'running');
    assert.equal((await store.getTask('b1'))?.status, 'queued');
    assert.deepEqual(await store.abortQueuedTasks({ sessionKey: 'key-a' }, abortError, 2_001), []);
    assert.deepEqual(await store.abortQueuedTasks({ taskId: 'b0' }, abortError, 2_002), [], 'running is not queued');
    assert.deepEqual(await store.abortQueuedTasks({ taskId: 'b1' }, abortError, 2_003), ['b1']);
    assert.equal((await store.getTask('b1'))?.status, 'aborted');
    assert.equal((await store.getTask('b0'))?.status, 'running');
    assert.deepEqual(await store.abortQueuedTasks({ taskId: 'nope' }, abortError, 2_004), []);
    assert.deepEqual(await store.claimTasks('runner-1', 10, 3_000), [], 'aborted tasks are never claimed');
  });

  test('interruptRunningTasks ends the running tasks of a runner, or of all, and returns them as they were', async () => {
    const store = getStore();
    for (const n of ['a', 'b', 'c']) await sessionWithTasks(store, n, 2);
    const mine = await store.claimTasks('runner-1', 2, 1_000); // a0, b0
    const theirs = await store.claimTasks('runner-2', 1, 1_500); // c0
    const interrupted = await store.interruptRunningTasks('runner-1', interruptError, 4_000);
    assert.deepEqual(interrupted.map((t) => t.id).sort(), mine.map((t) => t.id).sort());
    for (const before of interrupted) {
      assert.deepEqual(before, mine.find((t) => t.id === before.id), 'as it was');
      const after = await store.getTask(before.id);
      assert.deepEqual([after?.status, after?.finishedAt, after?.error, after?.sealedEnv], ['interrupted', 4_000, interruptError, null]);
    }
    assert.equal((await store.getTask(theirs[0]!.id))?.status, 'running');
    assert.equal((await store.getTask('a1'))?.status, 'queued', 'queued tasks stay queued');
    assert.deepEqual((await store.interruptRunningTasks(null, interruptError, 5_000)).map((t) => t.id), ['c0']);
    assert.deepEqual(await store.interruptRunningTasks(null, interruptError, 5_001), []);
    assert.equal(await store.countRunningTasks(), 0);
    assert.equal(await store.finishTask('c0', 'runner-2', makeOutcome(), NO_ACTIVITY), false, 'an interrupted task cannot be finished');
    // Their sessions can run again: still their runners' (sticky), any runner's once released.
    assert.deepEqual(await store.claimTasks('runner-3', 5, 6_000), []);
    await store.releaseSessions(null);
    assert.deepEqual((await store.claimTasks('runner-3', 5, 6_001)).map((t) => t.id).sort(), ['a1', 'b1', 'c1']);
  });

  test('a task waiting for a person reads awaiting_input, keeps its session busy, finishes, and is interrupted like a running one', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'w', 2, 100);
    const [claimed] = await store.claimTasks('runner-1', 5, 1_000);
    const pending = { requestId: 'input_1', kind: 'question' as const, questions: [], input: { questions: [] }, askedAt: 1_100, expiresAt: 2_100 };
    await store.setPendingInput(claimed!.id, [pending]);
    const waiting = await store.getTask(claimed!.id);
    assert.equal(waiting?.status, 'awaiting_input');
    assert.deepEqual(waiting?.pendingInput, [pending]);
    assert.deepEqual(await store.claimTasks('runner-2', 5, 1_001), [], 'the session is still busy');
    assert.equal(await store.countRunningTasks(), 1);
    assert.equal((await store.oldestUnfinishedTask('key-w'))?.id, claimed!.id);
    await store.setPendingInput(claimed!.id, []);
    assert.equal((await store.getTask(claimed!.id))?.status, 'running');
    await store.setPendingInput(claimed!.id, [pending]);
    assert.equal(await store.finishTask(claimed!.id, 'runner-1', makeOutcome(), NO_ACTIVITY), true);
    const done = await store.getTask(claimed!.id);
    assert.deepEqual([done?.status, done?.pendingInput], ['succeeded', []]);
    await store.setPendingInput(claimed!.id, [pending]);
    assert.deepEqual((await store.getTask(claimed!.id))?.pendingInput, [], 'an ended task takes no pending input');
    const [next] = await store.claimTasks('runner-1', 5, 3_000);
    await store.setPendingInput(next!.id, [pending]);
    const interrupted = await store.interruptRunningTasks('runner-1', interruptError, 4_000);
    assert.deepEqual(interrupted.map((t) => t.id), [next!.id]);
    const after = await store.getTask(next!.id);
    assert.deepEqual([after?.status, after?.pendingInput], ['interrupted', []]);
  });
}
