/**
 * The demo (`claude-runner demo`, `npm run demo`): the whole product on one
 * machine with no API key. Starts the scripted model
 * (examples/support-bot/script.json), the mock Acme API and a runner with
 * the support-bot agent, sends the seed's example task through the client
 * while printing its live events, then keeps running for your own requests
 * (with `once`, stops after the example task).
 *
 * Ctrl-C (or SIGTERM) leaves nothing behind: the demo's sessions are deleted
 * (their containers with them), any container still labelled with the
 * demo's own runner id is removed, the runner, the mock API and the model
 * stop listening, and the temporary DATA_DIR goes.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { createRunner, type Runner } from '../app.ts';
import { ClaudeRunnerClient, isClaudeRunnerError } from '../client/index.ts';
import { loadConfig } from '../config.ts';
import { parseJsonScript, startScriptedModel, type ScriptedModel } from '../scripted-model/index.ts';
import { colours, shorten } from './output.ts';

/** The package's root: the same two levels up from src/cli and from dist/cli. */
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const ACME_TOKEN = 'acme-demo-token';
const DEMO_KEY = 'sk-ant-demo-not-a-real-key';

export interface DemoOptions {
  once: boolean;
  /** The runner's port (0: any free one). */
  port: number;
  /** The mock Acme API's port (0: any free one). */
  apiPort: number;
  logLevel?: string;
}

interface MockApi {
  port: number;
  close(): Promise<void>;
}

/** The mock API: TypeScript in the repository, compiled into dist/examples in the package. */
async function startMockApi(port: number): Promise<MockApi> {
  const source = import.meta.url.endsWith('.ts') ? 'examples/support-bot/mock-api.ts' : 'dist/examples/support-bot/mock-api.js';
  const module = await import(new URL(source, `file://${packageRoot}`).href) as { startMockAcmeApi(options: { port: number; token: string }): Promise<MockApi> };
  return module.startMockAcmeApi({ port, token: ACME_TOKEN });
}

/** Runs the demo; resolves with the exit code once everything it started is gone. */
export async function runDemo(options: DemoOptions): Promise<number> {
  // Its own id (tests set DEMO_RUNNER_ID to one of theirs): what carries it is removed at the end, nothing else.
  const runnerId = process.env.DEMO_RUNNER_ID || `demo${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'claude-runner-demo-'));
  const agentDir = join(dataDir, 'agent-template');
  let model: ScriptedModel | undefined;
  let api: MockApi | undefined;
  let runner: Runner | undefined;
  let client: ClaudeRunnerClient | undefined;
  const following = new AbortController();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    following.abort();
    // Deleting each session stops its task and removes its container (the runner's shutdown keeps them, on purpose).
    if (client && runner) {
      const sessions = await client.listSessions({ limit: 500 }).then((page) => page.sessions, () => []);
      await Promise.all(sessions.map((session) => client!.deleteSession(session.sessionId).catch(() => undefined)));
    }
    await runner?.shutdown().catch(() => undefined);
    await removeContainersOf(runnerId);
    await api?.close().catch(() => undefined);
    await model?.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  })());

  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stdout.write(colours.dim('\nStopping the demo: deleting its sessions and containers…\n'));
    void stop().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Whatever goes wrong (a closed stdout pipe: EPIPE), what the demo started is still removed.
  const onCrash = (error: unknown): void => {
    process.stderr.write(`demo: ${(error as Error)?.message ?? String(error)}\n`);
    void stop().finally(() => process.exit(1));
  };
  process.on('uncaughtException', onCrash);
  process.stdout.on('error', onCrash);

  const script = parseJsonScript(JSON.parse(readFileSync(join(packageRoot, 'examples/support-bot/script.json'), 'utf8')));
  model = await startScriptedModel({ ...script, requireApiKey: DEMO_KEY });
  api = await startMockApi(options.apiPort);
  writeAgentTemplate(agentDir, api.port);
  runner = await createRunner(loadConfig({
    PORT: String(options.port),
    HOST: '127.0.0.1',
    RUNNER_ID: runnerId,
    DATA_DIR: join(dataDir, 'data'),
    AGENT_DIR: agentDir,
    ANTHROPIC_BASE_URL: model.url,
    ANTHROPIC_API_KEY: DEMO_KEY,
    MODEL_MAX_RETRIES: '0',
    SHUTDOWN_GRACE_MS: '2000',
    // One session, made at once: a ready one would only be one more container to start and remove.
    READY_POOL_SIZE: '0',
    LOG_LEVEL: options.logLevel ?? process.env.LOG_LEVEL ?? 'warn',
  }));
  const url = (await runner.start()).replace('0.0.0.0', '127.0.0.1');
  client = new ClaudeRunnerClient({ baseUrl: url });
  process.stdout.write(`scripted model ${model.url}\nmock Acme API   http://127.0.0.1:${api.port}\nClaude Runner   ${url} (runner id ${runnerId}, data in ${dataDir})\n\n`);

  const sessionId = `demo-${Date.now().toString(36)}`;
  const events = followEvents(client, sessionId, following.signal);
  const body = {
    sessionId,
    message: 'Look up my account, email is alice@startup.io',
    context: 'Channel: web-chat',
    env: { ACME_API_URL: `http://host.docker.internal:${api.port}`, ACME_API_TOKEN: ACME_TOKEN },
  };
  process.stdout.write(`POST /task ${JSON.stringify(body)}\n\n`);
  let exitCode = 0;
  try {
    const result = await client.runTask(body);
    process.stdout.write(`\n${colours.green('200')} ${JSON.stringify(result, null, 2)}\n\n`);
  } catch (error) {
    if (interrupted) return new Promise(() => undefined);
    exitCode = 1;
    const described = isClaudeRunnerError(error) ? `${error.status} ${error.code}: ${error.message}` : String(error);
    process.stdout.write(`\n${colours.red(described)}\n\n`);
  }
  // Its last events are printed before the answer's summary below.
  await new Promise((resolve) => setTimeout(resolve, 200));

  if (options.once) {
    await stop();
    await events;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('uncaughtException', onCrash);
    process.stdout.off('error', onCrash);
    return exitCode;
  }
  process.stdout.write([
    'Try it yourself:',
    `  claude-runner --url ${url} task me "Hi, I am alice@startup.io" -e ACME_API_URL=http://host.docker.internal:${api.port} -e ACME_API_TOKEN=${ACME_TOKEN}`,
    `  claude-runner --url ${url} tail me`,
    `  curl -N ${url}/session/me/events`,
    'Ctrl-C stops everything and removes what the demo created.',
    '',
  ].join('\n'));
  process.stdout.write('demo ready\n');
  // Runs until a signal: onSignal exits once everything is gone.
  return new Promise(() => undefined);
}

/** The support-bot template, its network allowlist naming the port the mock API really listens on. */
function writeAgentTemplate(dir: string, apiPort: number): void {
  cpSync(join(packageRoot, 'examples/support-bot/agent'), dir, { recursive: true });
  const configFile = join(dir, 'runner.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as { network?: { allow?: string[] } };
  if (config.network?.allow) config.network.allow = config.network.allow.map((entry) => entry.replace(/^host\.docker\.internal:\d+$/, `host.docker.internal:${apiPort}`));
  writeFileSync(configFile, JSON.stringify(config, null, 2));
}

/** Prints the session's events as they come (the client resumes after a disconnect). */
async function followEvents(client: ClaudeRunnerClient, sessionId: string, signal: AbortSignal): Promise<void> {
  try {
    for await (const frame of client.sessionEvents(sessionId, { signal })) {
      if (frame.type === 'connected') continue;
      const detail = frame.type === 'text' || frame.type === 'thinking' ? JSON.stringify(frame.text)
        : frame.type === 'tool_start' ? `${frame.tool} ${shorten(JSON.stringify(frame.input), 200)}`
        : frame.type === 'tool_end' ? shorten(frame.result, 120)
        : frame.type === 'task_error' ? colours.red(`${frame.error.code} ${frame.error.message}`)
        : '';
      process.stdout.write(`  ${colours.dim(`#${'seq' in frame ? frame.seq : '-'}`)} ${colours.cyan(frame.type)} ${detail}\n`);
    }
  } catch {
    // The demo is stopping.
  }
}

/** What the demo's runner left (labelled with its runner id), removed. */
async function removeContainersOf(runnerId: string): Promise<void> {
  const docker = new Docker();
  const containers = await docker.listContainers({ all: true, filters: { label: [`dev.claude-runner.instance=${runnerId}`] } }).catch(() => []);
  await Promise.all(containers.map((info) => docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined)));
}
