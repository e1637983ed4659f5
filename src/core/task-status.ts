/**
 * Task statuses, the transitions between them, and the one mapping from each
 * way a task can fail to the status it ends in.
 *
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
  'queued', 'running', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded',
] as const;
export type TaskStatus = (typeof taskStatuses)[number];
export type FinalTaskStatus = Exclude<TaskStatus, 'queued' | 'running'>;

const transitions: Record<TaskStatus, readonly TaskStatus[]> = {
  queued: ['running', 'aborted'],
  running: ['succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded'],
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

/** Every error code a running task can end with, and the status it ends in. */
export const failureStatus = {
  TASK_ABORTED: 'aborted',
  TASK_INTERRUPTED: 'interrupted',
  TASK_TIMEOUT: 'timed_out',
  BUDGET_EXCEEDED: 'budget_exceeded',
  MAX_TURNS_REACHED: 'failed',
  OUTPUT_INVALID: 'failed',
  MODEL_ERROR: 'failed',
  MODEL_CREDENTIALS_MISSING: 'failed',
  AGENT_CRASHED: 'failed',
  SANDBOX_LIMIT: 'failed',
  SANDBOX_UNAVAILABLE: 'failed',
  SANDBOX_IMAGE_MISSING: 'failed',
  INTERNAL: 'failed',
} as const satisfies Partial<Record<ErrorCode, FinalTaskStatus>>;

export function statusForFailure(code: ErrorCode): FinalTaskStatus {
  return (failureStatus as Partial<Record<ErrorCode, FinalTaskStatus>>)[code] ?? 'failed';
}
