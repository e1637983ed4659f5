/**
 * The event log on its own, over the real SQLite store: the replay/live seam
 * under concurrent appends, one session's failed append not losing another's
 * events, gaps reported (trimmed before or during a replay, all trimmed), a
 * seq from the future, a paced replay, the cancel signal, and the bound on
 * live events held for a subscriber still replaying.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { StoredEvent } from '../../src/core/events.ts';
import type { Store } from '../../src/core/ports/store.ts';
import { EventLog, type EventSubscriber } from '../../src/events/event-log.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { openSqliteStore } from '../../src/store/sqlite/index.ts';
import { makeSession } from '../store/fixtures.ts';
import { seededRandom, sleep } from './support.ts';

interface Recorded {
  events: StoredEvent[];
  gaps: Array<[number, number]>;
  overflowed: boolean;
  ended: boolean;
  subscriber: EventSubscriber;
}

function recorder(extra: Partial<EventSubscriber> = {}): Recorded {
  const r: Recorded = {
    events: [], gaps: [], overflowed: false, ended: false,
    subscriber: {
      onEvent: (e) => r.events.push(e),
      onGap: (from, to) => r.gaps.push([from, to]),
      onOverflow: () => { r.overflowed = true; },
      onEnd: () => { r.ended = true; },
      ...extra,
    },
  };
  return r;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('EventLog', () => {
  let dir = '';
  let store: Store;
  let log: EventLog;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'event-log-'));
    store = await openSqliteStore({ file: join(dir, 'runner.db') });
    for (const n of ['a', 'b']) await store.createSession(makeSession(n), { maxSessions: 10 });
    log = new EventLog(store, new Redactor());
  });
  afterEach(async () => {
    await log.settle();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const append = (key: string, text: string) => log.append(key, 't1', 'text', { text });

  test('subscribers joining at random moments during appends get every later event once, in order', async () => {
    const random = seededRandom(5);
    const prefilled = 1200;
    const total = prefilled + 3000;
    for (let i = 1; i <= prefilled; i++) void append('key-a', `e${i}`);
    await log.settle();
    const subscribers: Array<{ after: number; r: Recorded; done: Promise<unknown> }> = [];
    const writing = (async () => {
      for (let i = prefilled + 1; i <= total; i++) {
        void append('key-a', `e${i}`);
        // Batches of random size, so subscribers land mid-batch, between batches, mid-replay.
        if (random() < 0.05) await sleep(1);
      }
      await log.settle();
    })();
    for (let i = 0; i < 25; i++) {
      await sleep(Math.floor(random() * 8));
      const { lastSeq } = await store.eventBounds('key-a');
      const after = Math.floor(random() * (lastSeq + 1));
      // Some readers are slow: their replay yields to the event loop, so live events arrive while it runs.
      const slow = random() < 0.6;
      const r = recorder({ whenWritable: () => (slow && random() < 0.2 ? new Promise<void>((resolve) => setImmediate(resolve)) : undefined) });
      subscribers.push({ after, r, done: log.subscribe('key-a', after, r.subscriber) });
    }
    await writing;
    await Promise.all(subscribers.map((s) => s.done));
    for (const { after, r } of subscribers) {
      assert.deepEqual(r.events.map((e) => e.seq), range(after + 1, total), `subscriber after ${after}`);
      assert.deepEqual(r.gaps, []);
    }
  });

  test('a failed append of one session does not lose the events of another in the same batch', async () => {
    const a = append('key-a', 'doomed');
    const b = append('key-b', 'must survive');
    // Deleted before the batch is written (it waits for setImmediate); the delete's own answer waits for its fsync.
    const deleted = store.deleteSession('key-a');
    await assert.rejects(a, /No session/);
    await deleted;
    const stored = await b;
    assert.equal(stored.seq, 1);
    assert.deepEqual((await store.readEvents('key-b', 0, 10)).map((e) => e.data), [{ text: 'must survive' }]);
  });

  test('trimmed events are reported as a gap, before the replay, during it, and when all are gone', async () => {
    for (let i = 1; i <= 20; i++) void append('key-a', `e${i}`);
    await log.settle();
    await store.trimEvents({ maxEventsPerSession: 15, maxEventAgeMs: Infinity }, Date.now());
    const before = recorder();
    await log.subscribe('key-a', 2, before.subscriber);
    assert.deepEqual(before.gaps, [[3, 5]]);
    assert.deepEqual(before.events.map((e) => e.seq), range(6, 20));

    // Trimmed while a (paced) replay waits for its reader: the jump is reported, not skipped over.
    for (let i = 21; i <= 1200; i++) void append('key-a', `e${i}`);
    await log.settle();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let asked = 0;
    const during = recorder({ whenWritable: () => (++asked === 3 ? gate : undefined) });
    const replay = log.subscribe('key-a', 5, during.subscriber);
    await sleep(20);
    assert.deepEqual(during.events.map((e) => e.seq), [6, 7]);
    await store.trimEvents({ maxEventsPerSession: 300, maxEventAgeMs: Infinity }, Date.now());
    release();
    await replay;
    // The first page (500 events) was in hand before the trim; the next one starts at 901.
    assert.deepEqual(during.gaps, [[506, 900]]);
    assert.deepEqual(during.events.map((e) => e.seq), [...range(6, 505), ...range(901, 1200)]);

    await store.trimEvents({ maxEventsPerSession: 0, maxEventAgeMs: Infinity }, Date.now());
    const none = recorder();
    await log.subscribe('key-a', 4, none.subscriber);
    assert.deepEqual(none.gaps, [[5, 1200]]);
    assert.equal(none.events.length, 0);
    await append('key-a', 'after all');
    assert.deepEqual(none.events.map((e) => e.seq), [1201]);
    assert.deepEqual(none.gaps, [[5, 1200]], 'no second gap');
  });

  test('a seq from the future is read as "from now", not as a reason to drop what comes', async () => {
    for (let i = 1; i <= 3; i++) await append('key-a', `e${i}`);
    const r = recorder();
    await log.subscribe('key-a', 1000, r.subscriber);
    await append('key-a', 'next');
    assert.deepEqual(r.events.map((e) => e.seq), [4]);
    assert.deepEqual(r.gaps, []);
  });

  test('the signal ends a subscription during its replay; live events are held for a slow replay, up to a bound', async () => {
    for (let i = 1; i <= 50; i++) void append('key-a', `e${i}`);
    await log.settle();
    const controller = new AbortController();
    let asked = 0;
    const stopped = recorder({ whenWritable: () => (++asked === 10 ? (controller.abort(), undefined) : undefined) });
    await log.subscribe('key-a', 0, stopped.subscriber, controller.signal);
    assert.equal(stopped.events.length, 9);
    assert.equal(log.subscriberCount('key-a'), 0);
    await append('key-a', 'not for it');
    assert.equal(stopped.events.length, 9);

    // A replay that never gets to write: live events pile up for it until the bound, then it is dropped.
    const stuck = recorder({ whenWritable: () => new Promise(() => undefined) });
    void log.subscribe('key-a', 0, stuck.subscriber);
    await sleep(10);
    assert.equal(log.subscriberCount('key-a'), 1);
    for (let i = 0; i < 10_001; i++) void append('key-a', `flood ${i}`);
    await log.settle();
    assert.equal(stuck.overflowed, true);
    assert.equal(log.subscriberCount('key-a'), 0);
  });

  test('a paced replay waits for its reader and still hands over to live events with no gap or duplicate', async () => {
    for (let i = 1; i <= 30; i++) void append('key-a', `e${i}`);
    await log.settle();
    let writable = true;
    const waiters: Array<() => void> = [];
    const r = recorder({
      whenWritable: () => (writable ? undefined : new Promise<void>((resolve) => waiters.push(resolve))),
      onEvent: (e) => {
        r.events.push(e);
        if (r.events.length % 7 === 0) writable = false;
      },
    });
    const done = log.subscribe('key-a', 0, r.subscriber);
    for (let round = 0; round < 20; round++) {
      await sleep(2);
      void append('key-a', `live ${round}`);
      writable = true;
      for (const wake of waiters.splice(0)) wake();
    }
    await done;
    await log.settle();
    for (const wake of waiters.splice(0)) wake();
    await sleep(5);
    assert.deepEqual(r.events.map((e) => e.seq), range(1, 50));
  });

  test('closeSession ends the subscribers of a deleted session and lets them go', async () => {
    await append('key-a', 'one');
    const a = recorder();
    const b = recorder();
    const other = recorder();
    await log.subscribe('key-a', 0, a.subscriber);
    await log.subscribe('key-a', 1, b.subscriber);
    await log.subscribe('key-b', 0, other.subscriber);
    log.closeSession('key-a');
    assert.deepEqual([a.ended, b.ended, other.ended], [true, true, false]);
    assert.equal(log.subscriberCount('key-a'), 0);
    assert.equal(log.subscriberCount('key-b'), 1);
    await append('key-b', 'still live');
    assert.equal(other.events.length, 1);
  });
});
