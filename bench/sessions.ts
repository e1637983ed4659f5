/**
 * The runner's own paths, through the real server (test harness: HTTP, SQLite,
 * Docker sandbox, live `claude`, scripted model), each `POST /task` timed end
 * to end with a WS /stream/:sessionId subscriber opened before the submit:
 *   warm         next task to a session's live agent
 *   closed agent AGENT_IDLE_MS=0: the container runs, claude is started again and resumes
 *   pool         a new session claims a ready sandbox + claude (READY_POOL_SIZE=2)
 *   empty pool   a new session with READY_POOL_SIZE=0: container created, claude started
 */
import { startHarness, type Harness } from '../test/support/harness.ts';
import { coldFloorResult, liveFloorResult, type FloorLine } from './floor.ts';
import { pathResult, quietMachine, TASK_MESSAGE, TASK_RULES, waitFor, type PathResult } from './stats.ts';
import { SessionStream } from './stream-client.ts';

/** Pool interface of GET /health (READY_POOL_SIZE). */
interface ReadyPool { size: number; ready: number }

export async function withHarness<T>(env: Record<string, string>, fn: (h: Harness) => Promise<T>): Promise<T> {
  const h = await startHarness({ rules: TASK_RULES, env });
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

/** One task through POST /task (blocking); its time and submit → first `text` frame on the stream. */
export async function timedTask(h: Harness, stream: SessionStream, sessionId: string): Promise<{ ms: number; firstTextMs: number }> {
  stream.arm();
  const started = performance.now();
  const res = await h.api('/task', { method: 'POST', json: { sessionId, message: TASK_MESSAGE } });
  const ms = performance.now() - started;
  if (res.status !== 200) throw new Error(`bench: task failed: ${res.status} ${res.text.slice(0, 500)}`);
  const textAt = await stream.firstText();
  return { ms, firstTextMs: textAt - started };
}

export async function untimedTask(h: Harness, sessionId: string): Promise<void> {
  const res = await h.api('/task', { method: 'POST', json: { sessionId, message: TASK_MESSAGE } });
  if (res.status !== 200) throw new Error(`bench: task failed: ${res.status} ${res.text.slice(0, 500)}`);
}

/**
 * The warm session; with `floor`, its tasks alternate with the floor's live host `claude`, one each,
 * so a machine that speeds up or slows down over the minutes (this VM does) moves both alike.
 */
export async function measureWarm(rounds: number, floor?: FloorLine): Promise<{ warm: PathResult; floor?: PathResult }> {
  return withHarness({ READY_POOL_SIZE: '0' }, async (h) => {
    await untimedTask(h, 'warm');
    await untimedTask(h, 'warm');
    const stream = await SessionStream.open(h.url, 'warm');
    const task: number[] = [];
    const text: number[] = [];
    const floorTask: number[] = [];
    const floorText: number[] = [];
    try {
      for (let i = 0; i < rounds; i++) {
        if (floor) {
          const turn = await floor.task();
          floorTask.push(turn.ms);
          floorText.push(turn.firstTextMs);
        }
        const { ms, firstTextMs } = await timedTask(h, stream, 'warm');
        task.push(ms);
        text.push(firstTextMs);
      }
    } finally {
      stream.close();
    }
    return {
      warm: pathResult('warm session', 'next task to the session\'s live agent', task, text),
      ...(floor ? { floor: liveFloorResult(floorTask, floorText, 'next task as a message to a live host `claude` (stream-json), no server; its tasks alternate with the warm session\'s') } : {}),
    };
  });
}

export async function measureClosedAgent(rounds: number): Promise<PathResult> {
  // AGENT_IDLE_MS=0: each agent is closed at the next sweep (1 s) after its task; the container keeps running.
  return withHarness({ AGENT_IDLE_MS: '0', READY_POOL_SIZE: '0' }, async (h) => {
    await untimedTask(h, 'closed');
    const stream = await SessionStream.open(h.url, 'closed');
    const task: number[] = [];
    const text: number[] = [];
    try {
      for (let i = 0; i < rounds; i++) {
        await waitFor('the agent to be closed', async () => {
          const res = await h.api('/session/closed');
          return res.body.agentLive === false ? true : undefined;
        }, 10_000);
        await new Promise((r) => setTimeout(r, 200));
        const { ms, firstTextMs } = await timedTask(h, stream, 'closed');
        task.push(ms);
        text.push(firstTextMs);
      }
    } finally {
      stream.close();
    }
    return pathResult('closed agent, container running', 'next task after the agent was closed: a new claude resumes the transcript', task, text);
  });
}

async function readyPool(h: Harness): Promise<ReadyPool | undefined> {
  const health = await h.api('/health');
  const pool = health.body?.readyPool as ReadyPool | undefined;
  return pool && typeof pool.size === 'number' && typeof pool.ready === 'number' ? pool : undefined;
}

/**
 * New sessions, one at a time: each measured from its first POST /task, then
 * deleted (so live agents do not pile up). With a pool, each waits first for
 * the pool to be full, so each sample claims a ready entry.
 */
async function measureNewSessions(rounds: number, poolSize: number, floor?: FloorLine): Promise<{ task: number[]; text: number[]; floorTask: number[]; floorText: number[]; note?: string }> {
  return withHarness({ READY_POOL_SIZE: String(poolSize), MAX_LIVE_AGENTS: '8' }, async (h) => {
    const task: number[] = [];
    const text: number[] = [];
    const floorTask: number[] = [];
    const floorText: number[] = [];
    let note: string | undefined;
    let claimed = 0;
    let busyRounds = 0;
    const pool = await readyPool(h);
    if (poolSize > 0 && pool === undefined) note = 'GET /health reports no readyPool: no pool in this build, so this equals the empty pool';
    else if (poolSize > 0 && pool!.size !== poolSize) note = `readyPool.size is ${pool!.size}, not ${poolSize}`;
    // One session first, unmeasured: the image, template and code paths are warm for every sample.
    await untimedTask(h, `new-${poolSize}-warmup`);
    await h.api(`/session/new-${poolSize}-warmup`, { method: 'DELETE' });
    for (let i = 0; i < rounds; i++) {
      if (poolSize > 0 && pool) {
        await waitFor('the ready pool to be full', async () => {
          const now = await readyPool(h);
          return now && now.size > 0 && now.ready >= now.size ? true : undefined;
        }, 60_000, 100);
        // The entry that just became ready has a claude finishing its start: let it settle off the measured task's cores.
        await new Promise((r) => setTimeout(r, 500));
      }
      // The previous round's deletion (its container removed, its claude ended) is not this round's cost.
      if (!(await quietMachine())) busyRounds++;
      if (floor) {
        const turn = await floor.task();
        floorTask.push(turn.ms);
        floorText.push(turn.firstTextMs);
        await quietMachine();
      }
      const sessionId = `new-${poolSize}-${i}`;
      const stream = await SessionStream.open(h.url, sessionId);
      try {
        const { ms, firstTextMs } = await timedTask(h, stream, sessionId);
        task.push(ms);
        text.push(firstTextMs);
      } finally {
        stream.close();
      }
      // A claimed entry leaves the pool one short until it is refilled (a new sandbox and claude: seconds).
      if (poolSize > 0 && pool) {
        const after = await readyPool(h);
        if (after && after.ready < after.size) claimed++;
      }
      const deleted = await h.api(`/session/${sessionId}`, { method: 'DELETE' });
      if (deleted.status !== 200) throw new Error(`bench: delete failed: ${deleted.status} ${deleted.text}`);
    }
    if (poolSize > 0 && pool && claimed < rounds) note = `only ${claimed} of ${rounds} samples left the pool one short: the others may not have claimed a ready entry`;
    if (busyRounds > 0) note = [note, `${busyRounds} of ${rounds} rounds started on a busy machine`].filter(Boolean).join('; ');
    return { task, text, floorTask, floorText, ...(note ? { note } : {}) };
  });
}

export async function measurePoolSession(rounds: number): Promise<PathResult> {
  const { task, text, note } = await measureNewSessions(rounds, 2);
  return pathResult('new session from the pool', 'first task of a new session, READY_POOL_SIZE=2 (pool full before each)', task, text, note);
}

/** With `floor`, each new session alternates with a host `claude` started for the task (the cold floor), one each. */
export async function measureEmptyPoolSession(rounds: number, floor?: FloorLine): Promise<{ emptyPool: PathResult; floorCold?: PathResult }> {
  const { task, text, floorTask, floorText, note } = await measureNewSessions(rounds, 0, floor);
  return {
    emptyPool: pathResult('new session, empty pool', 'first task of a new session, READY_POOL_SIZE=0: container created, claude started', task, text, note),
    ...(floor ? { floorCold: coldFloorResult(floorTask, floorText, 'host `claude` spawned, then the task (from spawn); alternating with the empty-pool sessions') } : {}),
  };
}
