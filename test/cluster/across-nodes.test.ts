/**
 * Any node serves any session (two node processes, one PostgreSQL): a task
 * that runs on one node streams live to a WebSocket subscriber on the other,
 * complete and in order, and replays there from any seq (WS and SSE) exactly
 * as the log; a blocking POST /task on the other node is answered; an abort
 * sent to the other node stops the running task within a second.
 * Sessions are sticky, so "node A" is the node that owns the session (runs
 * its tasks, holds its container) and "node B" is the other one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text, withThinking } from '../../src/scripted-model/index.ts';
import { assertConsecutive, SseClient, WsClient } from '../events/support.ts';
import { agentProcesses, within } from '../sessions/support.ts';
import { busyOnOwner, finalSeen, replayLog, startCluster, toolRunning, warmSession, type Cluster } from './support.ts';

const LONG_TEXT = 'An answer streamed in many small pieces, so that it takes a while to arrive. '.repeat(4).trim();

describe('any node serves any session', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({
      rules: [
        rule('xn-warm', text('Warm. The code word is persimmon.')),
        rule('xn-stream',
          withThinking('Thinking across nodes.', bash('echo streamed-from-the-owner', { text: 'Running a command.', chunkDelayMs: 15 })),
          text(LONG_TEXT, { chunkDelayMs: 15 })),
        rule('xn-remote-wait', text('answered on the other node', { delayMs: 300 })),
        rule('xn-abort-me', bash('echo busy; sleep 60'), text('never')),
        rule('xn-after-abort', text('still usable')),
      ],
    });
  });
  after(async () => cluster?.close());

  const warm = (sessionId: string) => warmSession(cluster, cluster.nodes[0]!, sessionId, 'xn-warm');

  test('a task on node A streams live to a WebSocket on node B, complete and in order; replay on B from any seq equals the log', async () => {
    await cluster.explain(async () => {
      const sessionId = 'xn-stream';
      const { a, b } = await warm(sessionId);
      const ws = await WsClient.open(b.url, sessionId);
      const connected = await ws.waitFor((f) => f.type === 'connected');
      const submitted = await a.api('/task', { method: 'POST', json: { sessionId, message: 'xn-stream', wait: false } });
      assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
      const taskId = submitted.body.taskId as string;
      const end = await ws.waitFor((f) => f.taskId === taskId && (f.type === 'task_complete' || f.type === 'task_error'), 60_000, 'the end of the task on B');
      assert.equal(end.type, 'task_complete', JSON.stringify(end));
      await ws.close();
      assert.equal(await cluster.ownerOf(sessionId), a, 'the task ran on node A');

      const live = ws.events;
      assert.equal(live[0]!.seq, connected.lastSeq + 1, 'B streamed from the first event after it connected');
      assertConsecutive(live, 'live stream on B');
      assert.deepEqual([...new Set(live.map((f) => f.taskId))], [taskId]);
      assert.equal(live[0]!.type, 'task_queued');
      const types = live.map((f) => f.type);
      for (const type of ['task_start', 'thinking', 'tool_start', 'tool_end', 'text', 'task_complete']) assert.ok(types.includes(type), `${type} in ${types.join(',')}`);
      assert.equal(live.filter((f) => f.type === 'text').map((f) => f.text).join(''), `Running a command.${LONG_TEXT}`);
      // Live, not delivered in one batch at the end: the text deltas arrived over the time the model streamed them.
      const textArrivals = ws.frames.flatMap((f, i) => (f.type === 'text' ? [ws.arrivals[i]!] : []));
      assert.ok(textArrivals.length > 10, `${textArrivals.length} text deltas`);
      const spread = textArrivals.at(-1)! - textArrivals[0]!;
      assert.ok(spread >= 150, `text deltas arrived within ${spread} ms: batched, not live`);

      // The log as node A replays it (WS ?after=0) holds exactly what B streamed, same seqs and fields.
      const log = await replayLog(a, sessionId);
      assertConsecutive(log, 'replay on A');
      assert.equal(log[0]!.seq, 1);
      assert.deepEqual(live, log.filter((f) => f.seq! > connected.lastSeq));
      // The task's own SSE stream on A (ends after its last event) agrees too.
      const taskStream = new SseClient(`${a.url}/tasks/${taskId}/events`);
      assert.equal(await within(taskStream.done, 10_000, 'the task stream on A'), 'ended');
      assert.deepEqual(taskStream.events.filter((e) => e.id !== undefined).map((e) => e.data), live);

      // Replay on B from a seq in the middle of the task, over WS and SSE: the log from there.
      const middle = live[Math.floor(live.length / 2)]!.seq!;
      assert.deepEqual(await replayLog(b, sessionId, middle), log.filter((f) => f.seq! > middle));
      const sse = new SseClient(`${b.url}/session/${sessionId}/events?after=${middle}`);
      const last = log.at(-1)!.seq!;
      await sse.waitFor((e) => e.data?.seq === last, 10_000, `SSE on B up to ${last}`);
      await sse.close();
      assert.deepEqual(sse.events.filter((e) => e.id !== undefined).map((e) => e.data), log.filter((f) => f.seq! > middle));
      assert.deepEqual(sse.events.filter((e) => e.id !== undefined).map((e) => Number(e.id)), log.filter((f) => f.seq! > middle).map((f) => f.seq));
    });
  });

  test('a blocking POST /task on node B for a task node A runs is answered', async () => {
    await cluster.explain(async () => {
      const sessionId = 'xn-remote';
      const { a, b } = await warm(sessionId);
      const res = await within(b.api('/task', { method: 'POST', json: { sessionId, message: 'xn-remote-wait' } }), 30_000, 'the blocking POST on B');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.status, 'succeeded');
      assert.deepEqual(res.body.output, { response: 'answered on the other node' });
      assert.equal(res.body.resumed, true);
      // It ran on A (the session's node), once.
      assert.equal(await cluster.ownerOf(sessionId), a);
      assert.equal(cluster.model.findRequests({ kind: 'main', prompt: 'xn-remote-wait' }).length, 1);
      const viewOnA = await a.api(`/tasks/${res.body.taskId}`);
      assert.equal(viewOnA.body.status, 'succeeded');
    });
  });

  test('an abort sent to node B stops the task running on node A within a second; B\'s blocked callers are answered', async () => {
    await cluster.explain(async () => {
      const sessionId = 'xn-abort';
      const { a, b } = await warm(sessionId);
      const measured: string[] = [];

      // The session's abort route, with a queued task behind the running one; both callers wait on B.
      const { slowCaller: running, nextCaller: queued, slow: runningTask, containerId } = await busyOnOwner(a, b, sessionId, 'xn-abort-me 1', 'xn-after-abort queued');
      let t0 = Date.now();
      const abort = await b.api(`/task/${sessionId}/abort`, { method: 'POST' });
      assert.equal(abort.status, 200, JSON.stringify(abort.body));
      assert.equal(abort.body.aborted, true);
      assert.equal(abort.body.runningTaskId, runningTask.taskId);
      assert.equal(abort.body.queuedTaskIds.length, 1);
      let { task, seenAt } = await finalSeen(b.api, runningTask.taskId);
      assert.equal(task.status, 'aborted');
      assert.equal(task.error.code, 'TASK_ABORTED');
      let stoppedMs = Date.parse(task.finishedAt) - t0;
      measured.push(`session abort: answered in ${Date.now() - t0} ms, task final (stored) ${stoppedMs} ms, seen final on B ${seenAt - t0} ms`);
      assert.ok(stoppedMs < 1000, `the task ended ${stoppedMs} ms after the abort`);
      const answers = await within(Promise.all([running, queued]), 5000, 'the blocked callers on B');
      for (const res of answers) {
        assert.equal(res.status, 409, JSON.stringify(res.body));
        assert.equal(res.body.error.code, 'TASK_ABORTED');
      }
      assert.ok(!(await agentProcesses(containerId)).some((p) => p.includes('sleep 60')), 'the tool is gone on A');
      assert.equal(cluster.model.findRequests({ prompt: 'xn-after-abort queued' }).length, 0, 'the queued task never ran');

      // One task by id: submitted to A, aborted on B.
      const second = await a.api('/task', { method: 'POST', json: { sessionId, message: 'xn-abort-me 2', wait: false } });
      assert.equal(second.status, 202);
      const submittedAt = Date.now();
      await toolRunning(a.id, sessionId, 'sleep 60');
      measured.push(`(the next task's tool ran ${Date.now() - submittedAt} ms after its submit)`);
      t0 = Date.now();
      const byId = await b.api(`/tasks/${second.body.taskId}/abort`, { method: 'POST' });
      const answeredMs = Date.now() - t0;
      assert.equal(byId.status, 200, JSON.stringify(byId.body));
      ({ task, seenAt } = await finalSeen(b.api, second.body.taskId));
      assert.equal(task.status, 'aborted');
      assert.equal(task.error.code, 'TASK_ABORTED');
      stoppedMs = Date.parse(task.finishedAt) - t0;
      measured.push(`task abort: answered in ${answeredMs} ms, task final (stored) ${stoppedMs} ms, seen final on B ${seenAt - t0} ms`);
      assert.ok(stoppedMs < 1000, `the task ended ${stoppedMs} ms after the abort`);
      assert.ok(!(await agentProcesses(containerId)).some((p) => p.includes('sleep 60')), 'the tool is gone on A');

      // The session goes on, still on A.
      const next = await b.api('/task', { method: 'POST', json: { sessionId, message: 'xn-after-abort' } });
      assert.equal(next.status, 200, JSON.stringify(next.body));
      assert.deepEqual(next.body.output, { response: 'still usable' });
      assert.equal(await cluster.ownerOf(sessionId), a);
      console.log(`# cross-node abort: ${measured.join('; ')}`);
    });
  });
});
