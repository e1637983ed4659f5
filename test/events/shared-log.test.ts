/**
 * The event log on a store other nodes append to (`shared`): two logs over one
 * real SQLite store stand for two nodes. Events appended by "node A" reach a
 * subscriber of "node B" once B hears of them (storedElsewhere), and B's own
 * appends, interleaved with A's, never jump ahead of A's: every subscriber
 * sees every seq once, in order, with no gap reported. Random notices lost
 * are made up by the next notice or append, and by resync.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { StoredEvent } from '../../src/core/events.ts';
import type { Store } from '../../src/core/ports/store.ts';
import { EventLog } from '../../src/events/event-log.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { openSqliteStore } from '../../src/store/sqlite/index.ts';
import { makeSession } from '../store/fixtures.ts';
import { seededRandom, sleep } from './support.ts';

function collector(): { events: StoredEvent[]; gaps: Array<[number, number]>; subscriber: Parameters<EventLog['subscribe']>[2] } {
  const events: StoredEvent[] = [];
  const gaps: Array<[number, number]> = [];
  return {
    events, gaps,
    subscriber: { onEvent: (e) => events.push(e), onGap: (from, to) => gaps.push([from, to]), onOverflow: () => {}, onEnd: () => {} },
  };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await sleep(10);
  assert.ok(condition(), what);
}

describe('EventLog on a shared store', () => {
  let dir = '';
  let store: Store;
  let nodeA: EventLog;
  let nodeB: EventLog;
  /** Notices from A to B; `drop` loses some on purpose. */
  let drop = (): boolean => false;
  let key = '';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shared-log-'));
    store = await openSqliteStore({ file: join(dir, 'runner.db') });
    key = (await store.createSession(makeSession('s'), { maxSessions: 10 })).session.key;
    drop = () => false;
    nodeB = new EventLog(store, new Redactor(), { shared: true });
    nodeA = new EventLog(store, new Redactor(), { shared: true, onStored: (sessionKey, seq) => { if (!drop()) nodeB.storedElsewhere(sessionKey, seq); } });
  });
  afterEach(async () => {
    await nodeA.settle();
    await nodeB.settle();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('events of both nodes, interleaved, reach a subscriber of one node once each, in order, with no gap', async () => {
    const early = collector();
    await nodeB.subscribe(key, 0, early.subscriber);
    const random = seededRandom(7);
    let late: ReturnType<typeof collector> | undefined;
    for (let i = 0; i < 120; i++) {
      const node = random() < 0.5 ? nodeA : nodeB;
      void node.append(key, null, 'text', { text: `${i}` });
      if (random() < 0.2) await sleep(1);
      if (i === 60) {
        late = collector();
        void nodeB.subscribe(key, 10, late.subscriber);
      }
    }
    await nodeA.settle();
    await nodeB.settle();
    await until(() => early.events.length === 120 && late?.events.length === 110, `all events delivered (${early.events.length}, ${late?.events.length})`);
    assert.deepEqual(early.events.map((e) => e.seq), Array.from({ length: 120 }, (_, i) => i + 1));
    assert.deepEqual(late!.events.map((e) => e.seq), Array.from({ length: 110 }, (_, i) => i + 11));
    assert.deepEqual([...early.gaps, ...late!.gaps], []);
    assert.deepEqual(early.events.map((e) => (e.data as { text: string }).text).sort(), Array.from({ length: 120 }, (_, i) => `${i}`).sort());
  });

  test('a lost notice is made up by the next one, and by resync when none comes', async () => {
    const seen = collector();
    await nodeB.subscribe(key, 0, seen.subscriber);
    drop = () => true;
    for (let i = 0; i < 5; i++) await nodeA.append(key, null, 'text', { text: `${i}` });
    await sleep(50);
    assert.equal(seen.events.length, 0, 'nothing told: nothing delivered yet');
    await nodeB.resync();
    await until(() => seen.events.length === 5, 'resync reads what the lost notices announced');
    drop = () => false;
    for (let i = 5; i < 8; i++) await nodeA.append(key, null, 'text', { text: `${i}` });
    await until(() => seen.events.length === 8, 'later notices deliver');
    assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(seen.gaps, []);
  });

  test('without subscribers a node reads nothing; events trimmed meanwhile are reported as a gap', async () => {
    for (let i = 0; i < 3; i++) await nodeA.append(key, null, 'text', { text: `${i}` });
    const seen = collector();
    await nodeB.subscribe(key, 0, seen.subscriber);
    assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3]);
    drop = () => true;
    for (let i = 3; i < 6; i++) await nodeA.append(key, null, 'text', { text: `${i}` });
    await store.trimEvents({ maxEventsPerSession: 1, maxEventAgeMs: 3_600_000 }, Date.now());
    drop = () => false;
    await nodeA.append(key, null, 'text', { text: '6' });
    // Only seq 6 was kept (one per session): 4 and 5 are a gap, then 6 and 7.
    await until(() => seen.events.length === 5, 'the events left and the new one arrive');
    assert.deepEqual(seen.events.map((e) => e.seq), [1, 2, 3, 6, 7]);
    assert.deepEqual(seen.gaps, [[4, 5]]);
  });
});
