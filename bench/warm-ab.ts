/**
 * A/B of two runner configurations on the warm path, in one run: two runners
 * (the test harness: real Docker, real `claude`, the scripted model with no
 * latency), one warm session each, their tasks interleaved (A then B, then B
 * then A, …) so both see the same machine load. On a shared machine only such
 * paired figures say whether a change helps; two separate runs do not.
 *
 *   node bench/warm-ab.ts '<B's configuration, JSON>' [rounds] ['<A's configuration, JSON>']
 *   e.g. node bench/warm-ab.ts '{"SANDBOX_CPUS":"2"}' 40
 *
 * Prints each side's POST /task p25/p50/p75 and the paired difference B − A
 * (p50 and its p25–p75 spread), in ms. Owns its two runners; writes nothing.
 */
import { startHarness, type Harness } from '../test/support/harness.ts';
import { TASK_MESSAGE, TASK_RULES } from './stats.ts';

const WARMUP_TASKS = 3;

/** Value at quantile q (nearest rank), in the samples' unit. */
function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const spread = (samples: readonly number[]): string =>
  `p25 ${quantile(samples, 0.25).toFixed(1)}  p50 ${quantile(samples, 0.5).toFixed(1)}  p75 ${quantile(samples, 0.75).toFixed(1)}`;

async function timedTask(h: Harness, sessionId: string): Promise<number> {
  const started = performance.now();
  const res = await h.api('/task', { method: 'POST', json: { sessionId, message: TASK_MESSAGE } });
  if (res.status !== 200) throw new Error(`task failed: ${res.status} ${res.text.slice(0, 300)}`);
  return performance.now() - started;
}

export async function warmAB(envA: Record<string, string>, envB: Record<string, string>, rounds: number): Promise<{ a: number[]; b: number[] }> {
  const a = await startHarness({ rules: TASK_RULES, env: { READY_POOL_SIZE: '0', ...envA } });
  try {
    const b = await startHarness({ rules: TASK_RULES, env: { READY_POOL_SIZE: '0', ...envB } });
    try {
      for (let i = 0; i < WARMUP_TASKS; i++) {
        await timedTask(a, 'ab');
        await timedTask(b, 'ab');
      }
      const times = { a: [] as number[], b: [] as number[] };
      for (let i = 0; i < rounds; i++) {
        // Alternating order: neither side always runs right after the other's task.
        for (const side of i % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
          times[side].push(await timedTask(side === 'a' ? a : b, 'ab'));
        }
      }
      return times;
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

if (import.meta.main) {
  const envB = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
  const rounds = Math.max(1, Number(process.argv[3] ?? process.env.BENCH_ROUNDS ?? 30));
  const envA = JSON.parse(process.argv[4] ?? '{}') as Record<string, string>;
  const { a, b } = await warmAB(envA, envB, rounds);
  const paired = b.map((ms, i) => ms - a[i]!);
  console.log(`A ${JSON.stringify(envA)}: ${spread(a)} ms`);
  console.log(`B ${JSON.stringify(envB)}: ${spread(b)} ms`);
  console.log(`B − A, paired (${rounds} rounds): ${spread(paired)} ms`);
}
