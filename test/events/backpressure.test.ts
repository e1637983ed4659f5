/**
 * A subscriber that stops reading (a raw TCP client that pauses its socket)
 * is cut off by the server once its buffer passes STREAM_BUFFER_BYTES, while
 * reading subscribers and the task go on; what the server buffers stays
 * bounded; the cut subscriber reconnects from its last seq and gets the rest.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { rule, text } from '../../src/scripted-model/index.ts';
import { streamBufferedBytes } from '../../src/http/routes/stream.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { assertConsecutive, RawStreamClient, SseClient, storedFrames, WsClient, type Frame } from './support.ts';

const BOUND = 512 * 1024;
/** The server cuts a reader that stays over BOUND for a second, or passes 4 × BOUND. */
const HARD = 4 * BOUND;
/**
 * About 69 000 text deltas, ≈ 10 MB of frames in ≈ 7 s: more than the
 * kernel's socket buffers on loopback (the server's send buffer grows to
 * ≈ 4 MB) plus the hard limit, so userland buffering starts and the cut must
 * happen while the task runs.
 */
const FLOOD = 'flood-text '.repeat(50_000);

function sseFrames(raw: string): Frame[] {
  return raw.split('\n\n').filter((block) => block.startsWith('id: ')).map((block) => JSON.parse(block.split('\ndata: ')[1]!) as Frame);
}

describe('backpressure', () => {
  let h: Harness;
  const cleanups: Array<() => unknown> = [];

  before(async () => {
    h = await startHarness({
      env: { STREAM_BUFFER_BYTES: String(BOUND) },
      rules: [
        rule('bp-warm-up', text('Warmed up.')),
        rule('bp-flood-the-stream', text(FLOOD)),
      ],
    });
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await h?.close();
  });

  test('a subscriber that never reads is dropped; the others and the task are not held up; memory stays bounded; it resumes from its last seq', async (t) => {
    const sessionId = 'bp-session';
    await h.api('/task', { method: 'POST', json: { sessionId, message: 'bp-warm-up' } });
    const key = (await h.runner.store.findSession('default', sessionId))!.key;
    const startSeq = (await h.runner.store.eventBounds(key)).lastSeq;

    // Readers: a WebSocket here, and curl writing SSE to a file (a client of its own, not sharing this event loop).
    const ws = await WsClient.open(h.url, sessionId, `?after=${startSeq}`);
    cleanups.push(() => ws.close());
    const dir = mkdtempSync('/tmp/cr-bp-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const curlFile = join(dir, 'sse.txt');
    const curl = spawn('curl', ['-sSN', '-o', curlFile, '-H', `Last-Event-ID: ${startSeq}`, `${h.url}/session/${sessionId}/events`], { stdio: 'ignore' });
    cleanups.push(() => curl.kill());
    // Stalled: they read the response head, then nothing.
    const stalledWs = new RawStreamClient(h.url, `/stream/${sessionId}?after=${startSeq}`, 'ws');
    const stalledSse = new RawStreamClient(h.url, `/session/${sessionId}/events?after=${startSeq}`, 'sse');
    cleanups.push(() => stalledWs.destroy(), () => stalledSse.destroy());
    await Promise.all([stalledWs.head, stalledSse.head]);
    stalledWs.stopReading();
    stalledSse.stopReading();
    await eventually(() => (h.runner.events.subscriberCount(key) === 4 ? true : undefined), 5000, 'four subscribers');

    // What the server holds in userland for its stream sockets, sampled while the flood runs.
    let maxPerSocket = 0;
    let maxTotal = 0;
    const sampler = setInterval(() => {
      const buffers = streamBufferedBytes(h.runner.http);
      maxPerSocket = Math.max(maxPerSocket, ...buffers, 0);
      maxTotal = Math.max(maxTotal, buffers.reduce((a, b) => a + b, 0));
    }, 2);
    cleanups.push(() => clearInterval(sampler));
    const t0 = Date.now();
    const res = await h.api('/task', { method: 'POST', json: { sessionId, message: 'bp-flood-the-stream' } });
    const floodMs = Date.now() - t0;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const taskId = res.body.taskId as string;

    // Both stalled subscribers were dropped by the server during the task; the readers were not.
    await eventually(() => (h.runner.events.subscriberCount(key) === 2 ? true : undefined), 30_000, 'the stalled subscribers to be dropped');
    await ws.waitFor((f) => f.type === 'task_complete', 30_000);
    await eventually(() => (readFileSync(curlFile, 'utf8').includes('event: task_complete') ? true : undefined), 30_000, 'curl to get task_complete');
    clearInterval(sampler);
    const stored = (await storedFrames(h.runner, sessionId)).filter((f) => f.seq! > startSeq);
    const frameBytes = stored.reduce((sum, f) => sum + JSON.stringify(f).length, 0);
    const largestFrame = Math.max(...stored.map((f) => JSON.stringify(f).length));
    assert.ok(stored.length > 60_000, `${stored.length} events`);
    assert.deepEqual(ws.events, stored, 'the reading WS subscriber got every event');
    assert.deepEqual(sseFrames(readFileSync(curlFile, 'utf8')), stored, 'the reading SSE subscriber (curl) got every event');
    assert.equal(ws.socket.readyState, ws.socket.OPEN, 'the WS reader is still connected');
    assert.equal(curl.exitCode, null, 'curl is still connected');
    assert.equal(h.runner.events.subscriberCount(key), 2);

    // Bounded: no socket ever held more than its hard limit (plus the frame that crossed it) in userland.
    assert.ok(maxPerSocket <= HARD + largestFrame, `a socket buffered ${maxPerSocket} bytes (bound ${BOUND})`);
    assert.ok(maxTotal <= 4 * (HARD + largestFrame), `all sockets together buffered ${maxTotal} bytes`);
    assert.ok(maxPerSocket > BOUND, `the stalled sockets did fill their buffers (max ${maxPerSocket})`);
    t.diagnostic(`flood: ${stored.length} events, ${(frameBytes / 1e6).toFixed(1)} MB of frames, task ${floodMs} ms; ` +
      `server userland buffer max ${maxPerSocket} B per socket, ${maxTotal} B in all (bound ${BOUND} B)`);

    // The server closed the stalled sockets: once they read again they drain what the kernel held, then see the end.
    for (const stalled of [stalledWs, stalledSse]) {
      stalled.resumeReading();
      assert.notEqual(await Promise.race([stalled.ended, new Promise((r) => setTimeout(() => r('still open'), 10_000))]), 'still open');
      const got = stalled.frames().filter((f) => f.seq !== undefined);
      t.diagnostic(`stalled ${stalled.kind}: took ${got.length} events (${stalled.bytesReceived} bytes, what the kernel buffers held) before the cut`);
      assert.ok(got.length > 0 && got.length < stored.length, `${stalled.kind} got ${got.length} of ${stored.length}`);
      assertConsecutive(got, `stalled ${stalled.kind}`);
      assert.deepEqual(got, stored.slice(0, got.length), `${stalled.kind}: what it got is a prefix of the log`);

      // It resumes from its last seq and gets exactly the rest, though that backlog is far above the bound.
      const last = got.at(-1)!.seq!;
      let rest: Frame[];
      if (stalled.kind === 'ws') {
        const again = await WsClient.open(h.url, sessionId, `?after=${last}`);
        await again.waitFor((f) => f.type === 'task_complete' && f.taskId === taskId, 30_000, 'the end of the replay');
        rest = again.events;
        await again.close();
      } else {
        const again = new SseClient(`${h.url}/session/${sessionId}/events`, { 'last-event-id': String(last) });
        await again.waitFor((e) => e.event === 'task_complete', 30_000, 'the end of the replay');
        rest = again.events.slice(1).map((e) => e.data as Frame);
        await again.close();
      }
      assert.deepEqual([...got, ...rest], stored, `${stalled.kind}: prefix + resumed rest = the log`);
    }
  });
});
