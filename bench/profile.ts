/**
 * Where a warm task's time goes (issue 12): a runner of its own (the test
 * harness: real Docker, real `claude`, the scripted model with no latency),
 * one session warmed (its container and live claude running), then `rounds`
 * blocking POST /task to it, each two model calls with a Bash tool call
 * between. The phases come from the runner's hot-path recorder
 * (src/metrics/hot-path.ts, also `claude_runner_hot_path_seconds` on
 * /metrics), reset once the session is warm, so they hold only the measured
 * tasks.
 *
 *   node bench/profile.ts [rounds]     prints a markdown table (BENCH_ROUNDS, default 30)
 *
 * bench/run.ts imports profileWarmTasks and publishes its breakdown.
 */
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { HOT_PHASES, hotPath, type HotPhase } from '../src/metrics/hot-path.ts';
import { bash, rule, text } from '../src/scripted-model/index.ts';
import { startHarness } from '../test/support/harness.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface PhaseProfile {
  /** Mean duration of one occurrence, ms. */
  meanMs: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Occurrences per task (store writes, events, model calls happen several times a task). */
  perTask: number;
  /** Time per task in this phase, ms (meanMs × perTask). */
  perTaskMs: number;
}

export interface HotPathProfile {
  rounds: number;
  /** POST /task to its answer, as the caller sees it. */
  totalMs: Percentiles;
  /**
   * By phase (src/metrics/hot-path.ts): http_in, queue, start, agent, finish and http_out follow
   * each other along a task; the others run across them. `agent_own` is the agent's time without its model
   * calls (agent − gateway − upstream per task): claude and the container.
   */
  phases: Record<string, PhaseProfile>;
  /** The gateway's first byte of the task's first answer with text → the `text` event published, ms. */
  firstTextAfterFirstByteMs: { p50: number; p99: number };
}

const WARMUP_TASKS = 3;

/** Nearest-rank percentile of samples (ms). */
function percentile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

export async function profileWarmTasks(options: { rounds: number }): Promise<HotPathProfile> {
  const rounds = Math.max(1, Math.floor(options.rounds));
  const h = await startHarness({ rules: [rule('bench-task', bash('echo measured'), text('done'))], env: { MAX_LIVE_AGENTS: '8' } });
  try {
    const sessionId = 'profile-warm';
    const task = async (message: string): Promise<number> => {
      const started = performance.now();
      const res = await h.api('/task', { method: 'POST', json: { sessionId, message } });
      if (res.status !== 200) throw new Error(`task failed: ${res.status} ${JSON.stringify(res.body)}`);
      return performance.now() - started;
    };
    // The first creates the container and starts claude; the next ones warm the code paths of this process.
    for (let i = 0; i < WARMUP_TASKS; i++) await task(`bench-task warm-up ${i}`);
    await h.runner.events.settle();
    hotPath.reset();
    const totals: number[] = [];
    for (let i = 0; i < rounds; i++) totals.push(await task(`bench-task ${i}`));
    // http_out is observed when the answer's last byte is handed over: after the client has it.
    await new Promise((resolve) => setImmediate(resolve));
    const stats = hotPath.snapshot();
    const phases: Record<string, PhaseProfile> = {};
    for (const phase of HOT_PHASES) {
      const s = stats[phase];
      if (!s || s.count === 0) continue;
      const meanMs = s.sumMs / s.count;
      phases[phase] = {
        meanMs: round2(meanMs), p50Ms: round2(percentile(s.samples, 0.5)), p99Ms: round2(percentile(s.samples, 0.99)),
        perTask: round2(s.count / rounds), perTaskMs: round2(s.sumMs / rounds),
      };
    }
    const perTask = (phase: HotPhase): number => (stats[phase]?.sumMs ?? 0) / rounds;
    if (stats.agent) {
      const own = perTask('agent') - perTask('gateway') - perTask('upstream');
      phases.agent_own = { meanMs: round2(own), perTask: 1, perTaskMs: round2(own) };
    }
    const firstText = stats.first_text?.samples ?? [];
    return {
      rounds,
      totalMs: { p50: round2(percentile(totals, 0.5)), p95: round2(percentile(totals, 0.95)), p99: round2(percentile(totals, 0.99)) },
      phases,
      firstTextAfterFirstByteMs: { p50: round2(percentile(firstText, 0.5)), p99: round2(percentile(firstText, 0.99)) },
    };
  } finally {
    await h.close();
  }
}

export interface SessionListProfile {
  sessions: number;
  /** GET /sessions (its default page), ms. */
  listMs: { p50: number; p99: number };
  /** The runner's heap growth per stored session once they were stored and listed (all pages), bytes. */
  heapBytesPerSession: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return getHeapStatistics().used_heap_size;
}

/**
 * GET /sessions over `sessions` stored idle sessions (written to the store directly: no folder, no
 * sandbox): its time, and what the runner's heap keeps per session. Run node with --expose-gc for a
 * steady heap reading.
 */
export async function profileSessionList(options: { sessions: number; rounds?: number }): Promise<SessionListProfile> {
  const h = await startHarness({});
  try {
    // Warmed up before the heap is read: the route, the query, the statement cache.
    await h.api('/sessions');
    const before = await settledHeap();
    const now = Date.now();
    const BATCH = 200;
    for (let i = 0; i < options.sessions; i += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, options.sessions - i) }, (_, j) => {
        const n = i + j;
        return h.runner.store.createSession({
          key: `bench-key-${n}`, tenantId: 'default', id: `bench-${n}`, agent: 'default', agentSessionId: null,
          turns: 0, totalCostUsd: 0, createdAt: now + n, lastActivityAt: now + n,
        }, { maxSessions: Number.MAX_SAFE_INTEGER });
      }));
    }
    const times: number[] = [];
    for (let i = 0; i < (options.rounds ?? 50); i++) {
      const started = performance.now();
      const res = await h.api('/sessions');
      times.push(performance.now() - started);
      if (res.status !== 200 || !Array.isArray(res.body) || res.body.length === 0) throw new Error(`GET /sessions: ${res.status} ${res.text.slice(0, 200)}`);
    }
    // Every page once, as a dashboard paging through them would.
    for (let cursor: string | null = null, first = true; first || cursor; first = false) {
      const res = await h.api(`/sessions?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      cursor = res.headers.get('x-next-cursor');
    }
    const after = await settledHeap();
    return {
      sessions: options.sessions,
      listMs: { p50: round2(percentile(times, 0.5)), p99: round2(percentile(times, 0.99)) },
      heapBytesPerSession: round2((after - before) / options.sessions),
    };
  } finally {
    await h.close();
  }
}

/** The profile as a markdown table. */
export function profileTable(profile: HotPathProfile): string {
  const lines = [
    `warm task (${profile.rounds} rounds): p50 ${profile.totalMs.p50} ms, p95 ${profile.totalMs.p95} ms, p99 ${profile.totalMs.p99} ms; `
      + `first text event after the model's first byte: p50 ${profile.firstTextAfterFirstByteMs.p50} ms, p99 ${profile.firstTextAfterFirstByteMs.p99} ms`,
    '',
    '| phase | per task ms | times per task | mean ms | p50 ms | p99 ms |',
    '|---|---|---|---|---|---|',
  ];
  for (const [phase, p] of Object.entries(profile.phases)) {
    lines.push(`| ${phase} | ${p.perTaskMs} | ${p.perTask} | ${p.meanMs} | ${p.p50Ms ?? ''} | ${p.p99Ms ?? ''} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rounds = Number(process.argv[2] ?? process.env.BENCH_ROUNDS ?? 30);
  console.log(profileTable(await profileWarmTasks({ rounds })));
  const list = await profileSessionList({ sessions: 10_000 });
  console.log(`\nGET /sessions over ${list.sessions} stored sessions: p50 ${list.listMs.p50} ms, p99 ${list.listMs.p99} ms; `
    + `heap ${list.heapBytesPerSession} bytes per stored session${gc ? '' : ' (run with --expose-gc for a steady reading)'}`);
}
