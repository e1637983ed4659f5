/**
 * The floor: what the task costs with no server, no container and no SDK in
 * the way, a `claude` on the host speaking stream-json (`-p --input-format
 * stream-json --output-format stream-json --verbose`, partial messages on),
 * fed each task as one user message. Three lines:
 *   live         the next task to a live process (what a warm session cannot beat; measured
 *                with the warm session's tasks interleaved when both run: sessions.ts)
 *   prestarted   the first message to a process started a few seconds earlier
 *   cold         a process started for the task
 *
 * Owns: its `claude` processes, temp HOME and scripted model.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { findClaudeExecutable } from '../src/app.ts';
import { startScriptedModel, type ScriptedModel } from '../src/scripted-model/index.ts';
import { UPSTREAM_KEY } from '../test/support/harness.ts';
import { pathResult, TASK_MESSAGE, TASK_RULES, type PathResult } from './stats.ts';

/** The same system prompt addition as the runner's test template (AGENTS.md, appended). */
const AGENTS_MD = '# Test agent\nDo what the user asks.\n';
const PRESTART_WAIT_MS = 3000;

interface Turn { started: number; firstText: number | null; done: (at: number) => void; failed: (error: Error) => void }

class HostClaude {
  private readonly child: ChildProcessWithoutNullStreams;
  private turn: Turn | null = null;
  private readonly exited: Promise<void>;
  readonly spawnedAt = performance.now();

  constructor(executable: string, env: Record<string, string>, cwd: string) {
    this.child = spawn(executable, [
      '-p', '--input-format', 'stream-json', '--output-format', 'stream-json', '--verbose', '--include-partial-messages',
      '--permission-mode', 'bypassPermissions', '--append-system-prompt', AGENTS_MD,
    ], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    this.child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-2000); });
    this.exited = new Promise((resolve) => this.child.once('exit', () => {
      this.turn?.failed(new Error(`host claude exited: ${stderr}`));
      resolve();
    }));
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const turn = this.turn;
      if (!turn) return;
      const at = performance.now();
      if (turn.firstText === null && line.includes('"text_delta"')) turn.firstText = at;
      else if (line.includes('"type":"result"')) {
        const message = JSON.parse(line) as { type: string; subtype?: string };
        if (message.type !== 'result') return;
        if (message.subtype !== 'success') return turn.failed(new Error(`host claude: ${line.slice(0, 300)}`));
        turn.done(at);
      }
    });
  }

  /** Sends one task; resolves with its end and first text, both as performance.now(). */
  send(message: string): Promise<{ started: number; ended: number; firstText: number }> {
    return new Promise((resolve, reject) => {
      const turn: Turn = {
        started: performance.now(),
        firstText: null,
        done: (at) => {
          this.turn = null;
          resolve({ started: turn.started, ended: at, firstText: turn.firstText ?? NaN });
        },
        failed: (error) => {
          this.turn = null;
          reject(error);
        },
      };
      this.turn = turn;
      this.child.stdin.write(`${JSON.stringify({ type: 'user', message: { role: 'user', content: message }, parent_tool_use_id: null, session_id: '' })}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** What the floor's `claude` processes run with: their scripted model, HOME and workspace. */
interface FloorHost {
  start(): HostClaude;
  close(): Promise<void>;
}

async function floorHost(): Promise<FloorHost> {
  const model: ScriptedModel = await startScriptedModel({ rules: TASK_RULES, requireApiKey: UPSTREAM_KEY, maxRecorded: 10 });
  const base = mkdtempSync('/tmp/cr-bench-floor-');
  const home = join(base, 'home');
  const workspace = join(base, 'workspace');
  mkdirSync(home);
  mkdirSync(workspace);
  const executable = findClaudeExecutable(undefined);
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8',
    ANTHROPIC_BASE_URL: model.url, ANTHROPIC_API_KEY: UPSTREAM_KEY,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', CLAUDE_CODE_MAX_RETRIES: '0',
    DISABLE_AUTOUPDATER: '1', DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1',
    // bypassPermissions as root (this bench runs as root on CI machines).
    IS_SANDBOX: '1',
  };
  return {
    start: () => new HostClaude(executable, env, workspace),
    close: async () => {
      await model.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** A line of the floor driven one task at a time: for bench/sessions.ts to interleave with the runner's tasks. */
export interface FloorLine {
  /** One task: its time and submit → first text, ms (for a `claude` started for the task, from its spawn). */
  task(): Promise<{ ms: number; firstTextMs: number }>;
  close(): Promise<void>;
}

/** The live line: the next task to a live host `claude`. */
export async function startLiveFloor(): Promise<FloorLine> {
  const host = await floorHost();
  const live = host.start();
  const task = async (): Promise<{ ms: number; firstTextMs: number }> => {
    const turn = await live.send(TASK_MESSAGE);
    return { ms: turn.ended - turn.started, firstTextMs: turn.firstText - turn.started };
  };
  try {
    await task();
    await task();
  } catch (error) {
    await live.close();
    await host.close();
    throw error;
  }
  return { task, close: async () => { await live.close(); await host.close(); } };
}

/** The floor's live line alone (a warm session measured with it interleaves them instead: sessions.ts). */
export async function measureLiveFloor(rounds: number): Promise<PathResult> {
  const floor = await startLiveFloor();
  const task: number[] = [];
  const text: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const turn = await floor.task();
      task.push(turn.ms);
      text.push(turn.firstTextMs);
    }
  } finally {
    await floor.close();
  }
  return liveFloorResult(task, text);
}

export function liveFloorResult(task: number[], text: number[], how = 'next task as a message to a live host `claude` (stream-json), no server'): PathResult {
  return pathResult('floor: live claude on the host', how, task, text);
}

/** One task to a host `claude` spawned for it: from the spawn. */
async function coldTurnOf(host: FloorHost): Promise<{ ms: number; firstTextMs: number }> {
  const cold = host.start();
  const turn = await cold.send(TASK_MESSAGE).finally(() => cold.close());
  return { ms: turn.ended - cold.spawnedAt, firstTextMs: turn.firstText - cold.spawnedAt };
}

/** The cold line: a host `claude` started for each task. */
export async function startColdFloor(): Promise<FloorLine> {
  const host = await floorHost();
  return { task: () => coldTurnOf(host), close: () => host.close() };
}

export function coldFloorResult(task: number[], text: number[], how = 'host `claude` spawned, then the task (from spawn)'): PathResult {
  return pathResult('host claude started for the task', how, task, text);
}

/**
 * The first message to a host `claude` started a few seconds before, and (`cold`)
 * to one started for the task, unless a new session's are measured with those interleaved.
 */
export async function measureNewFloors(referenceRounds: number, cold: boolean): Promise<{ prestarted: PathResult; cold?: PathResult }> {
  const host = await floorHost();
  try {
    const preTask: number[] = [];
    const preText: number[] = [];
    const coldTask: number[] = [];
    const coldText: number[] = [];
    for (let i = 0; i < referenceRounds; i++) {
      const prestarted = host.start();
      await sleep(PRESTART_WAIT_MS);
      const turn = await prestarted.send(TASK_MESSAGE).finally(() => prestarted.close());
      preTask.push(turn.ended - turn.started);
      preText.push(turn.firstText - turn.started);
      if (!cold) continue;
      const coldTurn = await coldTurnOf(host);
      coldTask.push(coldTurn.ms);
      coldText.push(coldTurn.firstTextMs);
    }
    return {
      prestarted: pathResult('host claude started 3 s earlier', 'first message to a host `claude` started 3 s before', preTask, preText),
      ...(cold ? { cold: coldFloorResult(coldTask, coldText) } : {}),
    };
  } finally {
    await host.close();
  }
}
