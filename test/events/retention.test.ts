/**
 * Retention: the log is bounded per session by count (EVENTS_MAX_PER_SESSION)
 * or age (EVENTS_MAX_AGE_MS), trimmed every EVENTS_TRIM_INTERVAL_MS. A client
 * asking for events that fell out gets a `gap` frame saying which seqs, then
 * the rest: never a silent skip.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { assertConsecutive, SseClient, storedFrames, WsClient } from './support.ts';

const KEEP = 10;
const RULES = [
  rule('rt-many-events', bash('echo trimmed-soon', { text: 'Some text first.' }), text('A final answer long enough for many deltas.')),
  rule('rt-next', text('Next one.')),
];

async function sessionKey(h: Harness, sessionId: string): Promise<string> {
  return (await h.runner.store.findSession('default', sessionId))!.key;
}

describe('retention by count', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { EVENTS_MAX_PER_SESSION: String(KEEP), EVENTS_TRIM_INTERVAL_MS: '50' } });
  });
  after(async () => h?.close());

  test('the log keeps the newest events; a client asking from before gets a gap frame (WS and SSE), then the rest', async () => {
    const sessionId = 'rt-count';
    const res = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rt-many-events' } });
    assert.equal(res.status, 200);
    const key = await sessionKey(h, sessionId);
    const bounds = await eventually(async () => {
      const b = await h.runner.store.eventBounds(key);
      return b.lastSeq - b.firstSeq + 1 === KEEP ? b : undefined;
    }, 5000, 'the trim');
    assert.ok(bounds.lastSeq > KEEP + 3, `${bounds.lastSeq} events written`);
    const kept = await storedFrames(h.runner, sessionId);
    assert.equal(kept.length, KEEP);
    assert.equal(kept[0]!.seq, bounds.firstSeq);

    const ws = await WsClient.open(h.url, sessionId, '?after=0');
    await ws.waitFor((f) => f.seq === bounds.lastSeq);
    assert.deepEqual(ws.frames.map((f) => f.type).slice(0, 2), ['connected', 'gap']);
    assert.deepEqual(ws.frames[1], { type: 'gap', fromSeq: 1, toSeq: bounds.firstSeq - 1 });
    assert.deepEqual(ws.events, kept);
    assertConsecutive(ws.events);

    // From the middle of what was trimmed.
    const sse = new SseClient(`${h.url}/session/${sessionId}/events`, { 'last-event-id': '3' });
    await sse.waitFor((e) => e.id === String(bounds.lastSeq));
    assert.deepEqual(sse.events[1], { id: String(bounds.firstSeq - 1), event: 'gap', data: { type: 'gap', fromSeq: 4, toSeq: bounds.firstSeq - 1 } });
    assert.deepEqual(sse.events.slice(2).map((e) => e.data), kept);
    assert.match(sse.raw, new RegExp(`id: ${bounds.firstSeq - 1}\\nevent: gap\\ndata: \\{"type":"gap","fromSeq":4,"toSeq":${bounds.firstSeq - 1}\\}\\n\\n`));
    await sse.close();

    // Nothing trimmed after the requested seq: no gap.
    const inside = await WsClient.open(h.url, sessionId, `?after=${bounds.firstSeq}`);
    await inside.waitFor((f) => f.seq === bounds.lastSeq);
    assert.ok(!inside.frames.some((f) => f.type === 'gap'));
    assert.deepEqual(inside.events, kept.slice(1));

    // The task's own stream says its beginning fell out, then gives what is left, then ends.
    const task = new SseClient(`${h.url}/tasks/${res.body.taskId}/events`);
    assert.equal(await task.done, 'ended');
    assert.equal(task.events[1]!.event, 'gap');
    assert.deepEqual(task.events.slice(2).map((e) => e.data), kept.filter((f) => f.taskId === res.body.taskId));
    assert.equal(task.events.at(-1)!.event, 'task_complete');

    // Live subscribers keep going across trims; seqs are never reused.
    const next = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rt-next' } });
    await ws.waitFor((f) => f.type === 'task_complete' && f.taskId === next.body.taskId);
    assertConsecutive(ws.events);
    assert.equal(ws.events.find((f) => f.taskId === next.body.taskId)!.seq, bounds.lastSeq + 1);
    await Promise.all([ws.close(), inside.close()]);
  });
});

describe('retention by age', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { EVENTS_MAX_AGE_MS: '5000', EVENTS_TRIM_INTERVAL_MS: '50' } });
  });
  after(async () => h?.close());

  test('events older than the limit fall out; a client from before gets a gap up to the last seq, then live events', async () => {
    const sessionId = 'rt-age';
    const res = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rt-many-events' } });
    assert.equal(res.status, 200);
    const key = await sessionKey(h, sessionId);
    const lastSeq = (await h.runner.store.eventBounds(key)).lastSeq;
    assert.ok((await storedFrames(h.runner, sessionId)).length === lastSeq, 'nothing trimmed yet');
    await eventually(async () => ((await h.runner.store.eventBounds(key)).firstSeq === 0 ? true : undefined), 20_000, 'every event to age out');
    assert.deepEqual(await storedFrames(h.runner, sessionId), []);

    const ws = await WsClient.open(h.url, sessionId, '?after=2');
    await ws.waitFor((f) => f.type === 'gap');
    assert.deepEqual(ws.frames[0]!.type, 'connected');
    assert.deepEqual(ws.frames[1], { type: 'gap', fromSeq: 3, toSeq: lastSeq });
    const sse = new SseClient(`${h.url}/session/${sessionId}/events`, { 'last-event-id': '0' });
    await sse.waitFor((e) => e.event === 'gap');
    assert.deepEqual(sse.events[1]!.data, { type: 'gap', fromSeq: 1, toSeq: lastSeq });
    assert.equal(sse.events[1]!.id, String(lastSeq));

    // The finished task's stream does not hang on events that are gone.
    const task = new SseClient(`${h.url}/tasks/${res.body.taskId}/events`);
    assert.equal(await task.done, 'ended');
    assert.deepEqual(task.events.map((e) => e.event), ['connected', 'gap']);

    const next = await h.api('/task', { method: 'POST', json: { sessionId, message: 'rt-next' } });
    await ws.waitFor((f) => f.type === 'task_complete' && f.taskId === next.body.taskId);
    await sse.waitFor((e) => e.event === 'task_complete');
    assert.equal(ws.events[0]!.seq, lastSeq + 1);
    assertConsecutive(ws.events);
    assert.deepEqual(sse.events.slice(2).map((e) => e.data), ws.events);
    await Promise.all([ws.close(), sse.close()]);
  });
});
