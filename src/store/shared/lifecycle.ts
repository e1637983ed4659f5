/**
 * Moving tasks through their statuses after the claim: finish, abort,
 * interrupt; what a running task spends and uses. The same in every dialect:
 * rows read to be changed are locked (FOR UPDATE) for PostgreSQL, whose
 * transactions run side by side; SQLite runs one at a time and drops the clause.
 */
import { sql } from 'kysely';
import { RunnerError, type ErrorBody } from '../../core/errors.ts';
import type { SessionActivity, TaskOutcome } from '../../core/ports/store.ts';
import { addUsage, emptyUsage, type PendingInput, type Task, type TokenUsage } from '../../core/model.ts';
import { isFinal } from '../../core/task-status.ts';
import { toJson, toTask, type Db } from '../schema.ts';

export async function finishTask(db: Db, taskId: string, runnerId: string, outcome: TaskOutcome, activity: SessionActivity): Promise<boolean> {
  if (!isFinal(outcome.status)) {
    throw new RunnerError('INTERNAL', `finishTask needs a final status, not ${String(outcome.status)}.`);
  }
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('tasks').select(['session_key', 'status', 'runner_id', 'cost_usd', 'usage'])
      .where('id', '=', taskId).forUpdate().executeTakeFirst();
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
      .where('id', '=', taskId).where('status', '!=', 'queued').forUpdate().executeTakeFirst();
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
    const row = await trx.selectFrom('tasks').select('tools').where('id', '=', taskId).where('status', '=', 'running').forUpdate().executeTakeFirst();
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
  return db.transaction().execute((trx) => interruptRunning(trx, runnerId, error, now));
}

/** In the caller's transaction: running tasks (of one runner, or of any when null) become interrupted; returns them as they were. */
export async function interruptRunning(trx: Db, runnerId: string | null, error: ErrorBody, now: number): Promise<Task[]> {
  let select = trx.selectFrom('tasks').selectAll().where('status', '=', 'running');
  if (runnerId !== null) select = select.where('runner_id', '=', runnerId);
  const rows = await select.orderBy('started_at').orderBy('seq').forUpdate().execute();
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
}
