/**
 * The session event log: every event is redacted, stored with the session's
 * next sequence number, and only then published to subscribers. Appends that
 * arrive together (token deltas) are written in one transaction.
 *
 * A subscriber asks for everything after a sequence number: it is registered
 * for live events first (held back), then the store is replayed, then the
 * held-back events are released, skipping any seq already delivered. So the
 * seam between replay and live has no gap and no duplicate.
 *
 * Owns: ordering and delivery of events. Must not touch: transports (WS/SSE
 * live in src/http), which decide what to do with a slow reader.
 */
import type { EventPayloads, EventType, NewEvent, StoredEvent } from '../core/events.ts';
import type { Store } from '../core/ports/store.ts';
import type { Redactor } from '../secrets/redactor.ts';

export interface EventSubscriber {
  /** Events with seq > the requested one, in order, each once. */
  onEvent(event: StoredEvent): void;
  /** Events (fromSeq..toSeq) were dropped by retention before this subscriber could read them. */
  onGap(fromSeq: number, toSeq: number): void;
  /** The subscriber fell too far behind and was dropped; it may subscribe again from its last seq. */
  onOverflow(): void;
}

export interface Subscription {
  close(): void;
}

interface Registered {
  sessionKey: string;
  lastSeq: number;
  live: boolean;
  held: StoredEvent[];
  subscriber: EventSubscriber;
  closed: boolean;
}

interface Pending {
  event: NewEvent;
  resolve(event: StoredEvent): void;
  reject(error: Error): void;
}

const REPLAY_PAGE = 500;
/** A subscriber whose replay is so slow that this many live events pile up is dropped; it can resume. */
const MAX_HELD = 10_000;

export class EventLog {
  private readonly store: Store;
  private readonly redactor: Redactor;
  private readonly subscribers = new Map<string, Set<Registered>>();
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;

  constructor(store: Store, redactor: Redactor) {
    this.store = store;
    this.redactor = redactor;
  }

  /** Resolves once the event is stored (and published). */
  append<T extends EventType>(sessionKey: string, taskId: string | null, type: T, data: EventPayloads[T]): Promise<StoredEvent<T>> {
    return new Promise<StoredEvent>((resolve, reject) => {
      this.pending.push({ event: { sessionKey, taskId, type, data: this.redactor.redactDeep(data) }, resolve, reject });
      this.flushing ??= new Promise<void>((done) => setImmediate(done)).then(() => this.flush());
    }) as Promise<StoredEvent<T>>;
  }

  /** Waits until everything appended so far is stored. */
  async settle(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  async subscribe(sessionKey: string, afterSeq: number, subscriber: EventSubscriber): Promise<Subscription> {
    const entry: Registered = { sessionKey, lastSeq: afterSeq, live: false, held: [], subscriber, closed: false };
    let set = this.subscribers.get(sessionKey);
    if (!set) this.subscribers.set(sessionKey, (set = new Set()));
    set.add(entry);
    const subscription = { close: () => this.unsubscribe(entry) };
    try {
      const bounds = await this.store.eventBounds(sessionKey);
      if (bounds.firstSeq > 0 && afterSeq < bounds.firstSeq - 1) {
        subscriber.onGap(afterSeq + 1, bounds.firstSeq - 1);
        entry.lastSeq = bounds.firstSeq - 1;
      }
      for (;;) {
        const page = await this.store.readEvents(sessionKey, entry.lastSeq, REPLAY_PAGE);
        for (const event of page) this.deliver(entry, event);
        if (page.length < REPLAY_PAGE || entry.closed) break;
      }
      entry.live = true;
      for (const event of entry.held.splice(0)) this.deliver(entry, event);
    } catch (error) {
      this.unsubscribe(entry);
      throw error;
    }
    return subscription;
  }

  subscriberCount(sessionKey: string): number {
    return this.subscribers.get(sessionKey)?.size ?? 0;
  }

  private unsubscribe(entry: Registered): void {
    entry.closed = true;
    const set = this.subscribers.get(entry.sessionKey);
    set?.delete(entry);
    if (set?.size === 0) this.subscribers.delete(entry.sessionKey);
  }

  private deliver(entry: Registered, event: StoredEvent): void {
    if (entry.closed || event.seq <= entry.lastSeq) return;
    entry.lastSeq = event.seq;
    try {
      entry.subscriber.onEvent(event);
    } catch {
      // A transport that fails to take an event is as good as gone.
      this.unsubscribe(entry);
      entry.subscriber.onOverflow();
    }
  }

  private publish(event: StoredEvent): void {
    const set = this.subscribers.get(event.sessionKey);
    if (!set) return;
    for (const entry of set) {
      if (entry.live) {
        this.deliver(entry, event);
      } else if (entry.held.push(event) > MAX_HELD) {
        this.unsubscribe(entry);
        entry.subscriber.onOverflow();
      }
    }
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        const stored = await this.store.appendEvents(batch.map((p) => p.event), Date.now());
        stored.forEach((event, i) => {
          this.publish(event);
          batch[i]!.resolve(event);
        });
      } catch (error) {
        for (const p of batch) p.reject(error as Error);
      }
    }
    this.flushing = null;
  }
}
