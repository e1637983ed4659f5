/**
 * Events survive the server: after a graceful restart and after a crash
 * (SIGKILL of a runner process) the log replays over WS and SSE exactly as it
 * was, everything a client saw before the crash is in it (stored before sent),
 * an interrupted task ends with task_error, and seqs go on without reuse.
 * Shutting down does not wait on a subscriber that stopped reading.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { bash, rule, startScriptedModel, text, type ScriptedModel } from '../../src/scripted-model/index.ts';
import { removeContainers, spawnRunner, startHarness, testEnv, UPSTREAM_KEY, writeTemplate, type Harness } from '../support/harness.ts';
import { assertConsecutive, RawStreamClient, SseClient, storedFrames, WsClient, type Frame } from './support.ts';

const RULES = [
  rule('rs-two-step', bash('echo before-restart', { chunkDelayMs: 5 }), text('All done before the restart.', { chunkDelayMs: 5 })),
  rule('rs-after-restart', text('A task after the restart.', { chunkDelayMs: 5 })),
  rule('rs-long-running', bash('echo started-long; sleep 60', { text: 'Starting a long command.', chunkDelayMs: 5 })),
];

describe('events across a graceful restart', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { SHUTDOWN_GRACE_MS: '300' } });
  });
  after(async () => h?.close());

  test('the log replays after a restart (WS and SSE), an interrupted task ends with task_error, seqs go on', async () => {
    const sessionId = 'rs-graceful';
    const first = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rs-two-step' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    // A task still running at shutdown.
    const long = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rs-long-running', wait: false } });
    const watcher = await WsClient.open(h.url, sessionId);
    await watcher.waitFor((f) => f.type === 'tool_start' && f.taskId === long.body.taskId, 60_000, 'the long tool to start');
    // A subscriber that stopped reading must not hold the shutdown up (a WebSocket close waits 30 s for an answer).
    const stalled = new RawStreamClient(h.url, `/stream/${sessionId}`, 'ws');
    await stalled.head;
    stalled.stopReading();

    const t0 = Date.now();
    await h.stopRunner();
    const shutdownMs = Date.now() - t0;
    assert.ok(shutdownMs < 5000, `shutdown took ${shutdownMs} ms`);
    // A close frame, not a cut connection (1001 "going away" when the websocket plugin does not close it first).
    const closed = await watcher.closed;
    assert.ok([1001, 1005].includes(closed.code), `close code ${closed.code}`);
    stalled.resumeReading();
    await stalled.ended;
    stalled.destroy();

    await h.restartRunner();
    const stored = await storedFrames(h.runner, sessionId);
    assertConsecutive(stored, 'stored log');
    assert.equal(stored[0]!.seq, 1);
    // What the watcher saw before the restart is the start of the log as it is now.
    assert.deepEqual(watcher.events, stored.slice(stored.findIndex((f) => f.seq === watcher.events[0]!.seq), stored.findIndex((f) => f.seq === watcher.events[0]!.seq) + watcher.events.length));
    const ended = stored.filter((f) => f.taskId === long.body.taskId).at(-1)!;
    assert.equal(ended.type, 'task_error');
    assert.equal(ended.status, 'interrupted');
    assert.equal(ended.error.code, 'TASK_INTERRUPTED');
    assert.equal(stored.filter((f) => f.type === 'task_error' && f.taskId === long.body.taskId).length, 1, 'one task_error, not one per recovery');

    // WS: a full replay, then a resume from the middle.
    const all = await WsClient.open(h.url, sessionId, '?after=0');
    await all.waitFor((f) => f.seq === stored.at(-1)!.seq);
    assert.equal(all.frames[0]!.type, 'connected');
    assert.equal(all.frames[0]!.lastSeq, stored.at(-1)!.seq);
    assert.deepEqual(all.events, stored);
    const middle = stored[Math.floor(stored.length / 2)]!.seq!;
    const resumed = await WsClient.open(h.url, sessionId, `?after=${middle}`);
    await resumed.waitFor((f) => f.seq === stored.at(-1)!.seq);
    assert.deepEqual(resumed.events, stored.filter((f) => f.seq! > middle));

    // SSE: the same with Last-Event-ID, and the finished task's own stream.
    const sse = new SseClient(`${h.url}/session/${sessionId}/events`, { 'last-event-id': String(middle) });
    await sse.waitFor((e) => e.id === String(stored.at(-1)!.seq));
    assert.deepEqual(sse.events.slice(1).map((e) => e.data), stored.filter((f) => f.seq! > middle));
    await sse.close();
    const taskStream = new SseClient(`${h.url}/tasks/${first.body.taskId}/events`);
    assert.equal(await taskStream.done, 'ended');
    assert.deepEqual(taskStream.events.slice(1).map((e) => e.data), stored.filter((f) => f.taskId === first.body.taskId));

    // New events continue the numbering, live to the subscribers connected above.
    const next = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rs-after-restart' } });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    await all.waitFor((f) => f.type === 'task_complete' && f.taskId === next.body.taskId);
    const after = await storedFrames(h.runner, sessionId);
    assertConsecutive(after);
    assert.equal(after.find((f) => f.taskId === next.body.taskId)!.seq, stored.at(-1)!.seq! + 1);
    assert.deepEqual(all.events, after);
    await Promise.all([all.close(), resumed.close()]);
  });
});

describe('events across a crash', () => {
  let model: ScriptedModel;
  let base = '';
  const runnerId = `t${randomBytes(4).toString('hex')}`;
  const children: Array<ReturnType<typeof spawnRunner>> = [];

  before(async () => {
    model = await startScriptedModel({ rules: RULES, requireApiKey: UPSTREAM_KEY });
    base = mkdtempSync('/tmp/cr-crash-');
    writeTemplate(join(base, 'agents'), {});
  });
  after(async () => {
    for (const child of children) child.child.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    await removeContainers(runnerId);
    await model?.close();
    rmSync(base, { recursive: true, force: true });
  });

  const env = () => testEnv({ DATA_DIR: join(base, 'data'), AGENT_DIR: join(base, 'agents'), ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId });

  test('after SIGKILL, every event a client saw is in the log at its seq; the task ends interrupted; SSE and WS replay it', async () => {
    const sessionId = 'rs-crash';
    const one = spawnRunner(env());
    children.push(one);
    const url1 = await one.url;
    const submitted = await fetch(`${url1}/task`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sessionId, message: 'rs-long-running', wait: false }) });
    const { taskId } = await submitted.json() as { taskId: string };
    const ws = await WsClient.open(url1, sessionId);
    await ws.waitFor((f) => f.type === 'tool_start', 60_000, 'the tool to start');
    const seen: Frame[] = ws.events.slice();
    one.child.kill('SIGKILL');
    await one.exited;

    const two = spawnRunner(env());
    children.push(two);
    const url2 = await two.url;
    const replay = await WsClient.open(url2, sessionId, '?after=0');
    const end = await replay.waitFor((f) => f.type === 'task_error' && f.taskId === taskId, 30_000, 'task_error');
    assert.equal(end.status, 'interrupted');
    assert.equal(end.error.code, 'TASK_INTERRUPTED');
    assertConsecutive(replay.events, 'replay after the crash');
    // Durable before sent: what the client saw before the crash is exactly there.
    assert.deepEqual(replay.events.slice(0, seen.length), seen);
    assert.ok(seen.some((f) => f.type === 'text') && seen.some((f) => f.type === 'init'));
    const sse = new SseClient(`${url2}/tasks/${taskId}/events`);
    assert.equal(await sse.done, 'ended');
    assert.deepEqual(sse.events.slice(1).map((e) => e.data), replay.events.filter((f) => f.taskId === taskId));
    await replay.close();
    two.child.kill('SIGTERM');
    await two.exited;
  });
});
