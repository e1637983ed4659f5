/**
 * The two halves of claimTasks that every dialect shares: which tasks may
 * start, and starting them. How a dialect keeps concurrent claims apart (one
 * transaction at a time, or locked session rows) is its own.
 */
import { sql } from 'kysely';
import type { Task } from '../../core/model.ts';
import { toTask, type Db } from '../schema.ts';

export interface ClaimHead {
  seq: number;
  session_key: string;
}

/**
 * Each claimable session's head task: the oldest queued task of a session
 * with no running task, owned by `runnerId` or by no node; the sessions
 * served longest ago first, so a session with a long backlog gets one task
 * per round like any other (ties: the oldest head first).
 */
export function claimableHeads(trx: Db, runnerId: string, limit: number) {
  return trx.selectFrom('tasks as t')
    .innerJoin('sessions as s', 's.key', 't.session_key')
    .select(['t.seq', 't.session_key'])
    .where('t.status', '=', 'queued')
    .where((eb) => eb.or([eb('s.owner_node', 'is', null), eb('s.owner_node', '=', runnerId)]))
    .where((eb) => eb.not(eb.exists(
      eb.selectFrom('tasks as e').select(sql.lit(1).as('one'))
        .whereRef('e.session_key', '=', 't.session_key')
        .where('e.status', '=', 'queued')
        .where((eb2) => eb2(eb2.refTuple('e.created_at', 'e.seq'), '<', eb2.refTuple('t.created_at', 't.seq'))),
    )))
    .where((eb) => eb.not(eb.exists(
      eb.selectFrom('tasks as r').select(sql.lit(1).as('one'))
        .whereRef('r.session_key', '=', 't.session_key')
        .where('r.status', '=', 'running'),
    )))
    .orderBy('s.last_served_at').orderBy('t.created_at').orderBy('t.seq')
    .limit(Math.floor(limit));
}

/** Starts the given head tasks (those still queued) for runnerId; returns them in the heads' order. */
export async function startTasks(trx: Db, heads: ClaimHead[], runnerId: string, now: number): Promise<Task[]> {
  if (heads.length === 0) return [];
  // Never before the session's last task ended: `now` was read before the claim waited for its locks (and
  // nodes' clocks differ), while the end it waited for may have been stamped later.
  const startedAt = sql<number>`(select case when max(f.finished_at) > ${now} then max(f.finished_at) else ${now} end
    from tasks f where f.session_key = tasks.session_key)`;
  const rows = await trx.updateTable('tasks')
    .set({ status: 'running', runner_id: runnerId, started_at: startedAt })
    .where('seq', 'in', heads.map((h) => h.seq)).where('status', '=', 'queued')
    .returningAll()
    .execute();
  const started = new Set(rows.map((r) => r.session_key));
  await markServed(trx, heads.filter((h) => started.has(h.session_key)), runnerId, now);
  // RETURNING has no defined order: give the tasks back in claim order.
  const bySeq = new Map(rows.map((r) => [r.seq, r]));
  return heads.flatMap((h) => {
    const row = bySeq.get(h.seq);
    return row ? [toTask(row)] : [];
  });
}

/** The sessions of started tasks: served now, and runnerId's from now on (sticky sessions). */
export async function markServed(trx: Db, heads: ClaimHead[], runnerId: string, now: number): Promise<void> {
  if (heads.length === 0) return;
  await trx.updateTable('sessions').set({ last_served_at: now, owner_node: runnerId })
    .where('key', 'in', heads.map((h) => h.session_key)).execute();
}
