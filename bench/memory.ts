/**
 * Memory: the runner as its own process (`node src/main.ts`, so its RSS is
 * its own, not the bench's), with N sessions whose agents are live, then the
 * same sessions once their agents were closed (AGENT_IDLE_MS) and only the
 * containers run. Container memory is the cgroup's, as `docker stats` shows
 * it (usage minus inactive file cache); a live agent's `claude` runs in its
 * session's container (docker exec), so it is counted there.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startScriptedModel } from '../src/scripted-model/index.ts';
import {
  apiClient, containersOf, removeContainers, spawnRunner, testEnv, testRunnerId, UPSTREAM_KEY, writeTemplate,
} from '../test/support/harness.ts';
import { MiB, round, TASK_MESSAGE, TASK_RULES, waitFor } from './stats.ts';

const docker = new Docker();

export interface MemoryResults {
  sessions: number;
  serverRssMiB: { started: number; afterTasks: number; withIdleSessions: number; peak: number };
  containerIdleMiB: { mean: number; max: number };
  containerLiveMiB: { mean: number; max: number };
  /** Container memory a live agent adds (live − idle, mean). */
  perLiveAgentMiB: number;
}

function processMemory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

interface MemoryStats { usage?: number; stats?: Record<string, number> }

/**
 * What `docker stats` shows: usage minus inactive file cache (cgroup v1
 * total_inactive_file, v2 inactive_file), of the runner's running containers
 * (those not in `skip`), by container id.
 */
async function containerMemory(runnerId: string, skip: ReadonlySet<string> = new Set()): Promise<Map<string, number>> {
  const infos = (await containersOf(runnerId)).filter((c) => c.State === 'running' && !skip.has(c.Id));
  return new Map(await Promise.all(infos.map(async (info): Promise<[string, number]> => {
    const stats = await docker.getContainer(info.Id).stats({ stream: false }) as { memory_stats: MemoryStats };
    const m = stats.memory_stats;
    const inactive = m.stats?.total_inactive_file ?? m.stats?.inactive_file ?? 0;
    return [info.Id, (m.usage ?? 0) - inactive];
  })));
}

const mib = (bytes: number): number => round(bytes / MiB, 1);
const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

export async function measureMemory(sessions = 6): Promise<MemoryResults> {
  const model = await startScriptedModel({ rules: TASK_RULES, requireApiKey: UPSTREAM_KEY, maxRecorded: 10 });
  const base = mkdtempSync('/tmp/cr-bench-mem-');
  const agentDir = writeTemplate(join(base, 'agents'), {});
  const runnerId = testRunnerId();
  const env = testEnv({
    DATA_DIR: join(base, 'data'), AGENT_DIR: agentDir, ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId,
    AGENT_IDLE_MS: '4000', READY_POOL_SIZE: '0', MAX_LIVE_AGENTS: String(sessions + 2),
  });
  const runner = spawnRunner(env);
  try {
    const url = await runner.url;
    const api = apiClient(() => url);
    const pid = runner.child.pid!;
    await new Promise((r) => setTimeout(r, 1000));
    const started = processMemory(pid).rss;

    // Each session's container is read right after its first task, while its agent is surely live
    // (earlier sessions' agents may close meanwhile: AGENT_IDLE_MS).
    const live = new Map<string, number>();
    for (let s = 0; s < sessions; s++) {
      const res = await api('/task', { method: 'POST', json: { sessionId: `mem-${s}`, message: TASK_MESSAGE } });
      if (res.status !== 200) throw new Error(`bench: task failed: ${res.status} ${res.text.slice(0, 300)}`);
      for (const [id, bytes] of await containerMemory(runnerId, new Set(live.keys()))) live.set(id, bytes);
    }
    const withLive = processMemory(pid).rss;

    await waitFor('every agent to be closed', async () => {
      for (let s = 0; s < sessions; s++) {
        const res = await api(`/session/mem-${s}`);
        if (res.body.agentLive !== false) return undefined;
      }
      return true;
    }, 30_000, 250);
    await new Promise((r) => setTimeout(r, 1500));
    const idleById = await containerMemory(runnerId);
    const after = processMemory(pid);
    if (live.size !== sessions || idleById.size !== sessions) throw new Error(`bench: expected ${sessions} running containers, saw ${live.size} then ${idleById.size}`);
    const idle = [...idleById.values()];
    const liveValues = [...live.values()];
    return {
      sessions,
      serverRssMiB: { started: mib(started), afterTasks: mib(withLive), withIdleSessions: mib(after.rss), peak: mib(after.peak) },
      containerIdleMiB: { mean: mib(mean(idle)), max: mib(Math.max(...idle)) },
      containerLiveMiB: { mean: mib(mean(liveValues)), max: mib(Math.max(...liveValues)) },
      perLiveAgentMiB: mib(mean(liveValues) - mean(idle)),
    };
  } finally {
    runner.child.kill('SIGTERM');
    const killer = setTimeout(() => runner.child.kill('SIGKILL'), 10_000);
    await runner.exited;
    clearTimeout(killer);
    await removeContainers(runnerId);
    await model.close();
    rmSync(base, { recursive: true, force: true });
  }
}
