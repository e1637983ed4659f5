/** Store contract: runner nodes (leases, takeover, leaving) and sticky sessions. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeRecord, Store } from '../../src/core/ports/store.ts';
import type { Session } from '../../src/core/model.ts';
import { interruptError, makeOutcome, makeSession, makeTask, NO_ACTIVITY } from './fixtures.ts';

function makeNode(id: string, over: Partial<NodeRecord> = {}): NodeRecord {
  return { id, address: `http://${id}:8080`, startedAt: 1_000, leaseExpiresAt: 10_000, dataDirMark: `mark-${id}`, ...over };
}

async function sessionWithTasks(store: Store, name: string, count: number): Promise<Session> {
  const s = makeSession(name);
  await store.createSession(s, { maxSessions: 100 });
  for (let i = 0; i < count; i++) await store.enqueueTask(makeTask(s, `${name}${i}`, { createdAt: 100 + i }), { maxQueued: 100 });
  return s;
}

const ids = (tasks: Array<{ id: string }>) => tasks.map((t) => t.id).sort();

export function defineNodeTests(getStore: () => Store): void {
  test('registerNode adds or replaces a node; listNodes lists the live ones, oldest first', async () => {
    const store = getStore();
    assert.deepEqual(await store.listNodes(0), []);
    const b = makeNode('node-b', { startedAt: 2_000 });
    const a = makeNode('node-a', { startedAt: 2_000, leaseExpiresAt: 20_000 });
    const old = makeNode('node-old', { startedAt: 500, leaseExpiresAt: 5_000 });
    for (const n of [b, a, old]) await store.registerNode(n);
    assert.deepEqual(await store.listNodes(4_000), [old, a, b], 'startedAt, then id');
    assert.deepEqual(await store.listNodes(5_000), [old, a, b], 'a lease ending now has not expired yet');
    assert.deepEqual(await store.listNodes(5_001), [a, b]);
    // A restart under the same id replaces its row.
    const restarted = makeNode('node-old', { address: 'http://elsewhere:9090', startedAt: 6_000, leaseExpiresAt: 30_000, dataDirMark: 'new-mark' });
    await store.registerNode(restarted);
    assert.deepEqual(await store.listNodes(15_000), [a, restarted]);
  });

  test('renewNodeLease extends a lease, and says false once the node is gone', async () => {
    const store = getStore();
    await store.registerNode(makeNode('node-a', { leaseExpiresAt: 5_000 }));
    assert.equal(await store.renewNodeLease('node-a', 50_000), true);
    assert.deepEqual((await store.listNodes(40_000)).map((n) => [n.id, n.leaseExpiresAt]), [['node-a', 50_000]]);
    assert.equal(await store.renewNodeLease('node-unknown', 50_000), false);
    await store.removeNode('node-a');
    assert.equal(await store.renewNodeLease('node-a', 60_000), false);
    assert.deepEqual(await store.listNodes(0), []);
  });

  test('a claimed session becomes the claiming node\'s: other nodes do not claim its tasks until it is released', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 3);
    await sessionWithTasks(store, 'b', 2);
    assert.equal(await store.sessionOwner('key-a'), null);
    assert.equal(await store.sessionOwner('key-none'), null);
    assert.deepEqual(ids(await store.claimTasks('node-1', 1, 1_000)), ['a0']);
    assert.equal(await store.sessionOwner('key-a'), 'node-1');
    assert.equal(await store.sessionOwner('key-b'), null);
    assert.equal(await store.finishTask('a0', 'node-1', makeOutcome({ finishedAt: 1_100 }), NO_ACTIVITY), true);
    assert.equal(await store.sessionOwner('key-a'), 'node-1', 'ownership outlives the task');
    // node-2 gets the unowned session only, and owns it from now on.
    assert.deepEqual(ids(await store.claimTasks('node-2', 5, 1_200)), ['b0']);
    assert.equal(await store.sessionOwner('key-b'), 'node-2');
    assert.deepEqual(ids(await store.claimTasks('node-1', 5, 1_300)), ['a1']);
    assert.equal(await store.finishTask('a1', 'node-1', makeOutcome({ finishedAt: 1_400 }), NO_ACTIVITY), true);
    assert.equal(await store.finishTask('b0', 'node-2', makeOutcome({ finishedAt: 1_400 }), NO_ACTIVITY), true);
    assert.deepEqual(await store.claimTasks('node-3', 5, 1_500), [], 'every session with work has an owner');
    // Releasing one node's sessions leaves the other's.
    await store.releaseSessions('node-1');
    assert.deepEqual([await store.sessionOwner('key-a'), await store.sessionOwner('key-b')], [null, 'node-2']);
    assert.deepEqual(ids(await store.claimTasks('node-3', 5, 1_600)), ['a2']);
    assert.equal(await store.sessionOwner('key-a'), 'node-3');
    await store.releaseSessions(null);
    assert.deepEqual([await store.sessionOwner('key-a'), await store.sessionOwner('key-b')], [null, null]);
    assert.deepEqual(ids(await store.claimTasks('node-1', 5, 1_700)), ['b1']);
  });

  test('reapExpiredNodes takes over each expired node: its running tasks interrupted, its sessions released, its row removed', async () => {
    const store = getStore();
    for (const n of ['a', 'b', 'c']) await sessionWithTasks(store, n, 2);
    await store.registerNode(makeNode('dead', { leaseExpiresAt: 5_000 }));
    await store.registerNode(makeNode('alive', { leaseExpiresAt: 50_000 }));
    await store.registerNode(makeNode('reaper', { leaseExpiresAt: 1_000 }));
    const deadTasks = await store.claimTasks('dead', 2, 2_000); // a0, b0: sessions a and b are dead's
    const aliveTasks = await store.claimTasks('alive', 5, 2_100); // c0
    assert.deepEqual([ids(deadTasks), ids(aliveTasks)], [['a0', 'b0'], ['c0']]);

    assert.deepEqual(await store.reapExpiredNodes('reaper', interruptError, 5_000), [], 'a lease ending now has not expired');
    const takeovers = await store.reapExpiredNodes('reaper', interruptError, 6_000);
    assert.equal(takeovers.length, 1, 'the reaper never takes itself over, even expired');
    const [takeover] = takeovers;
    assert.equal(takeover!.nodeId, 'dead');
    assert.deepEqual(takeover!.releasedSessions, ['key-a', 'key-b']);
    assert.deepEqual([...takeover!.interrupted].sort((x, y) => x.id.localeCompare(y.id)), deadTasks, 'as they were');
    for (const t of deadTasks) {
      const after = await store.getTask(t.id);
      assert.deepEqual([after?.status, after?.finishedAt, after?.error, after?.sealedEnv], ['interrupted', 6_000, interruptError, null]);
    }
    assert.equal((await store.getTask('c0'))?.status, 'running', 'a live node\'s task goes on');
    assert.deepEqual([await store.sessionOwner('key-a'), await store.sessionOwner('key-b'), await store.sessionOwner('key-c')], [null, null, 'alive']);
    assert.deepEqual((await store.listNodes(0)).map((n) => n.id), ['alive', 'reaper']);
    assert.equal(await store.renewNodeLease('dead', 60_000), false, 'the dead node learns it was taken over');
    assert.deepEqual(await store.reapExpiredNodes('reaper', interruptError, 7_000), [], 'once');
    assert.equal(await store.finishTask('a0', 'dead', makeOutcome(), NO_ACTIVITY), false, 'a late end does not undo the takeover');
    // Their next tasks run on whichever node claims them.
    assert.deepEqual(ids(await store.claimTasks('reaper', 5, 8_000)), ['a1', 'b1']);
  });

  test('a node that renewed its lease in time is not taken over', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 1);
    await store.registerNode(makeNode('slow', { leaseExpiresAt: 5_000 }));
    await store.claimTasks('slow', 1, 2_000);
    assert.equal(await store.renewNodeLease('slow', 20_000), true);
    assert.deepEqual(await store.reapExpiredNodes('other', interruptError, 6_000), []);
    assert.equal((await store.getTask('a0'))?.status, 'running');
    assert.equal(await store.sessionOwner('key-a'), 'slow');
  });

  test('two reapers at once take a dead node over once', async () => {
    const store = getStore();
    for (const n of ['a', 'b']) await sessionWithTasks(store, n, 1);
    await store.registerNode(makeNode('dead-1', { leaseExpiresAt: 5_000 }));
    await store.registerNode(makeNode('dead-2', { leaseExpiresAt: 5_000 }));
    await store.claimTasks('dead-1', 1, 2_000);
    await store.claimTasks('dead-2', 1, 2_001);
    const [first, second] = await Promise.all([
      store.reapExpiredNodes('reaper-1', interruptError, 6_000),
      store.reapExpiredNodes('reaper-2', interruptError, 6_000),
    ]);
    const all = [...first!, ...second!];
    assert.deepEqual(all.map((t) => t.nodeId).sort(), ['dead-1', 'dead-2']);
    assert.deepEqual(all.flatMap((t) => t.interrupted.map((i) => i.id)).sort(), ['a0', 'b0']);
  });

  test('removeNode releases the node\'s sessions and removes its row; its tasks are not touched', async () => {
    const store = getStore();
    await sessionWithTasks(store, 'a', 2);
    await sessionWithTasks(store, 'b', 1);
    await store.registerNode(makeNode('leaving'));
    await store.registerNode(makeNode('staying'));
    await store.claimTasks('leaving', 1, 2_000); // a0
    await store.claimTasks('staying', 1, 2_001); // b0
    await store.removeNode('leaving');
    assert.deepEqual((await store.listNodes(0)).map((n) => n.id), ['staying']);
    assert.deepEqual([await store.sessionOwner('key-a'), await store.sessionOwner('key-b')], [null, 'staying']);
    assert.equal((await store.getTask('a0'))?.status, 'running');
    await store.removeNode('leaving'); // no error
  });
}
