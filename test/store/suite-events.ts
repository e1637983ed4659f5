/** Store contract: the per-session event logs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NewEvent } from '../../src/core/events.ts';
import type { Store } from '../../src/core/ports/store.ts';
import { makeSession } from './fixtures.ts';

function text(sessionKey: string, t: string): NewEvent<'text'> {
  return { sessionKey, taskId: 'task-1', type: 'text', data: { text: t } };
}

async function sessions(store: Store, ...names: string[]): Promise<void> {
  for (const n of names) await store.createSession(makeSession(n), { maxSessions: 100 });
}

export function defineEventTests(getStore: () => Store): void {
  test('appendEvents numbers each session from 1, in order, across sessions and batches', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b');
    const first = await store.appendEvents([text('key-a', 'a1'), text('key-b', 'b1'), text('key-a', 'a2')], 1_000);
    assert.deepEqual(first, [
      { sessionKey: 'key-a', taskId: 'task-1', type: 'text', data: { text: 'a1' }, seq: 1, ts: 1_000 },
      { sessionKey: 'key-b', taskId: 'task-1', type: 'text', data: { text: 'b1' }, seq: 1, ts: 1_000 },
      { sessionKey: 'key-a', taskId: 'task-1', type: 'text', data: { text: 'a2' }, seq: 2, ts: 1_000 },
    ]);
    const second = await store.appendEvents([
      { sessionKey: 'key-a', taskId: null, type: 'session_reset', data: {} },
      { sessionKey: 'key-a', taskId: 't9', type: 'tool_end', data: { tool: 'Bash', result: 'ok', toolUseId: 'u1', isError: false } },
    ], 2_000);
    assert.deepEqual(second.map((e) => e.seq), [3, 4]);
    assert.deepEqual(await store.appendEvents([], 3_000), []);
    const all = await store.readEvents('key-a', 0, 100);
    assert.deepEqual(all, [first[0], first[2], ...second]);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 1, lastSeq: 4 });
    assert.deepEqual(await store.eventBounds('key-b'), { firstSeq: 1, lastSeq: 1 });
  });

  test('concurrent appendEvents never reuse or skip a seq', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b');
    const batches = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      store.appendEvents([text('key-a', `${i}.1`), text('key-b', `${i}`), text('key-a', `${i}.2`)], 1_000 + i)));
    const seqsA = batches.flat().filter((e) => e.sessionKey === 'key-a').map((e) => e.seq).sort((x, y) => x - y);
    assert.deepEqual(seqsA, Array.from({ length: 20 }, (_, i) => i + 1));
    for (const batch of batches) assert.ok(batch[0]!.seq < batch[2]!.seq, 'in order within a batch');
    const stored = await store.readEvents('key-a', 0, 100);
    assert.deepEqual(stored.map((e) => e.seq), seqsA);
    assert.deepEqual(await store.eventBounds('key-b'), { firstSeq: 1, lastSeq: 10 });
  });

  test('appendEvents for an unknown session appends nothing', async () => {
    const store = getStore();
    await sessions(store, 'a');
    await assert.rejects(store.appendEvents([text('key-a', 'x'), text('key-none', 'y')], 1_000));
    assert.deepEqual(await store.readEvents('key-a', 0, 10), []);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 0, lastSeq: 0 });
  });

  test('readEvents returns events after a seq, oldest first, up to limit, of one session', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b');
    await store.appendEvents(Array.from({ length: 10 }, (_, i) => text('key-a', `${i + 1}`)), 1_000);
    await store.appendEvents([text('key-b', 'other')], 1_000);
    const page = await store.readEvents('key-a', 4, 3);
    assert.deepEqual(page.map((e) => [e.seq, e.data]), [[5, { text: '5' }], [6, { text: '6' }], [7, { text: '7' }]]);
    assert.deepEqual((await store.readEvents('key-a', 8, 100)).map((e) => e.seq), [9, 10]);
    assert.deepEqual(await store.readEvents('key-a', 10, 100), []);
    assert.deepEqual(await store.readEvents('key-none', 0, 100), []);
  });

  test('eventBounds is 0/0 before any event and for unknown sessions', async () => {
    const store = getStore();
    await sessions(store, 'a');
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 0, lastSeq: 0 });
    assert.deepEqual(await store.eventBounds('key-none'), { firstSeq: 0, lastSeq: 0 });
  });

  test('trimEvents keeps the newest maxEventsPerSession events of each session', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b', 'c');
    await store.appendEvents(Array.from({ length: 10 }, (_, i) => text('key-a', `${i + 1}`)), 1_000);
    await store.appendEvents(Array.from({ length: 3 }, (_, i) => text('key-b', `${i + 1}`)), 1_000);
    const dropped = await store.trimEvents({ maxEventsPerSession: 4, maxEventAgeMs: 1e9 }, 2_000);
    assert.equal(dropped, 6);
    assert.deepEqual((await store.readEvents('key-a', 0, 100)).map((e) => e.seq), [7, 8, 9, 10]);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 7, lastSeq: 10 });
    assert.deepEqual(await store.eventBounds('key-b'), { firstSeq: 1, lastSeq: 3 });
    assert.equal(await store.trimEvents({ maxEventsPerSession: 4, maxEventAgeMs: 1e9 }, 2_000), 0);
    // Numbering goes on after a trim.
    assert.deepEqual((await store.appendEvents([text('key-a', 'next')], 3_000)).map((e) => e.seq), [11]);
  });

  test('trimEvents drops events older than maxEventAgeMs, and seqs are never reused', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b');
    await store.appendEvents([text('key-a', 'old1'), text('key-a', 'old2'), text('key-b', 'old')], 1_000);
    await store.appendEvents([text('key-a', 'new')], 5_000);
    const dropped = await store.trimEvents({ maxEventsPerSession: 100, maxEventAgeMs: 2_000 }, 6_000);
    assert.equal(dropped, 3);
    assert.deepEqual((await store.readEvents('key-a', 0, 100)).map((e) => e.data), [{ text: 'new' }]);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 3, lastSeq: 3 });
    assert.deepEqual(await store.eventBounds('key-b'), { firstSeq: 0, lastSeq: 1 }, 'none stored, last seq kept');
    assert.deepEqual((await store.appendEvents([text('key-b', 'again')], 7_000)).map((e) => e.seq), [2]);
    // After a reset too.
    await store.resetSession('key-b', 8_000);
    assert.deepEqual((await store.appendEvents([text('key-b', 'after reset')], 8_000)).map((e) => e.seq), [3]);
  });

  test('trimEvents drops a backlog of 50 000 events in steps, serving other queries in between', async () => {
    const store = getStore();
    await sessions(store, 'a', 'b', 'c');
    await store.appendEvents(Array.from({ length: 30_000 }, (_, i) => text('key-a', `old ${i}`)), 1_000);
    await store.appendEvents(Array.from({ length: 22_000 }, (_, i) => text('key-b', `many ${i}`)), 5_000);
    await store.appendEvents([text('key-c', 'kept')], 5_000);

    let trimmed = false;
    const trim = store.trimEvents({ maxEventsPerSession: 2_000, maxEventAgeMs: 2_000 }, 6_000)
      .then((dropped) => { trimmed = true; return dropped; });
    // Issued after the trim started: it must not wait for all of it (after it, key-a has no event left).
    const during = await store.readEvents('key-a', 0, 1);
    assert.equal(trimmed, false, 'the read waited for the whole trim');
    assert.equal(during.length, 1, 'the read ran mid-trim, with old events of key-a still there');
    assert.ok(during[0]!.seq >= 1 && during[0]!.seq <= 30_000, `first seq ${during[0]!.seq}`);

    assert.equal(await trim, 30_000 + 20_000);
    assert.deepEqual(await store.eventBounds('key-a'), { firstSeq: 0, lastSeq: 30_000 });
    assert.deepEqual(await store.eventBounds('key-b'), { firstSeq: 20_001, lastSeq: 22_000 });
    assert.deepEqual((await store.readEvents('key-b', 0, 3)).map((e) => e.data), [{ text: 'many 20000' }, { text: 'many 20001' }, { text: 'many 20002' }]);
    assert.deepEqual(await store.eventBounds('key-c'), { firstSeq: 1, lastSeq: 1 });
    assert.equal(await store.trimEvents({ maxEventsPerSession: 2_000, maxEventAgeMs: 2_000 }, 6_000), 0);
  });
}
