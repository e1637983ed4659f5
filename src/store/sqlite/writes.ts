/**
 * The SQLite store's own ways of creating a session, submitting a task and
 * claiming tasks: each is one transaction, and SQLite runs them one at a time
 * (BEGIN IMMEDIATE, one connection), so each sees all that came before it.
 */
import type { Session, Task } from '../../core/model.ts';
import type { Db } from '../schema.ts';
import { claimableHeads, insertSession, insertTask, startTasks } from '../shared/index.ts';

export async function createSession(
  db: Db, session: Session, limits: { maxSessions: number },
): Promise<{ session: Session; created: boolean }> {
  return db.transaction().execute((trx) => insertSession(trx, session, limits));
}

export async function enqueueTask(
  db: Db, task: Task, limits: { maxQueued: number },
): Promise<{ task: Task; created: boolean }> {
  // Concurrent submits with one key see each other, so exactly one inserts.
  return db.transaction().execute((trx) => insertTask(trx, task, limits));
}

export async function claimTasks(db: Db, runnerId: string, limit: number, now: number): Promise<Task[]> {
  if (!(limit >= 1)) return [];
  return db.transaction().execute(async (trx) => {
    const heads = await claimableHeads(trx, runnerId, limit).execute();
    return startTasks(trx, heads, runnerId, now);
  });
}
