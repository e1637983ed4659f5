/** The webhook outbox, the same in every dialect: webhook_deliveries (one per task) and webhook_attempts. */
import type { DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookOutbox } from '../../core/ports/webhook-outbox.ts';
import { taskStatuses, isFinal } from '../../core/task-status.ts';
import { toTask, type Db, type TaskRow } from '../schema.ts';

const finalStatuses = taskStatuses.filter(isFinal);

interface DeliveryRow {
  task_id: string;
  url: string;
  webhook_id: string | null;
  type: string | null;
  body: string | null;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
}

function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    taskId: row.task_id, url: row.url, webhookId: row.webhook_id, type: row.type, body: row.body,
    status: row.status, attemptCount: row.attempts, nextAttemptAt: row.next_attempt_at,
  };
}

export function webhookOutbox(db: Db): WebhookOutbox {
  const pendingOfFinalTasks = () => db.selectFrom('webhook_deliveries as d')
    .innerJoin('tasks as t', 't.id', 'd.task_id')
    .where('d.status', '=', 'pending')
    .where('t.status', 'in', finalStatuses);

  return {
    async dueDeliveries(now, limit) {
      const rows = await pendingOfFinalTasks()
        .where('d.next_attempt_at', '<=', now)
        .selectAll('t')
        .select(['d.task_id as d_task_id', 'd.url as d_url', 'd.webhook_id as d_webhook_id', 'd.type as d_type', 'd.body as d_body',
          'd.status as d_status', 'd.attempts as d_attempts', 'd.next_attempt_at as d_next_attempt_at'])
        .orderBy('d.next_attempt_at').limit(limit).execute();
      return rows.map((row) => ({
        delivery: toDelivery({
          task_id: row.d_task_id, url: row.d_url, webhook_id: row.d_webhook_id, type: row.d_type, body: row.d_body,
          status: row.d_status, attempts: row.d_attempts, next_attempt_at: row.d_next_attempt_at,
        }),
        task: toTask(row as unknown as TaskRow),
      }));
    },

    async nextDueAt() {
      const row = await pendingOfFinalTasks()
        .select((eb) => eb.fn.min<number>('d.next_attempt_at').as('at')).executeTakeFirst();
      return row?.at ?? null;
    },

    async fixPayload(taskId, payload) {
      await db.updateTable('webhook_deliveries')
        .set({ webhook_id: payload.webhookId, type: payload.type, body: payload.body })
        .where('task_id', '=', taskId).where('webhook_id', 'is', null).execute();
      const row = await db.selectFrom('webhook_deliveries').select(['webhook_id', 'type', 'body'])
        .where('task_id', '=', taskId).executeTakeFirstOrThrow();
      return { webhookId: row.webhook_id!, type: row.type!, body: row.body! };
    },

    async recordAttempt(taskId, attempt, next) {
      await db.transaction().execute(async (trx) => {
        const { attempts } = await trx.selectFrom('webhook_deliveries').select('attempts')
          .where('task_id', '=', taskId).forUpdate().executeTakeFirstOrThrow();
        await trx.insertInto('webhook_attempts').values({
          task_id: taskId, n: attempts + 1, at: attempt.at, status_code: attempt.statusCode,
          error: attempt.error, duration_ms: attempt.durationMs,
        }).execute();
        await trx.updateTable('webhook_deliveries')
          .set({ attempts: attempts + 1, status: next.status, next_attempt_at: next.nextAttemptAt })
          .where('task_id', '=', taskId).execute();
      });
    },

    async listDeliveries(taskId) {
      const rows = await db.selectFrom('webhook_deliveries').selectAll().where('task_id', '=', taskId).execute();
      const attempts = await db.selectFrom('webhook_attempts').selectAll().where('task_id', '=', taskId).orderBy('n').execute();
      return rows.map((row) => ({
        ...toDelivery(row),
        attempts: attempts.map((a): WebhookAttempt => ({ at: a.at, statusCode: a.status_code, error: a.error, durationMs: a.duration_ms })),
      }));
    },
  };
}
