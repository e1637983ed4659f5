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

  /** Called for every task that ends (metrics). */
  onEnd(listener: Waiter): void {
    this.listeners.push(listener);
  }

  announce(task: Task): void {
    for (const listener of this.listeners) listener(task);
    const set = this.waiters.get(task.id);
    if (!set) return;
    this.waiters.delete(task.id);
    for (const waiter of set) waiter(task);
  }

  /** Resolves with the task once it is final. `load` reads it from the store, to close the race with a task that just ended. */
  async wait(taskId: string, load: () => Promise<Task | undefined>, signal?: AbortSignal): Promise<Task> {
    let set = this.waiters.get(taskId);
    if (!set) this.waiters.set(taskId, (set = new Set()));
    let waiter!: Waiter;
    const done = new Promise<Task>((resolve, reject) => {
      waiter = resolve;
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    set.add(waiter);
    try {
      const current = await load();
      if (current && isFinal(current.status)) return current;
      return await done;
    } finally {
      set.delete(waiter);
      if (set.size === 0 && this.waiters.get(taskId) === set) this.waiters.delete(taskId);
    }
  }
}
