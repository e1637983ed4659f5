/**
 * `npm run bench`: every way a task can run, side by side in one run on this
 * machine, the same two-turn task everywhere (scripted model: a Bash call
 * `echo measured`, then `done`):
 *
 *   seed        the seed's design: a fresh `docker run --rm` per task, Node + SDK inside (seed-baseline.ts)
 *   floor       a live `claude` on the host, no server; and two reference lines (floor.ts)
 *   warm        next task to a session's live agent, through the server (sessions.ts)
 *   closed      next task after the agent was closed, container running
 *   pool        new session claiming a ready sandbox + claude (READY_POOL_SIZE=2)
 *   empty       new session with READY_POOL_SIZE=0
 *   throughput  1, 8 and 32 sessions at once, runner and seed design (throughput.ts)
 *   memory      server RSS, container memory idle and with a live agent (memory.ts)
 *   fanout      100 WebSocket subscribers of one session (fanout.ts)
 *   list        GET /sessions over 10,000 stored sessions, heap per session (session-list.ts)
 *   profile     where a warm task's time goes (profile.ts, when present)
 *
 * BENCH_ROUNDS (default 30): tasks per path. BENCH_ONLY=warm,floor runs some.
 * Writes bench/results/latest.json and latest.md, and prints the markdown.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { measureFanout } from './fanout.ts';
import { measureLiveFloor, measureNewFloors, startColdFloor, startLiveFloor, type FloorLine } from './floor.ts';
import { measureMemory } from './memory.ts';
import { markdown, targets, type BenchResults, type ProfileSummary } from './report.ts';
import { measureSeedLatency, startSeedDesign } from './seed-baseline.ts';
import { measureSessionList } from './session-list.ts';
import { measureClosedAgent, measureEmptyPoolSession, measurePoolSession, measureWarm } from './sessions.ts';
import { quietMachine, round } from './stats.ts';
import { measureThroughput } from './throughput.ts';

const SECTIONS = ['floor', 'warm', 'closed', 'pool', 'empty', 'seed', 'throughput', 'memory', 'fanout', 'list', 'profile'] as const;
type Section = typeof SECTIONS[number];

const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 30));
const only = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const unknown = only.filter((s) => !SECTIONS.includes(s as Section));
if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.join(', ')}`);
const selected = SECTIONS.filter((s) => only.length === 0 || only.includes(s));

const results: BenchResults = {
  date: new Date().toISOString(),
  machine: {
    cores: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: round(totalmem() / 1024 ** 3, 0),
    node: process.versions.node,
    docker: ((await new Docker().version()) as { Version?: string }).Version ?? 'unknown',
  },
  rounds,
  sections: selected,
  paths: {},
  notes: [],
  errors: {},
  targets: [],
};

const profileFile = join(import.meta.dirname, 'profile.ts');

/** Runs `measure` with a floor line whose tasks it interleaves with its own, when the floor section is selected. */
async function withFloor<T>(start: () => Promise<FloorLine>, measure: (floor: FloorLine | undefined) => Promise<T>): Promise<T> {
  const floor = selected.includes('floor') ? await start() : undefined;
  try {
    return await measure(floor);
  } finally {
    await floor?.close();
  }
}

const run: Record<Section, () => Promise<void>> = {
  floor: async () => {
    // The live line is measured with the warm session's tasks, interleaved, when that runs too.
    if (!selected.includes('warm')) results.paths.floor = await measureLiveFloor(rounds);
    // So is the cold line with the new sessions of an empty pool.
    const floor = await measureNewFloors(Math.min(10, rounds), !selected.includes('empty'));
    results.paths.floorPrestarted = floor.prestarted;
    if (floor.cold) results.paths.floorCold = floor.cold;
  },
  warm: async () => {
    const measured = await withFloor(startLiveFloor, (floor) => measureWarm(rounds, floor));
    results.paths.warm = measured.warm;
    if (measured.floor) results.paths.floor = measured.floor;
  },
  closed: async () => { results.paths.closedAgent = await measureClosedAgent(rounds); },
  pool: async () => { results.paths.pool = await measurePoolSession(rounds); },
  empty: async () => {
    const measured = await withFloor(startColdFloor, (floor) => measureEmptyPoolSession(rounds, floor));
    results.paths.emptyPool = measured.emptyPool;
    if (measured.floorCold) results.paths.floorCold = measured.floorCold;
  },
  seed: async () => {
    const seed = await startSeedDesign();
    try {
      results.paths.seed = await measureSeedLatency(seed, rounds);
    } finally {
      await seed.close();
    }
  },
  throughput: async () => { results.throughput = await measureThroughput(rounds, true); },
  memory: async () => { results.memory = await measureMemory(6); },
  fanout: async () => { results.fanout = await measureFanout(100, 50); },
  list: async () => { results.sessionList = await measureSessionList(rounds); },
  profile: async () => {
    if (!existsSync(profileFile)) {
      results.notes.push('bench/profile.ts is not there yet: no hot-path breakdown in this run.');
      return;
    }
    // Imported by path so this file typechecks with or without it.
    const profile = await import(profileFile) as {
      profileWarmTasks(options: { rounds: number }): Promise<ProfileSummary>;
      profileTable?: (p: ProfileSummary) => string;
    };
    results.profile = await profile.profileWarmTasks({ rounds });
    results.profileTable = profile.profileTable?.(results.profile)
      ?? `warm task p50 ${results.profile.totalMs.p50} ms; first text after the model's first byte p50 ${results.profile.firstTextAfterFirstByteMs.p50} ms`;
  },
};

const startedAll = performance.now();
for (const section of selected) {
  process.stderr.write(`bench: ${section}…`);
  if (!(await quietMachine())) results.notes.push(`The ${section} section started on a busy machine (more than 10% of the cores busy for 10 s).`);
  const started = performance.now();
  try {
    await run[section]();
    process.stderr.write(` ${round((performance.now() - started) / 1000, 1)} s\n`);
  } catch (error) {
    results.errors[section] = (error as Error).message.split('\n')[0]!.slice(0, 500);
    process.stderr.write(` failed: ${results.errors[section]}\n`);
  }
}
results.targets = targets(results);
results.notes.push(`The whole bench took ${round((performance.now() - startedAll) / 1000, 0)} s.`);

const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const md = markdown(results);
// A partial run (BENCH_ONLY) does not replace the full one.
const name = only.length > 0 ? 'partial' : 'latest';
writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(dir, `${name}.md`), md);
console.log(md);
console.log(`(written to bench/results/${name}.json and ${name}.md)`);
if (Object.keys(results.errors).length > 0) process.exitCode = 1;
