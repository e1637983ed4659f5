/**
 * 500 tasks over 50 sessions, submitted alternately to two node processes on
 * one PostgreSQL by blocking POST /task callers, many in flight: every
 * caller is answered, each task runs exactly once, each session's tasks
 * start in the order they were submitted and never two at once (from the
 * session's stored events), and a session's tasks all run on one node.
 * Sessions go ten at a time (a sliding window), to bound the live agents.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { containersOf, type ApiResponse } from '../support/harness.ts';
import { sleep, within } from '../sessions/support.ts';
import { replayLog, startCluster, type Cluster, type ClusterNode } from './support.ts';

const SESSIONS = 50;
const PER_SESSION = 10;
/** Sessions being submitted to or waited on at once. */
const WINDOW = 10;

const sessionIdOf = (s: number) => `ld-${String(s).padStart(2, '0')}`;
const messageOf = (s: number, i: number) => `ldmsg ${sessionIdOf(s)} #${i}`;

describe('load across two nodes: 500 tasks over 50 sessions', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({
      maxRecorded: 20_000,
      env: { MAX_CONCURRENT_TASKS: '3', MAX_LIVE_AGENTS: String(WINDOW + 2), MAX_QUEUED_PER_SESSION: String(PER_SESSION) },
    });
  });
  after(async () => cluster?.close());

  test('every caller answered, each task run once, order kept and one at a time per session, sessions sticky', async () => {
    await cluster.explain(async () => {
      const t0 = Date.now();
      const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode];
      const answers: ApiResponse[][] = Array.from({ length: SESSIONS }, () => []);
      let inFlight = 0;
      let maxInFlight = 0;

      /** Submits the session's tasks in order (each once the previous one is stored), alternating nodes; waits for every answer. */
      async function runSession(s: number): Promise<void> {
        const sessionId = sessionIdOf(s);
        const calls: Array<Promise<ApiResponse>> = [];
        for (let i = 0; i < PER_SESSION; i++) {
          const node = (s + i) % 2 === 0 ? n0 : n1;
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          let answered = false;
          calls.push(node.api('/task', { method: 'POST', json: { sessionId, message: messageOf(s, i) } }).finally(() => {
            inFlight -= 1;
            answered = true;
          }));
          // Stored before the next is sent, so the submit order is defined (a refused submit is reported below).
          for (;;) {
            const newest = (await node.api(`/session/${sessionId}/tasks?limit=1`)).body?.tasks?.[0];
            if (newest?.message === messageOf(s, i) || answered) break;
            await sleep(10);
          }
        }
        answers[s] = await within(Promise.all(calls), 150_000, `the answers of ${sessionId}`);
      }

      let next = 0;
      await Promise.all(Array.from({ length: WINDOW }, async () => {
        while (next < SESSIONS) await runSession(next++);
      }));
      const answeredMs = Date.now() - t0;
      const durations = answers.flat().map((res) => Number(res.body?.duration)).sort((x, y) => x - y);
      console.log(`# cluster load: ${SESSIONS * PER_SESSION} tasks answered in ${answeredMs} ms, up to ${maxInFlight} callers in flight; `
        + `task duration median ${durations[durations.length >> 1]} ms, p90 ${durations[Math.floor(durations.length * 0.9)]} ms`);

      // Every caller answered, with its own task's answer; 500 distinct tasks.
      const taskIds = answers.map((list, s) => list.map((res, i) => {
        assert.equal(res.status, 200, `${messageOf(s, i)}: ${res.status} ${res.text.slice(0, 300)}`);
        assert.equal(res.body.status, 'succeeded');
        assert.equal(res.body.sessionId, sessionIdOf(s));
        assert.deepEqual(res.body.output, { response: `Echo: ${messageOf(s, i)}` });
        return res.body.taskId as string;
      }));
      assert.equal(new Set(taskIds.flat()).size, SESSIONS * PER_SESSION);

      // Each task reached the model exactly once.
      const prompts = new Map<string, number>();
      for (const r of cluster.model.findRequests({ kind: 'main' })) prompts.set(r.prompt ?? '', (prompts.get(r.prompt ?? '') ?? 0) + 1);
      for (let s = 0; s < SESSIONS; s++) {
        for (let i = 0; i < PER_SESSION; i++) assert.equal(prompts.get(messageOf(s, i)), 1, `model calls for ${messageOf(s, i)}`);
      }

      // From each session's stored log (replayed on alternate nodes): one task_queued, task_start and end per task,
      // started in submit order, each only after the previous one ended.
      const queuedOutOfOrder: string[] = [];
      for (let s = 0; s < SESSIONS; s++) {
        const sessionId = sessionIdOf(s);
        const log = await replayLog(s % 2 === 0 ? n1 : n0, sessionId);
        const ids = taskIds[s]!;
        const queued = log.filter((f) => f.type === 'task_queued').map((f) => f.taskId);
        assert.deepEqual([...queued].sort(), [...ids].sort(), `${sessionId}: one task_queued per task`);
        if (queued.join() !== ids.join()) queuedOutOfOrder.push(`${sessionId}: #${queued.map((id) => ids.indexOf(id!)).join(' #')}`);
        assert.deepEqual(log.filter((f) => f.type === 'task_start').map((f) => f.taskId), ids, `${sessionId}: started in submit order, once each`);
        assert.deepEqual(log.filter((f) => f.type === 'task_complete').map((f) => f.taskId), ids, `${sessionId}: completed once each`);
        assert.equal(log.filter((f) => f.type === 'task_error').length, 0);
        let running: string | null = null;
        for (const frame of log) {
          if (frame.type === 'task_start') {
            assert.equal(running, null, `${sessionId}: ${frame.taskId} started (seq ${frame.seq}) while ${running} ran`);
            running = frame.taskId!;
          } else if (frame.type === 'task_complete') {
            assert.equal(frame.taskId, running, `${sessionId}: seq ${frame.seq}`);
            running = null;
          } else if (frame.type !== 'task_queued' && frame.taskId) {
            assert.equal(frame.taskId, running, `${sessionId}: a ${frame.type} (seq ${frame.seq}) of a task that was not running`);
          }
        }
        // The stored tasks agree: exactly these ten, one after the other.
        const stored = ((await n0.api(`/session/${sessionId}/tasks?limit=50`)).body.tasks as any[]).reverse();
        assert.deepEqual(stored.map((task) => task.taskId), ids);
        for (let i = 1; i < stored.length; i++) {
          assert.ok(Date.parse(stored[i].startedAt) >= Date.parse(stored[i - 1].finishedAt), `${sessionId} #${i} started before #${i - 1} finished`);
        }
      }

      // Sticky sessions: each session's container is on exactly one node, and both nodes served sessions.
      const sessionsOf = async (node: ClusterNode) => new Set((await containersOf(node.id)).map((c) => c.Labels['dev.claude-runner.session-id']));
      const [on0, on1] = [await sessionsOf(n0), await sessionsOf(n1)];
      for (let s = 0; s < SESSIONS; s++) {
        const where = [on0.has(sessionIdOf(s)), on1.has(sessionIdOf(s))].filter(Boolean).length;
        assert.equal(where, 1, `${sessionIdOf(s)} has a container on ${where} nodes`);
      }
      assert.ok(on0.size > 0 && on1.size > 0, `sessions per node: ${on0.size} and ${on1.size}`);
      for (const node of [n0, n1]) assert.equal((await node.api('/health')).body.runningTasks, 0);
      console.log(`# cluster load: sessions per node ${on0.size} / ${on1.size}; checked in ${Date.now() - t0 - answeredMs} ms`);
      // Not asserted: two submits to one session on two nodes each store the task, then append task_queued, so
      // their task_queued events may swap (the tasks still run in stored order, checked above; docs/scaling.md).
      console.log(`# cluster load: sessions whose task_queued events left submit order: ${queuedOutOfOrder.length}`);
    });
  });
});
