/**
 * The webhook outbox: deliveries stored with their tasks, due once the task
 * is final, and the attempts made for them. Implemented by the store
 * (src/store/shared/webhooks.ts, for SQLite and PostgreSQL); driven by src/webhooks/dispatcher.ts.
 */
import type { Task } from '../model.ts';

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface WebhookAttempt {
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

export interface WebhookDelivery {
  taskId: string;
  url: string;
  /** Null until the first attempt fixes the id, type and body every retry sends. */
  webhookId: string | null;
  type: string | null;
  body: string | null;
  status: DeliveryStatus;
  attemptCount: number;
  nextAttemptAt: number;
}

export interface WebhookOutbox {
  /** Pending deliveries whose task is final and whose next attempt is due, oldest first, with their task. */
  dueDeliveries(now: number, limit: number): Promise<Array<{ delivery: WebhookDelivery; task: Task }>>;
  /** When the earliest pending delivery of a final task is due (null: none). */
  nextDueAt(): Promise<number | null>;
  /** Fixes what every attempt sends, the first time only; returns what is stored. */
  fixPayload(taskId: string, payload: { webhookId: string; type: string; body: string }): Promise<{ webhookId: string; type: string; body: string }>;
  /** Stores one attempt and what follows it. */
  recordAttempt(taskId: string, attempt: WebhookAttempt, next: { status: DeliveryStatus; nextAttemptAt: number }): Promise<void>;
  /** The task's deliveries (zero or one today) with their attempts. */
  listDeliveries(taskId: string): Promise<Array<WebhookDelivery & { attempts: WebhookAttempt[] }>>;
}
