/**
 * Webhooks: delivers the end of each task that asked for one, from the
 * durable outbox (src/core/ports/webhook-outbox.ts), signed per Standard
 * Webhooks, retried on a schedule with jitter, never blocking a task or its
 * answer. Owns delivery and retry timing only: it does not touch tasks, their
 * endings or the HTTP API. A delivery due while the runner was down is made
 * at the next start (rows stay pending until an attempt settles them).
 */
import pLimit from 'p-limit';
import type { Task } from '../core/model.ts';
import type { WebhookOutbox } from '../core/ports/webhook-outbox.ts';
import type { FinalTaskStatus } from '../core/task-status.ts';
import { sendWebhook, type AttemptResult } from './sender.ts';
import { newWebhookId, type WebhookSigner } from './signer.ts';

const BATCH = 32;
/** The outbox is looked at this often at least (a missed wake-up costs no more). */
const MAX_SLEEP_MS = 30_000;

export type WebhookEventType = 'task.succeeded' | 'task.failed' | 'task.aborted' | 'task.interrupted';

/** timed_out and budget_exceeded are failures: data.status tells which. */
export function webhookEventType(status: FinalTaskStatus): WebhookEventType {
  if (status === 'succeeded') return 'task.succeeded';
  if (status === 'aborted') return 'task.aborted';
  if (status === 'interrupted') return 'task.interrupted';
  return 'task.failed';
}

/** A wait of `scheduled` ms with jitter, between half of it and all of it (the schedule stays roughly the spec's). */
export function jittered(scheduled: number, random: () => number = Math.random): number {
  return Math.round(scheduled / 2 + random() * (scheduled / 2));
}

/** What follows an attempt: delivered on 2xx; failed on 410 Gone or when the schedule is spent; else the next wait. */
export function afterAttempt(result: AttemptResult, attemptsMade: number, scheduleMs: readonly number[], now: number):
  { status: 'pending' | 'delivered' | 'failed'; nextAttemptAt: number } {
  const code = result.statusCode;
  if (code !== null && code >= 200 && code < 300) return { status: 'delivered', nextAttemptAt: now };
  if (code === 410) return { status: 'failed', nextAttemptAt: now };
  const wait = scheduleMs[attemptsMade - 1];
  if (wait === undefined) return { status: 'failed', nextAttemptAt: now };
  return { status: 'pending', nextAttemptAt: now + jittered(wait) };
}

export interface WebhookDispatcherOptions {
  outbox: WebhookOutbox;
  signer: WebhookSigner | undefined;
  /** The task as GET /tasks/:taskId shows it: the payload's `data`. */
  render: (task: Task) => unknown;
  timeoutMs: number;
  retryScheduleMs: readonly number[];
  allowPrivate: boolean;
  concurrency?: number;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export class WebhookDispatcher {
  private readonly options: WebhookDispatcherOptions;
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Aborts the attempts in flight at stop: they stay pending, for the next start (a new controller each start). */
  private stopping = new AbortController();
  private stopped = true;

  constructor(options: WebhookDispatcherOptions) {
    this.options = options;
    this.limit = pLimit(options.concurrency ?? 8);
  }

  start(): void {
    this.stopped = false;
    // Stopped before (a node that lost and regained the leadership): attempts from now on need a live signal.
    if (this.stopping.signal.aborted) this.stopping = new AbortController();
    this.wake();
  }

  /** A task ended (or a retry came due): look at the outbox soon, without waiting here. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'webhook dispatch failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** Stops looking; lets attempts in flight settle (each is bounded by the timeout). Pending rows wait for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.stopping.abort();
    await this.running;
    await Promise.allSettled([...this.inFlight.values()]);
  }

  private async pass(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (!this.options.signer) return;
    const due = await this.options.outbox.dueDeliveries(Date.now(), BATCH);
    for (const { delivery, task } of due) {
      if (this.inFlight.has(delivery.taskId)) continue;
      const attempt = this.limit(() => this.attempt(delivery.taskId, delivery.url, delivery.attemptCount, task))
        .catch((error: unknown) => this.options.logger.error({ err: error, taskId: delivery.taskId }, 'webhook attempt failed'))
        .finally(() => {
          this.inFlight.delete(delivery.taskId);
          this.wake();
        });
      this.inFlight.set(delivery.taskId, attempt);
    }
    if (this.stopped) return;
    const next = await this.options.outbox.nextDueAt();
    let sleep = next === null ? MAX_SLEEP_MS : Math.min(MAX_SLEEP_MS, Math.max(0, next - Date.now()));
    // A row being attempted still reads as due: a finished attempt wakes the loop, so it need not spin meanwhile.
    if (this.inFlight.size > 0) sleep = Math.max(sleep, 1_000);
    this.timer = setTimeout(() => this.wake(), sleep);
    this.timer.unref();
  }

  private async attempt(taskId: string, url: string, attemptsBefore: number, task: Task): Promise<void> {
    const { outbox, signer, render } = this.options;
    const type = webhookEventType(task.status as FinalTaskStatus);
    // Fixed by the first attempt: every retry sends the same id and the same bytes.
    const payload = await outbox.fixPayload(taskId, {
      webhookId: newWebhookId(), type,
      body: JSON.stringify({ type, timestamp: new Date(task.finishedAt ?? Date.now()).toISOString(), data: render(task) }),
    });
    const at = Date.now();
    const headers = { ...signer!.headers(payload.webhookId, payload.body, new Date(at)) };
    const stop = this.stopping.signal;
    const result = await sendWebhook({
      url, body: payload.body, headers, timeoutMs: this.options.timeoutMs, allowPrivate: this.options.allowPrivate, stop,
    });
    // Cut short by a stop: not an attempt the receiver failed, so not counted (it is made again after the next start).
    if (stop.aborted) return;
    const end = Date.now();
    const next = afterAttempt(result, attemptsBefore + 1, this.options.retryScheduleMs, end);
    await outbox.recordAttempt(taskId, { at, statusCode: result.statusCode, error: result.error, durationMs: end - at }, next);
    if (next.status === 'failed') this.options.logger.warn({ taskId, webhookId: payload.webhookId, statusCode: result.statusCode, error: result.error }, 'webhook delivery failed for good');
  }
}
