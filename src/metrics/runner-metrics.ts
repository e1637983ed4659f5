/**
 * The runner's Prometheus metrics (GET /metrics), with prom-client: what
 * tasks ended and how (by agent and tenant), how long they took, the queue,
 * the running tasks, sandboxes and live agents, the gateway's model calls,
 * errors and egress refusals, and the open streams. docs/metrics.md lists
 * every metric with its labels and meaning.
 *
 * It is fed by explicit hooks that the composition root (src/app.ts) wires:
 * tasks that end (TaskCompletions.onEnd), events as they are stored
 * (observedStore), the gateway's observer, and read-only sources asked at
 * scrape time (gauges). Labels stay bounded: agents, tenants, statuses,
 * outcomes and reasons; never a session or task id.
 *
 * Owns: observing the runner. Must not touch: anything it observes; it never
 * changes a task, a session, an event or a decision of the gateway.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StoredEvent } from '../core/events.ts';
import type { Task } from '../core/model.ts';
import type { GatewayErrorKind, GatewayObserver, ModelCallOutcome } from '../core/ports/model-gateway.ts';
import type { Store } from '../core/ports/store.ts';
import { hotPath } from './hot-path.ts';

/** What the gauges read at scrape time: each cheap (an indexed count, a size, one engine listing). */
export interface MetricSources {
  /** Tasks queued, on every runner sharing the store. */
  queuedTasks(): Promise<number>;
  runningTasks(): number;
  /** Sandboxes (containers) of this runner that run. */
  runningSandboxes(): Promise<number>;
  liveAgents(): number;
  /** Ready sessions a new session can claim now (src/sessions/ready-pool.ts). */
  readySessions(): number;
  /** Stream subscribers (WebSocket and SSE) open on this runner. */
  streamSubscribers(): number;
  /** The agent (template) of a session, or undefined when the session is gone. */
  agentOf(sessionKey: string): Promise<string | undefined>;
}

/** Events that show the agent at work: time to the first one is what a user waits before anything happens. */
const AGENT_EVENTS: ReadonlySet<string> = new Set(['init', 'thinking', 'text', 'tool_start']);
const DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600];
const FIRST_EVENT_BUCKETS = [0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600];
/** Distinct values a free-text label (the model asked for) may take before the rest count as "other". */
const MAX_LABEL_VALUES = 32;
const UNKNOWN_AGENT = 'unknown';

/** Keeps a label's values few: the first `max` well-formed values, then "other". */
class BoundedLabel {
  private readonly seen = new Set<string>();
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (!/^[\w.:@/ -]{1,100}$/.test(value) || this.seen.size >= this.max) return 'other';
    this.seen.add(value);
    return value;
  }
}

export class RunnerMetrics {
  readonly registry = new Registry();
  private readonly sources: MetricSources;
  private readonly models = new BoundedLabel(MAX_LABEL_VALUES);
  private readonly reasons = new BoundedLabel(MAX_LABEL_VALUES);
  /** The agent of each task seen queued here, looked up once (its session may be gone when it ends). */
  private readonly agents = new Map<string, string>();
  private readonly agentLookups = new Map<string, Promise<string>>();
  /** When each running task's first agent event was stored. */
  private readonly firstEventAt = new Map<string, number>();
  private readonly tasksEnded: Counter<'status' | 'agent'>;
  private readonly taskDuration: Histogram<'agent'>;
  private readonly firstEvent: Histogram<'agent'>;
  private readonly cost: Counter<'agent' | 'tenant'>;
  private readonly modelCalls: Counter<'model' | 'outcome'>;
  private readonly gatewayErrors: Counter<'kind'>;
  private readonly egressRefusals: Counter<'reason'>;

  constructor(sources: MetricSources) {
    this.sources = sources;
    const registers = [this.registry];
    // Node's own (process_*, nodejs_*): the usual names, which dashboards expect unprefixed.
    collectDefaultMetrics({ register: this.registry });
    // The process's hot-path phases (src/metrics/hot-path.ts), shown by every runner's registry.
    this.registry.registerMetric(hotPath.histogram);
    this.tasksEnded = new Counter({
      name: 'claude_runner_tasks_total', help: 'Tasks ended on this runner, by final status and agent (template).',
      labelNames: ['status', 'agent'], registers,
    });
    this.taskDuration = new Histogram({
      name: 'claude_runner_task_duration_seconds', help: 'Run time of tasks that started, from their start to their end, in seconds, by agent.',
      labelNames: ['agent'], buckets: DURATION_BUCKETS, registers,
    });
    this.firstEvent = new Histogram({
      name: 'claude_runner_task_first_event_seconds',
      help: 'Time from a task\'s submission to its first agent event (init, thinking, text or tool_start), queue included, in seconds, by agent; observed when the task ends.',
      labelNames: ['agent'], buckets: FIRST_EVENT_BUCKETS, registers,
    });
    this.cost = new Counter({
      name: 'claude_runner_cost_usd_total', help: 'Model cost of the tasks ended on this runner, in USD, by agent and tenant.',
      labelNames: ['agent', 'tenant'], registers,
    });
    this.modelCalls = new Counter({
      name: 'claude_runner_model_calls_total', help: 'Model calls (POST /v1/messages) the gateway forwarded upstream, by model asked for and outcome (ok, upstream_error, unreachable, cut).',
      labelNames: ['model', 'outcome'], registers,
    });
    this.gatewayErrors = new Counter({
      name: 'claude_runner_gateway_errors_total',
      help: 'Requests the gateway did not carry through, by kind (upstream_error, unreachable, over_limit, bad_token, refused_request, internal).',
      labelNames: ['kind'], registers,
    });
    this.egressRefusals = new Counter({
      name: 'claude_runner_egress_refused_total', help: 'Connections of sandboxes refused by the network policy at the egress proxy, by reason.',
      labelNames: ['reason'], registers,
    });
    const gauge = (name: string, help: string, read: () => number | Promise<number>): void => {
      new Gauge({ name, help, registers, async collect() { this.set(await read()); } });
    };
    gauge('claude_runner_tasks_queued', 'Tasks waiting in their session\'s queue (queue depth), on every runner sharing the database.', () => sources.queuedTasks());
    gauge('claude_runner_tasks_running', 'Tasks running on this runner.', () => sources.runningTasks());
    gauge('claude_runner_sandboxes_running', 'Sandbox containers of this runner that run (with or without a task).', () => sources.runningSandboxes());
    gauge('claude_runner_live_agents', 'Live agent processes (claude) on this runner.', () => sources.liveAgents());
    gauge('claude_runner_ready_sessions', 'Ready sessions (sandbox running, claude waiting) a new session can claim now.', () => sources.readySessions());
    gauge('claude_runner_stream_subscribers', 'Event streams open on this runner (WebSocket and SSE, session and task streams).', () => sources.streamSubscribers());
  }

  /** The text format, for GET /metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Events as they were stored: a task's agent when it is queued, the time of its first agent event. */
  eventsStored(events: readonly StoredEvent[]): void {
    for (const event of events) {
      if (event.taskId === null) continue;
      if (event.type === 'task_queued') this.lookUpAgent(event.taskId, event.sessionKey);
      else if (AGENT_EVENTS.has(event.type) && !this.firstEventAt.has(event.taskId)) this.firstEventAt.set(event.taskId, event.ts);
    }
  }

  /** A task ended (TaskCompletions.onEnd): counted, timed and costed under its agent and tenant. */
  taskEnded(task: Task): void {
    const known = this.agents.get(task.id);
    if (known !== undefined) return this.count(task, known);
    const lookup = this.agentLookups.get(task.id) ?? this.sources.agentOf(task.sessionKey).then((agent) => agent ?? UNKNOWN_AGENT, () => UNKNOWN_AGENT);
    void lookup.then((agent) => this.count(task, agent));
  }

  /** What the gateway tells: model calls, its errors, egress refusals (the event itself is appended elsewhere). */
  gatewayObserver(): Required<GatewayObserver> {
    return {
      modelCall: (model: string, outcome: ModelCallOutcome) => this.modelCalls.inc({ model: this.models.of(model), outcome }),
      gatewayError: (kind: GatewayErrorKind) => this.gatewayErrors.inc({ kind }),
      egressRefused: (refusal) => this.egressRefusals.inc({ reason: this.reasons.of(refusal.reason) }),
    };
  }

  private lookUpAgent(taskId: string, sessionKey: string): void {
    if (this.agentLookups.has(taskId) || this.agents.has(taskId)) return;
    const lookup = this.sources.agentOf(sessionKey).then((agent) => agent ?? UNKNOWN_AGENT, () => UNKNOWN_AGENT);
    this.agentLookups.set(taskId, lookup);
    void lookup.then((agent) => {
      // Not when the task ended meanwhile (it was counted with this lookup).
      if (this.agentLookups.delete(taskId)) this.agents.set(taskId, agent);
    });
  }

  private count(task: Task, agent: string): void {
    this.agents.delete(task.id);
    this.agentLookups.delete(task.id);
    const firstAt = this.firstEventAt.get(task.id);
    this.firstEventAt.delete(task.id);
    this.tasksEnded.inc({ status: task.status, agent });
    this.cost.inc({ agent, tenant: task.tenantId }, task.costUsd ?? 0);
    if (task.startedAt !== null) {
      const durationMs = task.durationMs ?? (task.finishedAt ?? Date.now()) - task.startedAt;
      this.taskDuration.observe({ agent }, durationMs / 1000);
    }
    if (firstAt !== undefined) this.firstEvent.observe({ agent }, Math.max(0, firstAt - task.createdAt) / 1000);
  }
}

/**
 * The store, as the event log sees it, with every batch of stored events
 * told to `listener` once it is stored (the log publishes it right after).
 * Every other method is the store's own.
 */
export function observedStore(store: Store, listener: (events: readonly StoredEvent[]) => void): Store {
  return new Proxy(store, {
    get(target, property) {
      if (property === 'appendEvents') {
        return async (...args: Parameters<Store['appendEvents']>) => {
          const stored = await target.appendEvents(...args);
          try {
            listener(stored);
          } catch {
            // Observing must never fail an append.
          }
          return stored;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
