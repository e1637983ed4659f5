/**
 * `npm run bench`: what users feel on every message, measured end to end
 * (HTTP in, Docker sandbox, real `claude`, scripted model with no latency,
 * HTTP out). Each task is two model calls with one Bash tool call between.
 *
 *   first task      new session: container created, claude started
 *   live agent      the session's claude is alive: the task is one message to it
 *   restarted agent the process was closed (idle, evicted): a new claude resumes the transcript
 *   throughput      200 tasks over 20 sessions, MAX_CONCURRENT_TASKS=4
 *
 * Writes bench/results/latest.json and prints a table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { bash, rule, text } from '../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../test/support/harness.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { n: sorted.length, median: at(0.5), p90: at(0.9), min: sorted[0]!, max: sorted.at(-1)! };
}

async function timed(h: Harness, sessionId: string, message: string): Promise<number> {
  const started = performance.now();
  const res = await h.api('/task', { method: 'POST', json: { sessionId, message } });
  if (res.status !== 200) throw new Error(`task failed: ${res.status} ${JSON.stringify(res.body)}`);
  return performance.now() - started;
}

const rules = [rule('bench-task', bash('echo measured'), text('done'))];
const results: Record<string, ReturnType<typeof stats> & { note: string }> = {};

{
  const h = await startHarness({ rules, env: { MAX_LIVE_AGENTS: '64' } });
  try {
    const first: number[] = [];
    const live: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      first.push(await timed(h, `first-${i}`, 'bench-task'));
      live.push(await timed(h, `first-${i}`, 'bench-task again'));
      live.push(await timed(h, `first-${i}`, 'bench-task and again'));
    }
    results.firstTask = { ...stats(first), note: 'new session: container + claude start + 2 model calls + Bash' };
    results.liveAgent = { ...stats(live), note: 'next task to a live claude' };
  } finally {
    await h.close();
  }
}

{
  // AGENT_IDLE_MS=0 closes each agent as soon as it is idle: every task starts claude and resumes.
  const h = await startHarness({ rules, env: { AGENT_IDLE_MS: '0' } });
  try {
    const restarted: number[] = [];
    await timed(h, 'restart', 'bench-task');
    for (let i = 0; i < ROUNDS; i++) {
      await new Promise((r) => setTimeout(r, 1200));
      restarted.push(await timed(h, 'restart', 'bench-task'));
    }
    results.restartedAgent = { ...stats(restarted), note: 'new claude per task (resume), container running' };
  } finally {
    await h.close();
  }
}

let throughput = { tasks: 0, seconds: 0, perSecond: 0 };
{
  const h = await startHarness({ rules, env: { MAX_CONCURRENT_TASKS: '4', MAX_LIVE_AGENTS: '32', MAX_QUEUED_PER_SESSION: '50' } });
  try {
    for (let s = 0; s < 20; s++) await timed(h, `tp-${s}`, 'bench-task warm');
    const started = performance.now();
    const ids: string[] = [];
    await Promise.all(Array.from({ length: 20 }, async (_, s) => {
      for (let i = 0; i < 10; i++) {
        const res = await h.api('/task', { method: 'POST', json: { sessionId: `tp-${s}`, message: `bench-task ${i}`, wait: false } });
        ids.push(res.body.taskId);
      }
    }));
    for (const id of ids) {
      for (;;) {
        const task = await h.api(`/tasks/${id}`);
        if (task.body.status === 'succeeded') break;
        if (task.body.status !== 'queued' && task.body.status !== 'running') throw new Error(`task ${id} ${task.body.status}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const seconds = (performance.now() - started) / 1000;
    throughput = { tasks: ids.length, seconds: Number(seconds.toFixed(2)), perSecond: Number((ids.length / seconds).toFixed(1)) };
  } finally {
    await h.close();
  }
}

const report = { date: new Date().toISOString(), cpus: cpus().length, rounds: ROUNDS, latencyMs: results, throughput };
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/latest.json', `${JSON.stringify(report, null, 2)}\n`);
console.log('\n| path | median ms | p90 ms | min | max | n |\n|---|---|---|---|---|---|');
for (const [name, s] of Object.entries(results)) {
  console.log(`| ${name} (${s.note}) | ${s.median.toFixed(0)} | ${s.p90.toFixed(0)} | ${s.min.toFixed(0)} | ${s.max.toFixed(0)} | ${s.n} |`);
}
console.log(`\nthroughput: ${throughput.tasks} tasks over 20 sessions in ${throughput.seconds} s = ${throughput.perSecond} tasks/s (MAX_CONCURRENT_TASKS=4, ${cpus().length} cores)`);
