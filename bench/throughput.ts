/**
 * Throughput: N sessions working at once, each a loop of blocking POST /task,
 * through the runner (sessions warm: live agents) and through the seed's
 * design (a container per task whether the session is new or not: its
 * sessions are not warmed first, which would only double its long run), with
 * the ratio between them at each concurrency.
 */
import type { Harness } from '../test/support/harness.ts';
import { measureSeedThroughput, startSeedDesign } from './seed-baseline.ts';
import { untimedTask, withHarness } from './sessions.ts';
import { loopsAtOnce, round } from './stats.ts';

export const CONCURRENCY = [1, 8, 32] as const;

export interface Rate { tasks: number; seconds: number; perSecond: number }

export interface ThroughputRow {
  sessions: number;
  runner: Rate;
  seed: Rate | null;
  /** runner / seed tasks per second. */
  ratio: number | null;
}

/** Tasks each session runs in a measured loop: enough for a stable rate, fewer for the slow seed. */
function runnerTasksPerSession(sessions: number, rounds: number): number {
  return Math.max(4, Math.ceil((rounds * 2) / sessions));
}
function seedTasksPerSession(sessions: number): number {
  return sessions === 1 ? 5 : sessions <= 8 ? 2 : 1;
}

async function runnerRates(rounds: number): Promise<Map<number, Rate>> {
  const top = Math.max(...CONCURRENCY);
  const env = {
    MAX_CONCURRENT_TASKS: String(top), MAX_LIVE_AGENTS: String(top + 4), MAX_RUNNING_SANDBOXES: String(top + 4),
    MAX_QUEUED_PER_SESSION: '50', READY_POOL_SIZE: '0',
  };
  return withHarness(env, async (h: Harness) => {
    // Every session's first task (container, claude), a few at a time: the machine has few cores.
    await loopsAtOnce(4, Math.ceil(top / 4), async (loop, i) => {
      const s = i * 4 + loop;
      if (s < top) await untimedTask(h, `tp-${s}`);
    });
    const rates = new Map<number, Rate>();
    for (const sessions of CONCURRENCY) {
      const perSession = runnerTasksPerSession(sessions, rounds);
      rates.set(sessions, await loopsAtOnce(sessions, perSession, (loop) => untimedTask(h, `tp-${loop}`)));
    }
    return rates;
  });
}

async function seedRates(): Promise<Map<number, Rate>> {
  const seed = await startSeedDesign();
  try {
    const rates = new Map<number, Rate>();
    for (const sessions of CONCURRENCY) rates.set(sessions, await measureSeedThroughput(seed, sessions, seedTasksPerSession(sessions)));
    return rates;
  } finally {
    await seed.close();
  }
}

export async function measureThroughput(rounds: number, withSeed: boolean): Promise<ThroughputRow[]> {
  const runner = await runnerRates(rounds);
  const seed = withSeed ? await seedRates() : null;
  return CONCURRENCY.map((sessions) => {
    const r = runner.get(sessions)!;
    const s = seed?.get(sessions) ?? null;
    return { sessions, runner: r, seed: s, ratio: s ? round(r.perSecond / s.perSecond, 1) : null };
  });
}
