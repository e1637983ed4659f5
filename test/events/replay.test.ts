/**
 * Disconnect in the middle of tasks and reconnect with the last seq, at
 * random points (seeded: set EVENTS_TEST_SEEDS=7,8 to replay a failure): the
 * concatenated stream equals the stored log exactly, with no duplicate and no
 * gap, over WebSocket (?after=) and SSE (Last-Event-ID).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text, withThinking } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { assertConsecutive, seededRandom, sleep, SseClient, storedFrames, WsClient, type Frame } from './support.ts';

const SEEDS = (process.env.EVENTS_TEST_SEEDS ?? '11,23,37').split(',').map(Number);
const LONG_TEXT = 'Streaming a long answer so that reconnects land between its deltas. '.repeat(6).trim();

function isEnd(frame: Frame, taskId: string): boolean {
  return frame.taskId === taskId && (frame.type === 'task_complete' || frame.type === 'task_error');
}

/** Two tasks queued back to back, so reconnects also land between tasks. */
async function submitTwo(h: Harness, sessionId: string): Promise<string[]> {
  const ids: string[] = [];
  for (const n of [1, 2]) {
    const res = await h.api('/task', { method: 'POST', json: { sessionId, message: `rp-long-task part ${n}`, wait: false } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    ids.push(res.body.taskId);
  }
  return ids;
}

describe('reconnect and resume', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      rules: [
        rule('rp-long-task',
          withThinking('Thinking it over in a few deltas.', bash('echo step-one', { text: 'First I run a command.', chunkDelayMs: 4 })),
          bash('echo step-two && echo step-three', { text: 'Then another one.', chunkDelayMs: 4 }),
          text(LONG_TEXT, { chunkDelayMs: 4 })),
      ],
    });
  });
  after(async () => h?.close());

  for (const seed of SEEDS) {
    test(`WS: random disconnects (seed ${seed}) concatenate to the stored log`, async (t) => {
      const random = seededRandom(seed);
      const sessionId = `rp-ws-${seed}`;
      const [, last] = await submitTwo(h, sessionId);
      const seen: Frame[] = [];
      let resumeAfter: number | undefined;
      let connections = 0;
      while (!seen.some((f) => isEnd(f, last!))) {
        const ws = await WsClient.open(h.url, sessionId, resumeAfter === undefined ? '' : `?after=${resumeAfter}`);
        connections += 1;
        const connected = await ws.waitFor((f) => f.type === 'connected');
        if (resumeAfter !== undefined) assert.equal(connected.after, resumeAfter, 'connected says where it resumes');
        const quota = 1 + Math.floor(random() * 15);
        await ws.waitFor((f) => ws.events.length >= quota || isEnd(f, last!), 60_000);
        if (random() < 0.5) await sleep(Math.floor(random() * 20));
        // Whatever the client took in before it hung up is what it saw.
        const got = ws.events.slice();
        if (random() < 0.5) ws.kill();
        else await ws.close();
        seen.push(...got);
        resumeAfter = got.at(-1)?.seq ?? connected.after;
        if (random() < 0.3) await sleep(Math.floor(random() * 50));
      }
      const stored = await storedFrames(h.runner, sessionId);
      assert.ok(connections >= 5, `only ${connections} connections`);
      assertConsecutive(seen, `seed ${seed}`);
      assert.equal(seen[0]!.type, 'task_queued');
      assert.deepEqual(seen, stored, `seed ${seed}: the concatenated stream is the stored log`);
      t.diagnostic(`${connections} connections, ${seen.length} events, equal to the stored log`);
      // A full replay gives the same log again.
      const replay = await WsClient.open(h.url, sessionId, '?after=0');
      await replay.waitFor((f) => isEnd(f, last!));
      assert.deepEqual(replay.events, stored);
      await replay.close();
    });

    test(`SSE: random disconnects with Last-Event-ID (seed ${seed}) concatenate to the stored log`, async (t) => {
      const random = seededRandom(seed * 7919);
      const sessionId = `rp-sse-${seed}`;
      const [, last] = await submitTwo(h, sessionId);
      const seen: Frame[] = [];
      let lastEventId: string | undefined;
      let connections = 0;
      while (!seen.some((f) => isEnd(f, last!))) {
        const sse = new SseClient(`${h.url}/session/${sessionId}/events`, lastEventId === undefined ? {} : { 'last-event-id': lastEventId });
        connections += 1;
        const connected = await sse.waitFor((e) => e.event === 'connected');
        if (lastEventId !== undefined) assert.equal(String(connected.data.after), lastEventId);
        const quota = 1 + Math.floor(random() * 15);
        await sse.waitFor(() => sse.events.length - 1 >= quota || sse.events.some((e) => isEnd(e.data, last!)), 60_000);
        if (random() < 0.5) await sleep(Math.floor(random() * 20));
        const got = sse.events.slice(1).map((e) => e.data as Frame);
        await sse.close();
        seen.push(...got);
        lastEventId = got.length > 0 ? String(got.at(-1)!.seq) : lastEventId ?? String(connected.data.after);
        if (random() < 0.3) await sleep(Math.floor(random() * 50));
      }
      const stored = await storedFrames(h.runner, sessionId);
      assert.ok(connections >= 5, `only ${connections} connections`);
      assertConsecutive(seen, `seed ${seed}`);
      assert.deepEqual(seen, stored, `seed ${seed}: the concatenated stream is the stored log`);
      t.diagnostic(`${connections} connections, ${seen.length} events, equal to the stored log`);
    });
  }
});
