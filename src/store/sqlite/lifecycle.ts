/** Moving tasks through their statuses: claim, finish, abort, interrupt. */
import { sql } from 'kysely';
import { RunnerError, type ErrorBody } from '../../core/errors.ts';
import type { TaskOutcome } from '../../core/ports/store.ts';
import type { Task } from '../../core/model.ts';
import { isFinal } from '../../core/task-status.ts';
import { toJson, toTask, type Db } from './schema.ts';

export async function claimTasks(db: Db, runnerId: string, limit: number, now: number): Promise<Task[]> {
  if (!(limit >= 1)) return [];
  return db.transaction().execute(async (trx) => {
    // Each idle session's head task; the sessions served longest ago first, so
    // a session with a long backlog gets one task per round like any other.
    const heads = await trx.selectFrom('tasks as t')
      .innerJoin('sessions as s', 's.key', 't.session_key')
      .select(['t.seq', 't.session_key'])
      .where('t.status', '=', 'queued')
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
      .limit(Math.floor(limit))
      .execute();
    if (heads.length === 0) return [];
    const seqs = heads.map((h) => h.seq);
    const rows = await trx.updateTable('tasks')
      .set({ status: 'running', runner_id: runnerId, started_at: now })
      .where('seq', 'in', seqs).where('status', '=', 'queued')
      .returningAll()
      .execute();
    await trx.updateTable('sessions').set({ last_served_at: now })
      .where('key', 'in', heads.map((h) => h.session_key)).execute();
    // RETURNING has no defined order: give the tasks back in claim order.
    const bySeq = new Map(rows.map((r) => [r.seq, r]));
    return seqs.flatMap((s) => {
      const row = bySeq.get(s);
      return row ? [toTask(row)] : [];
    });
  });
}

export async function finishTask(db: Db, taskId: string, runnerId: string, outcome: TaskOutcome): Promise<boolean> {
  if (!isFinal(outcome.status)) {
    throw new RunnerError('INTERNAL', `finishTask needs a final status, not ${String(outcome.status)}.`);
  }
  const result = await db.updateTable('tasks')
    .set({
      status: outcome.status,
      finished_at: outcome.finishedAt,
      cost_usd: outcome.costUsd,
      duration_ms: outcome.durationMs,
      tools: JSON.stringify(outcome.tools),
      output: toJson(outcome.output),
      error: toJson(outcome.error),
      resumed: outcome.resumed ? 1 : 0,
      usage: toJson(outcome.usage),
      sealed_env: null,
    })
    .where('id', '=', taskId).where('status', '=', 'running').where('runner_id', '=', runnerId)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export async function abortQueuedTasks(
  db: Db, target: { sessionKey: string } | { taskId: string }, error: ErrorBody, now: number,
): Promise<string[]> {
  let query = db.updateTable('tasks')
    .set({ status: 'aborted', finished_at: now, error: JSON.stringify(error), sealed_env: null })
    .where('status', '=', 'queued');
  query = 'taskId' in target ? query.where('id', '=', target.taskId) : query.where('session_key', '=', target.sessionKey);
  const rows = await query.returning(['id', 'created_at', 'seq']).execute();
  rows.sort((a, b) => a.created_at - b.created_at || a.seq - b.seq);
  return rows.map((r) => r.id);
}

export async function interruptRunningTasks(
  db: Db, runnerId: string | null, error: ErrorBody, now: number,
): Promise<Task[]> {
  return db.transaction().execute(async (trx) => {
    let select = trx.selectFrom('tasks').selectAll().where('status', '=', 'running');
    if (runnerId !== null) select = select.where('runner_id', '=', runnerId);
    const rows = await select.orderBy('started_at').orderBy('seq').execute();
    if (rows.length === 0) return [];
    await trx.updateTable('tasks')
      .set({
        status: 'interrupted',
        finished_at: now,
        error: JSON.stringify(error),
        sealed_env: null,
        duration_ms: sql<number>`case when started_at is null or started_at > ${now} then 0 else ${now} - started_at end`,
      })
      .where('seq', 'in', rows.map((r) => r.seq)).where('status', '=', 'running')
      .execute();
    return rows.map(toTask);
  });
}
