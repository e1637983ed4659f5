/**
 * 60 tasks over 10 sessions, submitted concurrently (wait:false): none lost
 * or run twice, each session's tasks run one at a time in the order they were
 * submitted, and never more than MAX_CONCURRENT_TASKS run at once (from the
 * stored start and finish times, and from the model's request log).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { FINAL, sleep, waitFinal } from './support.ts';

const SESSIONS = 10;
const PER_SESSION = 6;
const MAX_CONCURRENT = 4;

/** Most intervals open at one instant; an interval that ends at t is closed before one that starts at t. */
function maxOverlap(intervals: Array<[number, number]>): number {
  const points = intervals.flatMap(([s, e]) => [[s, 1], [e, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let max = 0;
  for (const [, delta] of points) {
    open += delta;
    max = Math.max(max, open);
  }
  return max;
}

describe('load: 60 tasks over 10 sessions', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      env: { MAX_CONCURRENT_TASKS: String(MAX_CONCURRENT), MAX_LIVE_AGENTS: String(SESSIONS + 4), MAX_QUEUED_PER_SESSION: String(PER_SESSION) },
    });
  });
  after(async () => h?.close());

  test('nothing lost or duplicated, order kept per session, one running per session, the global cap held', async () => {
    const t0 = Date.now();
    const sessionIds = Array.from({ length: SESSIONS }, (_, s) => `load-${String(s).padStart(2, '0')}`);
    // Every session submits its tasks one after the other; the sessions all at once.
    const submitted = await Promise.all(sessionIds.map(async (sessionId) => {
      const ids: string[] = [];
      for (let i = 0; i < PER_SESSION; i++) {
        const res = await h.api('/task', { method: 'POST', json: { sessionId, message: `loadmsg ${sessionId} #${i}`, wait: false } });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        ids.push(res.body.taskId);
      }
      return ids;
    }));
    const submitMs = Date.now() - t0;
    const allIds = submitted.flat();
    assert.equal(new Set(allIds).size, SESSIONS * PER_SESSION);

    // Wait for all, sampling how many run at once as reported by the store.
    let sampledMax = 0;
    const tasks = new Map<string, any>();
    for (const sessionId of sessionIds) {
      for (;;) {
        const sessions = (await h.api('/sessions?limit=100')).body as any[];
        sampledMax = Math.max(sampledMax, sessions.filter((s) => s.busy).length);
        const list = (await h.api(`/session/${sessionId}/tasks?limit=50`)).body.tasks as any[];
        if (list.length === PER_SESSION && list.every((t) => FINAL.has(t.status))) {
          for (const t of list) tasks.set(t.taskId, t);
          break;
        }
        if (Date.now() - t0 > 150_000) assert.fail(`tasks of ${sessionId} did not end: ${list.map((t) => t.status).join(',')}`);
        await sleep(100);
      }
    }
    const totalMs = Date.now() - t0;

    // Nothing lost, nothing extra, everything succeeded with its own answer.
    assert.deepEqual([...tasks.keys()].sort(), [...allIds].sort());
    for (const [s, sessionId] of sessionIds.entries()) {
      submitted[s]!.forEach((taskId, i) => {
        const t = tasks.get(taskId);
        assert.equal(t.status, 'succeeded', JSON.stringify(t));
        assert.equal(t.sessionId, sessionId);
        assert.equal(t.message, `loadmsg ${sessionId} #${i}`);
        assert.deepEqual(t.output, { response: `Echo: loadmsg ${sessionId} #${i}` });
      });
    }
    // Each task reached the model exactly once.
    const prompts = h.model.findRequests({ kind: 'main' }).map((r) => r.prompt);
    for (const sessionId of sessionIds) {
      for (let i = 0; i < PER_SESSION; i++) {
        assert.equal(prompts.filter((p) => p === `loadmsg ${sessionId} #${i}`).length, 1, `loadmsg ${sessionId} #${i}`);
      }
    }

    // Per session: submission order, one at a time (each starts after the previous one finished).
    const intervals: Array<[number, number]> = [];
    for (const [s, sessionId] of sessionIds.entries()) {
      const ordered = submitted[s]!.map((id) => tasks.get(id));
      const spans = ordered.map((t) => [Date.parse(t.startedAt), Date.parse(t.finishedAt)] as [number, number]);
      for (let i = 1; i < spans.length; i++) {
        assert.ok(spans[i]![0] >= spans[i - 1]![1], `${sessionId} #${i} started before #${i - 1} finished`);
      }
      assert.equal(maxOverlap(spans), 1, `${sessionId}: two tasks ran at once`);
      // The model saw the session's prompts in the same order.
      const seen = prompts.filter((p) => p?.startsWith(`loadmsg ${sessionId} #`));
      assert.deepEqual(seen, ordered.map((t) => t.message));
      intervals.push(...spans);
    }
    const storedMax = maxOverlap(intervals);
    assert.ok(storedMax <= MAX_CONCURRENT, `${storedMax} tasks ran at once`);
    assert.ok(sampledMax <= MAX_CONCURRENT, `${sampledMax} sessions were busy at once`);
    // The cap was actually reached, so the check above means something.
    assert.equal(storedMax, MAX_CONCURRENT);
    const health = await h.api('/health');
    assert.equal(health.body.runningTasks, 0);
    const durations = [...tasks.values()].map((t) => t.duration).sort((a, b) => a - b);
    console.log(`# load: ${allIds.length} tasks in ${totalMs} ms (submitted in ${submitMs} ms); max running at once: stored ${storedMax}, sampled ${sampledMax}; task duration median ${durations[durations.length >> 1]} ms, p90 ${durations[Math.floor(durations.length * 0.9)]} ms`);
  });
});

describe('fairness across sessions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ env: { MAX_CONCURRENT_TASKS: '1' }, rules: [rule('fairjob', text('fair', { delayMs: 300 }))] });
  });
  after(async () => h?.close());

  test('with one slot, a session with one task is served before the second task of a session with a backlog', async () => {
    const greedy: string[] = [];
    for (let i = 0; i < 5; i++) {
      greedy.push((await h.api('/task', { method: 'POST', json: { sessionId: 'greedy', message: `fairjob greedy ${i}`, wait: false } })).body.taskId);
    }
    const polite = (await h.api('/task', { method: 'POST', json: { sessionId: 'polite', message: 'fairjob polite', wait: false } })).body.taskId;
    assert.equal((await h.api(`/tasks/${greedy[1]}`)).body.status, 'queued', 'the backlog was there when the polite task came');
    const done = await Promise.all([...greedy, polite].map((id) => waitFinal(h.api, id)));
    const start = (t: any) => Date.parse(t.startedAt);
    const byStart = [...done].sort((a, b) => start(a) - start(b)).map((t) => t.message);
    assert.deepEqual(byStart.slice(0, 3), ['fairjob greedy 0', 'fairjob polite', 'fairjob greedy 1'], byStart.join(', '));
  });
});
