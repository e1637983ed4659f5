/**
 * Helpers shared by the session tests: waiting for tasks, looking into a
 * session's container, reading a runner's database from outside.
 */
import { DatabaseSync } from 'node:sqlite';
import Docker from 'dockerode';
import type { RecordedRequest } from '../../src/scripted-model/types.ts';
import { apiClient, containersOf, eventually, type ApiClient } from '../support/harness.ts';

export const docker = new Docker();

export const FINAL = new Set(['succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded']);

type Api = ApiClient;

/** Polls GET /tasks/:id until the task is final; returns its view. */
export async function waitFinal(api: Api, taskId: string, timeoutMs = 30_000): Promise<any> {
  return eventually(async () => {
    const res = await api(`/tasks/${taskId}`);
    return res.status === 200 && FINAL.has(res.body.status) ? res.body : undefined;
  }, timeoutMs, `task ${taskId} to end`);
}

export async function waitStatus(api: Api, taskId: string, status: string, timeoutMs = 30_000): Promise<any> {
  return eventually(async () => {
    const res = await api(`/tasks/${taskId}`);
    return res.body?.status === status ? res.body : undefined;
  }, timeoutMs, `task ${taskId} to be ${status}`);
}

/** The container of one session of a runner, if any. */
export async function containerOf(runnerId: string, sessionId: string): Promise<Docker.ContainerInfo | undefined> {
  return (await containersOf(runnerId)).find((c) => c.Labels['dev.claude-runner.session-id'] === sessionId);
}

export async function isRunning(containerId: string): Promise<boolean> {
  try {
    return (await docker.getContainer(containerId).inspect()).State.Running;
  } catch {
    return false;
  }
}

/** Command lines of the processes of the agent user (uid 1000) in a running container; [] when it is not running. */
export async function agentProcesses(containerId: string): Promise<string[]> {
  if (!(await isRunning(containerId))) return [];
  const top = await docker.getContainer(containerId).top({ ps_args: '-o uid,pid,args' }) as { Titles: string[]; Processes: string[][] };
  const uid = top.Titles.indexOf('UID');
  const args = top.Titles.findIndex((t) => t === 'COMMAND' || t === 'CMD' || t === 'ARGS');
  return top.Processes.filter((p) => p[uid] === '1000').map((p) => p[args] ?? p.join(' '));
}

/** Waits until a process whose command line holds `what` runs in the session's sandbox; its container id. */
export function runningInSandbox(runnerId: string, sessionId: string, what: string): Promise<string> {
  return eventually(async () => {
    const c = await containerOf(runnerId, sessionId);
    return c && (await agentProcesses(c.Id)).some((p) => p.includes(what)) ? c.Id : undefined;
  }, 30_000, `${what} to run in the sandbox of ${sessionId}`);
}

/** The whole conversation a model request carried, as text (to look for an earlier exchange). */
export function conversationOf(request: RecordedRequest | undefined): string {
  return JSON.stringify((request?.body as { messages?: unknown[] } | undefined)?.messages ?? []);
}

/** Reads a runner's database while no runner has it open (after a crash or exit). */
export function readDb<T>(file: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(file);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An HTTP request with the path sent exactly as given (fetch would normalize "..", "%2e%2e" and the like). */
export async function rawRequest(
  baseUrl: string, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; json: any; headers: import('node:http').IncomingHttpHeaders }> {
  const { request } = await import('node:http');
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(buf.toString());
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: buf, json, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Harness.api for any base URL (a runner started with spawnRunner). */
/** JSON over HTTP to a runner that may restart on another port. */
export const apiAt = apiClient;

/** The promise's value, or a failure naming what never came (a hang fails fast instead of at the runner's timeout). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
