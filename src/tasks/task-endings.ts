/**
 * The end of every task, told the same way whoever ended it (its execution,
 * an abort of a queued task, recovery after a crash): `abort` when it was
 * aborted, then `task_error` or `task_complete`, built from the stored task;
 * then its waiters are woken, even when the events could not be stored.
 */
import type { Task } from '../core/model.ts';
import type { EventLog } from '../events/event-log.ts';
import type { TaskCompletions } from './completions.ts';

export class TaskEndings {
  private readonly events: EventLog;
  private readonly completions: TaskCompletions;
  private readonly logger: { error(obj: object, msg?: string): void };

  constructor(events: EventLog, completions: TaskCompletions, logger: { error(obj: object, msg?: string): void }) {
    this.events = events;
    this.completions = completions;
    this.logger = logger;
  }

  async ended(task: Task): Promise<void> {
    try {
      if (task.status === 'aborted') await this.events.append(task.sessionKey, task.id, 'abort', { taskId: task.id });
      const cost = task.costUsd ?? 0;
      const duration = task.durationMs ?? 0;
      if (task.status === 'succeeded') {
        await this.events.append(task.sessionKey, task.id, 'task_complete', {
          taskId: task.id, output: task.output, cost, duration, tools: task.tools, resumed: task.resumed ?? false,
        });
      } else {
        await this.events.append(task.sessionKey, task.id, 'task_error', {
          taskId: task.id, status: task.status, error: task.error ?? { code: 'INTERNAL', message: 'Internal error.' }, cost, duration,
        });
      }
    } catch (error) {
      this.logger.error({ err: error, taskId: task.id }, 'could not store the end of a task');
    } finally {
      this.completions.announce(task);
    }
  }
}
