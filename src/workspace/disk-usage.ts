/**
 * What a folder takes on disk, measured off the event loop by one worker
 * thread per process (disk-usage-worker.ts), started on first use, which
 * keeps the process alive only while it measures. A measurement is on every
 * task's start and end, so it must be cheap: the worker's synchronous walk
 * of a session's folders takes a fraction of a millisecond, where an
 * asynchronous one took milliseconds of round trips through the thread pool
 * (which the store's fsyncs share). The worker takes the measurements
 * under way in turns, so a session with a million files does not hold up
 * another's. A worker that fails is replaced at the next measurement; the
 * measurements it had are rejected.
 *
 * Owns: the worker and its requests. Must not touch: what the sizes mean (quota.ts).
 */
import { Worker } from 'node:worker_threads';
import type { UsageReply, UsageRequest } from './disk-usage-worker.ts';

interface Waiting {
  resolve(bytes: number): void;
  reject(error: Error): void;
}

/** The worker's file next to this one (.ts in the repository, .js once built). */
const WORKER_URL = new URL(`./disk-usage-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);

let worker: Worker | null = null;
const waiting = new Map<number, Waiting>();
let nextId = 0;

function failAll(error: Error): void {
  for (const entry of waiting.values()) entry.reject(error);
  waiting.clear();
}

function started(): Worker {
  if (worker) return worker;
  const thread = new Worker(WORKER_URL);
  thread.on('message', (reply: UsageReply) => {
    const entry = waiting.get(reply.id);
    if (!entry) return;
    waiting.delete(reply.id);
    if (waiting.size === 0) thread.unref();
    if ('bytes' in reply) entry.resolve(reply.bytes);
    else entry.reject(Object.assign(new Error(reply.error.message), reply.error.code ? { code: reply.error.code } : {}));
  });
  const gone = (error: Error): void => {
    if (worker !== thread) return;
    worker = null;
    failAll(error);
  };
  thread.on('error', gone);
  thread.on('exit', (code) => gone(new Error(`the disk usage worker exited (code ${code})`)));
  // After the listeners: adding a 'message' listener refs the worker again.
  thread.unref();
  worker = thread;
  return thread;
}

/** Starts the worker ahead of the first measurement (its start takes tens of milliseconds). */
export function prestartDiskUsage(): void {
  started();
}

/**
 * Bytes the tree at `dir` takes on disk (each inode once, symlinks never
 * followed); 0 when it does not exist; Infinity past `maxEntries` entries.
 */
export function diskUsage(dir: string, maxEntries: number): Promise<number> {
  return new Promise((resolve, reject) => {
    // First: a worker that cannot start leaves no request behind to keep the next one ref'd.
    const thread = started();
    const id = nextId++;
    waiting.set(id, { resolve, reject });
    const request: UsageRequest = { id, dir, maxEntries };
    thread.ref();
    thread.postMessage(request);
  });
}
