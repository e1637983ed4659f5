/**
 * Where a task's time goes on the runner's own layers (issue 12's breakdown):
 * each layer reports a phase's duration at its boundary, and the recorder
 * feeds `claude_runner_hot_path_seconds{phase}` (every RunnerMetrics registry
 * shows it) and keeps a few recent samples per phase for `bench/profile.ts`.
 *
 * It is one per process: the layers that report (HTTP route, task execution,
 * event log, store, gateway) reach it by import, so timing adds no wiring
 * and no cost beyond a `performance.now()` and a histogram observation.
 *
 * Owns: measuring durations. Must not touch: anything it measures; a hook
 * never throws, awaits or changes what it observes.
 */
import { Histogram } from 'prom-client';

/**
 * The phases. A task's own path, one after the other: http_in, queue,
 * start, agent, finish, http_out. Across it: the store's writes and
 * reads, event appends and their fan-out, the gateway's own time per model
 * call (upstream excluded) and the upstream's, and first_text.
 */
export type HotPhase =
  | 'http_in' | 'queue' | 'start' | 'agent' | 'finish' | 'http_out'
  | 'store_write' | 'store_read' | 'event_append' | 'event_fanout'
  | 'gateway' | 'upstream' | 'first_text';

export const HOT_PHASES: readonly HotPhase[] = [
  'http_in', 'queue', 'start', 'agent', 'finish', 'http_out',
  'store_write', 'store_read', 'event_append', 'event_fanout', 'gateway', 'upstream', 'first_text',
];

/** Per-task marks (a start whose end is observed elsewhere) kept at most: an end that never comes cannot grow memory. */
const MAX_MARKS = 4096;
/** Recent samples kept per phase, for percentiles in bench/profile.ts. */
const MAX_SAMPLES = 4096;
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface PhaseStats {
  count: number;
  sumMs: number;
  /** The most recent samples, in ms (at most MAX_SAMPLES). */
  samples: number[];
}

export class HotPathRecorder {
  readonly histogram = new Histogram<'phase'>({
    name: 'claude_runner_hot_path_seconds',
    help: 'Time spent in each phase of the runner\'s hot path (http_in, queue, start, agent, finish, http_out, store_write, store_read, event_append, event_fanout, gateway, upstream, first_text), in seconds. See docs/metrics.md.',
    labelNames: ['phase'], buckets: BUCKETS, registers: [],
  });
  private readonly children = new Map<HotPhase, { observe(value: number): void }>();
  private readonly stats = new Map<HotPhase, PhaseStats>();
  private readonly marks = new Map<string, number>();

  /** One occurrence of `phase` that took `ms`. */
  observe(phase: HotPhase, ms: number): void {
    if (!(ms >= 0)) return;
    let child = this.children.get(phase);
    if (!child) this.children.set(phase, (child = this.histogram.labels(phase)));
    child.observe(ms / 1000);
    let stats = this.stats.get(phase);
    if (!stats) this.stats.set(phase, (stats = { count: 0, sumMs: 0, samples: [] }));
    stats.count += 1;
    stats.sumMs += ms;
    if (stats.samples.push(ms) > MAX_SAMPLES) stats.samples.shift();
  }

  /** `phase` took from `startedAt` (a performance.now()) until now. */
  since(phase: HotPhase, startedAt: number): void {
    this.observe(phase, performance.now() - startedAt);
  }

  /** Remembers when something of `key` (a task id and what) began, for `end` elsewhere. An earlier mark of the key stays. */
  mark(key: string, at = performance.now()): void {
    if (this.marks.has(key)) return;
    this.marks.set(key, at);
    if (this.marks.size > MAX_MARKS) this.marks.delete(this.marks.keys().next().value!);
  }

  hasMark(key: string): boolean {
    return this.marks.has(key);
  }

  /** Observes `phase` from `key`'s mark until now, and forgets the mark; nothing when there is none. */
  end(phase: HotPhase, key: string): void {
    const at = this.marks.get(key);
    if (at === undefined) return;
    this.marks.delete(key);
    this.since(phase, at);
  }

  /** Forgets a mark whose end will not come. */
  drop(key: string): void {
    this.marks.delete(key);
  }

  /** What was observed per phase since the last reset (copies). */
  snapshot(): Partial<Record<HotPhase, PhaseStats>> {
    const out: Partial<Record<HotPhase, PhaseStats>> = {};
    for (const [phase, s] of this.stats) out[phase] = { count: s.count, sumMs: s.sumMs, samples: [...s.samples] };
    return out;
  }

  /** Starts the samples and sums over (the histogram, a Prometheus counter, keeps counting). */
  reset(): void {
    this.stats.clear();
  }
}

/** The process's recorder. */
export const hotPath = new HotPathRecorder();
