/**
 * Lets callers wait for a task to end (a blocking POST /task). Whoever ends a
 * task announces it here; a waiter that arrives after the end reads the store.
 */
import type { Task } from '../core/model.ts';
import { isFinal } from '../core/task-status.ts';

type Waiter = (task: Task) => void;

export class TaskCompletions {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly listeners: Waiter[] = [];
  /** Rejects the waits in progress (shutdown). */
  private readonly rejecters = new Set<(reason: Error) => void>();
  private released: Error | null = null;

  /** Callers waiting for a task to end (metrics, tests). */
  waiting(): number {
    let count = 0;
    for (const set of this.waiters.values()) count += set.size;
    return count;
  }

  /** Called for every task that ends (metrics). */
  onEnd(listener: Waiter): void {
    this.listeners.push(listener);
  }

  announce(task: Task): void {
    for (const listener of this.listeners) listener(task);
    this.answerWaiters(task);
  }

  /** Someone waits for this task here. */
  isAwaited(taskId: string): boolean {
    return this.waiters.has(taskId);
  }

  /** A task another node ended: only the callers waiting here are answered (its listeners ran there). */
  endedElsewhere(task: Task): void {
    if (isFinal(task.status)) this.answerWaiters(task);
  }

  /** Tasks waited for here (to re-read after the cluster bus was cut). */
  awaited(): string[] {
    return [...this.waiters.keys()];
  }

  private answerWaiters(task: Task): void {
    const set = this.waiters.get(task.id);
    if (!set) return;
    this.waiters.delete(task.id);
    for (const waiter of set) waiter(task);
  }

  /**
   * Ends every wait in progress, and any later one, with `reason`: at
   * shutdown, callers of tasks that stay queued are told so instead of
   * having their connection cut.
   */
  releaseAll(reason: Error): void {
    this.released = reason;
    for (const reject of [...this.rejecters]) reject(reason);
  }

  /**
   * Resolves with the task once it is final. `load` reads it from the store, to close the race with a task that just ended.
   * Rejects with `signal`'s reason when it aborts first, with the release reason at shutdown, or with `load`'s error.
   */
  async wait(taskId: string, load: () => Promise<Task | undefined>, signal?: AbortSignal): Promise<Task> {
    let set = this.waiters.get(taskId);
    if (!set) this.waiters.set(taskId, (set = new Set()));
    let waiter!: Waiter;
    let rejecter!: (reason: Error) => void;
    const done = new Promise<Task>((resolve, reject) => {
      waiter = resolve;
      rejecter = reject;
    });
    // `done` may be settled while nothing awaits it (the caller leaves after `load` answered, or `load` fails):
    // its rejection is handled here, so it never becomes an unhandled rejection (which ends the process).
    done.catch(() => undefined);
    const onAbort = (): void => rejecter(signal!.reason instanceof Error ? signal!.reason : new Error('the wait was aborted'));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    set.add(waiter);
    this.rejecters.add(rejecter);
    try {
      const current = await load();
      if (current && isFinal(current.status)) return current;
      if (this.released) throw this.released;
      return await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      set.delete(waiter);
      this.rejecters.delete(rejecter);
      if (set.size === 0 && this.waiters.get(taskId) === set) this.waiters.delete(taskId);
    }
  }
}
