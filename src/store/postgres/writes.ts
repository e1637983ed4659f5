/**
 * The PostgreSQL store's own ways of creating a session and submitting a
 * task. Transactions run side by side (READ COMMITTED) on several nodes:
 * each limit is counted under a lock that every competing write takes too,
 * and a unique index that still catches a duplicate answers what it means.
 */
import { sql } from 'kysely';
import type { Session, Task } from '../../core/model.ts';
import type { Db } from '../schema.ts';
import { findByIdempotencyKey, insertSession, insertTask, sameRequest } from '../shared/index.ts';
import { findSession } from '../shared/sessions.ts';
import { ADVISORY_LOCKS, uniqueViolation } from './connection.ts';

export async function createSession(
  db: Db, session: Session, limits: { maxSessions: number },
): Promise<{ session: Session; created: boolean }> {
  // Most calls find the session: no lock for them.
  const stored = await findSession(db, session.tenantId, session.id);
  if (stored) return { session: stored, created: false };
  try {
    return await db.transaction().execute(async (trx) => {
      // Every creation counts, then inserts, under one lock (released at commit): the count sees every session committed before.
      const [space, key] = ADVISORY_LOCKS.sessionCount;
      await sql`select pg_advisory_xact_lock(${sql.lit(space)}, ${sql.lit(key)})`.execute(trx);
      return insertSession(trx, session, limits);
    });
  } catch (error) {
    // The same (tenant, id) inserted meanwhile without the lock (none of this store's statements do): it is that session.
    if (uniqueViolation(error) === 'sessions_tenant_id_id_key') {
      const existing = await findSession(db, session.tenantId, session.id);
      if (existing) return { session: existing, created: false };
    }
    throw error;
  }
}

export async function enqueueTask(
  db: Db, task: Task, limits: { maxQueued: number },
): Promise<{ task: Task; created: boolean }> {
  try {
    // insertTask locks the session row first: submits to one session take turns.
    return await db.transaction().execute((trx) => insertTask(trx, task, limits));
  } catch (error) {
    // The index on (session, idempotency key) caught a duplicate: the submit is a retry of the stored task, or a conflict.
    if (uniqueViolation(error) === 'tasks_idempotency_key' && task.idempotencyKey != null) {
      const existing = await findByIdempotencyKey(db, task.sessionKey, task.idempotencyKey);
      if (existing) return sameRequest(existing, task);
    }
    throw error;
  }
}
