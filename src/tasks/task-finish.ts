/**
 * The end of a task that ran here: its outcome stored with its session's
 * totals in one transaction, then told (events, waiters). When the store
 * fails, the task's waiters still hear how it ended.
 *
 * Owns: turning an outcome into the stored end of a task. Must not touch:
 * the running task itself (task-execution.ts), sandboxes or the gateway.
 */
import { publicError, type ErrorBody, type RunnerError } from '../core/errors.ts';
import type { Task } from '../core/model.ts';
import type { TaskMeter } from '../core/ports/model-gateway.ts';
import type { Store } from '../core/ports/store.ts';
import { statusForFailure, type FinalTaskStatus } from '../core/task-status.ts';
import type { Redactor } from '../secrets/redactor.ts';
import type { TaskCompletions } from './completions.ts';
import type { TaskEndings } from './task-endings.ts';

export interface Outcome {
  failure: RunnerError | undefined;
  output: unknown;
  tools: string[];
  meter: TaskMeter;
  agentSessionId: string | null;
  resumed: boolean;
  /** Lets the redactor forget the task's secrets again, once its last event is stored. */
  releaseSecrets?: () => void;
}

export interface TaskFinishDeps {
  store: Store;
  redactor: Redactor;
  completions: TaskCompletions;
  endings: TaskEndings;
  runnerId: string;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

/** The error as the task's record keeps it: secrets out, and engine or internal text only in the log. */
function storedError(deps: TaskFinishDeps, task: Task, failure: RunnerError): ErrorBody {
  const { body, logged } = publicError(failure, task.id);
  if (logged) deps.logger.error({ taskId: task.id, code: failure.code, err: failure.message, details: failure.details }, 'task failed');
  return deps.redactor.redactDeep(body, task.sessionKey);
}

/** Records the outcome and tells it; when the store fails, the task's waiters still hear it. */
export async function finishTask(deps: TaskFinishDeps, task: Task, startedAt: number, outcome: Outcome): Promise<void> {
  const finishedAt = Date.now();
  const { failure, meter } = outcome;
  const status: FinalTaskStatus = failure ? statusForFailure(failure.code) : 'succeeded';
  const ending = {
    status, finishedAt, costUsd: meter.costUsd, durationMs: finishedAt - startedAt, tools: outcome.tools,
    output: failure ? null : deps.redactor.redactDeep(outcome.output, task.sessionKey),
    error: failure ? storedError(deps, task, failure) : null, resumed: outcome.resumed, usage: meter.usage,
  };
  try {
    // With the session's activity in the same transaction: once the task ends, the session's next task
    // may be claimed at once, and it must find the conversation id (a new agent process resumes it) and
    // the activity time (the idle sweep) of this one. The money was spent and the transcript moved on
    // even if the task was ended elsewhere.
    const activity = { turn: meter.modelCalls > 0, agentSessionId: outcome.agentSessionId ?? undefined };
    if (!(await deps.store.finishTask(task.id, deps.runnerId, ending, activity))) {
      if (await deps.store.getTask(task.id)) {
        deps.logger.warn({ taskId: task.id }, 'task was ended elsewhere while it ran here; its outcome is dropped');
      } else {
        // Its session was deleted while it started: its waiters hear it was aborted.
        deps.completions.announce({
          ...task, ...ending, sealedEnv: null, status: 'aborted', error: { code: 'TASK_ABORTED', message: 'The session was deleted.' },
        });
      }
      return;
    }
    await deps.endings.ended((await deps.store.getTask(task.id)) ?? { ...task, ...ending, sealedEnv: null });
  } catch (storeError) {
    // The store failed (its session deleted meanwhile, a full disk): the task's waiters still get its end.
    deps.logger.error({ err: storeError, taskId: task.id }, 'could not store the end of a task');
    deps.completions.announce({ ...task, ...ending, sealedEnv: null });
  }
}
