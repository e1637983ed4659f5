/**
 * Abort: a session's running task stops at once (agent process and tools
 * gone), its queued tasks end aborted, and every blocked caller is answered.
 * One task can be aborted by id; an idle session is a clear no-op.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { agentProcesses, containerOf, waitFinal, within, runningInSandbox } from './support.ts';

describe('abort', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      rules: [
        rule('slow-abortable-job', bash('echo busy; sleep 60'), text('slow job finished')),
        rule('quick-job', text('quick job done')),
        rule('slow-model-job', text('slow model answer', { delayMs: 3000 })),
      ],
    });
  });
  after(async () => h?.close());

  const submit = (sessionId: string, message: string, wait = true) =>
    h.api('/task', { method: 'POST', json: { sessionId, message, wait } });

  /** Waits until the session's container runs the slow tool. */
  const sleeping = (sessionId: string): Promise<string> => runningInSandbox(h.runnerId, sessionId, 'sleep 60');

  test('aborting a session stops the running task at once, ends the queued ones, and answers every blocked caller', async () => {
    const running = submit('abort-all', 'slow-abortable-job 1');
    const containerId = await sleeping('abort-all');
    const queuedA = submit('abort-all', 'quick-job A');
    const queuedB = submit('abort-all', 'quick-job B');
    await eventually(async () => ((await h.api('/session/abort-all')).body.queueDepth === 2 ? true : undefined), 10_000, 'two queued');
    const claude = await agentProcesses(containerId);
    assert.ok(claude.some((p) => p.includes('claude')), `the agent runs: ${claude.join(' | ')}`);

    const t0 = Date.now();
    const abort = await h.api('/task/abort-all/abort', { method: 'POST' });
    const abortMs = Date.now() - t0;
    assert.equal(abort.status, 200, JSON.stringify(abort.body));
    assert.equal(abort.body.aborted, true);
    assert.match(abort.body.runningTaskId, /^task_/);
    assert.equal(abort.body.queuedTaskIds.length, 2);
    assert.ok(abortMs < 5000, `abort took ${abortMs} ms`);
    console.log(`# abort of a running tool with 2 queued tasks: ${abortMs} ms`);

    // Every blocked POST /task is answered with the aborted error, not left hanging.
    const answers = await within(Promise.all([running, queuedA, queuedB]), 6000, 'answers to the blocked callers');
    for (const res of answers) {
      assert.equal(res.status, 409, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'TASK_ABORTED');
      assert.equal(res.body.status, 'aborted');
    }
    assert.ok(Date.now() - t0 < 6000, 'callers answered promptly');
    assert.equal(answers[0]!.body.taskId, abort.body.runningTaskId);
    assert.deepEqual(answers.slice(1).map((r) => r.body.taskId), abort.body.queuedTaskIds);
    for (const res of answers) assert.equal((await h.api(`/tasks/${res.body.taskId}`)).body.status, 'aborted');

    // Nothing of the agent is left in the container: no claude, no sleep.
    assert.deepEqual(await agentProcesses(containerId), []);
    // The queued tasks never reached the model.
    assert.equal(h.model.findRequests({ prompt: 'quick-job A' }).length, 0);
    assert.equal(h.model.findRequests({ prompt: 'quick-job B' }).length, 0);
    // The session stays usable.
    const after = await submit('abort-all', 'quick-job after abort');
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.deepEqual(after.body.output, { response: 'quick job done' });
    const session = await h.api('/session/abort-all');
    assert.equal(session.body.queueDepth, 0);
    assert.equal(session.body.busy, false);
  });

  test('POST /tasks/:taskId/abort ends one queued task, then one running task; the rest of the queue runs', async () => {
    const slow = await submit('abort-one', 'slow-abortable-job 2', false);
    assert.equal(slow.status, 202);
    const containerId = await sleeping('abort-one');
    const q1 = await submit('abort-one', 'quick-job one', false);
    const q2 = await submit('abort-one', 'quick-job two', false);

    const abortedQueued = await h.api(`/tasks/${q1.body.taskId}/abort`, { method: 'POST' });
    assert.equal(abortedQueued.status, 200);
    assert.equal(abortedQueued.body.status, 'aborted');
    assert.equal(abortedQueued.body.error.code, 'TASK_ABORTED');
    assert.equal((await h.api(`/tasks/${slow.body.taskId}`)).body.status, 'running');
    assert.equal((await h.api(`/tasks/${q2.body.taskId}`)).body.status, 'queued');

    const t0 = Date.now();
    const abortedRunning = await h.api(`/tasks/${slow.body.taskId}/abort`, { method: 'POST' });
    assert.equal(abortedRunning.status, 200);
    assert.equal(abortedRunning.body.status, 'aborted');
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(!(await agentProcesses(containerId)).some((p) => p.includes('sleep 60')), 'the tool is gone');

    const last = await waitFinal(h.api, q2.body.taskId);
    assert.equal(last.status, 'succeeded');
    assert.deepEqual(last.output, { response: 'quick job done' });
    assert.equal((await h.api(`/tasks/${q1.body.taskId}`)).body.status, 'aborted');
    assert.equal(h.model.findRequests({ prompt: 'quick-job one' }).length, 0);

    // Aborting a task that already ended changes nothing.
    const again = await h.api(`/tasks/${q2.body.taskId}/abort`, { method: 'POST' });
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'succeeded');
  });

  test('aborting an idle session is a clear no-op; unknown sessions and tasks are 404', async () => {
    const done = await submit('abort-idle', 'quick-job idle');
    assert.equal(done.status, 200);
    const res = await h.api('/task/abort-idle/abort', { method: 'POST' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      sessionId: 'abort-idle', aborted: false, runningTaskId: null, queuedTaskIds: [], message: 'Nothing to abort: the session is idle.',
    });
    assert.equal((await h.api(`/tasks/${done.body.taskId}`)).body.status, 'succeeded');
    const unknown = await h.api('/task/never-was/abort', { method: 'POST' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'SESSION_NOT_FOUND');
    const noTask = await h.api('/tasks/task_nope/abort', { method: 'POST' });
    assert.equal(noTask.status, 404);
    assert.equal(noTask.body.error.code, 'TASK_NOT_FOUND');
  });

  test('a task aborted while its agent is starting or waiting for the model ends aborted, and its caller is answered', async () => {
    // A new session: the container and the agent process start, then the model takes 3 s to answer.
    const blocked = submit('abort-early', 'slow-model-job early');
    const taskId = await eventually(async () => {
      const list = await h.api('/session/abort-early/tasks');
      const t = list.body?.tasks?.[0];
      return t?.status === 'running' ? t.taskId as string : undefined;
    }, 10_000, 'the task to start');
    const res = await h.api(`/tasks/${taskId}/abort`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'aborted');
    const answer = await within(blocked, 5000, 'the answer to the blocked caller');
    assert.equal(answer.status, 409);
    assert.equal(answer.body.error.code, 'TASK_ABORTED');
    const session = await h.api('/session/abort-early');
    assert.equal(session.body.busy, false);
    assert.equal(session.body.queueDepth, 0);
    const container = await containerOf(h.runnerId, 'abort-early');
    assert.deepEqual(container ? await agentProcesses(container.Id) : [], []);
    // The next task of the session runs normally.
    const next = await submit('abort-early', 'quick-job after early abort');
    assert.equal(next.status, 200, JSON.stringify(next.body));
  });
});
