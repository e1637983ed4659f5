/**
 * A real runner for a test: the scripted model as upstream, a temporary
 * DATA_DIR and agent template, its own runner id (so its containers are told
 * apart and removed at the end), and the whole configuration given explicitly
 * (never the shell's environment, which may carry real ANTHROPIC_* values).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { createRunner, type Runner } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { startScriptedModel, type ScriptedModel } from '../../src/scripted-model/index.ts';
import type { Rule } from '../../src/scripted-model/types.ts';

export const UPSTREAM_KEY = 'sk-ant-test-upstream-0123456789abcdef';

/**
 * Runner ids of tests: "t", this test run's id (scripts/test.ts sets it, so it
 * can find exactly what its own run left behind), and a random part.
 */
export const TEST_RUN_ID = process.env.CLAUDE_RUNNER_TEST_RUN ?? randomBytes(2).toString('hex');
export function testRunnerId(): string {
  return `t${TEST_RUN_ID}${randomBytes(3).toString('hex')}`;
}
export const ROOT = resolve(import.meta.dirname, '../..');
const docker = new Docker();

export interface TemplateFiles {
  'AGENTS.md'?: string;
  'OUTPUT.md'?: string;
  'output.schema.json'?: unknown;
  'runner.json'?: unknown;
  [path: string]: unknown;
}

/** Writes an agent template folder; `tools/*.sh` files are made executable. */
export function writeTemplate(dir: string, files: TemplateFiles): string {
  mkdirSync(dir, { recursive: true });
  const all = { 'AGENTS.md': '# Test agent\nDo what the user asks.\n', ...files };
  for (const [path, content] of Object.entries(all)) {
    if (content === undefined) continue;
    const full = join(dir, path);
    mkdirSync(join(full, '..'), { recursive: true });
    writeFileSync(full, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    if (path.endsWith('.sh')) chmodSync(full, 0o755);
  }
  return dir;
}

export interface HarnessOptions {
  rules?: Rule[];
  /** One template (files), or several by name. */
  template?: TemplateFiles;
  templates?: Record<string, TemplateFiles>;
  /** Configuration variables on top of the test defaults. */
  env?: Record<string, string>;
}

export interface Harness {
  url: string;
  runner: Runner;
  model: ScriptedModel;
  dataDir: string;
  agentDir: string;
  runnerId: string;
  env: Record<string, string>;
  api: ApiClient;
  /** Stops the runner (not the model), as a restart would. */
  stopRunner(): Promise<void>;
  /** Starts a new runner on the same data, as after a restart. */
  restartRunner(): Promise<void>;
  close(): Promise<void>;
}

export function testEnv(overrides: Record<string, string>): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    ANTHROPIC_API_KEY: UPSTREAM_KEY,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    MODEL_MAX_RETRIES: '0',
    SANDBOX_MEMORY: '1g',
    SANDBOX_PIDS: '256',
    MAX_CONCURRENT_TASKS: '4',
    // No ready sessions unless a test asks: most tests count containers and live agents.
    READY_POOL_SIZE: '0',
    RATE_LIMIT_PER_MINUTE: '0',
    SHUTDOWN_GRACE_MS: '5000',
    ...overrides,
  };
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const model = await startScriptedModel({ rules: options.rules ?? [], requireApiKey: UPSTREAM_KEY });
  const base = mkdtempSync('/tmp/cr-');
  const dataDir = join(base, 'data');
  const agentDir = join(base, 'agents');
  if (options.templates) {
    for (const [name, files] of Object.entries(options.templates)) writeTemplate(join(agentDir, name), files);
  } else {
    writeTemplate(agentDir, options.template ?? {});
  }
  const runnerId = testRunnerId();
  const env = testEnv({ DATA_DIR: dataDir, AGENT_DIR: agentDir, ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId, ...options.env });
  let runner = await createRunner(loadConfig(env));
  let url = (await runner.start()).replace('0.0.0.0', '127.0.0.1');

  const harness: Harness = {
    get url() { return url; },
    get runner() { return runner; },
    model, dataDir, agentDir, runnerId, env,
    api: apiClient(() => url),
    async stopRunner() {
      await runner.shutdown();
    },
    async restartRunner() {
      runner = await createRunner(loadConfig(env));
      url = (await runner.start()).replace('0.0.0.0', '127.0.0.1');
    },
    async close() {
      await runner.shutdown().catch(() => undefined);
      await removeContainers(runnerId);
      await model.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
  return harness;
}

export interface ApiResponse {
  status: number;
  /** Parsed JSON, or the text when the body is not JSON. */
  body: any;
  headers: Headers;
  text: string;
}
export type ApiClient = (path: string, init?: RequestInit & { json?: unknown }) => Promise<ApiResponse>;

/** JSON over HTTP to a runner whose address may change (restarts). */
export function apiClient(baseUrl: () => string): ApiClient {
  return async (path, init = {}) => {
    const headers = new Headers(init.headers);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    const response = await fetch(`${baseUrl()}${path}`, { ...init, headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, body: parsed, headers: response.headers, text };
  };
}

export async function containersOf(runnerId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`dev.claude-runner.instance=${runnerId}`] } });
}

export async function removeContainers(runnerId: string): Promise<void> {
  for (const info of await containersOf(runnerId)) await docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
}

export interface RunnerProcess {
  child: ChildProcess;
  /** The address it listens on, once its log says so. */
  url: Promise<string>;
  exited: Promise<number | null>;
  /** Everything it wrote to stdout and stderr so far. */
  logs(): string;
}

/**
 * The runner as its own process (`node src/main.ts`), for crash, signal and
 * security tests. It logs at `logLevel` (at least info: its address is read
 * from the "listening" line).
 */
export function spawnRunner(env: Record<string, string>, logLevel: 'info' | 'debug' | 'trace' = 'info'): RunnerProcess {
  const child = spawn(process.execPath, [join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, LOG_LEVEL: logLevel },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = new Promise<string>((resolvePromise, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const match = /"address":"(http:\/\/[^"]+)"/.exec(log);
      if (match) resolvePromise(match[1]!.replace('0.0.0.0', '127.0.0.1'));
    });
    child.stderr!.on('data', (chunk: Buffer) => { log += chunk.toString(); });
    child.once('exit', (code) => reject(new Error(`runner exited (${code}) before listening:\n${log}`)));
  });
  const exited = new Promise<number | null>((resolvePromise) => child.once('exit', (code) => resolvePromise(code)));
  return { child, url, exited, logs: () => log };
}

/** Polls until `check` returns a value that is not undefined. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
