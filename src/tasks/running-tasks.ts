/**
 * The tasks running in this process, each with the controller that stops it.
 * A stop asked for a task that was claimed but has not registered yet (a
 * claim and an abort crossing) is kept, and applied as the task starts.
 *
 * Owns: the registry and stops. Must not touch: what a task does (task-execution.ts).
 */
import type { RunnerError } from '../core/errors.ts';

interface Running {
  controller: AbortController;
  sessionKey: string;
  done: Promise<void>;
}

/** A stop asked for a task that was claimed but is not registered yet is kept this long. */
const PENDING_STOP_MS = 60_000;

export class RunningTasks {
  private readonly running = new Map<string, Running>();
  private readonly pendingStops = new Map<string, RunnerError>();

  count(): number {
    return this.running.size;
  }

  has(taskId: string): boolean {
    return this.running.has(taskId);
  }

  taskOf(sessionKey: string): string | undefined {
    for (const [taskId, run] of this.running) if (run.sessionKey === sessionKey) return taskId;
    return undefined;
  }

  /** Registers a task while `run` runs it; a stop asked before is applied at once. */
  track(taskId: string, sessionKey: string, run: (controller: AbortController) => Promise<void>): Promise<void> {
    const controller = new AbortController();
    const pending = this.pendingStops.get(taskId);
    if (pending) {
      this.pendingStops.delete(taskId);
      controller.abort(pending);
    }
    const done = run(controller).finally(() => this.running.delete(taskId));
    this.running.set(taskId, { controller, sessionKey, done });
    return done;
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
}
