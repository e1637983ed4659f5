/**
 * Runs one claimed task to its final status: sandbox up, model access
 * granted, the task sent to the session's agent, the output shaped and
 * checked, the cost metered, the outcome stored, the events appended.
 * Abort, timeout, budget and sandbox limits all end a task the same way:
 * the controller aborts with a RunnerError whose code decides the status.
 *
 * Owns: the life of a running task. Must not touch: HTTP, Docker or SQL
 * (it goes through the ports).
 */
import { RunnerError, type ErrorBody } from '../core/errors.ts';
import type { Session, Task } from '../core/model.ts';
import type { AgentEvent, AgentRuntime } from '../core/ports/agent-runtime.ts';
import { SANDBOX_GATEWAY_URL, SANDBOX_KEY_HELPER, type ModelGateway, type TaskMeter } from '../core/ports/model-gateway.ts';
import type { NetworkMode, ResourceCounters, SandboxDriver, SandboxHandle } from '../core/ports/sandbox.ts';
import type { Store } from '../core/ports/store.ts';
import { statusForFailure, type FinalTaskStatus } from '../core/task-status.ts';
import type { EventLog } from '../events/event-log.ts';
import { AgentEventRedactor, type Redactor } from '../secrets/redactor.ts';
import type { EnvSealer } from '../secrets/sealer.ts';
import type { TemplateCatalog } from '../templates/catalog.ts';
import { buildSystemPrompt, shapeOutput } from '../templates/output.ts';
import type { SessionDirectories } from '../workspace/session-dirs.ts';
import type { TaskCompletions } from './completions.ts';
import type { QueueAnnouncements } from './queue-announcements.ts';
import type { TaskEndings } from './task-endings.ts';

export interface TaskExecutionDeps {
  store: Store;
  events: EventLog;
  sandbox: SandboxDriver;
  runtime: AgentRuntime;
  gateway: ModelGateway;
  templates: TemplateCatalog;
  dirs: SessionDirectories;
  sealer: EnvSealer;
  redactor: Redactor;
  completions: TaskCompletions;
  endings: TaskEndings;
  announcements: QueueAnnouncements;
  runnerId: string;
  defaults: {
    model: string | undefined;
    maxTurns: number;
    timeoutMs: number;
    taskBudgetUsd: number | undefined;
    sessionBudgetUsd: number | undefined;
    network: NetworkMode;
    modelMaxRetries: number;
    /** How often the sandbox's OOM and process-limit counters are read during a task. */
    resourcePollMs: number;
  };
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

interface Running {
  controller: AbortController;
  sessionKey: string;
  done: Promise<void>;
}

interface Outcome {
  failure: RunnerError | undefined;
  output: unknown;
  tools: string[];
  meter: TaskMeter;
  agentSessionId: string | null;
  resumed: boolean;
  /** Lets the redactor forget the task's secrets again, once its last event is stored. */
  releaseSecrets?: () => void;
}

/** Stopping the sandbox is how a task is stopped "at once", as the seed did: nothing it started survives. */
const STOP_SANDBOX_ON: ReadonlySet<string> = new Set(['TASK_ABORTED', 'TASK_TIMEOUT', 'BUDGET_EXCEEDED', 'SANDBOX_LIMIT', 'TASK_INTERRUPTED']);
/** A stop asked for a task that was claimed but is not registered yet is kept this long. */
const PENDING_STOP_MS = 60_000;

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
  private readonly running = new Map<string, Running>();
  /** Stops asked for claimed tasks before they were registered here (a claim and an abort crossing). */
  private readonly pendingStops = new Map<string, RunnerError>();

  constructor(deps: TaskExecutionDeps) {
    this.deps = deps;
  }

  runningCount(): number {
    return this.running.size;
  }

  runningTaskOf(sessionKey: string): string | undefined {
    for (const [taskId, run] of this.running) if (run.sessionKey === sessionKey) return taskId;
    return undefined;
  }

  /**
   * Stops a task; resolves when it has ended. A task the store says runs here
   * but that is not registered yet (just claimed) is stopped as it starts.
   */
  async stop(taskId: string, reason: RunnerError): Promise<boolean> {
    const run = this.running.get(taskId);
    if (!run) {
      this.pendingStops.set(taskId, reason);
      setTimeout(() => this.pendingStops.delete(taskId), PENDING_STOP_MS).unref();
      return false;
    }
    run.controller.abort(reason);
    await run.done;
    return true;
  }

  async stopAll(reason: RunnerError): Promise<void> {
    await Promise.all([...this.running.keys()].map((taskId) => this.stop(taskId, reason)));
  }

  /** Resolves when every task running here has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running.values()].map((run) => run.done));
  }

  execute(task: Task): Promise<void> {
    const controller = new AbortController();
    const pending = this.pendingStops.get(task.id);
    if (pending) {
      this.pendingStops.delete(task.id);
      controller.abort(pending);
    }
    const done = this.run(task, controller).finally(() => this.running.delete(task.id));
    this.running.set(task.id, { controller, sessionKey: task.sessionKey, done });
    return done;
  }

  /** Whatever happens, the task ends in the store (or, if the store fails, for its waiters) and is told. */
  private async run(task: Task, controller: AbortController): Promise<void> {
    const { deps } = this;
    const startedAt = task.startedAt ?? Date.now();
    const timeoutMs = lowered(task.options.timeoutMs, deps.defaults.timeoutMs)!;
    // From the start: a hung sandbox or gateway call is bounded too.
    const timer = setTimeout(() => controller.abort(new RunnerError('TASK_TIMEOUT', `The task ran past its limit of ${timeoutMs} ms.`)), timeoutMs);
    let outcome: Outcome;
    try {
      outcome = await this.attempt(task, controller);
    } catch (error) {
      outcome = { failure: toRunnerError(error, deps.logger), output: null, tools: [], meter: emptyMeter(), agentSessionId: null, resumed: false };
    } finally {
      clearTimeout(timer);
    }
    try {
      await this.finish(task, startedAt, outcome);
    } finally {
      outcome.releaseSecrets?.();
    }
  }

  /** Records the outcome and tells it; when the store fails, the task's waiters still hear it. */
  private async finish(task: Task, startedAt: number, outcome: Outcome): Promise<void> {
    const { deps } = this;
    const finishedAt = Date.now();
    const { failure, meter } = outcome;
    const status: FinalTaskStatus = failure ? statusForFailure(failure.code) : 'succeeded';
    const error: ErrorBody | null = failure ? deps.redactor.redactDeep(failure.toBody(), task.sessionKey) : null;
    const ending = {
      status, finishedAt, costUsd: meter.costUsd, durationMs: finishedAt - startedAt, tools: outcome.tools,
      output: failure ? null : deps.redactor.redactDeep(outcome.output, task.sessionKey), error, resumed: outcome.resumed, usage: meter.usage,
    };
    try {
      // The session first: once the task ends, the session's next task may be claimed at once, and it
      // must find the conversation id (a new agent process resumes it) and the activity time (the idle
      // sweep) of this one. The money was spent and the transcript moved on even if the task was ended elsewhere.
      await deps.store.recordSessionActivity(task.sessionKey, {
        costUsd: meter.costUsd, turn: meter.modelCalls > 0, agentSessionId: outcome.agentSessionId ?? undefined, at: finishedAt,
      });
      if (!(await deps.store.finishTask(task.id, deps.runnerId, ending))) {
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

  /** The task itself: sandbox, model access, the agent, the output. Failures come back in the outcome. */
  private async attempt(task: Task, controller: AbortController): Promise<Outcome> {
    const { deps } = this;
    const signal = controller.signal;
    const outcome: Outcome = { failure: undefined, output: null, tools: [], meter: emptyMeter(), agentSessionId: null, resumed: false };
    let handle: SandboxHandle | undefined;
    let countersBefore: ResourceCounters | undefined;
    let watcher: NodeJS.Timeout | undefined;
    /** Text and thinking deltas pass through it: a secret split across two deltas is still caught. */
    let streamed: AgentEventRedactor | undefined;
    const checkAborted = (): void => {
      if (signal.aborted) throw signal.reason;
    };
    try {
      const session = await deps.store.getSessionByKey(task.sessionKey);
      outcome.resumed = (session?.turns ?? 0) > 0;
      await deps.announcements.settled(task.id);
      await deps.events.append(task.sessionKey, task.id, 'task_start', { taskId: task.id, sessionId: task.sessionId, resumed: outcome.resumed });
      if (!session) throw new RunnerError('INTERNAL', 'The task has no session.');
      checkAborted();
      const template = deps.templates.get(session.agent);
      deps.gateway.checkConfigured();
      const budgetUsd = this.budgetFor(task, session);
      if (budgetUsd !== undefined && budgetUsd <= 0) throw new RunnerError('BUDGET_EXCEEDED', 'The session has spent its budget.');
      const network = { mode: template.network.mode ?? deps.defaults.network, allow: template.network.allow };
      const dirs = deps.dirs.of(session.key);
      await deps.gateway.attachSession(session.key, dirs.socketDir);
      checkAborted();
      handle = await deps.sandbox.ensure({
        sessionKey: session.key, tenantId: session.tenantId, sessionId: session.id,
        workspaceDir: dirs.workspace, homeDir: dirs.home, gatewaySocketDir: dirs.socketDir, network: network.mode,
      }, signal);
      checkAborted();
      countersBefore = await deps.sandbox.resourceCounters(handle);
      watcher = this.watchResources(handle, countersBefore, controller);
      const access = await deps.gateway.openTask({
        taskId: task.id, sessionKey: session.key, network, budgetUsd,
        // The hard cap behind maxTurns: every model call with the task's token counts (sub-agents' too).
        maxModelCalls: lowered(task.options.maxTurns, template.maxTurns ?? deps.defaults.maxTurns)!,
        onModelCall: (call) => {
          // Not awaited: a failed store must not become an unhandled rejection (which ends the process).
          deps.events.append(task.sessionKey, task.id, 'usage', {
            model: call.model, inputTokens: call.usage.inputTokens, outputTokens: call.usage.outputTokens, costUsd: call.costUsd,
          }).catch((error: unknown) => deps.logger.error({ err: error, taskId: task.id }, 'could not store an event'));
        },
        onLimitReached: (error) => controller.abort(error),
      });
      checkAborted();
      const env = deps.sealer.unseal(task.sealedEnv, task.id);
      outcome.releaseSecrets = deps.redactor.hold(task.sessionKey, ...Object.values(env), access.token);
      streamed = new AgentEventRedactor(deps.redactor, [...Object.values(env), access.token], task.sessionKey);
      const schema = task.options.outputSchema ?? template.outputSchema;
      const model = template.model ?? deps.defaults.model;
      const result = await deps.runtime.run({
        taskId: task.id,
        sessionKey: session.key,
        sessionId: session.id,
        sandbox: handle,
        prompt: composePrompt(task.message, task.context),
        systemPrompt: { mode: template.systemPromptMode, text: buildSystemPrompt(template.agentsMd, schema ? null : template.outputMd) },
        ...(schema ? { outputSchema: schema } : {}),
        ...(model ? { model } : {}),
        // WebSearch runs on Anthropic's side, beyond the sandbox's network policy: only for `open` agents.
        disallowedTools: network.mode === 'open' ? [] : ['WebSearch'],
        env,
        modelEndpoint: { baseUrl: SANDBOX_GATEWAY_URL, keyHelper: SANDBOX_KEY_HELPER },
        processEnv: { ...proxyEnv(network.mode), CLAUDE_CODE_MAX_RETRIES: String(deps.defaults.modelMaxRetries) },
        resumeId: session.agentSessionId,
        signal,
        onEvent: (event) => {
          if (event.type === 'tool_start' && !outcome.tools.includes(event.data.tool)) outcome.tools.push(event.data.tool);
          if (event.type === 'init') outcome.agentSessionId = event.data.agentSessionId;
          for (const safe of streamed!.events(event)) void this.appendAgentEvent(task, safe);
        },
      });
      outcome.agentSessionId = result.agentSessionId;
      outcome.resumed = result.resumed && !result.resumeLost;
      checkAborted();
      outcome.output = shapeOutput(result.text, result.structuredOutput, template, schema ?? null);
    } catch (error) {
      outcome.failure = signal.aborted && signal.reason instanceof RunnerError ? signal.reason : toRunnerError(error, deps.logger);
    } finally {
      clearInterval(watcher);
      for (const safe of streamed?.flush() ?? []) void this.appendAgentEvent(task, safe);
    }
    // Unconditionally: a grant that failed half-way is revoked too (closeTask knows unknown tasks).
    outcome.meter = await deps.gateway.closeTask(task.id);
    // A tool killed for memory or processes may not fail the agent; it still fails the task, clearly.
    if (handle && countersBefore) outcome.failure = (await this.limitFailureSince(handle, countersBefore)) ?? outcome.failure;
    if (outcome.failure && handle) await this.cleanUpAfterFailure(task, outcome.failure, handle);
    return outcome;
  }

  private async appendAgentEvent(task: Task, event: AgentEvent): Promise<void> {
    try {
      await this.deps.events.append(task.sessionKey, task.id, event.type, event.data);
    } catch (error) {
      this.deps.logger.error({ err: error, taskId: task.id }, 'could not store an event');
    }
  }

  /** The task's budget (at most MAX_BUDGET_USD), and at most what is left of the session's. */
  private budgetFor(task: Task, session: Session): number | undefined {
    const taskBudget = lowered(task.options.budgetUsd, this.deps.defaults.taskBudgetUsd);
    const sessionBudget = this.deps.defaults.sessionBudgetUsd;
    const sessionLeft = sessionBudget === undefined ? undefined : sessionBudget - session.totalCostUsd;
    if (taskBudget === undefined) return sessionLeft;
    if (sessionLeft === undefined) return taskBudget;
    return Math.min(taskBudget, sessionLeft);
  }

  private watchResources(handle: SandboxHandle, before: ResourceCounters, controller: AbortController): NodeJS.Timeout {
    const timer = setInterval(() => {
      void this.deps.sandbox.resourceCounters(handle).then((now) => {
        const failure = limitFailure(before, now);
        if (failure) controller.abort(failure);
      }, () => undefined);
    }, this.deps.defaults.resourcePollMs);
    timer.unref();
    return timer;
  }

  private async limitFailureSince(handle: SandboxHandle, before: ResourceCounters): Promise<RunnerError | undefined> {
    try {
      return limitFailure(before, await this.deps.sandbox.resourceCounters(handle));
    } catch {
      return undefined;
    }
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

function limitFailure(before: ResourceCounters, now: ResourceCounters): RunnerError | undefined {
  if (now.oomKills > before.oomKills) return new RunnerError('SANDBOX_LIMIT', 'The sandbox ran out of memory: a process was killed.');
  if (now.pidsLimitHits > before.pidsLimitHits) return new RunnerError('SANDBOX_LIMIT', 'The sandbox hit its process limit.');
  return undefined;
}

/** Under the allowlist policy, tools reach the outside only through the gateway's proxy. */
function proxyEnv(mode: NetworkMode): Record<string, string> {
  if (mode !== 'allowlist') return {};
  return {
    HTTP_PROXY: SANDBOX_GATEWAY_URL, HTTPS_PROXY: SANDBOX_GATEWAY_URL, http_proxy: SANDBOX_GATEWAY_URL, https_proxy: SANDBOX_GATEWAY_URL,
    NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost',
  };
}

function emptyMeter(): TaskMeter {
  return { usage: { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, costUsd: 0, modelCalls: 0 };
}

/** A bug's own text (SQL, paths) goes to the log, never to the caller. */
export function toRunnerError(error: unknown, logger: { error(obj: object, msg?: string): void }): RunnerError {
  if (error instanceof RunnerError) return error;
  logger.error({ err: error }, 'task failed on an internal error');
  return new RunnerError('INTERNAL');
}
