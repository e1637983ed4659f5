/**
 * claimTasks on PostgreSQL, where several nodes claim at once. One
 * transaction locks the rows of the sessions it claims (FOR UPDATE SKIP
 * LOCKED: a session another claim holds is left to that claim, never waited
 * for), starts their head tasks and makes them its node's. The partial unique
 * index on running tasks is the last line of defence: a start that collides
 * with it skips that session.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Task } from '../../core/model.ts';
import type { Db } from '../schema.ts';
import { claimableHeads, startTasks, type ClaimHead } from '../shared/index.ts';
import { uniqueViolation } from './connection.ts';

/**
 * Rounds a claim makes at most. SKIP LOCKED also skips a session whose row an
 * event append or a submit holds for a moment; when a round saw such a
 * session, the claim looks again shortly rather than leave it queued until
 * something else wakes the scheduler.
 */
const CLAIM_ROUNDS = 3;
const ROUND_PAUSE_MS = 5;

const ONE_RUNNING = 'tasks_one_running_per_session';

export async function claimTasks(db: Db, runnerId: string, limit: number, now: number): Promise<Task[]> {
  if (!(limit >= 1)) return [];
  const wanted = Math.floor(limit);
  const claimed: Task[] = [];
  for (let round = 1; round <= CLAIM_ROUNDS; round++) {
    const { started, missed } = await claimRound(db, runnerId, wanted - claimed.length, now);
    claimed.push(...started);
    if (!missed || claimed.length >= wanted || round === CLAIM_ROUNDS) break;
    await sleep(ROUND_PAUSE_MS * round);
  }
  return claimed;
}

async function claimRound(db: Db, runnerId: string, limit: number, now: number): Promise<{ started: Task[]; missed: boolean }> {
  return db.transaction().execute(async (trx) => {
    // Only rows that pass the filter are locked: a session of another node, or busy, is never touched.
    const heads = await claimableHeads(trx, runnerId, limit).forUpdate(['s']).skipLocked().execute();
    const started = await startSkippingCollisions(trx, heads, runnerId, now);
    let missed = started.length < heads.length;
    if (!missed && started.length < limit) {
      // Fewer locked than asked for: was a claimable session skipped for its lock?
      let others = claimableHeads(trx, runnerId, 1);
      if (heads.length > 0) others = others.where('t.session_key', 'not in', heads.map((h) => h.session_key));
      missed = (await others.executeTakeFirst()) !== undefined;
    }
    return { started, missed };
  });
}

async function startSkippingCollisions(trx: Db, heads: ClaimHead[], runnerId: string, now: number): Promise<Task[]> {
  if (heads.length === 0) return [];
  try {
    return await inSavepoint(trx, () => startTasks(trx, heads, runnerId, now));
  } catch (error) {
    if (uniqueViolation(error) !== ONE_RUNNING) throw error;
  }
  // A session has a running task after all: start the heads one by one, skipping the sessions that collide.
  const started: Task[] = [];
  for (const head of heads) {
    try {
      started.push(...await inSavepoint(trx, () => startTasks(trx, [head], runnerId, now)));
    } catch (error) {
      if (uniqueViolation(error) !== ONE_RUNNING) throw error;
    }
  }
  return started;
}

/** Runs `body` so that its failure undoes only its own statements, not the transaction's. */
async function inSavepoint<T>(trx: Db, body: () => Promise<T>): Promise<T> {
  await sql`savepoint claim`.execute(trx);
  try {
    const result = await body();
    await sql`release savepoint claim`.execute(trx);
    return result;
  } catch (error) {
    await sql`rollback to savepoint claim`.execute(trx);
    throw error;
  }
}
