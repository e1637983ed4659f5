/** The per-session event logs: append with seq, read after a seq, trim. The same in every dialect. */
import { sql, type Insertable } from 'kysely';
import { RunnerError } from '../../core/errors.ts';
import type { NewEvent, StoredEvent } from '../../core/events.ts';
import type { EventBounds, RetentionPolicy } from '../../core/ports/store.ts';
import { toEvent, type Db, type EventsTable } from '../schema.ts';

/** 6 columns a row: well under the limit of bound parameters a statement (SQLite 32766, PostgreSQL 65535). */
const INSERT_CHUNK = 500;

export async function appendEvents(db: Db, events: NewEvent[], now: number): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e.sessionKey, (counts.get(e.sessionKey) ?? 0) + 1);
  return db.transaction().execute(async (trx) => {
    // Reserve each session's block of seqs on the session row: the counter
    // outlives trimmed and deleted events, so a seq is never handed out twice.
    // PostgreSQL: the update locks the row until commit, so appends to one
    // session commit in seq order; rows are taken in key order, so two batches
    // of the same sessions never wait for each other in a circle.
    const next = new Map<string, number>();
    for (const [key, n] of [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const row = await trx.updateTable('sessions')
        .set((eb) => ({ last_event_seq: eb('last_event_seq', '+', n) }))
        .where('key', '=', key)
        .returning('last_event_seq')
        .executeTakeFirst();
      if (!row) throw new RunnerError('SESSION_NOT_FOUND', `No session with key ${key}.`);
      next.set(key, row.last_event_seq - n + 1);
    }
    const stored: StoredEvent[] = events.map((e) => {
      const seq = next.get(e.sessionKey) ?? 0;
      next.set(e.sessionKey, seq + 1);
      return { sessionKey: e.sessionKey, taskId: e.taskId, type: e.type, data: e.data, seq, ts: now } as StoredEvent;
    });
    const rows: Insertable<EventsTable>[] = stored.map((e) => ({
      session_key: e.sessionKey, seq: e.seq, task_id: e.taskId, type: e.type,
      data: JSON.stringify(e.data) ?? 'null', ts: e.ts,
    }));
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
      await trx.insertInto('events').values(rows.slice(i, i + INSERT_CHUNK)).execute();
    }
    return stored;
  });
}

export async function readEvents(db: Db, sessionKey: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
  if (!(limit >= 1)) return [];
  const rows = await db.selectFrom('events').selectAll()
    .where('session_key', '=', sessionKey).where('seq', '>', afterSeq)
    .orderBy('seq').limit(Math.floor(limit)).execute();
  return rows.map(toEvent);
}

export async function eventBounds(db: Db, sessionKey: string): Promise<EventBounds> {
  const row = await db.selectFrom('sessions as s')
    .select((eb) => [
      's.last_event_seq',
      eb.selectFrom('events as e').select((e) => e.fn.min('e.seq').as('m'))
        .whereRef('e.session_key', '=', 's.key').as('first_seq'),
    ])
    .where('s.key', '=', sessionKey)
    .executeTakeFirst();
  return { firstSeq: Number(row?.first_seq ?? 0), lastSeq: row?.last_event_seq ?? 0 };
}

/**
 * Rows trimEvents deletes a statement. node:sqlite is synchronous: a delete
 * holds the whole process, so a big backlog goes in bounded steps, with the
 * event loop (and other queries) served between them; PostgreSQL holds its
 * row locks for shorter that way too.
 */
const TRIM_BATCH = 5_000;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function trimEvents(db: Db, policy: RetentionPolicy, now: number): Promise<number> {
  let dropped = 0;
  if (Number.isFinite(policy.maxEventAgeMs)) {
    const cutoff = now - policy.maxEventAgeMs;
    for (;;) {
      // The next batch of old events by the ts index, deleted by primary key.
      const r = await db.deleteFrom('events')
        .where((eb) => eb(eb.refTuple('session_key', 'seq'), 'in',
          eb.selectFrom('events').select(['session_key', 'seq']).where('ts', '<', cutoff).limit(TRIM_BATCH)
            .$asTuple('session_key', 'seq')))
        .executeTakeFirst();
      const n = Number(r.numDeletedRows);
      dropped += n;
      if (n < TRIM_BATCH) break;
      await yieldToEventLoop();
    }
  }
  if (Number.isFinite(policy.maxEventsPerSession)) {
    const keep = Math.max(0, Math.floor(policy.maxEventsPerSession));
    // Seqs are unique and at most last_event_seq, so keeping only those above
    // last_event_seq - keep leaves at most `keep`, the newest (seqs are handed
    // out consecutively). One index probe a session finds those over it.
    const over = await db.selectFrom('sessions as s').select(['s.key', 's.last_event_seq'])
      .where((eb) => eb.exists(
        eb.selectFrom('events as e').select(sql.lit(1).as('one'))
          .whereRef('e.session_key', '=', 's.key')
          .where('e.seq', '<=', eb('s.last_event_seq', '-', keep)),
      ))
      .execute();
    for (const s of over) {
      const last = s.last_event_seq - keep;
      for (;;) {
        // The table has no rowid: a batch is a range of at most TRIM_BATCH seqs, from the session's first.
        const first = await db.selectFrom('events').select((eb) => eb.fn.min('seq').as('m'))
          .where('session_key', '=', s.key).executeTakeFirst();
        if (first?.m == null || Number(first.m) > last) break;
        const r = await db.deleteFrom('events')
          .where('session_key', '=', s.key).where('seq', '>=', Number(first.m))
          .where('seq', '<=', Math.min(last, Number(first.m) + TRIM_BATCH - 1))
          .executeTakeFirst();
        dropped += Number(r.numDeletedRows);
        await yieldToEventLoop();
      }
    }
  }
  return dropped;
}

export async function taskFirstEventSeq(db: Db, sessionKey: string, taskId: string): Promise<number | null> {
  const row = await db.selectFrom('events').select((eb) => eb.fn.min('seq').as('first'))
    .where('session_key', '=', sessionKey).where('task_id', '=', taskId)
    .executeTakeFirst();
  return row?.first == null ? null : Number(row.first);
}
