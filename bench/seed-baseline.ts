/**
 * The seed's design, reproduced as the baseline every figure is compared to:
 * a blocking `POST /task` whose task runs in a fresh `docker run --rm`
 * container with Node and the Agent SDK inside (`node --input-type=module -e
 * <script>` calling `query()`), streaming NDJSON events back on stdout, the
 * conversation resumed from the session's `.claude` folder mounted as the
 * container user's home, one task at a time per session.
 *
 * Differences from the seed, none of which touch the per-task path: the image
 * is our sandbox image with the project's Node binary and node_modules (SDK +
 * its `claude`) mounted read-only instead of installed in it (no registry is
 * reachable here), and the model is the scripted one on the Docker bridge's
 * address (`host.docker.internal`, as the seed's `--add-host` gives).
 *
 * Owns: its own containers (label dev.claude-runner.bench), temp folders and
 * scripted model. Must not touch: the runner (this is not it).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Docker from 'dockerode';
import { startScriptedModel, type ScriptedModel } from '../src/scripted-model/index.ts';
import { ROOT, UPSTREAM_KEY, writeTemplate } from '../test/support/harness.ts';
import { loopsAtOnce, pathResult, TASK_MESSAGE, TASK_RULES, type PathResult } from './stats.ts';

const IMAGE = process.env.SANDBOX_IMAGE ?? 'claude-runner-sandbox:latest';
const LABEL = 'dev.claude-runner.bench';
const AGENT_UID = 1000;
const docker = new Docker();

export interface SeedAnswer {
  taskId: string;
  sessionId: string;
  response: string;
  cost: number;
  duration: number;
  resumed: boolean;
}

export interface SeedDesign {
  url: string;
  /** Submits like a client of the seed (POST /task, blocking); returns the answer and when its first `text` line arrived. */
  submit(sessionId: string, message: string): Promise<{ ms: number; firstTextMs: number; answer: SeedAnswer }>;
  close(): Promise<void>;
}

/** The script each container runs with `node -e` (same SDK options as the seed: bypass, partial messages, resume). */
function taskScript(prompt: string, systemPrompt: string, resumeId: string | null): string {
  return `
import { query } from '/app/node_modules/@anthropic-ai/claude-agent-sdk/sdk.mjs';
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\\n');
let sessionId = '', result = '', cost = 0;
const options = {
  maxTurns: 10, cwd: '/workspace', systemPrompt: ${JSON.stringify(systemPrompt)},
  ${resumeId ? `resume: ${JSON.stringify(resumeId)},` : ''}
  permissionMode: 'bypassPermissions', allowDangerouslySkipPermissions: true, includePartialMessages: true,
};
for await (const m of query({ prompt: ${JSON.stringify(prompt)}, options })) {
  if (m.type === 'system' && m.subtype === 'init') { sessionId = m.session_id; emit({ type: 'init', sessionId, model: m.model, tools: m.tools }); }
  else if (m.type === 'stream_event' && m.event.type === 'content_block_delta') {
    if (m.event.delta.type === 'text_delta') emit({ type: 'text', text: m.event.delta.text });
    if (m.event.delta.type === 'thinking_delta') emit({ type: 'thinking', text: m.event.delta.thinking });
  } else if (m.type === 'assistant') {
    for (const block of m.message.content) if (block.type === 'tool_use') emit({ type: 'tool_start', tool: block.name, input: block.input });
  } else if (m.type === 'user' && m.tool_use_result !== undefined) emit({ type: 'tool_end', result: String(JSON.stringify(m.tool_use_result)).slice(0, 500) });
  else if (m.type === 'result') { result = m.result ?? ''; cost = m.total_cost_usd ?? 0; }
}
emit({ final: true, result, sessionId, cost });
`;
}

interface SessionState { sdkSessionId: string | null; turns: number }

/** The Docker bridge's gateway address: where containers reach the host (host.docker.internal). */
async function bridgeGateway(): Promise<string> {
  const bridge = await docker.getNetwork('bridge').inspect() as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
  return bridge.IPAM?.Config?.find((c) => c.Gateway)?.Gateway ?? '172.17.0.1';
}

export async function startSeedDesign(): Promise<SeedDesign> {
  const model: ScriptedModel = await startScriptedModel({ host: await bridgeGateway(), rules: TASK_RULES, requireApiKey: UPSTREAM_KEY, maxRecorded: 10 });
  const base = mkdtempSync('/tmp/cr-bench-seed-');
  const agentDir = writeTemplate(join(base, 'agent'), {});
  const sessionsDir = join(base, 'sessions');
  mkdirSync(sessionsDir);
  const instance = randomBytes(3).toString('hex');
  const nodeBinary = realpathSync(join(ROOT, 'node_modules/.bin/node'));
  const queues = new Map<string, Promise<unknown>>();
  const firstTextAt = new Map<string, number>();

  const initSession = (sessionId: string): string => {
    const dir = join(sessionsDir, sessionId);
    if (existsSync(dir)) return dir;
    mkdirSync(join(dir, 'data'), { recursive: true });
    mkdirSync(join(dir, '.claude'));
    cpSync(join(agentDir, 'AGENTS.md'), join(dir, 'AGENTS.md'));
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ sdkSessionId: null, turns: 0 }));
    for (const path of [dir, join(dir, 'data'), join(dir, '.claude'), join(dir, 'AGENTS.md')]) chownSync(path, AGENT_UID, AGENT_UID);
    return dir;
  };

  const execute = (sessionId: string, taskId: string, message: string): Promise<SeedAnswer> => {
    const dir = initSession(sessionId);
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as SessionState;
    const systemPrompt = readFileSync(join(dir, 'AGENTS.md'), 'utf8');
    const started = Date.now();
    const args = [
      'run', '--rm', '--name', `bench-seed-${instance}-${sessionId}-${taskId}`, '--label', `${LABEL}=${instance}`,
      '--add-host=host.docker.internal:host-gateway',
      '-v', `${dir}:/workspace`, '-v', `${join(dir, '.claude')}:/home/agent/.claude`,
      '-v', `${nodeBinary}:/usr/local/bin/node:ro`, '-v', `${join(ROOT, 'node_modules')}:/app/node_modules:ro`,
      '-e', `ANTHROPIC_BASE_URL=http://host.docker.internal:${model.port}`, '-e', `ANTHROPIC_API_KEY=${UPSTREAM_KEY}`,
      '-e', 'CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1', '-e', 'CLAUDE_CODE_MAX_RETRIES=0', '-e', 'NODE_PATH=/app/node_modules',
      '-w', '/workspace', '--entrypoint', 'node', IMAGE, '--input-type=module', '-e', taskScript(message, systemPrompt, state.sdkSessionId),
    ];
    return new Promise((resolve, reject) => {
      const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let final: { result: string; sessionId: string; cost: number } | null = null;
      let stderr = '';
      createInterface({ input: child.stdout }).on('line', (line) => {
        let event: { type?: string; final?: boolean; result?: string; sessionId?: string; cost?: number };
        try {
          event = JSON.parse(line);
        } catch {
          return;
        }
        if (event.final) final = event as typeof final;
        // The seed broadcasts each event to its WebSocket clients here: the first text is what a client would see first.
        else if (event.type === 'text' && !firstTextAt.has(taskId)) firstTextAt.set(taskId, performance.now());
      });
      child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-2000); });
      child.once('error', reject);
      child.once('close', (code) => {
        if (!final) return reject(new Error(`seed container exited ${code}: ${stderr}`));
        const done = final as { result: string; sessionId: string; cost: number };
        writeFileSync(join(dir, 'state.json'), JSON.stringify({ sdkSessionId: done.sessionId || state.sdkSessionId, turns: state.turns + 1 }));
        resolve({ taskId, sessionId, response: done.result, cost: done.cost, duration: Date.now() - started, resumed: state.sdkSessionId !== null });
      });
    });
  };

  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    req.on('end', () => {
      const { sessionId, message } = JSON.parse(body) as { sessionId: string; message: string };
      const taskId = randomBytes(4).toString('hex');
      // One task at a time per session, the rest wait in order (the seed's queue).
      const previous = queues.get(sessionId) ?? Promise.resolve();
      const run = previous.catch(() => undefined).then(() => execute(sessionId, taskId, message));
      queues.set(sessionId, run);
      run.then((answer) => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      }, (error: Error) => {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: error.message }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    async submit(sessionId, message) {
      const started = performance.now();
      const response = await fetch(`${url}/task`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sessionId, message }) });
      const answer = await response.json() as SeedAnswer & { error?: string };
      const ms = performance.now() - started;
      if (response.status !== 200 || answer.response !== 'done') throw new Error(`seed task failed: ${response.status} ${JSON.stringify(answer)}`);
      const textAt = firstTextAt.get(answer.taskId);
      firstTextAt.delete(answer.taskId);
      return { ms, firstTextMs: textAt === undefined ? NaN : textAt - started, answer };
    },
    async close() {
      server.close();
      server.closeAllConnections();
      const left = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${instance}`] } });
      for (const info of left) await docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
      await model.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Latency of the seed's design: the next task of a session (a new container that resumes the conversation). */
export async function measureSeedLatency(seed: SeedDesign, rounds: number): Promise<PathResult> {
  const task: number[] = [];
  const firstText: number[] = [];
  await seed.submit('seed-latency', TASK_MESSAGE);
  for (let i = 0; i < rounds; i++) {
    const { ms, firstTextMs, answer } = await seed.submit('seed-latency', TASK_MESSAGE);
    if (!answer.resumed) throw new Error('seed: the next task did not resume the conversation');
    task.push(ms);
    firstText.push(firstTextMs);
  }
  return pathResult('seed design', 'next task of a session: fresh `docker run --rm`, Node + SDK start, conversation resumed', task, firstText);
}

/** The seed's throughput with `sessions` sessions working at once (each a loop of `perSession` tasks). */
export async function measureSeedThroughput(seed: SeedDesign, sessions: number, perSession: number) {
  return loopsAtOnce(sessions, perSession, async (loop) => {
    await seed.submit(`seed-tp-${loop}`, TASK_MESSAGE);
  });
}
