/**
 * What this node does with the cluster: it answers other nodes' notices and
 * requests (the bus, src/core/ports/cluster-bus.ts) with the domain's own
 * services, and puts right what a dead node left (a takeover) or what this
 * node must give up (its lease lost).
 *
 * Owns: the mapping from cluster messages to services. Must not touch: SQL
 * or the wire (the store and the bus), nor the services' own rules.
 */
import { RunnerError } from '../core/errors.ts';
import type { ClusterBus, ClusterNotice, ClusterRequest } from '../core/ports/cluster-bus.ts';
import type { NodeTakeover, Store } from '../core/ports/store.ts';
import type { EventLog } from '../events/event-log.ts';
import type { SessionService } from '../sessions/session-service.ts';
import type { TaskCompletions } from '../tasks/completions.ts';
import type { TaskEndings } from '../tasks/task-endings.ts';
import type { TaskExecution } from '../tasks/task-execution.ts';

export interface ClusterNodeDeps {
  bus: ClusterBus;
  store: Store;
  events: EventLog;
  completions: TaskCompletions;
  endings: TaskEndings;
  scheduler: { poke(): void; pause(): void; resume(): void };
  execution: Pick<TaskExecution, 'stopHere' | 'answerInputHere' | 'stopAll'>;
  sessions: Pick<SessionService, 'teardownHere'>;
  /**
   * Removes the sandboxes a node left on this node's engine (a shared engine), made before `createdBefore`
   * (newer ones are a restart's under the same id); their sessions are others' now.
   */
  removeSandboxesOf(nodeId: string, createdBefore: number): Promise<void>;
  /** Closes every live agent and removes every sandbox of this node. */
  releaseEverything(): Promise<void>;
  /** A task ended (on any node): the webhook dispatcher looks at the outbox (it runs on the leader only). */
  wakeWebhooks(): void;
  /** Ends this node's tasks still `running` in the store as `interrupted` (crash recovery's own step). */
  interruptOwnTasks(): Promise<unknown>;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

/** How often what a lost notice or a failed read would leave waiting is looked at again. */
const CATCH_UP_MS = 5_000;

export class ClusterNode {
  private readonly deps: ClusterNodeDeps;
  private readonly catchUpTimer: NodeJS.Timeout;

  constructor(deps: ClusterNodeDeps) {
    this.deps = deps;
    deps.bus.listen({
      notice: (notice) => this.onNotice(notice),
      request: (request) => this.onRequest(request),
      reconnected: () => void this.resync(),
    });
    // Notices are a doorbell, not the truth: a caller or a stream never waits on one that was lost for long.
    this.catchUpTimer = setInterval(() => void this.catchUp(), CATCH_UP_MS);
    this.catchUpTimer.unref();
  }

  close(): void {
    clearInterval(this.catchUpTimer);
  }

  /** Nodes were taken over: their tasks' ends are told here (events, waiting callers), their sandboxes here removed. */
  async takeover(takeovers: NodeTakeover[]): Promise<void> {
    const { store, endings, logger } = this.deps;
    const takenAt = Date.now();
    for (const { nodeId, interrupted } of takeovers) {
      for (const { id } of interrupted) {
        const ended = await store.getTask(id);
        if (ended) await endings.ended(ended);
      }
      await this.deps.removeSandboxesOf(nodeId, takenAt)
        .catch((error: unknown) => logger.warn({ nodeId, err: error }, 'could not remove the sandboxes of a node taken over'));
    }
    this.deps.scheduler.poke();
    // Their sessions are free: every node may claim them.
    await this.deps.bus.notify({ kind: 'queued' }).catch(() => undefined);
  }

  /**
   * This node could not renew its lease in time, or another node took it
   * over: what it runs may be another's now. It claims nothing more, stops
   * its tasks and lets go of its sandboxes, until rejoined().
   */
  async leaseLost(): Promise<void> {
    this.deps.scheduler.pause();
    // Sandboxes go at once, beside the tasks' stop: ending a task writes to a database that may not answer.
    await Promise.all([
      this.deps.execution.stopAll(new RunnerError('TASK_INTERRUPTED', 'This runner node lost its lease.')),
      this.deps.releaseEverything(),
    ]);
  }

  /** Back with a fresh lease: its tasks the store still shows running (their end could not be written) end, and it claims again. */
  async rejoined(): Promise<void> {
    await this.deps.interruptOwnTasks();
    this.deps.scheduler.resume();
  }

  private onNotice(notice: ClusterNotice): void {
    const { events, completions, store, scheduler, logger } = this.deps;
    switch (notice.kind) {
      case 'events':
        events.storedElsewhere(notice.sessionKey, notice.lastSeq);
        return;
      case 'queued':
        scheduler.poke();
        return;
      case 'ended':
        this.deps.wakeWebhooks();
        if (!completions.isAwaited(notice.taskId)) return;
        store.getTask(notice.taskId).then((task) => task && completions.endedElsewhere(task))
          .catch((error: unknown) => logger.warn({ taskId: notice.taskId, err: error }, 'could not read a task another node ended'));
        return;
      case 'session_deleted':
        events.closeSession(notice.sessionKey);
        return;
    }
  }

  private async onRequest(request: ClusterRequest): Promise<void> {
    const { execution, sessions } = this.deps;
    switch (request.kind) {
      case 'stop_task':
        await execution.stopHere(request.taskId, new RunnerError(request.error.code, request.error.message, request.error.details));
        return;
      case 'answer_input':
        await execution.answerInputHere(request.taskId, request.requestId, request.answer);
        return;
      case 'teardown':
        await sessions.teardownHere(request.sessionKey);
        return;
    }
  }

  /** The bus was cut: what its notices would have said is read from the store. */
  private async resync(): Promise<void> {
    this.deps.scheduler.poke();
    try {
      await this.deps.events.resync();
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'could not catch up after the cluster bus was cut');
    }
    await this.catchUp();
  }

  /** Blocking callers of tasks that ended elsewhere are answered; event reads that failed are made again. */
  private async catchUp(): Promise<void> {
    const { events, completions, store, logger } = this.deps;
    events.retryStalled();
    try {
      for (const taskId of completions.awaited()) {
        const task = await store.getTask(taskId);
        if (task) completions.endedElsewhere(task);
      }
    } catch (error) {
      logger.warn({ err: error }, 'could not read the tasks callers wait for');
    }
  }
}
