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
  scheduler: { poke(): void };
  execution: Pick<TaskExecution, 'stopHere' | 'answerInputHere' | 'stopAll'>;
  sessions: Pick<SessionService, 'teardownHere'>;
  /** Removes the sandboxes a node left on this node's engine (a shared engine); their sessions are others' now. */
  removeSandboxesOf(nodeId: string): Promise<void>;
  /** Closes every live agent and removes every sandbox of this node. */
  releaseEverything(): Promise<void>;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export class ClusterNode {
  private readonly deps: ClusterNodeDeps;

  constructor(deps: ClusterNodeDeps) {
    this.deps = deps;
    deps.bus.listen({
      notice: (notice) => this.onNotice(notice),
      request: (request) => this.onRequest(request),
      reconnected: () => void this.resync(),
    });
  }

  /** Nodes were taken over: their tasks' ends are told here (events, waiting callers), their sandboxes here removed. */
  async takeover(takeovers: NodeTakeover[]): Promise<void> {
    const { store, endings, logger } = this.deps;
    for (const { nodeId, interrupted } of takeovers) {
      for (const { id } of interrupted) {
        const ended = await store.getTask(id);
        if (ended) await endings.ended(ended);
      }
      await this.deps.removeSandboxesOf(nodeId)
        .catch((error: unknown) => logger.warn({ nodeId, err: error }, 'could not remove the sandboxes of a node taken over'));
    }
    this.deps.scheduler.poke();
    // Their sessions are free: every node may claim them.
    await this.deps.bus.notify({ kind: 'queued' }).catch(() => undefined);
  }

  /**
   * Another node took this one over: the tasks it ran are `interrupted` in the
   * store, its sessions another's. It stops them and lets go of its sandboxes.
   */
  async leaseLost(): Promise<void> {
    await this.deps.execution.stopAll(new RunnerError('TASK_INTERRUPTED', 'This runner node lost its lease.'));
    await this.deps.releaseEverything();
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
    const { events, completions, store, scheduler, logger } = this.deps;
    scheduler.poke();
    try {
      await events.resync();
      for (const taskId of completions.awaited()) {
        const task = await store.getTask(taskId);
        if (task) completions.endedElsewhere(task);
      }
    } catch (error) {
      logger.warn({ err: error }, 'could not catch up after the cluster bus was cut');
    }
  }
}
