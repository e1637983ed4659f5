/**
 * Several runner nodes for the multi-node tests: real processes
 * (`node src/main.ts`) on one PostgreSQL database (test/support/postgres.ts),
 * one shared DATA_DIR and agent template, one Docker engine and one scripted
 * model, each with its own RUNNER_ID and port. Owns only the test's nodes,
 * database and temp folder; it must not touch anything of another test (it
 * removes exactly the containers labelled with its nodes' ids).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startScriptedModel, type ScriptedModel, type ScriptedModelOptions } from '../../src/scripted-model/index.ts';
import { startPostgres } from '../support/postgres.ts';
import {
  apiClient, eventually, removeContainers, spawnRunner, testEnv, testRunnerId, UPSTREAM_KEY, writeTemplate,
  type ApiClient, type ApiResponse, type RunnerProcess, type TemplateFiles,
} from '../support/harness.ts';
import { agentProcesses, containerOf, FINAL, sleep } from '../sessions/support.ts';
import { WsClient, type Frame } from '../events/support.ts';
import { databaseLink, type DatabaseLink } from './database-link.ts';

export interface ClusterNode {
  /** Its RUNNER_ID (the node id; its containers carry it as a label). */
  id: string;
  url: string;
  api: ApiClient;
  process: RunnerProcess;
  /** What it wrote to stderr alone. */
  stderr(): string;
  /** kill -9; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** Its own link to the database, to cut (with `cuttableDatabase`). */
  database?: DatabaseLink;
}

export interface ClusterOptions {
  nodes?: number;
  rules?: ScriptedModelOptions['rules'];
  template?: TemplateFiles;
  /** Configuration of every node, on top of the test defaults. */
  env?: Record<string, string>;
  /** The scripted model keeps this many requests (default 1000). */
  maxRecorded?: number;
  /** Each node reaches the database through a link of its own that the test can cut. */
  cuttableDatabase?: boolean;
}

export interface Cluster {
  model: ScriptedModel;
  databaseUrl: string;
  dataDir: string;
  /** The nodes started by startCluster, in order (killed ones stay listed). */
  nodes: ClusterNode[];
  /** Spawns one more node (not waiting for it): overrides replace the shared settings (e.g. another DATA_DIR). */
  spawnNode(overrides?: Record<string, string>): { id: string; process: RunnerProcess; stderr(): string };
  /** The node whose container serves the session now (sessions are sticky), if any. */
  ownerOf(sessionId: string): Promise<ClusterNode | undefined>;
  /** The other live node than `node` (two-node clusters). */
  otherThan(node: ClusterNode): ClusterNode;
  /**
   * Runs a test body: when it fails, every node's log is written to a file
   * and its tail printed, so a failure says what the nodes did.
   */
  explain(body: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/** Starts a PostgreSQL database, the scripted model and `nodes` runner processes sharing them; resolves once all listen. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const postgres = await startPostgres();
  const databaseUrl = await postgres.createDatabase();
  const model = await startScriptedModel({ rules: options.rules ?? [], requireApiKey: UPSTREAM_KEY, maxRecorded: options.maxRecorded });
  const base = mkdtempSync('/tmp/cr-cluster-');
  const dataDir = join(base, 'data');
  const agentDir = join(base, 'agents');
  mkdirSync(dataDir, { recursive: true });
  writeTemplate(agentDir, options.template ?? {});
  // Every node of a deployment shares these (docs/scaling.md): the database, DATA_DIR, the templates and the secret key.
  const shared = testEnv({
    DATA_DIR: dataDir,
    AGENT_DIR: agentDir,
    ANTHROPIC_BASE_URL: model.url,
    DATABASE_URL: databaseUrl,
    RUNNER_SECRET_KEY: randomBytes(32).toString('base64'),
    ...options.env,
  });
  const spawned: Array<{ id: string; process: RunnerProcess }> = [];
  const links: DatabaseLink[] = [];

  function spawnNode(overrides: Record<string, string> = {}) {
    const id = testRunnerId();
    const process = spawnRunner({ ...shared, RUNNER_ID: id, ...overrides });
    // A node that exits before it listens rejects `url`; whoever awaits it still sees that, the process does not crash.
    process.url.catch(() => undefined);
    let stderr = '';
    process.child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    spawned.push({ id, process });
    return { id, process, stderr: () => stderr };
  }

  async function startNode(): Promise<ClusterNode> {
    const database = options.cuttableDatabase ? await databaseLink(databaseUrl) : undefined;
    if (database) links.push(database);
    const { id, process, stderr } = spawnNode(database ? { DATABASE_URL: database.url } : {});
    const url = await process.url;
    return {
      id, url, process, stderr, database,
      api: apiClient(() => url),
      async kill9() {
        if (process.child.exitCode === null && process.child.signalCode === null) process.child.kill('SIGKILL');
        await process.exited;
      },
    };
  }

  let nodes: ClusterNode[];
  try {
    // Started together, as a deployment's replicas are.
    nodes = await Promise.all(Array.from({ length: options.nodes ?? 2 }, () => startNode()));
  } catch (error) {
    await stopAll(spawned);
    for (const link of links) await link.close();
    await model.close();
    await postgres.stop();
    rmSync(base, { recursive: true, force: true });
    throw error;
  }

  const alive = (node: ClusterNode) => node.process.child.exitCode === null && node.process.child.signalCode === null;

  return {
    model, databaseUrl, dataDir, nodes, spawnNode,
    async ownerOf(sessionId) {
      // A killed node's container may still run until the takeover removes it: only live nodes own sessions.
      for (const node of nodes.filter(alive)) {
        const container = await containerOf(node.id, sessionId);
        if (container?.State === 'running') return node;
      }
      return undefined;
    },
    otherThan(node) {
      const other = nodes.find((n) => n !== node && alive(n));
      if (!other) throw new Error(`no live node other than ${node.id}`);
      return other;
    },
    async explain(body) {
      try {
        await body();
      } catch (error) {
        const dir = mkdtempSync('/tmp/cr-cluster-logs-');
        for (const { id, process } of spawned) {
          writeFileSync(join(dir, `${id}.log`), process.logs());
          console.log(`# node ${id} (exit ${process.child.exitCode ?? process.child.signalCode ?? 'running'}), last lines:\n${tail(process.logs(), 15)}`);
        }
        console.log(`# full node logs: ${dir}`);
        throw error;
      }
    },
    async close() {
      for (const link of links) link.restore();
      await stopAll(spawned);
      for (const link of links) await link.close();
      await model.close();
      await postgres.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** SIGTERM to every node still running (SIGKILL after the grace), then their containers go. */
async function stopAll(spawned: Array<{ id: string; process: RunnerProcess }>): Promise<void> {
  await Promise.all(spawned.map(async ({ process }) => {
    if (process.child.exitCode !== null || process.child.signalCode !== null) return;
    process.child.kill('SIGTERM');
    const timer = setTimeout(() => process.child.kill('SIGKILL'), 15_000);
    await process.exited;
    clearTimeout(timer);
  }));
  for (const { id } of spawned) await removeContainers(id);
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line)).join('\n');
}

/** Polls GET /tasks/:id on one node until the task is final; its view and when it was first seen final (ms). */
export async function finalSeen(api: ApiClient, taskId: string, timeoutMs = 30_000): Promise<{ task: any; seenAt: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api(`/tasks/${taskId}`);
    if (res.status === 200 && FINAL.has(res.body.status)) return { task: res.body, seenAt: Date.now() };
    if (Date.now() > deadline) throw new Error(`task ${taskId} did not end within ${timeoutMs} ms: ${res.status} ${res.text.slice(0, 300)}`);
    await sleep(20);
  }
}

/** The newest task of a session, as a node lists it. */
export async function newestTask(api: ApiClient, sessionId: string): Promise<any> {
  const res = await api(`/session/${encodeURIComponent(sessionId)}/tasks?limit=1`);
  return res.body?.tasks?.[0];
}

/**
 * Waits until a process whose command line holds `what` runs in the session's
 * container on that node; its container id. Longer than the sessions' helper:
 * beside the 500-task file a fresh `claude` may take half a minute to start.
 */
export function toolRunning(nodeId: string, sessionId: string, what: string, timeoutMs = 90_000): Promise<string> {
  return eventually(async () => {
    const container = await containerOf(nodeId, sessionId);
    return container && (await agentProcesses(container.Id)).some((p) => p.includes(what)) ? container.Id : undefined;
  }, timeoutMs, `${what} to run in the sandbox of ${sessionId} on ${nodeId}`);
}

/** Every stored event of the session after `after`, replayed over a WebSocket (up to the lastSeq `connected` names). */
export async function replayLog(node: ClusterNode, sessionId: string, after = 0): Promise<Frame[]> {
  const ws = await WsClient.open(node.url, sessionId, `?after=${after}`);
  try {
    const connected = await ws.waitFor((f) => f.type === 'connected');
    if (connected.after !== after) throw new Error(`connected after ${connected.after}, asked ${after}`);
    if (connected.lastSeq > after) await ws.waitFor((f) => f.seq === connected.lastSeq, 20_000, `the log of ${sessionId} up to ${connected.lastSeq}`);
    return ws.events;
  } finally {
    await ws.close();
  }
}

export interface BusySession {
  /** The caller of the running task, waiting on `b`. */
  slowCaller: Promise<ApiResponse>;
  /** The caller of the task queued behind it, waiting on `b`. */
  nextCaller: Promise<ApiResponse>;
  /** The running task, as `b` lists it. */
  slow: any;
  /** The container on `a` where its tool runs. */
  containerId: string;
}

/**
 * Through node `b`: a task whose tool (`sleep 60`, per the model's rule for `slowMessage`) runs on
 * `a`, the session's owner, and another queued behind it.
 */
export async function busyOnOwner(a: ClusterNode, b: ClusterNode, sessionId: string, slowMessage: string, nextMessage: string): Promise<BusySession> {
  const slowCaller = b.api('/task', { method: 'POST', json: { sessionId, message: slowMessage } });
  const containerId = await toolRunning(a.id, sessionId, 'sleep 60');
  const slow = await newestTask(b.api, sessionId);
  if (slow?.status !== 'running') throw new Error(`the slow task is ${slow?.status}, not running`);
  const nextCaller = b.api('/task', { method: 'POST', json: { sessionId, message: nextMessage } });
  await eventually(async () => ((await b.api(`/session/${sessionId}`)).body.queueDepth === 1 ? true : undefined), 10_000, 'the next task queued');
  return { slowCaller, nextCaller, slow, containerId };
}

/** Runs a first task of the session through `via` (whichever node claims it owns the session); the owner and the other node. */
export async function warmSession(cluster: Cluster, via: ClusterNode, sessionId: string, message: string): Promise<{ a: ClusterNode; b: ClusterNode }> {
  const res = await via.api('/task', { method: 'POST', json: { sessionId, message } });
  if (res.status !== 200) throw new Error(`the first task of ${sessionId}: ${res.status} ${res.text.slice(0, 300)}`);
  const a = await eventually(() => cluster.ownerOf(sessionId), 5000, `the owner of ${sessionId}`);
  return { a, b: cluster.otherThan(a) };
}
