/**
 * The edges of a task's life: a blocking caller that leaves, limits a caller
 * may only lower, and a store that fails as a task ends.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';

describe('task lifecycle edges', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { MAX_BUDGET_USD: '0.0001', TASK_TIMEOUT_MS: '20000' },
      rules: [
        rule('lc-slow-answer', text('slow but done', { delayMs: 1500 })),
        rule('lc-quick', text('quick')),
      ],
    });
  });
  after(async () => h?.close());

  test('a blocking caller that goes away stops waiting; the task still ends', async () => {
    const caller = new AbortController();
    const request = fetch(`${h.url}/task`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: caller.signal,
      body: JSON.stringify({ sessionId: 'lc-leaver', message: 'lc-slow-answer', budgetUsd: 0.0001 }),
    });
    await eventually(() => (h.runner.tasks.waitingCallers() === 1 ? true : undefined), 10_000, 'the caller waiting');
    caller.abort();
    await assert.rejects(request);
    await eventually(() => (h.runner.tasks.waitingCallers() === 0 ? true : undefined), 5_000, 'the waiter released');
    const tasks = await h.api('/session/lc-leaver/tasks');
    const taskId = tasks.body.tasks[0].taskId;
    const final = await eventually(async () => {
      const task = await h.api(`/tasks/${taskId}`);
      return task.body.status === 'queued' || task.body.status === 'running' ? undefined : task.body;
    }, 20_000, 'the task to end');
    // It ran to its end (the budget ends it after its one call): leaving did not abort it.
    assert.equal(final.status, 'budget_exceeded');
  });

  test('a caller may lower the operator\'s limits, never raise them', async () => {
    // Asking for $100, above MAX_BUDGET_USD, is refused at submit, naming the field and the limit.
    const rich = await h.api('/task', { method: 'POST', json: { sessionId: 'lc-limits', message: 'lc-quick', budgetUsd: 100 } });
    assert.equal(rich.status, 400, JSON.stringify(rich.body));
    assert.equal(rich.body.error.code, 'OVERRIDE_NOT_ALLOWED');
    assert.match(rich.body.error.message, /^budgetUsd: 100 is above the limit of 0\.0001/);
    // MAX_BUDGET_USD is below one call: a task within it still ends over budget.
    const capped = await h.api('/task', { method: 'POST', json: { sessionId: 'lc-limits', message: 'lc-quick' } });
    assert.equal(capped.status, 402, JSON.stringify(capped.body));
    assert.equal(capped.body.error.code, 'BUDGET_EXCEEDED');
    // TASK_TIMEOUT_MS is 20 s: a 10 ms timeoutMs lowers it and ends a 1.5 s answer early.
    const short = await h.api('/task', { method: 'POST', json: { sessionId: 'lc-limits', message: 'lc-slow-answer', timeoutMs: 10 } });
    assert.equal(short.status, 504, JSON.stringify(short.body));
    assert.equal(short.body.error.code, 'TASK_TIMEOUT');
  });

  test('an email works as a session id, as seed clients use them', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'alice@startup.io', message: 'lc-quick', wait: false } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const session = await h.api(`/session/${encodeURIComponent('alice@startup.io')}`);
    assert.equal(session.status, 200);
    assert.equal(session.body.sessionId, 'alice@startup.io');
    assert.equal(session.body.lastTaskId, res.body.taskId);
  });

  test('when the store fails as a task ends, its caller is answered all the same', async () => {
    const store = h.runner.store;
    const original = store.finishTask.bind(store);
    store.finishTask = async () => { throw new Error('disk full (simulated)'); };
    try {
      // Without the fix the caller waits forever: the signal turns that into a failure.
      const res = await h.api('/task', { method: 'POST', json: { sessionId: 'lc-store-fails', message: 'lc-quick' }, signal: AbortSignal.timeout(20_000) });
      // The task ran into its budget (MAX_BUDGET_USD here); the caller hears so although its record could not be written.
      assert.equal(res.status, 402, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'BUDGET_EXCEEDED');
      assert.match(res.body.taskId, /^task_/);
    } finally {
      store.finishTask = original;
    }
  });
});
