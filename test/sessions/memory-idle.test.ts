/**
 * A session remembers: across a server restart (the next model request
 * carries the earlier exchange), and after its idle container was stopped
 * (the next task starts it again). Idle stops never hit a session that is
 * working, nor race a task that is starting.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { containerOf, conversationOf, isRunning, sleep } from './support.ts';

const rules = [
  rule('remember-the-color', text('I will remember: the color is teal.')),
  rule('which-color-was-it', text('It was teal.')),
  rule('two-second-job', bash('echo busy; sleep 2'), text('two seconds later')),
  rule('ping-job', text('pong')),
];

describe('memory across a server restart', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ rules }); });
  after(async () => h?.close());

  test('after stopRunner/restartRunner the next model request contains the earlier exchange', async () => {
    const first = await h.api('/task', { method: 'POST', json: { sessionId: 'remembers', message: 'remember-the-color: teal' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.resumed, false);
    const before = await h.api('/session/remembers');
    await h.stopRunner();
    await h.restartRunner();

    const second = await h.api('/task', { method: 'POST', json: { sessionId: 'remembers', message: 'which-color-was-it?' } });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.resumed, true);
    const request = h.model.findRequests({ prompt: 'which-color-was-it?' })[0];
    const conversation = conversationOf(request);
    assert.match(conversation, /remember-the-color: teal/);
    assert.match(conversation, /I will remember: the color is teal\./);
    const after = await h.api('/session/remembers');
    assert.equal(after.body.turns, before.body.turns + 1);
    assert.ok(after.body.totalCost > before.body.totalCost);
    // The first task is still in the history, as it ended.
    const history = await h.api('/session/remembers/tasks');
    assert.deepEqual(history.body.tasks.map((t: any) => t.status), ['succeeded', 'succeeded']);
  });
});

describe('idle sessions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules, env: { IDLE_TIMEOUT_MS: '400', IDLE_SWEEP_MS: '50' } });
  });
  after(async () => h?.close());

  test('an idle session has its container stopped; the next task starts it again and still remembers', async () => {
    const first = await h.api('/task', { method: 'POST', json: { sessionId: 'napper', message: 'remember-the-color: teal' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const container = (await containerOf(h.runnerId, 'napper'))!;
    assert.ok(await isRunning(container.Id));
    const t0 = Date.now();
    await eventually(async () => ((await isRunning(container.Id)) ? undefined : true), 10_000, 'the idle container to stop');
    assert.ok(Date.now() - t0 < 3000, `stopped after ${Date.now() - t0} ms`);
    const session = await h.api('/session/napper');
    assert.equal(session.body.agentLive, false, 'the live agent was closed too');

    const second = await h.api('/task', { method: 'POST', json: { sessionId: 'napper', message: 'which-color-was-it after a nap' } });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.resumed, true);
    assert.match(conversationOf(h.model.findRequests({ prompt: 'which-color-was-it after a nap' })[0]), /remember-the-color: teal/);
    const again = (await containerOf(h.runnerId, 'napper'))!;
    assert.equal(again.Id, container.Id, 'the same container, started again');
  });

  test('a task running longer than the idle timeout is not stopped', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'long-worker', message: 'two-second-job' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, { response: 'two seconds later' });
    assert.ok(res.body.duration >= 2000);
  });

  test('tasks arriving just as the session turns idle all succeed', async () => {
    assert.equal((await h.api('/task', { method: 'POST', json: { sessionId: 'edge', message: 'ping-job 0' } })).status, 200);
    // Gaps around the idle timeout, so some tasks arrive while the idle stop is under way.
    for (let i = 1; i <= 8; i++) {
      await sleep(340 + (i % 4) * 40);
      const res = await h.api('/task', { method: 'POST', json: { sessionId: 'edge', message: `ping-job ${i}` } });
      assert.equal(res.status, 200, `task ${i}: ${JSON.stringify(res.body)}`);
      assert.deepEqual(res.body.output, { response: 'pong' });
    }
  });
});
