/**
 * The live stream over the network, with the real CLI and the scripted model:
 * the seed's event names and fields, one ordered gap-free sequence a client
 * gets even when it connects after POST /task, token deltas while the task
 * runs, abort and failure events, refusals before the upgrade, fan-out to 50
 * subscribers, and the per-task SSE stream that ends (curl-usable).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { bash, errorTurn, rule, text, withThinking } from '../../src/scripted-model/index.ts';
import { streamBufferedBytes } from '../../src/http/routes/stream.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { assertConsecutive, sleep, SseClient, storedFrames, WsClient, type Frame } from './support.ts';

const run = promisify(execFile);
const THOUGHT = 'Let me think about this carefully before I act.';
const PREFACE = 'Running a command.';
const FINAL = 'The final answer is forty-two, streamed in small pieces.';
const FANOUT = 'Fan-out text that every one of the fifty subscribers must see in the same order. '.repeat(3).trim();

/** The seed's contract: every one of these fields is on the frame, with this type. */
const SEED_FIELDS: Record<string, Record<string, string>> = {
  connected: { busy: 'boolean', turns: 'number' },
  task_start: { taskId: 'string', sessionId: 'string' },
  init: { sessionId: 'string', model: 'string', tools: 'array' },
  thinking: { text: 'string' },
  text: { text: 'string' },
  tool_start: { tool: 'string', input: 'object' },
  tool_end: { result: 'string' },
  task_complete: { taskId: 'string', output: 'object', cost: 'number', duration: 'number', tools: 'array' },
  abort: { taskId: 'string' },
};

function assertSeedFields(frame: Frame): void {
  for (const [field, type] of Object.entries(SEED_FIELDS[frame.type] ?? {})) {
    const value = frame[field];
    const actual = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
    assert.equal(actual, type, `${frame.type}.${field} should be ${type}: ${JSON.stringify(frame)}`);
  }
}

function textOf(frames: Frame[], type: 'text' | 'thinking'): string {
  return frames.filter((f) => f.type === type).map((f) => f.text).join('');
}

describe('live stream', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      rules: [
        rule('ls-full-sequence',
          withThinking(THOUGHT, bash('echo tool-ran-here', { text: PREFACE, chunkDelayMs: 20 })),
          text(FINAL, { chunkDelayMs: 30 })),
        rule('ls-abort-me', bash('echo busy; sleep 60')),
        rule('ls-upstream-fails', errorTurn(500, 'scripted failure')),
        rule('ls-fanout', text(FANOUT, { chunkDelayMs: 10 })),
        rule('ls-task-sse', bash('echo from-the-task-stream', { chunkDelayMs: 10 }), text('Done for curl.', { chunkDelayMs: 10 })),
        rule('ls-other-task', text('Another task of the same session.')),
      ],
    });
  });
  after(async () => h?.close());

  test('WS connected after POST /task: connected first, then the whole task in order, seq +1, seed fields, token deltas as they stream', async () => {
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-ws', message: 'ls-full-sequence', wait: false } });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const taskId = submitted.body.taskId as string;
    const ws = await WsClient.open(h.url, 'ls-ws');
    const complete = await ws.waitFor((f) => f.type === 'task_complete' || f.type === 'task_error', 60_000, 'the end of the task');
    assert.equal(complete.type, 'task_complete', JSON.stringify(complete));

    const connected = ws.frames[0]!;
    assert.equal(connected.type, 'connected');
    assertSeedFields(connected);
    assert.equal(connected.sessionId, 'ls-ws');

    const events = ws.frames.slice(1);
    assert.ok(events.every((f) => typeof f.seq === 'number' && f.taskId === taskId && typeof f.ts === 'string'), 'every event has seq, taskId, ts');
    assertConsecutive(events, 'WS');
    events.forEach(assertSeedFields);

    // The order a UI relies on (usage frames may sit anywhere after init).
    const kinds = events.map((f) => f.type).filter((t) => t !== 'usage');
    const collapsed = kinds.filter((t, i) => t !== kinds[i - 1]);
    assert.deepEqual(collapsed, ['task_queued', 'task_start', 'init', 'thinking', 'text', 'tool_start', 'tool_end', 'text', 'task_complete']);
    assert.equal(events.filter((f) => f.type === 'usage').length, 2);

    const start = events.find((f) => f.type === 'task_start')!;
    assert.deepEqual([start.taskId, start.sessionId, start.resumed], [taskId, 'ls-ws', false]);
    const init = events.find((f) => f.type === 'init')!;
    assert.equal(init.sessionId, 'ls-ws');
    assert.ok(init.tools.includes('Bash'), JSON.stringify(init.tools));
    assert.match(init.model, /^claude-/);
    const toolStart = events.find((f) => f.type === 'tool_start')!;
    assert.equal(toolStart.tool, 'Bash');
    assert.equal(toolStart.input.command, 'echo tool-ran-here');
    const toolEnd = events.find((f) => f.type === 'tool_end')!;
    assert.equal(toolEnd.result, 'tool-ran-here');
    assert.equal(toolEnd.toolUseId, toolStart.toolUseId);
    assert.deepEqual(complete.output, { response: FINAL });
    assert.deepEqual(complete.tools, ['Bash']);
    assert.equal(complete.taskId, taskId);
    assert.ok(complete.cost > 0 && complete.duration > 0);

    // Token deltas: several frames each, whose concatenation is the whole text.
    assert.ok(events.filter((f) => f.type === 'thinking').length >= 3);
    assert.equal(textOf(events, 'thinking'), THOUGHT);
    const afterTool = events.slice(events.indexOf(toolEnd));
    assert.ok(afterTool.filter((f) => f.type === 'text').length >= 5);
    assert.equal(textOf(afterTool, 'text'), FINAL);
    assert.equal(textOf(events, 'text'), PREFACE + FINAL);
    // ...and they arrived while the model streamed (30 ms apart), not all at once at the end.
    const textArrivals = ws.frames.map((f, i) => (f.type === 'text' && ws.frames.indexOf(toolEnd) < i ? ws.arrivals[i]! : NaN)).filter((t) => !Number.isNaN(t));
    const completeAt = ws.arrivals[ws.frames.indexOf(complete)]!;
    assert.ok(textArrivals.at(-1)! - textArrivals[0]! >= 100, `text deltas spread over ${textArrivals.at(-1)! - textArrivals[0]!} ms`);
    assert.ok(completeAt - textArrivals[0]! >= 100, `first final delta came ${completeAt - textArrivals[0]!} ms before task_complete`);

    // The client saw exactly the stored log of the task.
    assert.deepEqual(events, await storedFrames(h.runner, 'ls-ws'));
    await ws.close();
  });

  test('SSE /session/:id/events connected after POST /task: the same sequence, raw id:/event:/data: text', async () => {
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-sse', message: 'ls-full-sequence', wait: false } });
    const taskId = submitted.body.taskId as string;
    const sse = new SseClient(`${h.url}/session/ls-sse/events`);
    await sse.waitFor((e) => e.event === 'task_complete', 60_000, 'task_complete');
    assert.equal(sse.status, 200);
    assert.match(sse.headers!.get('content-type')!, /^text\/event-stream/);
    assert.equal(sse.events[0]!.event, 'connected');
    assertSeedFields({ type: 'connected', ...sse.events[0]!.data });
    const events = sse.events.slice(1);
    for (const e of events) {
      assert.equal(e.id, String(e.data.seq), 'id: is the seq');
      assert.equal(e.event, e.data.type, 'event: is the type');
      assert.equal(e.data.taskId, taskId);
    }
    const frames = events.map((e) => e.data as Frame);
    assertConsecutive(frames, 'SSE');
    assert.equal(frames[0]!.type, 'task_queued');
    assert.deepEqual(frames, await storedFrames(h.runner, 'ls-sse'));
    // Each event is exactly `id: N\nevent: T\ndata: {json}\n\n`.
    const last = frames.at(-1)!;
    assert.ok(sse.raw.includes(`id: ${last.seq}\nevent: task_complete\ndata: ${JSON.stringify(last)}\n\n`), sse.raw.slice(-500));
    await sse.close();
  });

  test('abort: abort then task_error (aborted, TASK_ABORTED) are the task\'s last events', async () => {
    // The seed's flow: connect before the session's first POST /task.
    const early = await WsClient.open(h.url, 'ls-abort');
    assert.equal(early.frames[0]?.type, 'connected');
    assert.equal(early.frames[0]?.turns, 0);
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-abort', message: 'ls-abort-me', wait: false } });
    const taskId = submitted.body.taskId as string;
    const client = await WsClient.open(h.url, 'ls-abort');
    await client.waitFor((f) => f.type === 'tool_start', 60_000, 'tool_start');
    const aborted = await h.api(`/tasks/${taskId}/abort`, { method: 'POST' });
    assert.equal(aborted.body.status, 'aborted');
    const error = await client.waitFor((f) => f.type === 'task_error', 30_000, 'task_error');
    const events = client.events;
    assertConsecutive(events, 'abort');
    const abort = events.at(-2)!;
    assert.equal(abort.type, 'abort');
    assertSeedFields(abort);
    assert.equal(abort.taskId, taskId);
    assert.equal(error, events.at(-1));
    assert.equal(error.status, 'aborted');
    assert.equal(error.error.code, 'TASK_ABORTED');
    assert.ok(!events.some((f) => f.type === 'task_complete'));
    await client.close();
    // The client that connected before the session existed saw all of it, from its first event.
    await early.waitFor((f) => f.type === 'task_error', 10_000, 'task_error (early client)');
    assert.equal(early.events[0]!.type, 'task_queued');
    assert.equal(early.events[0]!.seq, 1);
    assert.deepEqual(early.events, events.filter((f) => f.seq! <= early.events.at(-1)!.seq!).slice(-early.events.length));
    assertConsecutive(early.events, 'early');
    await early.close();
  });

  test('a failing task ends with task_error carrying the error code', async () => {
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-fail', message: 'ls-upstream-fails', wait: false } });
    const ws = await WsClient.open(h.url, 'ls-fail');
    const error = await ws.waitFor((f) => f.type === 'task_error', 60_000, 'task_error');
    assert.equal(error.taskId, submitted.body.taskId);
    assert.equal(error.status, 'failed');
    assert.equal(error.error.code, 'MODEL_ERROR');
    assert.equal(typeof error.error.message, 'string');
    assert.ok(!ws.events.some((f) => f.type === 'abort' || f.type === 'task_complete'));
    assertConsecutive(ws.events);
    await ws.close();
  });

  test('refusals come before the upgrade: bad session id or after 400 (WS and SSE); a session not created yet is waited for', async () => {
    const badId = await WsClient.open(h.url, '.hidden').then(() => null, (error: { status: number; body: string }) => error);
    assert.ok(badId, 'the upgrade must be refused');
    assert.equal(badId.status, 400);
    assert.equal(JSON.parse(badId.body).error.code, 'INVALID_SESSION_ID');
    const pending = await WsClient.open(h.url, 'ls-never-created');
    assert.deepEqual(pending.frames[0], { type: 'connected', sessionId: 'ls-never-created', busy: false, turns: 0, lastSeq: 0, after: 0 });
    await pending.close();

    await h.api('/task', { method: 'POST', json: { sessionId: 'ls-bad-after', message: 'ls-other-task' } });
    for (const bad of ['-1', 'abc', '1.5', '99999999999999999999']) {
      const refused = await WsClient.open(h.url, 'ls-bad-after', `?after=${encodeURIComponent(bad)}`).then(() => null, (error: { status: number; body: string }) => error);
      assert.ok(refused, `after=${bad} must be refused`);
      assert.equal(refused.status, 400, `after=${bad}`);
      assert.equal(JSON.parse(refused.body).error.code, 'INVALID_REQUEST');
      const sse = await h.api('/session/ls-bad-after/events', { headers: { 'last-event-id': bad } });
      assert.equal(sse.status, 400, `Last-Event-ID ${bad}`);
      assert.equal(sse.body.error.code, 'INVALID_REQUEST');
    }
    const sseBadId = await h.api('/session/.hidden/events');
    assert.equal(sseBadId.status, 400);
    assert.equal(sseBadId.body.error.code, 'INVALID_SESSION_ID');
    const taskUnknown = await h.api('/tasks/task_nope/events');
    assert.equal(taskUnknown.status, 404);
    assert.equal(taskUnknown.body.error.code, 'TASK_NOT_FOUND');
  });

  test('subscribers that leave at once, or close, leave no subscription behind', async () => {
    await h.api('/task', { method: 'POST', json: { sessionId: 'ls-leave', message: 'ls-other-task' } });
    const key = (await h.runner.store.findSession('default', 'ls-leave'))!.key;
    // Gone before the server has even sent `connected`: a slow store (as a networked database would be) makes sure of it.
    const store = h.runner.store;
    const summarize = store.summarizeSession;
    store.summarizeSession = async (k) => { await sleep(100); return summarize.call(store, k); };
    try {
      const quick = await Promise.all(Array.from({ length: 20 }, () => WsClient.open(h.url, 'ls-leave', '?after=0')));
      for (const client of quick) client.kill();
      await sleep(300);
    } finally {
      store.summarizeSession = summarize;
    }
    const sse = Array.from({ length: 5 }, () => new SseClient(`${h.url}/session/ls-leave/events?after=0`));
    await Promise.all(sse.map((s) => s.waitFor((e) => e.event === 'connected')));
    const ws = await WsClient.open(h.url, 'ls-leave');
    await eventually(() => (h.runner.events.subscriberCount(key) === 6 ? true : undefined), 5000, 'the six remaining subscribers');
    await Promise.all([...sse.map((s) => s.close()), ws.close()]);
    await eventually(() => (h.runner.events.subscriberCount(key) === 0 ? true : undefined), 5000, 'no subscriber left');
    assert.deepEqual(streamBufferedBytes(h.runner.http), []);
  });

  test('when the session is deleted its streams end (WS close 1000, SSE end); a reconnect waits for a new session', async () => {
    await h.api('/task', { method: 'POST', json: { sessionId: 'ls-deleted', message: 'ls-other-task' } });
    const key = (await h.runner.store.findSession('default', 'ls-deleted'))!.key;
    const ws = await WsClient.open(h.url, 'ls-deleted');
    const sse = new SseClient(`${h.url}/session/ls-deleted/events`);
    await sse.waitFor((e) => e.event === 'connected');
    assert.equal((await h.api('/session/ls-deleted', { method: 'DELETE' })).status, 200);
    assert.equal(h.runner.events.subscriberCount(key), 0);
    assert.equal((await ws.closed).code, 1000);
    assert.equal(await sse.done, 'ended');
    const again = await WsClient.open(h.url, 'ls-deleted');
    assert.equal(again.frames[0]?.lastSeq, 0);
    await again.close();
  });

  test('an after past the end of the log (a session deleted and created again) is read as "from now"', async () => {
    await h.api('/task', { method: 'POST', json: { sessionId: 'ls-future', message: 'ls-other-task' } });
    const lastSeq = (await storedFrames(h.runner, 'ls-future')).at(-1)!.seq!;
    const ws = await WsClient.open(h.url, 'ls-future', '?after=999999');
    const sse = new SseClient(`${h.url}/session/ls-future/events`, { 'last-event-id': '999999' });
    const connected = await ws.waitFor((f) => f.type === 'connected');
    assert.deepEqual([connected.after, connected.lastSeq], [lastSeq, lastSeq]);
    assert.equal((await sse.waitFor((e) => e.event === 'connected')).data.after, lastSeq);
    const next = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-future', message: 'ls-other-task' } });
    await ws.waitFor((f) => f.type === 'task_complete' && f.taskId === next.body.taskId);
    await sse.waitFor((e) => e.event === 'task_complete');
    assert.equal(ws.events[0]!.seq, lastSeq + 1);
    assert.deepEqual(ws.events, (await storedFrames(h.runner, 'ls-future')).filter((f) => f.seq! > lastSeq));
    assert.deepEqual(sse.events.slice(1).map((e) => e.data), ws.events);
    await Promise.all([ws.close(), sse.close()]);
  });

  test('50 subscribers on one session receive identical streams', async () => {
    await h.api('/task', { method: 'POST', json: { sessionId: 'ls-fanout', message: 'ls-other-task' } });
    const clients = await Promise.all(Array.from({ length: 50 }, () => WsClient.open(h.url, 'ls-fanout')));
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'ls-fanout', message: 'ls-fanout' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await Promise.all(clients.map((c) => c.waitFor((f) => f.type === 'task_complete' && f.taskId === res.body.taskId, 30_000)));
    const stored = (await storedFrames(h.runner, 'ls-fanout')).filter((f) => f.taskId === res.body.taskId);
    assert.ok(stored.filter((f) => f.type === 'text').length >= 20);
    for (const [i, client] of clients.entries()) {
      assert.equal(client.frames[0]!.type, 'connected');
      assert.deepEqual(client.events, stored, `subscriber ${i}`);
    }
    assert.equal(h.runner.events.subscriberCount((await h.runner.store.findSession('default', 'ls-fanout'))!.key), 50);
    await Promise.all(clients.map((c) => c.close()));
  });

  test('GET /tasks/:taskId/events streams one task and ends after its last event, with curl, also once it finished', async () => {
    const session = 'ls-task-sse';
    await h.api('/task', { method: 'POST', json: { sessionId: session, message: 'ls-other-task' } });
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: session, message: 'ls-task-sse', wait: false } });
    const taskId = submitted.body.taskId as string;
    // While it runs: curl -N follows it and exits by itself when the task ends.
    const live = await run('curl', ['-sSN', '--max-time', '60', `${h.url}/tasks/${taskId}/events`], { maxBuffer: 16 * 1024 * 1024 });
    const stored = (await storedFrames(h.runner, session)).filter((f) => f.taskId === taskId);
    const expected = 'retry: 2000\n\n' +
      `event: connected\ndata: ${JSON.stringify({ type: 'connected', taskId, sessionId: session, status: 'STATUS', after: stored[0]!.seq! - 1 })}\n\n` +
      stored.map((f) => `id: ${f.seq}\nevent: ${f.type}\ndata: ${JSON.stringify(f)}\n\n`).join('');
    const body = live.stdout.replace(/^: ping\n\n/gm, '');
    assert.equal(body.replace(/"status":"(queued|running)"/, '"status":"STATUS"'), expected);
    assert.equal(stored.at(-1)!.type, 'task_complete');

    // Once it finished: the same events, then the end, at once.
    const t0 = Date.now();
    const done = await run('curl', ['-sSN', '--max-time', '10', `${h.url}/tasks/${taskId}/events`]);
    assert.ok(Date.now() - t0 < 5000);
    const events = done.stdout.split('\n\n').filter((block) => block.startsWith('id: ')).map((block) => JSON.parse(block.split('\ndata: ')[1]!) as Frame);
    assert.deepEqual(events, stored);
    assert.match(done.stdout, /"status":"succeeded"/);

    // Resuming with Last-Event-ID gives only what follows.
    const middle = stored[Math.floor(stored.length / 2)]!.seq!;
    const resumed = new SseClient(`${h.url}/tasks/${taskId}/events`, { 'last-event-id': String(middle) });
    assert.equal(await resumed.done, 'ended');
    assert.deepEqual(resumed.events.slice(1).map((e) => e.data), stored.filter((f) => f.seq! > middle));
  });
});
