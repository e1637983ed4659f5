/**
 * What callers can do with tasks: submit (blocking or not, idempotent),
 * read, list, wait, abort. A task accepted here is in the store before the
 * caller hears back. Throws RunnerError only; the HTTP layer maps codes.
 *
 * Owns (with the rest of src/tasks): the queue and the life of tasks.
 * Must not touch: HTTP, Docker, SQL, or a session's folders (sessions' own).
 */
import { createHash } from 'node:crypto';
import { RunnerError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { queuedTask, type InputAnswer, type Page, type Task, type TaskOptions } from '../core/model.ts';
import { isActive } from '../core/task-status.ts';
import type { PageRequest, Store } from '../core/ports/store.ts';
import type { ClusterBus } from '../core/ports/cluster-bus.ts';
import { validateTaskEnv } from '../core/task-env.ts';
import type { EventLog } from '../events/event-log.ts';
import { hotPath } from '../metrics/hot-path.ts';
import type { EnvSealer } from '../secrets/sealer.ts';
import type { Redactor } from '../secrets/redactor.ts';
import type { SessionService } from '../sessions/session-service.ts';
import type { TemplateCatalog } from '../templates/catalog.ts';
import { checkUserSchema } from '../templates/output.ts';
import { effectiveOptions, type OperatorTaskLimits } from './task-overrides.ts';
import type { TaskCompletions } from './completions.ts';
import type { TaskEndings } from './task-endings.ts';
import type { QueueAnnouncements } from './queue-announcements.ts';
import type { Scheduler } from './scheduler.ts';
import type { TaskExecution } from './task-execution.ts';

export interface SubmitTaskInput {
  tenantId: string;
  sessionId: string;
  message: string;
  context?: string | undefined;
  env?: unknown;
  agent?: string | undefined;
  options?: TaskOptions;
  idempotencyKey?: string | undefined;
}

export interface TaskServiceDeps {
  store: Store;
  events: EventLog;
  sessions: SessionService;
  scheduler: Scheduler;
  execution: TaskExecution;
  completions: TaskCompletions;
  endings: TaskEndings;
  announcements: QueueAnnouncements;
  /** Other nodes on the same store (PostgreSQL). */
  bus?: ClusterBus;
  sealer: EnvSealer;
  redactor: Redactor;
  maxQueuedPerSession: number;
  /** The session's template, for the overrides a task may ask (model, lower limits). */
  templates?: TemplateCatalog;
  /** The operator's limits a template without its own falls back to. */
  taskLimits?: OperatorTaskLimits;
  /** Where task webhooks may go: a requested URL is checked at submit; a template may name a default. */
  webhooks?: { check(url: string): Promise<void>; defaultFor(agent: string): string | undefined };
  /** False once shutdown began: new tasks are refused. */
  isAccepting(): boolean;
}

export interface AbortOutcome {
  /** The task that was running and was stopped, if any. */
  running: string | null;
  /** Queued tasks that were ended. */
  queued: string[];
}

export class TaskService {
  private readonly deps: TaskServiceDeps;

  constructor(deps: TaskServiceDeps) {
    this.deps = deps;
  }

  async submit(input: SubmitTaskInput): Promise<{ task: Task; created: boolean }> {
    const { deps } = this;
    if (!deps.isAccepting()) throw new RunnerError('SHUTTING_DOWN');
    const env = validateTaskEnv(input.env);
    if (input.options?.outputSchema) checkUserSchema(input.options.outputSchema);
    if (input.options?.webhookUrl !== undefined) {
      if (!deps.webhooks) throw new RunnerError('WEBHOOK_NOT_CONFIGURED');
      await deps.webhooks.check(input.options.webhookUrl);
    }
    return deps.sessions.exclusive(input.tenantId, input.sessionId, () => this.enqueue(input, env));
  }

  /** Finds or creates the session and stores the task; runs with the session to itself. */
  private async enqueue(input: SubmitTaskInput, env: Record<string, string>): Promise<{ task: Task; created: boolean }> {
    const { deps } = this;
    const session = await deps.sessions.ensure(input.tenantId, input.sessionId, input.agent);
    const options = deps.templates && deps.taskLimits
      ? effectiveOptions(input.options ?? {}, deps.templates.get(session.agent), deps.taskLimits)
      : input.options ?? {};
    deps.redactor.add(session.key, ...Object.values(env));
    const id = newId('task');
    const task = queuedTask({
      id,
      sessionKey: session.key,
      tenantId: session.tenantId,
      sessionId: session.id,
      message: input.message,
      context: input.context ?? null,
      sealedEnv: deps.sealer.seal(env, id),
      options: withWebhook(options, deps.webhooks?.defaultFor(session.agent)),
      idempotencyKey: input.idempotencyKey ?? null,
      requestHash: input.idempotencyKey ? requestHash(deps.sealer, input, env) : null,
      createdAt: Date.now(),
    });
    const announced = deps.announcements.begin(task.id);
    try {
      const result = await this.enqueueOrReplay(task, input, env);
      if (result.created) {
        hotPath.mark(`${task.id}:queued`);
        // At once: the claim need not wait for task_queued (the execution does: QueueAnnouncements),
        // and its commit shares an fsync with the append's.
        deps.scheduler.poke();
        const position = await deps.store.queuePosition(result.task);
        await deps.events.append(session.key, task.id, 'task_queued', { taskId: task.id, sessionId: session.id, position });
        // Other nodes' schedulers (the session may be another node's): once announced, as they would wait for it.
        deps.bus?.notify({ kind: 'queued' }).catch(() => undefined);
      }
      return result;
    } finally {
      announced();
    }
  }

  /**
   * Stores the task. An idempotency key first used before request hashes were
   * keyed (they were a plain sha256 then) still replays its task: on a
   * conflict, the legacy hash is tried once. It is compared, never stored:
   * the key's task exists (it conflicted) and cannot go while the session is
   * held (tasks leave only with their session).
   */
  private async enqueueOrReplay(task: Task, input: SubmitTaskInput, env: Record<string, string>): Promise<{ task: Task; created: boolean }> {
    const limits = { maxQueued: this.deps.maxQueuedPerSession };
    try {
      return await this.deps.store.enqueueTask(task, limits);
    } catch (error) {
      if (!(error instanceof RunnerError && error.code === 'IDEMPOTENCY_CONFLICT')) throw error;
      return await this.deps.store.enqueueTask({ ...task, requestHash: legacyRequestHash(input, env) }, limits);
    }
  }

  /** Resolves with the task once it has ended; rejects with SHUTTING_DOWN when the server stops first. */
  wait(task: Task, signal?: AbortSignal): Promise<Task> {
    return this.deps.completions.wait(task.id, () => this.deps.store.getTask(task.id), signal);
  }

  /** At shutdown, after running tasks ended: every caller still waiting (on a queued task) is answered. */
  /** Callers blocked on POST /task right now. */
  waitingCallers(): number {
    return this.deps.completions.waiting();
  }

  releaseWaiters(): void {
    this.deps.completions.releaseAll(new RunnerError(
      'SHUTTING_DOWN', 'The server is shutting down before the task ran: it stays queued and runs after the restart (GET /tasks/:taskId follows it).',
    ));
  }

  async get(tenantId: string, taskId: string): Promise<Task> {
    const task = await this.deps.store.getTask(taskId);
    if (!task || task.tenantId !== tenantId) throw new RunnerError('TASK_NOT_FOUND');
    return task;
  }

  async list(tenantId: string, sessionId: string, page: PageRequest): Promise<Page<Task>> {
    const session = await this.deps.sessions.get(tenantId, sessionId);
    return this.deps.store.listTasks(session.key, page);
  }

  /** Stops the session's running task and ends every queued one. */
  async abortSession(tenantId: string, sessionId: string): Promise<AbortOutcome> {
    const session = await this.deps.sessions.get(tenantId, sessionId);
    return this.abortSessionByKey(session.key, new RunnerError('TASK_ABORTED', 'The task was aborted.'));
  }

  async abortSessionByKey(sessionKey: string, reason: RunnerError): Promise<AbortOutcome> {
    // Queued first, so the scheduler cannot start one of them when the running task ends.
    const queued = await this.deps.store.abortQueuedTasks({ sessionKey }, reason.toBody(), Date.now());
    await this.announceAborted(queued);
    // The store knows a task claimed a moment ago that the execution has not registered yet.
    const unfinished = await this.deps.store.oldestUnfinishedTask(sessionKey);
    const running = this.deps.execution.runningTaskOf(sessionKey) ?? (unfinished && isActive(unfinished.status) ? unfinished.id : null);
    if (running) await this.deps.execution.stop(running, reason);
    return { running, queued };
  }

  /** Aborts one task, queued or running. Aborting a task that already ended changes nothing. */
  async abortTask(tenantId: string, taskId: string): Promise<Task> {
    let task = await this.get(tenantId, taskId);
    const reason = new RunnerError('TASK_ABORTED', 'The task was aborted.');
    if (task.status === 'queued') {
      const ended = await this.deps.store.abortQueuedTasks({ taskId }, reason.toBody(), Date.now());
      await this.announceAborted(ended);
      // Claimed in the meantime: it is running now, and is stopped below.
      if (ended.length === 0) task = await this.get(tenantId, taskId);
    }
    if (isActive(task.status)) await this.deps.execution.stop(taskId, reason);
    return this.get(tenantId, taskId);
  }

  /** A person's answer to what the task's agent waits for; the task as it is then. */
  async answerInput(tenantId: string, taskId: string, requestId: string, answer: InputAnswer): Promise<Task> {
    const task = await this.get(tenantId, taskId);
    if (task.status !== 'awaiting_input') {
      throw new RunnerError('INPUT_NOT_PENDING', `The task is ${task.status}: it waits for no input.`);
    }
    await this.deps.execution.answerInput(taskId, requestId, answer);
    return this.get(tenantId, taskId);
  }

  private async announceAborted(taskIds: string[]): Promise<void> {
    for (const taskId of taskIds) {
      const task = await this.deps.store.getTask(taskId);
      if (task) await this.deps.endings.ended(task);
    }
  }
}

/** Everything that shapes the task (env by value, never stored in clear). */
function requestText(input: SubmitTaskInput, env: Record<string, string>): string {
  return JSON.stringify([input.tenantId, input.sessionId, input.message, input.context ?? null, env, input.agent ?? null, input.options ?? {}]);
}

/**
 * Same key, same request: the request's digest, keyed (HMAC under a sub-key of
 * the sealing key), so a low-entropy env value cannot be guessed offline from
 * the stored hash. "hmac1:" tells it from the plain sha256 older rows hold.
 */
function requestHash(sealer: EnvSealer, input: SubmitTaskInput, env: Record<string, string>): string {
  return `hmac1:${sealer.requestDigest(requestText(input, env))}`;
}

/** The hash rows written before it was keyed hold: only ever compared (enqueueOrReplay), never stored. */
function legacyRequestHash(input: SubmitTaskInput, env: Record<string, string>): string {
  return createHash('sha256').update(requestText(input, env)).digest('hex');
}

/** The task's webhook is fixed now and stored with it: its own URL, else its template's default. */
function withWebhook(options: TaskOptions, templateDefault: string | undefined): TaskOptions {
  const webhookUrl = options.webhookUrl ?? templateDefault;
  return webhookUrl === undefined ? options : { ...options, webhookUrl };
}
