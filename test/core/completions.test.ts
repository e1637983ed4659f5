/**
 * TaskCompletions.wait (issue 9, point 2): every waiter's promise is handled,
 * whatever happens first (the caller leaving, the task ending, the store
 * failing, a shutdown), so nothing ends the process with an unhandled
 * rejection; and nothing of a wait stays behind (waiters, abort listeners).
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Task } from '../../src/core/model.ts';
import { TaskCompletions } from '../../src/tasks/completions.ts';

const task = (id: string, status: Task['status']): Task => ({ id, status } as Task);
/** Lets rejections nobody handled surface as 'unhandledRejection' (after microtasks, before timers). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

describe('TaskCompletions.wait', () => {
  const unhandled: unknown[] = [];
  const record = (reason: unknown): void => { unhandled.push(reason); };
  before(() => { process.on('unhandledRejection', record); });
  after(() => { process.off('unhandledRejection', record); });
  beforeEach(() => { unhandled.length = 0; });

  const clean = async (completions: TaskCompletions, signal?: AbortSignal) => {
    await settle();
    assert.deepEqual(unhandled, []);
    assert.equal(completions.waiting(), 0);
    if (signal) assert.equal(getEventListeners(signal, 'abort').length, 0, 'an abort listener stayed behind');
  };

  test('the caller left before the wait began and the task is already final: the task, and no unhandled rejection', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    gone.abort(new Error('caller went away'));
    assert.equal((await completions.wait('t1', async () => task('t1', 'succeeded'), gone.signal)).status, 'succeeded');
    await clean(completions, gone.signal);
  });

  test('the caller leaves while the store is read, and the task turns out final', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    const load = deferred<Task | undefined>();
    const waiting = completions.wait('t2', () => load.promise, gone.signal);
    gone.abort(new Error('caller went away'));
    load.resolve(task('t2', 'failed'));
    assert.equal((await waiting).status, 'failed');
    await clean(completions, gone.signal);
  });

  test('the store fails, then the caller leaves: the wait rejects with the store\'s error, nothing else', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    const load = deferred<Task | undefined>();
    const waiting = completions.wait('t3', () => load.promise, gone.signal);
    load.reject(new Error('database is locked'));
    await assert.rejects(waiting, /database is locked/);
    gone.abort(new Error('caller went away'));
    await clean(completions, gone.signal);
  });

  test('the caller leaves while the task is queued: the wait rejects with the reason', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    const waiting = completions.wait('t4', async () => task('t4', 'queued'), gone.signal);
    await settle();
    gone.abort(new Error('caller went away'));
    await assert.rejects(waiting, /caller went away/);
    completions.announce(task('t4', 'succeeded'));
    await clean(completions, gone.signal);
  });

  test('the task ends, then the caller leaves: the task, and the later abort is a no-op', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    const waiting = completions.wait('t5', async () => task('t5', 'running'), gone.signal);
    await settle();
    completions.announce(task('t5', 'succeeded'));
    gone.abort(new Error('caller went away'));
    assert.equal((await waiting).status, 'succeeded');
    await clean(completions, gone.signal);
  });

  test('the task ends while the store is read: the announced task or the stored one, never a hang', async () => {
    const completions = new TaskCompletions();
    const load = deferred<Task | undefined>();
    const waiting = completions.wait('t6', () => load.promise);
    completions.announce(task('t6', 'succeeded'));
    load.resolve(task('t6', 'running'));
    assert.equal((await waiting).status, 'succeeded');
    await clean(completions);
  });

  test('shutdown releases every wait; a wait begun after it, and callers leaving after it, add nothing unhandled', async () => {
    const completions = new TaskCompletions();
    const gone = new AbortController();
    const waiting = completions.wait('t7', async () => task('t7', 'queued'), gone.signal);
    const other = completions.wait('t8', async () => task('t8', 'queued'));
    await settle();
    completions.releaseAll(new Error('shutting down'));
    await assert.rejects(waiting, /shutting down/);
    await assert.rejects(other, /shutting down/);
    gone.abort(new Error('caller went away'));
    const late = new AbortController();
    await assert.rejects(completions.wait('t9', async () => task('t9', 'queued'), late.signal), /shutting down/);
    late.abort(new Error('caller went away'));
    await clean(completions, late.signal);
  });

  test('many waiters of one task, leaving at every moment: each settles, none unhandled', async () => {
    const completions = new TaskCompletions();
    const signals: AbortController[] = [];
    const waits: Array<Promise<unknown>> = [];
    for (let i = 0; i < 20; i++) {
      const gone = new AbortController();
      signals.push(gone);
      const load = deferred<Task | undefined>();
      waits.push(completions.wait('t10', () => load.promise, gone.signal).catch((error: Error) => error.message));
      if (i % 4 === 0) gone.abort(new Error('caller went away'));
      setTimeout(() => load.resolve(task('t10', i % 2 === 0 ? 'running' : 'succeeded')), i % 5);
      setTimeout(() => gone.abort(new Error('caller went away')), (i * 3) % 11);
    }
    setTimeout(() => completions.announce(task('t10', 'succeeded')), 6);
    const outcomes = await Promise.all(waits);
    for (const outcome of outcomes) assert.ok(outcome === 'caller went away' || (outcome as Task).status === 'succeeded', String(outcome));
    await settle();
    assert.deepEqual(unhandled, []);
    assert.equal(completions.waiting(), 0);
    for (const gone of signals) assert.equal(getEventListeners(gone.signal, 'abort').length, 0);
  });
});
