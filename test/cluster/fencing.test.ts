/**
 * A node cut off from the database (a network partition, through a link the
 * test cuts) while its task runs: it stops the task's agent before its lease
 * runs out, so that when the other node takes the session over the two
 * never work on the session's files at once. Reconnected, it joins again and
 * serves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually } from '../support/harness.ts';
import { agentProcesses, within } from '../sessions/support.ts';
import { busyOnOwner, finalSeen, startCluster, warmSession, type Cluster } from './support.ts';

const LEASE_MS = 4000;

describe('a node cut off from the database', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({
      cuttableDatabase: true,
      env: { NODE_LEASE_MS: String(LEASE_MS) },
      rules: [
        rule('fe-first', bash('echo first > first.txt'), text('First done.')),
        rule('fe-slow', bash('echo busy; sleep 60'), text('never')),
        rule('fe-next', bash('cat first.txt'), text('next ran on the other node')),
        rule('fe-back', text('the cut node serves again')),
      ],
    });
  });
  after(async () => cluster?.close());

  test('stops its task before its lease runs out; the other node takes over; reconnected, it serves again', async () => {
    await cluster.explain(async () => {
      const sessionId = 'fe-cut';
      const { a, b } = await warmSession(cluster, cluster.nodes[0]!, sessionId, 'fe-first');

      const { slowCaller, nextCaller, slow, containerId } = await busyOnOwner(a, b, sessionId, 'fe-slow', 'fe-next');

      const cutAt = Date.now();
      a.database!.cut();
      // A stops the tool itself: it cannot know whether its lease still holds.
      const stoppedAt = await eventually(async () => ((await agentProcesses(containerId).catch(() => [])).some((p) => p.includes('sleep 60')) ? undefined : Date.now()),
        4 * LEASE_MS, 'the cut node to stop its tool');
      const { task: interrupted } = await finalSeen(b.api, slow.taskId, 6 * LEASE_MS);
      assert.equal(interrupted.status, 'interrupted', JSON.stringify(interrupted));
      const interruptedAt = Date.parse(interrupted.finishedAt);
      assert.ok(stoppedAt < interruptedAt, `the tool stopped ${stoppedAt - cutAt} ms after the cut, the takeover was at ${interruptedAt - cutAt} ms`);
      assert.equal((await within(slowCaller, 10_000, 'the caller of the slow task')).body.error?.code, 'TASK_INTERRUPTED');

      // B runs the next task, on the session's files.
      const next = await within(nextCaller, 60_000, 'the caller of the next task');
      assert.equal(next.status, 200, JSON.stringify(next.body));
      assert.deepEqual(next.body.output, { response: 'next ran on the other node' });
      assert.equal(await cluster.ownerOf(sessionId), b);

      // Reconnected, A joins again and answers (its own tasks as any other's).
      a.database!.restore();
      await eventually(() => (a.process.logs().includes('this node joined again') ? true : undefined), 4 * LEASE_MS, 'the cut node to join again');
      const back = await a.api('/task', { method: 'POST', json: { sessionId: 'fe-after', message: 'fe-back' } });
      assert.equal(back.status, 200, JSON.stringify(back.body));
      assert.deepEqual(back.body.output, { response: 'the cut node serves again' });
      console.log(`# fencing: tool stopped ${stoppedAt - cutAt} ms after the cut; task interrupted by the other node at ${interruptedAt - cutAt} ms (lease ${LEASE_MS} ms)`);
    });
  });
});
