/**
 * Keeps a task's `task_queued` before its `task_start` in the session log:
 * the scheduler may claim a task the moment it is stored, before the submit
 * that stored it has appended `task_queued`. The execution waits for that.
 */
export class QueueAnnouncements {
  private readonly pending = new Map<string, Promise<void>>();

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
  async settled(taskId: string): Promise<void> {
    await this.pending.get(taskId);
  }
}
