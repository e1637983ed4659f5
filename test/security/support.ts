/**
 * Helpers of the security tests: a runner as its own process (with its real
 * environment, as in production, and its whole log captured), the "outside
 * world" test host (a busybox httpd container of our own on the default
 * bridge), a DNS responder on the bridge address, and readers of what the
 * scripted model was sent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';
import { startScriptedModel, type ScriptedModel } from '../../src/scripted-model/index.ts';
import type { RecordedRequest, Rule } from '../../src/scripted-model/types.ts';
import {
  apiClient, containersOf, removeContainers, spawnRunner as spawnRunnerProcess, testEnv, writeTemplate, type ApiClient, type TemplateFiles,
} from '../support/harness.ts';

export const docker = new Docker();

/** A unique credential: if it shows up anywhere it must not, it came from here. */
export function sentinel(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

/** Base64 of a value: a script can rebuild the value inside the sandbox without its text ever being written there. */
export function b64(value: string): string {
  return Buffer.from(value).toString('base64');
}

/** A free TCP port of this machine (for a runner whose port a template must name before it starts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Text of every tool_result block of a recorded request (what the model was shown of the tools' output). */
export function toolResults(request: RecordedRequest | undefined): string {
  const body = request?.body as { messages?: Array<{ content: unknown }> } | undefined;
  const blocks = (body?.messages ?? []).flatMap((m) => (Array.isArray(m.content) ? m.content : []));
  return blocks
    .filter((b: { type?: string }) => b.type === 'tool_result')
    .map((b: { content?: unknown }) => (typeof b.content === 'string' ? b.content : JSON.stringify(b.content)))
    .join('\n');
}

/** The tool result the model saw last for a prompt (its latest request). */
export function lastToolResults(model: ScriptedModel, prompt: string): string {
  const requests = model.findRequests({ prompt, kind: 'main' });
  return toolResults(requests.at(-1));
}

export interface SpawnedRunner {
  url: string;
  port: number;
  model: ScriptedModel;
  dataDir: string;
  agentDir: string;
  runnerId: string;
  env: Record<string, string>;
  child: ChildProcess;
  /** Everything the runner wrote to stdout and stderr so far. */
  logs(): string;
  api: ApiClient;
  close(): Promise<void>;
}

export interface SpawnOptions {
  rules: Rule[];
  template?: TemplateFiles;
  /** The upstream credential: the runner's ANTHROPIC_API_KEY, the only key the scripted model accepts. */
  upstreamKey: string;
  env?: Record<string, string>;
}

/**
 * `node src/main.ts` with its configuration in its process environment, as an
 * operator runs it (so a leak of process.env would show), at LOG_LEVEL=trace.
 */
export async function spawnRunner(options: SpawnOptions): Promise<SpawnedRunner> {
  const model = await startScriptedModel({ rules: options.rules, requireApiKey: options.upstreamKey });
  const base = mkdtempSync('/tmp/cr-');
  const dataDir = join(base, 'data');
  const agentDir = join(base, 'agents');
  writeTemplate(agentDir, options.template ?? {});
  const runnerId = `t${randomBytes(4).toString('hex')}`;
  const env = testEnv({
    DATA_DIR: dataDir, AGENT_DIR: agentDir, ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId, ANTHROPIC_API_KEY: options.upstreamKey,
    ...options.env,
  });
  const started = spawnRunnerProcess(env, 'trace');
  const { child, exited } = started;
  const url = await started.url;
  const runner: SpawnedRunner = {
    url, port: Number(new URL(url).port), model, dataDir, agentDir, runnerId, env, child,
    logs: started.logs,
    api: apiClient(() => url),
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await removeContainers(runnerId);
      await model.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
  return runner;
}

/** A container's processes as [uid, command] (docker top: from the host, no exec in the sandbox). */
export async function containerProcesses(containerId: string): Promise<Array<{ uid: string; cmd: string }>> {
  const top = await docker.getContainer(containerId).top({ ps_args: '-o uid,args' }) as { Titles: string[]; Processes: string[][] };
  return top.Processes.map(([uid, ...rest]) => ({ uid: uid!.trim(), cmd: rest.join(' ') }));
}

export async function sessionContainer(runnerId: string, sessionId: string, tenant?: string): Promise<Docker.ContainerInfo | undefined> {
  return (await containersOf(runnerId)).find((c) => c.Labels['dev.claude-runner.session-id'] === sessionId && (tenant === undefined || c.Labels['dev.claude-runner.tenant'] === tenant));
}

/** Runs a command in a session's sandbox as the agent user (what a tool left behind can do there). */
export async function execIn(containerId: string, command: string[]): Promise<{ exitCode: number | null; output: string }> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: command, User: '1000:1000', AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', resolve);
    stream.on('close', resolve);
  });
  // Demultiplex Docker's 8-byte frame headers.
  const raw = Buffer.concat(chunks);
  let output = '';
  for (let offset = 0; offset + 8 <= raw.length;) {
    const size = raw.readUInt32BE(offset + 4);
    output += raw.subarray(offset + 8, offset + 8 + size).toString();
    offset += 8 + size;
  }
  let info = await exec.inspect();
  for (let i = 0; i < 50 && info.Running; i++) {
    await new Promise((r) => setTimeout(r, 20));
    info = await exec.inspect();
  }
  return { exitCode: info.ExitCode ?? null, output };
}

export interface TestHost {
  /** Its address on the default bridge. */
  ip: string;
  port: number;
  close(): Promise<void>;
}

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

/** The static busybox of this machine (Debian's busybox-static), or undefined. */
export function busyboxPath(): string | undefined {
  return BUSYBOX;
}

/** The "outside world": a busybox httpd in a container of our own on the default bridge, serving /index.html. */
export async function startTestHost(body = 'hello from the test host\n'): Promise<TestHost> {
  if (!BUSYBOX) throw new Error('busybox-static is not installed (apt-get install busybox-static)');
  const run = randomBytes(4).toString('hex');
  const dir = mkdtempSync('/tmp/cr-busybox-');
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'www'));
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  writeFileSync(join(dir, 'www', 'index.html'), body);
  const image = `claude-runner-test-busybox:${run}`;
  await new Promise<void>((resolve, reject) => {
    const tar = spawn('tar', ['-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    docker.importImage(tar.stdout, { repo: 'claude-runner-test-busybox', tag: run } as object).then((stream) => {
      docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
    }, reject);
  });
  rmSync(dir, { recursive: true, force: true });
  const container = await docker.createContainer({
    name: `claude-runner-test-host-${run}`,
    Image: image,
    Cmd: ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'],
    Labels: { 'dev.claude-runner.test': run },
    HostConfig: { NetworkMode: 'bridge' },
  });
  await container.start();
  const ip = (await container.inspect()).NetworkSettings.Networks.bridge?.IPAddress;
  if (!ip) throw new Error('the test host has no bridge address');
  return {
    ip,
    port: 8080,
    async close() {
      await container.remove({ force: true }).catch(() => undefined);
      await docker.getImage(image).remove({ force: true }).catch(() => undefined);
    },
  };
}

/** The bridge gateway: this machine as containers on the default bridge see it. */
export async function bridgeGateway(): Promise<string> {
  const info = await docker.getNetwork('bridge').inspect() as { IPAM: { Config: Array<{ Gateway?: string; Subnet?: string }> } };
  return info.IPAM.Config.find((c) => c.Gateway)?.Gateway ?? '172.17.0.1';
}

export interface DnsResponder {
  address: string;
  port: number;
  /** Names it was asked for. */
  queries: string[];
  close(): Promise<void>;
}

/** A DNS server of our own (UDP) that answers every A query with 10.99.99.99, to see whether a sandbox can resolve at all. */
export async function startDnsResponder(address: string, port = 53): Promise<DnsResponder> {
  const socket: UdpSocket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let offset = 12;
    const labels: string[] = [];
    while (offset < msg.length && msg[offset] !== 0) {
      const length = msg[offset]!;
      labels.push(msg.subarray(offset + 1, offset + 1 + length).toString());
      offset += length + 1;
    }
    const questionEnd = offset + 5;
    queries.push(labels.join('.'));
    const qtype = msg.readUInt16BE(offset + 1);
    const header = Buffer.from(msg.subarray(0, 12));
    header.writeUInt16BE(0x8180, 2); // response, recursion available, no error
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(qtype === 1 ? 1 : 0, 6);
    header.writeUInt16BE(0, 8);
    header.writeUInt16BE(0, 10);
    const question = msg.subarray(12, questionEnd);
    const answer = qtype === 1 ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 99, 99, 99]) : Buffer.alloc(0);
    socket.send(Buffer.concat([header, question, answer]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve());
  });
  return { address, port, queries, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

/** Opens a WebSocket and resolves with what happened first: opened, or the HTTP status of a refused upgrade. */
export async function tryWebSocket(url: string, headers: Record<string, string> = {}): Promise<{ opened: boolean; status?: number; body?: string; serverClosed?: boolean; frames: unknown[]; close(): void }> {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, { headers });
  const frames: unknown[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
  return new Promise((resolve) => {
    ws.once('open', () => resolve({ opened: true, frames, close: () => ws.close() }));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      res.on('end', () => {
        // Does the server let go of a refused upgrade's socket? (We keep ours open for 2 s to see.)
        const socket = req.socket!;
        const timer = setTimeout(() => finish(false), 2000);
        const finish = (serverClosed: boolean) => {
          clearTimeout(timer);
          socket.destroy();
          resolve({ opened: false, status: res.statusCode, body, serverClosed, frames, close: () => ws.terminate() });
        };
        if (socket.destroyed || socket.readableEnded) finish(true);
        else socket.once('close', () => finish(true)).once('end', () => finish(true));
      });
    });
    ws.once('error', () => resolve({ opened: false, frames, close: () => ws.terminate() }));
  });
}

/** Reads an SSE stream until `until` says stop (or the time runs out); returns the raw text. */
export async function readSse(url: string, headers: Record<string, string>, until: (text: string) => boolean, timeoutMs = 20_000): Promise<{ status: number; text: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(url, { headers, signal: controller.signal });
    if (!response.body || response.status !== 200) return { status: response.status, text: await response.text() };
    let text = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        if (until(text)) break;
      }
    } catch {
      // aborted by the timeout: return what came
    }
    controller.abort();
    return { status: response.status, text };
  } finally {
    clearTimeout(timer);
  }
}
