/**
 * Runs one claimed task to its final status: sandbox up, model access
 * granted, the task sent to the session's agent, the output shaped and
 * checked, the cost metered (each model call stored as it ends), the outcome
 * stored, the events appended. Abort, timeout, budget, sandbox and disk
 * limits all end a task the same way: the controller aborts with a
 * RunnerError whose code decides the status.
 *
 * Beside it: running-tasks.ts (the registry and stops), limit-watch.ts
 * (memory, processes, disk), task-finish.ts (storing and telling the end).
 *
 * Owns: the life of a running task. Must not touch: HTTP, Docker or SQL
 * (it goes through the ports).
 */
import { RunnerError } from '../core/errors.ts';
import { emptyUsage, type InputAnswer, type Session, type Task } from '../core/model.ts';
import { isActive } from '../core/task-status.ts';
import type { AgentRuntime } from '../core/ports/agent-runtime.ts';
import type { ClusterBus } from '../core/ports/cluster-bus.ts';
import type { ModelGateway, TaskMeter } from '../core/ports/model-gateway.ts';
import type { NetworkMode, SandboxDriver, SandboxHandle } from '../core/ports/sandbox.ts';
import type { Store } from '../core/ports/store.ts';
import type { EventLog } from '../events/event-log.ts';
import { hotPath } from '../metrics/hot-path.ts';
import type { Redactor } from '../secrets/redactor.ts';
import { AgentEventRedactor } from './agent-event-redactor.ts';
import type { EnvSealer } from '../secrets/sealer.ts';
import type { TemplateCatalog } from '../templates/catalog.ts';
import { shapeOutput } from '../templates/output.ts';
import type { WorkspaceQuota } from '../workspace/quota.ts';
import type { SessionDirectories } from '../workspace/session-dirs.ts';
import type { TaskCompletions } from './completions.ts';
import type { QueueAnnouncements } from './queue-announcements.ts';
import { HumanInputs } from './human-inputs.ts';
import { LimitWatch } from './limit-watch.ts';
import { TaskClock } from './task-clock.ts';
import { RunningTasks } from './running-tasks.ts';
import type { TaskEndings } from './task-endings.ts';
import { finishTask, type Outcome } from './task-finish.ts';
import { agentSetupFor, networkOf, sandboxSpecFor } from './session-setup.ts';

export interface TaskExecutionDeps {
  store: Store;
  events: EventLog;
  sandbox: SandboxDriver;
  runtime: AgentRuntime;
  gateway: ModelGateway;
  templates: TemplateCatalog;
  dirs: SessionDirectories;
  quota: WorkspaceQuota;
  sealer: EnvSealer;
  redactor: Redactor;
  completions: TaskCompletions;
  endings: TaskEndings;
  announcements: QueueAnnouncements;
  runnerId: string;
  /** Other nodes on the same store (PostgreSQL): a stop or an answer for a task running there is handed to it. */
  bus?: ClusterBus;
  defaults: {
    model: string | undefined;
    maxTurns: number;
    timeoutMs: number;
    taskBudgetUsd: number | undefined;
    sessionBudgetUsd: number | undefined;
    network: NetworkMode;
    /** How often the workspace's size is measured against its quota during a task. */
    diskPollMs: number;
    /** How long a question to a person waits for an answer (INPUT_TIMEOUT_MS). */
    inputTimeoutMs: number;
  };
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

/** How long another node may take to stop a task it runs (its sandbox is stopped) or to take an answer. */
const REMOTE_STOP_MS = 15_000;
const REMOTE_ANSWER_MS = 5_000;

/** Stopping the sandbox is how a task is stopped "at once", as the seed did: nothing it started survives. */
const STOP_SANDBOX_ON: ReadonlySet<string> = new Set(['TASK_ABORTED', 'TASK_TIMEOUT', 'INPUT_TIMEOUT', 'BUDGET_EXCEEDED', 'SANDBOX_LIMIT', 'DISK_QUOTA_EXCEEDED', 'TASK_INTERRUPTED']);

export function composePrompt(message: string, context: string | null): string {
  return context ? `${context}\n\n${message}` : message;
}

/** A caller's value may lower the operator's limit, never raise it. */
function lowered(requested: number | undefined, limit: number | undefined): number | undefined {
  if (requested === undefined) return limit;
  return limit === undefined ? requested : Math.min(requested, limit);
}

export class TaskExecution {
  private readonly deps: TaskExecutionDeps;
  private readonly running = new RunningTasks();
  private readonly inputs: HumanInputs;

  constructor(deps: TaskExecutionDeps) {
    this.deps = deps;
    this.inputs = new HumanInputs({ store: deps.store, events: deps.events, timeoutMs: deps.defaults.inputTimeoutMs, redactor: deps.redactor });
  }

  /** A person's answer to what a task running here waits for (see human-inputs.ts). */
  async answerInput(taskId: string, requestId: string, answer: InputAnswer): Promise<void> {
    const elsewhere = await this.nodeRunning(taskId);
    if (elsewhere) return this.deps.bus!.request(elsewhere, { kind: 'answer_input', taskId, requestId, answer }, REMOTE_ANSWER_MS);
    return this.answerInputHere(taskId, requestId, answer);
  }

  /** An answer for a task of this node (another node handed it over). */
  answerInputHere(taskId: string, requestId: string, answer: InputAnswer): Promise<void> {
    return this.inputs.answer(taskId, requestId, answer);
  }

  runningCount(): number {
    return this.running.count();
  }

  runningTaskOf(sessionKey: string): string | undefined {
    return this.running.taskOf(sessionKey);
  }

  /** Stops a task, here or on the node running it; resolves when it has ended (see RunningTasks.stop). */
  async stop(taskId: string, reason: RunnerError): Promise<boolean> {
    const elsewhere = await this.nodeRunning(taskId);
    if (!elsewhere) return this.stopHere(taskId, reason);
    await this.deps.bus!.request(elsewhere, { kind: 'stop_task', taskId, error: reason.toBody() }, REMOTE_STOP_MS);
    return true;
  }

  /** Stops a task of this node (another node may have asked). */
  stopHere(taskId: string, reason: RunnerError): Promise<boolean> {
    return this.running.stop(taskId, reason);
  }

  /** The other node that runs the task, when it is not this one. */
  private async nodeRunning(taskId: string): Promise<string | null> {
    if (!this.deps.bus || this.running.has(taskId)) return null;
    const task = await this.deps.store.getTask(taskId);
    if (!task || !isActive(task.status) || task.runnerId === null || task.runnerId === this.deps.runnerId) return null;
    return task.runnerId;
  }

  stopAll(reason: RunnerError): Promise<void> {
    return this.running.stopAll(reason);
  }

  settled(): Promise<void> {
    return this.running.settled();
  }

  execute(task: Task): Promise<void> {
    return this.running.track(task.id, task.sessionKey, (controller) => this.run(task, controller));
  }

  /** Whatever happens, the task ends in the store (or, if the store fails, for its waiters) and is told. */
  private async run(task: Task, controller: AbortController): Promise<void> {
    const { deps } = this;
    hotPath.end('queue', `${task.id}:queued`);
    hotPath.mark(`${task.id}:start`);
    const startedAt = task.startedAt ?? Date.now();
    const timeoutMs = lowered(task.options.timeoutMs, deps.defaults.timeoutMs)!;
    // From the start: a hung sandbox or gateway call is bounded too.
    const clock = new TaskClock(timeoutMs, () => controller.abort(new RunnerError('TASK_TIMEOUT', `The task ran past its limit of ${timeoutMs} ms.`)));
    let outcome: Outcome;
    try {
      outcome = await this.attempt(task, controller, clock);
    } catch (error) {
      outcome = { failure: toRunnerError(error, deps.logger), output: null, tools: [], meter: emptyMeter(), agentSessionId: null, resumed: false };
    } finally {
      clock.stop();
    }
    try {
      await finishTask(deps, task, startedAt, outcome);
      hotPath.end('finish', `${task.id}:finish`);
    } finally {
      hotPath.drop(`${task.id}:start`);
      outcome.releaseSecrets?.();
    }
  }

  /** The task itself: sandbox, model access, the agent, the output. Failures come back in the outcome. */
  private async attempt(task: Task, controller: AbortController, clock: TaskClock): Promise<Outcome> {
    const { deps } = this;
    const signal = controller.signal;
    const outcome: Outcome = { failure: undefined, output: null, tools: [], meter: emptyMeter(), agentSessionId: null, resumed: false };
    let handle: SandboxHandle | undefined;
    const limits = new LimitWatch({ sandbox: deps.sandbox, quota: deps.quota, diskPollMs: deps.defaults.diskPollMs });
    const sessionDirs = deps.dirs.of(task.sessionKey);
    /** Text and thinking deltas pass through it: a secret split across two deltas is still caught. */
    let streamed: AgentEventRedactor | undefined;
    const checkAborted = (): void => {
      if (signal.aborted) throw signal.reason;
    };
    try {
      const session = await deps.store.getSessionByKey(task.sessionKey);
      outcome.resumed = (session?.turns ?? 0) > 0;
      await deps.announcements.settled(task);
      // Stored while the sandbox and the gateway get ready (events keep their order); awaited before the agent starts.
      const started = deps.events.append(task.sessionKey, task.id, 'task_start', { taskId: task.id, sessionId: task.sessionId, resumed: outcome.resumed });
      started.catch(() => undefined);
      if (!session) throw new RunnerError('INTERNAL', 'The task has no session.');
      checkAborted();
      const template = deps.templates.get(session.agent);
      deps.gateway.checkConfigured();
      const budgetUsd = this.budgetFor(task, session, template.budgetUsd);
      if (budgetUsd !== undefined && budgetUsd <= 0) throw new RunnerError('BUDGET_EXCEEDED', 'The session has spent its budget.');
      // A workspace past its quota takes no more writes: no task runs in it until files are deleted.
      // Measured while the sandbox gets ready (checked before the agent is given anything).
      const overQuota = deps.quota.overLimit(sessionDirs);
      overQuota.catch(() => undefined);
      const network = networkOf(template, deps.defaults.network);
      handle = await deps.sandbox.ensure(sandboxSpecFor(session, template, sessionDirs, deps.defaults.network), signal);
      // After the sandbox runs: a stop of it that was under way (the cap making room) has closed the old
      // socket by then, and this one lives until the sandbox stops again. The relay connects on demand.
      await deps.gateway.attachSession(session.key, sessionDirs.socketDir);
      const overLimit = await overQuota;
      if (overLimit) throw overLimit;
      checkAborted();
      const [, access] = await bothSettled(limits.start(handle, sessionDirs, (failure) => controller.abort(failure)), deps.gateway.openTask({
        taskId: task.id, sessionKey: session.key, network, budgetUsd,
        // The hard cap behind maxTurns: every model call with the task's token counts (sub-agents' too).
        maxModelCalls: lowered(task.options.maxTurns, template.maxTurns ?? deps.defaults.maxTurns)!,
        onModelCall: (call) => {
          // Stored as each call ends, so a crash loses none of the money; not awaited: a failed
          // store must not become an unhandled rejection (the end reconciles with the meter).
          this.remember(task, deps.store.recordTaskSpend(task.id, { costUsd: call.costUsd, usage: call.usage }));
          this.remember(task, deps.events.append(task.sessionKey, task.id, 'usage', {
            model: call.model, inputTokens: call.usage.inputTokens, outputTokens: call.usage.outputTokens, costUsd: call.costUsd,
          }));
        },
        onLimitReached: (error) => controller.abort(error),
      }));
      await started;
      checkAborted();
      const env = deps.sealer.unseal(task.sealedEnv, task.id);
      outcome.releaseSecrets = deps.redactor.hold(task.sessionKey, ...Object.values(env), access.token);
      streamed = new AgentEventRedactor(deps.redactor, [...Object.values(env), access.token], task.sessionKey);
      const schema = task.options.outputSchema ?? template.outputSchema;
      const model = task.options.model ?? template.model ?? deps.defaults.model;
      hotPath.end('start', `${task.id}:start`);
      const agentStartedAt = performance.now();
      const result = await deps.runtime.run({
        ...agentSetupFor(template, { sessionKey: session.key, sandbox: handle }, {
          model, outputSchema: schema, network: network.mode, env, processEnv: access.sandboxEnv,
        }),
        taskId: task.id,
        sessionId: session.id,
        prompt: composePrompt(task.message, task.context),
        askHuman: this.inputs.askerFor(task, controller, clock),
        resumeId: session.agentSessionId,
        signal,
        onEvent: (event) => {
          if (event.type === 'tool_start' && !outcome.tools.includes(event.data.tool)) {
            outcome.tools.push(event.data.tool);
            this.remember(task, deps.store.recordTaskTool(task.id, event.data.tool));
          }
          if (event.type === 'init') outcome.agentSessionId = event.data.agentSessionId;
          for (const safe of streamed!.events(event)) this.remember(task, deps.events.append(task.sessionKey, task.id, safe.type, safe.data));
        },
      });
      hotPath.since('agent', agentStartedAt);
      hotPath.mark(`${task.id}:finish`);
      outcome.agentSessionId = result.agentSessionId;
      outcome.resumed = result.resumed && !result.resumeLost;
      checkAborted();
      outcome.output = shapeOutput(result.text, result.structuredOutput, template, schema ?? null);
    } catch (error) {
      outcome.failure = signal.aborted && signal.reason instanceof RunnerError ? signal.reason : toRunnerError(error, deps.logger);
    } finally {
      limits.stop();
      for (const safe of streamed?.flush() ?? []) this.remember(task, deps.events.append(task.sessionKey, task.id, safe.type, safe.data));
    }
    // Unconditionally: a grant that failed half-way is revoked too (closeTask knows unknown tasks).
    // Alongside: a tool killed for memory or processes may not fail the agent; it still fails the task, clearly.
    const [meter, limitFailure] = await Promise.all([deps.gateway.closeTask(task.id), handle && limits.failureSince(handle, sessionDirs)]);
    outcome.meter = meter;
    outcome.failure = limitFailure ?? outcome.failure;
    if (outcome.failure && handle) await this.cleanUpAfterFailure(task, outcome.failure, handle);
    return outcome;
  }

  /** A write made as the task runs (spend, tools, events): not awaited, its failure logged, never left unhandled. */
  private remember(task: Task, write: Promise<unknown>): void {
    write.catch((error: unknown) => this.deps.logger.error({ err: error, taskId: task.id }, 'could not store a record of a running task'));
  }

  /** The task's budget (at most MAX_BUDGET_USD), and at most what is left of the session's. */
  private budgetFor(task: Task, session: Session, templateBudget: number | undefined): number | undefined {
    const taskBudget = lowered(task.options.budgetUsd, lowered(templateBudget, this.deps.defaults.taskBudgetUsd));
    const sessionBudget = this.deps.defaults.sessionBudgetUsd;
    const sessionLeft = sessionBudget === undefined ? undefined : sessionBudget - session.totalCostUsd;
    if (taskBudget === undefined) return sessionLeft;
    if (sessionLeft === undefined) return taskBudget;
    return Math.min(taskBudget, sessionLeft);
  }

  /**
   * After a failure: a stop (abort, timeout, budget, limit) stops the sandbox;
   * otherwise the runtime has decided whether the session's agent lives on (it
   * does after OUTPUT_INVALID), and if it does not, what
   * it left running in the sandbox is killed.
   */
  private async cleanUpAfterFailure(task: Task, failure: RunnerError, handle: SandboxHandle): Promise<void> {
    const { deps } = this;
    try {
      if (STOP_SANDBOX_ON.has(failure.code)) {
        await deps.runtime.release(task.sessionKey);
        await deps.sandbox.stop(task.sessionKey);
      } else if (!deps.runtime.liveSessions().includes(task.sessionKey)) {
        await deps.sandbox.killAgentProcesses(handle);
      }
    } catch (error) {
      deps.logger.warn({ err: error, taskId: task.id }, 'cleaning up after a failed task went wrong');
    }
  }
}

/** Both, each settled before a failure is thrown: nothing is left under way behind it (a grant closeTask would miss). */
async function bothSettled<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [first, second] = await Promise.allSettled([a, b]);
  if (first.status === 'rejected') throw first.reason;
  if (second.status === 'rejected') throw second.reason;
  return [first.value, second.value];
}

function emptyMeter(): TaskMeter {
  return { usage: emptyUsage(), costUsd: 0, modelCalls: 0 };
}

/** A bug's own text (SQL, paths) goes to the log, never to the caller. */
export function toRunnerError(error: unknown, logger: { error(obj: object, msg?: string): void }): RunnerError {
  if (error instanceof RunnerError) return error;
  logger.error({ err: error }, 'task failed on an internal error');
  return new RunnerError('INTERNAL');
}
