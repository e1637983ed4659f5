/**
 * The queue's engine: claims runnable tasks from the store (one per session
 * at most, sessions served least recently first) while fewer than
 * MAX_CONCURRENT_TASKS run here, and hands each to the execution. Claiming
 * is the store's atomic operation, so the store is the only source of truth
 * on what runs; what runs here is the execution's to count.
 */
import type { Task } from '../core/model.ts';
import type { Store } from '../core/ports/store.ts';

export interface SchedulerOptions {
  store: Store;
  runnerId: string;
  maxConcurrent: number;
  execution: { execute(task: Task): Promise<void>; runningCount(): number; settled(): Promise<void> };
  /** Called once a task has ended and is no longer counted as running here. */
  onTaskDone?(): void;
  logger: { error(obj: object, msg?: string): void };
}

export class Scheduler {
  private readonly options: SchedulerOptions;
  private passing: Promise<void> | null = null;
  private again = false;
  /** Off until start(): pokes before crash recovery has run would claim tasks that recovery then interrupts. */
  private accepting = false;
  /** Claims held back for a while (a node that lost its lease, until it has joined again). */
  private paused = false;

  constructor(options: SchedulerOptions) {
    this.options = options;
  }

  /** Something changed (a task was queued or ended): look for work. */
  poke(): void {
    if (!this.accepting || this.paused) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.pass().finally(() => {
      this.passing = null;
      if (this.again) {
        this.again = false;
        this.poke();
      }
    });
  }

  runningCount(): number {
    return this.options.execution.runningCount();
  }

  /** Claims tasks from now on (after crash recovery), starting with a look for work. */
  start(): void {
    this.accepting = true;
    this.poke();
  }

  /** Claims nothing until resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.poke();
  }

  /** Claims no more tasks. */
  stop(): void {
    this.accepting = false;
  }

  /** Resolves when the tasks running here have ended, or after timeoutMs (returns false then). */
  async drain(timeoutMs: number): Promise<boolean> {
    await this.passing;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    const drained = await Promise.race([this.options.execution.settled().then(() => true as const), timeout]);
    clearTimeout(timer);
    return drained;
  }

  private async pass(): Promise<void> {
    const { execution, store, runnerId, maxConcurrent, logger } = this.options;
    const free = maxConcurrent - execution.runningCount();
    if (free <= 0 || !this.accepting || this.paused) return;
    let claimed: Task[];
    try {
      claimed = await store.claimTasks(runnerId, free, Date.now());
    } catch (error) {
      logger.error({ err: error }, 'claiming tasks failed');
      return;
    }
    for (const task of claimed) {
      void execution.execute(task)
        .catch((error: unknown) => logger.error({ err: error, taskId: task.id }, 'task execution failed'))
        .finally(() => {
          this.poke();
          this.options.onTaskDone?.();
        });
    }
  }
}
