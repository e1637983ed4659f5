/**
 * The session event log: every event is redacted, stored with the session's
 * next sequence number, and only then published to subscribers. Appends that
 * arrive together (token deltas) are written in one transaction.
 *
 * A subscriber asks for everything after a sequence number: it is registered
 * for live events first (held back), then the store is replayed, then the
 * held-back events are released, skipping any seq already delivered. So the
 * seam between replay and live has no gap and no duplicate. Seqs of a session
 * are consecutive, so a jump can only mean events fell out by retention: the
 * subscriber is told (onGap), never skipped past silently. The replay is paced
 * by the subscriber (whenWritable), so a slow reader resuming a long backlog
 * is not flooded; live events wait for it in a bounded queue.
 *
 * With a store shared by several nodes (`shared`), other nodes append to the
 * same sessions: a node learns of their events by a notice (storedElsewhere)
 * and reads them from the store, the truth. So that events reach subscribers
 * in order whoever appended them, a session's events are then delivered from
 * one cursor: an event that does not follow the last one delivered here is
 * read back from the store with what it skipped.
 *
 * Owns: ordering and delivery of events. Must not touch: transports (WS/SSE
 * live in src/http), which decide what to do with a slow reader.
 */
import type { EventPayloads, EventType, NewEvent, StoredEvent } from '../core/events.ts';
import type { Store } from '../core/ports/store.ts';
import { hotPath } from '../metrics/hot-path.ts';
import type { Redactor } from '../secrets/redactor.ts';

export interface EventSubscriber {
  /** Events with seq > the requested one, in order, each once. */
  onEvent(event: StoredEvent): void;
  /** Events (fromSeq..toSeq) were dropped by retention before this subscriber could read them. */
  onGap(fromSeq: number, toSeq: number): void;
  /** The subscriber fell too far behind and was dropped; it may subscribe again from its last seq. */
  onOverflow(): void;
  /** The session is gone (deleted): no event will come any more. */
  onEnd(): void;
  /** Asked before each replayed event: a promise to wait for (its buffer is full), or undefined to go on. */
  whenWritable?(): Promise<void> | undefined;
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
  /** performance.now() at append: event_append is measured from it to the event published. */
  at: number;
  resolve(event: StoredEvent): void;
  reject(error: Error): void;
}

/** Where a session's delivery stands on this node (shared store only). */
interface Cursor {
  /** Highest seq delivered to this session's subscribers (null: none yet, start from theirs). */
  deliveredTo: number | null;
  /** Highest seq known stored. */
  wanted: number;
  reading: Promise<void> | null;
}

export interface EventLogOptions {
  /** Other nodes append to this store too. */
  shared?: boolean;
  /** Told after each stored batch, with the last seq per session (the cluster's doorbell). */
  onStored?(sessionKey: string, lastSeq: number): void;
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
  private readonly options: EventLogOptions;
  private readonly cursors = new Map<string, Cursor>();

  constructor(store: Store, redactor: Redactor, options: EventLogOptions = {}) {
    this.store = store;
    this.redactor = redactor;
    this.options = options;
  }

  /** Another node stored the session's events up to lastSeq: subscribers here get what they lack. */
  storedElsewhere(sessionKey: string, lastSeq: number): void {
    if (!this.subscribers.has(sessionKey)) return;
    this.readUpTo(sessionKey, lastSeq);
  }

  /** The bus was cut: every session with subscribers here is read up to what is stored now. */
  async resync(): Promise<void> {
    for (const sessionKey of [...this.subscribers.keys()]) {
      const { lastSeq } = await this.store.eventBounds(sessionKey);
      this.readUpTo(sessionKey, lastSeq);
    }
  }

  /** Reads again what a failed read left undelivered (the cluster's periodic catch-up). */
  retryStalled(): void {
    for (const [sessionKey, cursor] of this.cursors) {
      if (!cursor.reading && (cursor.deliveredTo ?? -1) < cursor.wanted) this.readUpTo(sessionKey, cursor.wanted);
    }
  }

  /** Resolves once the event is stored (and published). */
  append<T extends EventType>(sessionKey: string, taskId: string | null, type: T, data: EventPayloads[T]): Promise<StoredEvent<T>> {
    return new Promise<StoredEvent>((resolve, reject) => {
      this.pending.push({ event: { sessionKey, taskId, type, data: this.redactor.redactDeep(data, sessionKey) }, at: performance.now(), resolve, reject });
      this.flushing ??= new Promise<void>((done) => setImmediate(done)).then(() => this.flush());
    }) as Promise<StoredEvent<T>>;
  }

  /** Waits until everything appended so far is stored. */
  async settle(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** `signal` ends the subscription, also while it is still replaying. */
  async subscribe(sessionKey: string, afterSeq: number, subscriber: EventSubscriber, signal?: AbortSignal): Promise<Subscription> {
    const entry: Registered = { sessionKey, lastSeq: afterSeq, live: false, held: [], subscriber, closed: false };
    const subscription = { close: () => this.unsubscribe(entry) };
    if (signal?.aborted) {
      entry.closed = true;
      return subscription;
    }
    let set = this.subscribers.get(sessionKey);
    if (!set) this.subscribers.set(sessionKey, (set = new Set()));
    set.add(entry);
    signal?.addEventListener('abort', subscription.close, { once: true });
    try {
      // Everything up to bounds.lastSeq is committed: what the replay does not find of it was trimmed.
      const bounds = await this.store.eventBounds(sessionKey);
      // A seq from the future (another incarnation of the session id, or a confused client) means "from now".
      if (entry.lastSeq > bounds.lastSeq) entry.lastSeq = bounds.lastSeq;
      replay: for (;;) {
        const page = await this.store.readEvents(sessionKey, entry.lastSeq, REPLAY_PAGE);
        for (const event of page) {
          if (!(await this.paced(entry, event))) break replay;
        }
        if (page.length < REPLAY_PAGE) break;
      }
      if (!entry.closed && entry.lastSeq < bounds.lastSeq) this.skipTo(entry, bounds.lastSeq);
      // What was published meanwhile, paced too; it keeps growing until caught up (or MAX_HELD drops the subscriber).
      held: while (entry.held.length > 0) {
        for (const event of entry.held.splice(0)) {
          if (!(await this.paced(entry, event))) break held;
        }
      }
      entry.live = true;
    } catch (error) {
      this.unsubscribe(entry);
      throw error;
    }
    return subscription;
  }

  /** Delivers one replayed event once the subscriber can take it; false when it is gone. */
  private async paced(entry: Registered, event: StoredEvent): Promise<boolean> {
    if (entry.closed) return false;
    const wait = entry.subscriber.whenWritable?.();
    if (wait) await wait;
    this.deliver(entry, event);
    return !entry.closed;
  }

  /** The session was deleted: its subscribers are told (onEnd) and let go. */
  closeSession(sessionKey: string): void {
    for (const entry of [...(this.subscribers.get(sessionKey) ?? [])]) {
      this.unsubscribe(entry);
      entry.subscriber.onEnd();
    }
  }

  subscriberCount(sessionKey: string): number {
    return this.subscribers.get(sessionKey)?.size ?? 0;
  }

  /** Subscribers of every session (metrics: the streams open). */
  subscriberTotal(): number {
    let total = 0;
    for (const set of this.subscribers.values()) total += set.size;
    return total;
  }

  private unsubscribe(entry: Registered): void {
    entry.closed = true;
    const set = this.subscribers.get(entry.sessionKey);
    set?.delete(entry);
    if (set?.size === 0) {
      this.subscribers.delete(entry.sessionKey);
      this.cursors.delete(entry.sessionKey);
    }
  }

  private deliver(entry: Registered, event: StoredEvent): void {
    if (entry.closed || event.seq <= entry.lastSeq) return;
    if (event.seq > entry.lastSeq + 1) this.skipTo(entry, event.seq - 1);
    if (entry.closed) return;
    entry.lastSeq = event.seq;
    this.call(entry, () => entry.subscriber.onEvent(event));
  }

  /** Seqs up to `seq` are gone from the log: the subscriber hears which, then goes on after them. */
  private skipTo(entry: Registered, seq: number): void {
    const from = entry.lastSeq + 1;
    entry.lastSeq = seq;
    this.call(entry, () => entry.subscriber.onGap(from, seq));
  }

  private call(entry: Registered, fn: () => void): void {
    try {
      fn();
    } catch {
      // A transport that fails to take an event is as good as gone.
      this.unsubscribe(entry);
      entry.subscriber.onOverflow();
    }
  }

  /** A stored event of this node: delivered now when it follows the last one, else read back in order. */
  private publishStored(event: StoredEvent): void {
    if (!this.options.shared) {
      this.publish(event);
      return;
    }
    if (!this.subscribers.has(event.sessionKey)) return;
    const cursor = this.cursors.get(event.sessionKey);
    if (cursor && !cursor.reading && cursor.deliveredTo === event.seq - 1) {
      cursor.deliveredTo = cursor.wanted = event.seq;
      this.publish(event);
      return;
    }
    this.readUpTo(event.sessionKey, event.seq);
  }

  private readUpTo(sessionKey: string, seq: number): void {
    let cursor = this.cursors.get(sessionKey);
    if (!cursor) this.cursors.set(sessionKey, (cursor = { deliveredTo: null, wanted: 0, reading: null }));
    cursor.wanted = Math.max(cursor.wanted, seq);
    if (cursor.reading || (cursor.deliveredTo ?? -1) >= cursor.wanted) return;
    const reading = this.readBack(sessionKey, cursor).then(
      () => {
        cursor.reading = null;
        // Asked for more while reading.
        if (this.cursors.get(sessionKey) === cursor && (cursor.deliveredTo ?? -1) < cursor.wanted) this.readUpTo(sessionKey, cursor.wanted);
      },
      () => {
        // Retried by the next notice or append, by resync or retryStalled.
        cursor.reading = null;
      },
    );
    cursor.reading = reading;
  }

  private async readBack(sessionKey: string, cursor: Cursor): Promise<void> {
    for (;;) {
      const set = this.subscribers.get(sessionKey);
      if (!set || this.cursors.get(sessionKey) !== cursor) return;
      // First read: from the subscriber furthest behind (deliver() drops what one already has).
      const from = cursor.deliveredTo ?? Math.min(...[...set].map((entry) => entry.lastSeq));
      if (from >= cursor.wanted) return;
      const page = await this.store.readEvents(sessionKey, from, REPLAY_PAGE);
      if (page.length === 0) {
        // Stored before the notice was sent, yet gone: trimmed or deleted. The next event tells subscribers the gap.
        cursor.deliveredTo = cursor.wanted;
        return;
      }
      for (const event of page) this.publish(event);
      cursor.deliveredTo = page.at(-1)!.seq;
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
        this.stored(batch, await this.store.appendEvents(batch.map((p) => p.event), Date.now()));
      } catch (error) {
        // One session's failure (e.g. deleted meanwhile) must not lose other sessions' events of the same batch.
        const bySession = Map.groupBy(batch, (p) => p.event.sessionKey);
        if (bySession.size === 1) {
          for (const p of batch) p.reject(error as Error);
          continue;
        }
        for (const group of bySession.values()) {
          try {
            this.stored(group, await this.store.appendEvents(group.map((p) => p.event), Date.now()));
          } catch (groupError) {
            for (const p of group) p.reject(groupError as Error);
          }
        }
      }
    }
    this.flushing = null;
  }

  private stored(batch: Pending[], events: StoredEvent[]): void {
    const last = new Map<string, number>();
    events.forEach((event, i) => {
      const publishing = performance.now();
      last.set(event.sessionKey, event.seq);
      this.publishStored(event);
      hotPath.since('event_fanout', publishing);
      hotPath.since('event_append', batch[i]!.at);
      // first_text: from the gateway's first byte of the answer that carried it (gateway.ts marks it).
      if (event.type === 'text' && event.taskId !== null) hotPath.end('first_text', `${event.taskId}:text`);
      batch[i]!.resolve(event);
    });
    if (this.options.onStored) for (const [sessionKey, seq] of last) this.options.onStored(sessionKey, seq);
  }
}
