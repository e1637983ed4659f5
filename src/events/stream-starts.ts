/**
 * Where a stream starts, when the client does not say: a session stream at
 * the oldest task still queued or running (a client that connects after
 * POST /task sees the whole task), or live when nothing is in flight (the
 * seed's behaviour); a task stream just before its `task_queued`. An `after`
 * past the end of the log (a session deleted and created again) means "from
 * now".
 */
import type { Session, Task } from '../core/model.ts';
import type { Store } from '../core/ports/store.ts';

export interface SessionStreamStart {
  /** Events with seq > after are sent. */
  after: number;
  /** The `connected` frame's fields: the seed's {busy, turns}, and where the log ends. */
  connected: { sessionId: string; busy: boolean; turns: number; lastSeq: number; after: number };
}

export class StreamStarts {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  async session(session: Session, requested: number | undefined): Promise<SessionStreamStart> {
    const summary = await this.store.summarizeSession(session.key);
    const { lastSeq } = await this.store.eventBounds(session.key);
    const after = Math.min(requested ?? await this.inFlightStart(session, lastSeq), lastSeq);
    return { after, connected: { sessionId: session.id, busy: (summary?.running ?? 0) > 0, turns: session.turns, lastSeq, after } };
  }

  /**
   * Just before the task's task_queued. When that fell out of the log
   * (retention), from the start of the log, so the client is told about the
   * gap instead of silently getting half a task.
   */
  async task(task: Task): Promise<number> {
    const first = await this.store.taskFirstEventSeq(task.sessionKey, task.id);
    if (first === null) return task.status === 'queued' ? (await this.store.eventBounds(task.sessionKey)).lastSeq : 0;
    const [event] = await this.store.readEvents(task.sessionKey, first - 1, 1);
    return event?.type === 'task_queued' ? first - 1 : 0;
  }

  private async inFlightStart(session: Session, lastSeq: number): Promise<number> {
    const inFlight = await this.store.oldestUnfinishedTask(session.key);
    if (!inFlight) return lastSeq;
    const first = await this.store.taskFirstEventSeq(session.key, inFlight.id);
    return first === null ? lastSeq : first - 1;
  }
}
