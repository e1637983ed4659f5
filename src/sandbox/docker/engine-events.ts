/**
 * The engine's `oom` and `die` events of this runner's containers: ONE
 * `GET /events` stream per driver (filtered by type, event and the runner's
 * instance label), opened on the first subscription, reopened with backoff
 * when it ends or fails while subscriptions remain, closed when none are left.
 * Events are dispatched by container id.
 *
 * No event is lost to the moments the stream is not open: each (re)open asks
 * the engine for the events `since` the earliest subscription still waiting
 * (or a little before the stream dropped), and each subscription hears only
 * events at or after its own start, once (the engine's clock and this
 * process's are the same machine's: the driver bind-mounts host folders).
 */
import type { IncomingMessage } from 'node:http';
import type Docker from 'dockerode';
import { LABELS } from './container-spec.ts';
import type { SandboxLogger } from './exec-process.ts';

export interface EngineEvent {
  action: 'oom' | 'die';
  /** The container's exit code (die only). */
  exitCode: number | null;
}

interface Subscription {
  listener: (event: EngineEvent) => void;
  /** When it started (ms since the epoch): earlier events are not its. */
  since: number;
  /** Events already delivered ("action@timeNano"): a reopened stream replays some. */
  seen: Set<string>;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** How far back a reopened stream starts before the moment the last one dropped. */
const REPLAY_MS = 5000;
/** A stream that lived this long was healthy: the next failure starts the backoff again. */
const HEALTHY_MS = 10_000;

export class EngineEvents {
  #docker: Docker;
  #runnerId: string;
  #logger: SandboxLogger;
  #subscriptions = new Map<string, Set<Subscription>>();
  /** The open stream, or the attempt to open one. */
  #stream: IncomingMessage | null = null;
  #opening: AbortController | null = null;
  #retry: NodeJS.Timeout | null = null;
  #backoff = MIN_BACKOFF_MS;
  /** When the last stream dropped (ms): a reopen replays from a little before. */
  #droppedAt: number | null = null;
  /** Incremented on each open and close: callbacks of an older stream do nothing. */
  #generation = 0;
  /** When the open stream opened (performance.now()); null while none is open. */
  #openedAt: number | null = null;

  constructor(docker: Docker, runnerId: string, logger: SandboxLogger) {
    this.#docker = docker;
    this.#runnerId = runnerId;
    this.#logger = logger;
  }

  /** Calls `listener` on each `oom` and `die` of the container from now on; returns the unsubscribe. */
  subscribe(containerId: string, listener: (event: EngineEvent) => void): () => void {
    const subscription: Subscription = { listener, since: Date.now(), seen: new Set() };
    let set = this.#subscriptions.get(containerId);
    if (!set) this.#subscriptions.set(containerId, (set = new Set()));
    set.add(subscription);
    if (!this.#stream && !this.#opening && !this.#retry) this.#open();
    return () => {
      const current = this.#subscriptions.get(containerId);
      if (!current?.delete(subscription)) return;
      if (current.size === 0) this.#subscriptions.delete(containerId);
      if (this.#subscriptions.size === 0) this.#shut();
    };
  }

  /**
   * True when a stream is open now and has been since before `at`
   * (performance.now()): every event after `at` reached the subscriptions of then.
   */
  openSince(at: number): boolean {
    return this.#openedAt !== null && this.#openedAt <= at;
  }

  /** Ends every subscription and closes the stream. */
  close(): void {
    this.#subscriptions.clear();
    this.#shut();
  }

  #shut(): void {
    this.#generation++;
    this.#opening?.abort();
    this.#opening = null;
    this.#stream?.destroy();
    this.#stream = null;
    this.#openedAt = null;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    this.#backoff = MIN_BACKOFF_MS;
    this.#droppedAt = null;
  }

  #open(): void {
    const generation = ++this.#generation;
    const opening = new AbortController();
    this.#opening = opening;
    let since = Math.min(...[...this.#subscriptions.values()].flatMap((set) => [...set].map((s) => s.since)));
    if (this.#droppedAt !== null) since = Math.max(since, this.#droppedAt - REPLAY_MS);
    const options = {
      since: (since / 1000).toFixed(3),
      filters: { type: ['container'], event: ['oom', 'die'], label: [`${LABELS.instance}=${this.#runnerId}`] },
      abortSignal: opening.signal,
    };
    const openedAt = Date.now();
    this.#docker.getEvents(options as unknown as Docker.GetEventsOptions).then(
      (readable) => {
        const stream = readable as IncomingMessage;
        if (generation !== this.#generation) return void stream.destroy();
        this.#opening = null;
        this.#stream = stream;
        this.#openedAt = performance.now();
        // The stream must not keep the process alive by itself.
        stream.socket?.unref();
        stream.setEncoding('utf8');
        let partial = '';
        stream.on('data', (chunk: string) => {
          const lines = (partial + chunk).split('\n');
          partial = lines.pop()!;
          for (const line of lines) if (line.trim()) this.#dispatch(line);
        });
        let ended = false;
        const dropped = (error?: Error): void => {
          if (ended) return;
          ended = true;
          if (Date.now() - openedAt > HEALTHY_MS) this.#backoff = MIN_BACKOFF_MS;
          this.#dropped(generation, error);
        };
        stream.on('end', () => dropped());
        stream.on('close', () => dropped());
        stream.on('error', (error) => dropped(error));
      },
      (error: unknown) => this.#dropped(generation, error as Error),
    );
  }

  #dropped(generation: number, error?: Error): void {
    if (generation !== this.#generation) return;
    this.#stream = null;
    this.#openedAt = null;
    this.#opening = null;
    this.#droppedAt = Date.now();
    if (this.#subscriptions.size === 0) return;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
    this.#logger.warn({ err: error?.message ?? 'ended', retryInMs: delay }, 'sandbox: the engine event stream dropped, reopening it');
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#subscriptions.size > 0) this.#open();
    }, delay);
    this.#retry.unref();
  }

  #dispatch(line: string): void {
    let event: { Type?: string; Action?: string; id?: string; timeNano?: number; time?: number; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line);
    } catch {
      this.#logger.warn({ line: line.slice(0, 200) }, 'sandbox: unreadable engine event');
      return;
    }
    const action = event.Action;
    const id = event.Actor?.ID ?? event.id;
    if (event.Type !== 'container' || (action !== 'oom' && action !== 'die') || !id) return;
    const subscriptions = this.#subscriptions.get(id);
    if (!subscriptions) return;
    const at = event.timeNano !== undefined ? event.timeNano / 1e6 : (event.time ?? 0) * 1000;
    const key = `${action}@${event.timeNano ?? event.time}`;
    const rawExit = event.Actor?.Attributes?.exitCode;
    const exitCode = action === 'die' && rawExit !== undefined && /^-?\d+$/.test(rawExit) ? Number(rawExit) : null;
    for (const subscription of [...subscriptions]) {
      if (!subscriptions.has(subscription) || at < subscription.since || subscription.seen.has(key)) continue;
      subscription.seen.add(key);
      try {
        subscription.listener({ action, exitCode });
      } catch (error) {
        this.#logger.error({ err: (error as Error).message }, 'sandbox: an event listener threw');
      }
    }
  }
}
