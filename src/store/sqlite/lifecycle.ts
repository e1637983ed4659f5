/** Moving tasks through their statuses: claim, finish, abort, interrupt. */
import { sql } from 'kysely';
import { RunnerError, type ErrorBody } from '../../core/errors.ts';
import type { SessionActivity, TaskOutcome } from '../../core/ports/store.ts';
import { addUsage, emptyUsage, type PendingInput, type Task, type TokenUsage } from '../../core/model.ts';
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

export async function finishTask(db: Db, taskId: string, runnerId: string, outcome: TaskOutcome, activity: SessionActivity): Promise<boolean> {
  if (!isFinal(outcome.status)) {
    throw new RunnerError('INTERNAL', `finishTask needs a final status, not ${String(outcome.status)}.`);
  }
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('tasks').select(['session_key', 'status', 'runner_id', 'cost_usd', 'usage'])
      .where('id', '=', taskId).executeTakeFirst();
    if (!row) return false;
    const ours = row.status === 'running' && row.runner_id === runnerId;
    // Queued, or running for another runner: not this runner's to end, nor to count.
    if (!ours && !isFinal(row.status)) return false;
    // The calls were counted one by one as they ended; only what none of them recorded is added now.
    // (More recorded than the meter says: a call metered after the meter was read. The record wins.)
    const recorded = row.cost_usd ?? 0;
    const unrecorded = Math.max(0, outcome.costUsd - recorded);
    const spend = recorded > outcome.costUsd ? { cost_usd: recorded, usage: row.usage } : { cost_usd: outcome.costUsd, usage: toJson(outcome.usage) };
    await trx.updateTable('sessions')
      .set((eb) => ({
        total_cost_usd: eb('total_cost_usd', '+', unrecorded),
        turns: eb('turns', '+', activity.turn ? 1 : 0),
        last_activity_at: outcome.finishedAt,
        ...(activity.agentSessionId !== undefined ? { agent_session_id: activity.agentSessionId } : {}),
      }))
      .where('key', '=', row.session_key)
      .execute();
    if (!ours) {
      // Ended elsewhere: its status stays, but what it spent is all there.
      if (unrecorded > 0) await trx.updateTable('tasks').set(spend).where('id', '=', taskId).execute();
      return false;
    }
    await trx.updateTable('tasks')
      .set({
        status: outcome.status,
        finished_at: outcome.finishedAt,
        ...spend,
        duration_ms: outcome.durationMs,
        tools: JSON.stringify(outcome.tools),
        output: toJson(outcome.output),
        error: toJson(outcome.error),
        resumed: outcome.resumed ? 1 : 0,
        sealed_env: null,
        pending_input: null,
      })
      .where('id', '=', taskId)
      .execute();
    return true;
  });
}

export async function recordTaskSpend(db: Db, taskId: string, spend: { costUsd: number; usage: TokenUsage }): Promise<void> {
  await db.transaction().execute(async (trx) => {
    // Whatever the task's status: a call metered after its end (cut, then answered) was still paid for.
    const row = await trx.selectFrom('tasks').select(['session_key', 'cost_usd', 'usage'])
      .where('id', '=', taskId).where('status', '!=', 'queued').executeTakeFirst();
    if (!row) return;
    const usage = addUsage(row.usage ? (JSON.parse(row.usage) as TokenUsage) : emptyUsage(), spend.usage);
    await trx.updateTable('tasks').set({ cost_usd: (row.cost_usd ?? 0) + spend.costUsd, usage: JSON.stringify(usage) })
      .where('id', '=', taskId).execute();
    await trx.updateTable('sessions').set((eb) => ({ total_cost_usd: eb('total_cost_usd', '+', spend.costUsd) }))
      .where('key', '=', row.session_key).execute();
  });
}

/** A running task waits for a person (pending not empty: awaiting_input) or goes on (empty: running). */
export async function setPendingInput(db: Db, taskId: string, pending: PendingInput[]): Promise<void> {
  await db.updateTable('tasks').set({ pending_input: pending.length > 0 ? JSON.stringify(pending) : null })
    .where('id', '=', taskId).where('status', '=', 'running').execute();
}

export async function recordTaskTool(db: Db, taskId: string, tool: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('tasks').select('tools').where('id', '=', taskId).where('status', '=', 'running').executeTakeFirst();
    if (!row) return;
    const tools = JSON.parse(row.tools) as string[];
    if (tools.includes(tool)) return;
    await trx.updateTable('tasks').set({ tools: JSON.stringify([...tools, tool]) }).where('id', '=', taskId).execute();
  });
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
        pending_input: null,
        duration_ms: sql<number>`case when started_at is null or started_at > ${now} then 0 else ${now} - started_at end`,
      })
      .where('seq', 'in', rows.map((r) => r.seq)).where('status', '=', 'running')
      .execute();
    return rows.map(toTask);
  });
}
