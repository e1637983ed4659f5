/**
 * How tasks, sessions and events look on the wire: the domain's objects in
 * the shapes of the contract (src/api), typed by it. The seed's fields come
 * first and keep their names (taskId, sessionId, output, cost, duration,
 * tools, resumed); ours follow.
 */
import type { SessionView as SessionAnswer, TaskAccepted, TaskResult, TaskView } from '../api/index.ts';
import { isErrorCode, publicError, RunnerError, type ErrorBody } from '../core/errors.ts';
import type { StoredEvent } from '../core/events.ts';
import type { Task } from '../core/model.ts';
import type { SessionView } from '../sessions/session-service.ts';

export function taskView(task: Task): TaskView {
  return {
    taskId: task.id,
    sessionId: task.sessionId,
    status: task.status,
    output: task.output ?? null,
    cost: task.costUsd ?? 0,
    duration: task.durationMs ?? 0,
    tools: task.tools,
    resumed: task.resumed ?? false,
    error: taskErrorView(task),
    message: task.message,
    context: task.context,
    usage: task.usage,
    pendingInput: task.pendingInput.map(({ askedAt: _asked, expiresAt, ...input }) => ({ ...input, expiresAt: iso(expiresAt)! })),
    createdAt: iso(task.createdAt),
    startedAt: iso(task.startedAt),
    finishedAt: iso(task.finishedAt),
  };
}

/** A task's stored error; a code an older version wrote, gone from the table, reads as INTERNAL. */
export function storedError(task: Task): RunnerError {
  return task.error && isErrorCode(task.error.code)
    ? new RunnerError(task.error.code, task.error.message, task.error.details)
    : new RunnerError('INTERNAL');
}

/** What a caller may see of a task's error: an opaque one (INTERNAL, SANDBOX_UNAVAILABLE) refers to the task id, without its text. */
export function taskErrorView(task: Task): ErrorBody | null {
  return task.error ? publicError(storedError(task), task.id).body : null;
}

/** The blocking POST /task answer: exactly the seed's shape, plus status. */
export function taskResultView(task: Task): TaskResult {
  const { taskId, sessionId, output, cost, duration, tools, resumed, status } = taskView(task);
  return { taskId, sessionId, output, cost, duration, tools, resumed, status };
}

export function sessionView(session: SessionView): SessionAnswer {
  return {
    sessionId: session.id,
    agent: session.agent,
    state: session.running > 0 ? 'busy' : session.queued > 0 ? 'queued' : 'idle',
    busy: session.busy,
    queueDepth: session.queued,
    turns: session.turns,
    totalCost: session.totalCostUsd,
    agentLive: session.agentLive,
    createdAt: iso(session.createdAt),
    lastActivity: iso(session.lastActivityAt),
    ...(session.lastTaskId !== undefined ? { lastTaskId: session.lastTaskId } : {}),
  };
}

/** What POST /task answers when the task has not ended (wait: false, or a shutdown). */
export function acceptedView(task: Task): TaskAccepted {
  return { taskId: task.id, sessionId: task.sessionId, status: task.status };
}

/** A stream frame: the seed's flat shape ({type, ...fields}) plus seq, taskId and ts. */
export function eventFrame(event: StoredEvent): Record<string, unknown> {
  return { type: event.type, seq: event.seq, taskId: event.taskId, ts: iso(event.ts), ...(event.data as object) };
}

function iso(ms: number): string;
function iso(ms: number | null): string | null;
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
