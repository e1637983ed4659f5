/**
 * Task statuses, the transitions between them, and the one mapping from each
 * way a task can fail to the status it ends in.
 *
 *                awaiting_input  (a question to a human; answered: running again)
 *                   ▲ │
 *   queued ──► running ──► succeeded
 *     │           ├──────► failed | timed_out | budget_exceeded
 *     │           ├──────► aborted        (abort request)
 *     │           └──────► interrupted    (server crash or shutdown; never re-run silently)
 *     └─────────► aborted                 (session aborted, reset or deleted while waiting)
 *
 * Queued tasks survive a restart and run when the server is back.
 */
import type { ErrorCode } from './errors.ts';

export const taskStatuses = [
  'queued', 'running', 'awaiting_input', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded',
] as const;
export type TaskStatus = (typeof taskStatuses)[number];
export type FinalTaskStatus = Exclude<TaskStatus, 'queued' | 'running' | 'awaiting_input'>;

const transitions: Record<TaskStatus, readonly TaskStatus[]> = {
  queued: ['running', 'aborted'],
  running: ['awaiting_input', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded'],
  awaiting_input: ['running', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded'],
  succeeded: [],
  failed: [],
  aborted: [],
  interrupted: [],
  timed_out: [],
  budget_exceeded: [],
};

export function isFinal(status: TaskStatus): status is FinalTaskStatus {
  return transitions[status].length === 0;
}

/** Started and not ended: running, or paused on a question to a human (it holds its session all the same). */
export function isActive(status: TaskStatus): boolean {
  return status === 'running' || status === 'awaiting_input';
}

/**
 * The status a task ends in for each error code: every code has one, so a
 * new code without a status does not compile. The first group are the ways a
 * running task ends; codes that only refuse a request (a task never ends with
 * them today) end a task `failed` should one ever carry them.
 */
export const failureStatus: Readonly<Record<ErrorCode, FinalTaskStatus>> = {
  TASK_ABORTED: 'aborted',
  TASK_INTERRUPTED: 'interrupted',
  SHUTTING_DOWN: 'interrupted',
  TASK_TIMEOUT: 'timed_out',
  INPUT_TIMEOUT: 'timed_out',
  BUDGET_EXCEEDED: 'budget_exceeded',
  MAX_TURNS_REACHED: 'failed',
  OUTPUT_INVALID: 'failed',
  MODEL_ERROR: 'failed',
  MODEL_CREDENTIALS_MISSING: 'failed',
  AGENT_CRASHED: 'failed',
  SANDBOX_LIMIT: 'failed',
  DISK_QUOTA_EXCEEDED: 'failed',
  SANDBOX_UNAVAILABLE: 'failed',
  SANDBOX_BUSY: 'failed',
  SANDBOX_IMAGE_MISSING: 'failed',
  NODE_UNREACHABLE: 'failed',
  DATABASE_UNAVAILABLE: 'failed',
  INTERNAL: 'failed',
  // Refusals of a request.
  INVALID_REQUEST: 'failed',
  OVERRIDE_NOT_ALLOWED: 'failed',
  INVALID_SESSION_ID: 'failed',
  INVALID_ENV: 'failed',
  INVALID_PATH: 'failed',
  INVALID_SCHEMA: 'failed',
  WEBHOOK_NOT_CONFIGURED: 'failed',
  WEBHOOK_TARGET_NOT_ALLOWED: 'failed',
  UNAUTHORIZED: 'failed',
  HOST_NOT_ALLOWED: 'failed',
  ORIGIN_NOT_ALLOWED: 'failed',
  SESSION_NOT_FOUND: 'failed',
  TASK_NOT_FOUND: 'failed',
  FILE_NOT_FOUND: 'failed',
  AGENT_NOT_FOUND: 'failed',
  ROUTE_NOT_FOUND: 'failed',
  AGENT_MISMATCH: 'failed',
  AGENT_REQUIRED: 'failed',
  IDEMPOTENCY_CONFLICT: 'failed',
  INPUT_NOT_PENDING: 'failed',
  PAYLOAD_TOO_LARGE: 'failed',
  QUEUE_FULL: 'failed',
  RATE_LIMITED: 'failed',
  SESSION_LIMIT_REACHED: 'failed',
};

export function statusForFailure(code: ErrorCode): FinalTaskStatus {
  return failureStatus[code];
}
