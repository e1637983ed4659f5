/**
 * Keeps a task's `task_queued` before its `task_start` in the session log:
 * the scheduler may claim a task the moment it is stored, before the submit
 * that stored it has appended `task_queued`. The execution waits for that.
 * With several nodes the submit may be another node's: then the store is
 * asked until the task has its first event (`isAnnounced`).
 */
import type { Task } from '../core/model.ts';

/** How long a task submitted on another node may wait for its `task_queued` (then it starts anyway). */
const ELSEWHERE_WAIT_MS = 2_000;
const ELSEWHERE_POLL_MS = 5;

export class QueueAnnouncements {
  private readonly pending = new Map<string, Promise<void>>();
  private readonly isAnnounced: ((task: Task) => Promise<boolean>) | undefined;

  /** `isAnnounced`: with other nodes on the store, whether the task's `task_queued` is stored. */
  constructor(isAnnounced?: (task: Task) => Promise<boolean>) {
    this.isAnnounced = isAnnounced;
  }

  /** Marks a task as being announced; call the returned function once `task_queued` is appended (or was not). */
  begin(taskId: string): () => void {
    let done!: () => void;
    this.pending.set(taskId, new Promise<void>((resolve) => { done = resolve; }));
    return () => {
      this.pending.delete(taskId);
      done();
    };
  }

  /** Resolves once the task's announcement is over (at once when none is under way). */
  async settled(task: Task): Promise<void> {
    const here = this.pending.get(task.id);
    if (here || !this.isAnnounced) return here;
    const until = Date.now() + ELSEWHERE_WAIT_MS;
    while (Date.now() < until) {
      if (await this.isAnnounced(task)) return;
      await new Promise((resolve) => setTimeout(resolve, ELSEWHERE_POLL_MS));
    }
  }
}
