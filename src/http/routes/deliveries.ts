/** GET /tasks/:taskId/deliveries: the task's webhook deliveries and every attempt (tenant-scoped like the task). */
import { WebhookDeliveryListSchema, type WebhookDeliveryList } from '../../api/index.ts';
import { errorResponses, json, TaskParams, type ZodApp } from '../openapi.ts';
import type { HttpDeps } from '../app.ts';

type DeliveryType = WebhookDeliveryList['deliveries'][number]['type'];

export function deliveryRoutes(app: ZodApp, deps: HttpDeps): void {
  app.get('/tasks/:taskId/deliveries', {
    schema: {
      tags: ['tasks'], summary: 'The task\'s webhook deliveries: status, webhook-id and every attempt', params: TaskParams,
      response: { 200: json(WebhookDeliveryListSchema, 'The deliveries (none when the task asked for no webhook).'), ...errorResponses(['TASK_NOT_FOUND']) },
    },
  }, async (request): Promise<WebhookDeliveryList> => {
    const task = await deps.tasks.get(request.caller.tenantId, request.params.taskId);
    const deliveries = (await deps.webhookOutbox?.listDeliveries(task.id)) ?? [];
    return {
      taskId: task.id,
      deliveries: deliveries.map((d) => ({
        webhookId: d.webhookId,
        url: d.url,
        type: d.type as DeliveryType,
        status: d.status,
        attempts: d.attempts.map((a) => ({ at: new Date(a.at).toISOString(), statusCode: a.statusCode, error: a.error, durationMs: a.durationMs })),
        nextAttemptAt: nextAttemptAt(d.status, d.nextAttemptAt, task.finishedAt),
      })),
    };
  });
}

/** A pending delivery is due at its stored time, or (0: never tried) when its task ends; null once settled or while the task runs. */
function nextAttemptAt(status: string, at: number, taskFinishedAt: number | null): string | null {
  if (status !== 'pending') return null;
  if (at !== 0) return new Date(at).toISOString();
  return taskFinishedAt === null ? null : new Date(taskFinishedAt).toISOString();
}
