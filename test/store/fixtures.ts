/** Records for store tests: complete, so that round trips can be compared whole. */
import type { ErrorBody } from '../../src/core/errors.ts';
import { queuedTask, type Session, type Task } from '../../src/core/model.ts';
import type { SessionActivity, TaskOutcome } from '../../src/core/ports/store.ts';

/** A task's end that changes nothing else on its session. */
export const NO_ACTIVITY: SessionActivity = { turn: false };

export function makeSession(n: number | string, over: Partial<Session> = {}): Session {
  return {
    key: `key-${n}`,
    tenantId: 'tenant-a',
    id: `session-${n}`,
    agent: 'coder',
    agentSessionId: null,
    turns: 0,
    totalCostUsd: 0,
    createdAt: 1_000,
    lastActivityAt: 1_000,
    ...over,
  };
}

export function makeTask(session: Session, id: string, over: Partial<Task> = {}): Task {
  return {
    ...queuedTask({
      id,
      sessionKey: session.key,
      tenantId: session.tenantId,
      sessionId: session.id,
      message: `message of ${id}`,
      context: null,
      sealedEnv: `sealed(${id})`,
      options: {},
      idempotencyKey: null,
      requestHash: null,
      createdAt: 2_000,
    }),
    ...over,
  };
}

export function makeOutcome(over: Partial<TaskOutcome> = {}): TaskOutcome {
  return {
    status: 'succeeded',
    finishedAt: 9_000,
    costUsd: 0.125,
    durationMs: 4_000,
    tools: ['Read', 'Bash'],
    output: { answer: 42, list: [1, 'two', null] },
    error: null,
    resumed: true,
    usage: { inputTokens: 10, outputTokens: 20, cacheCreationInputTokens: 3, cacheReadInputTokens: 4 },
    ...over,
  };
}

export const abortError: ErrorBody = { code: 'TASK_ABORTED', message: 'The task was aborted.' };
export const interruptError: ErrorBody = {
  code: 'TASK_INTERRUPTED', message: 'The task was interrupted by a server restart or shutdown.', details: { reason: 'shutdown' },
};
