/**
 * No caller can bring the server down or leave a request hanging (issue 9,
 * point 2). Callers leave a blocking POST /task at every moment (before the
 * submit is done, queued, running, right as it ends; idempotent replays of a
 * finished and of a running task), WebSocket and SSE clients leave mid-stream
 * and mid-handshake, and a store fails during a wait. The server stays up
 * (in this process: no unhandled rejection; as its own process: it still
 * answers /health and runs a new task), every caller still connected is
 * answered, and a task whose caller left still ends.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { within } from '../sessions/support.ts';
import { eventually, startHarness, type ApiClient, type Harness } from '../support/harness.ts';
import { sentinel, spawnRunner, type SpawnedRunner } from './support.ts';

const UPSTREAM = sentinel('sk-ant-leaving');
const RULES = [
  rule('quick-leave', text('quick')),
  rule('slow-leave', text('slow', { delayMs: 1500 })),
  rule('stream-leave', bash('echo streaming'), text('streamed', { delayMs: 800 })),
];

interface Raw {
  socket: Socket;
  received(): string;
  /** Resolves when the connection is gone (whoever closed it). */
  closed: Promise<void>;
}

/** Writes `text` on a new connection to the runner; the caller decides when to leave (socket.destroy()). */
function openRaw(url: string, text: string): Raw {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let received = '';
  socket.on('data', (chunk: Buffer) => { received += chunk.toString(); });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(text);
  return { socket, received: () => received, closed };
}

function httpText(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): string {
  const json = body === undefined ? undefined : JSON.stringify(body);
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${new URL(url).host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  if (json !== undefined) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(json)}`);
  return `${lines.join('\r\n')}\r\n\r\n${json ?? ''}`;
}

const upgradeText = (url: string, path: string) => httpText(url, 'GET', path, undefined, {
  Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13',
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A blocking POST /task whose caller leaves `ms` after sending it. */
async function postAndLeave(url: string, body: unknown, ms: number, headers: Record<string, string> = {}): Promise<void> {
  const raw = openRaw(url, httpText(url, 'POST', '/task', body, headers));
  if (ms > 0) await sleep(ms);
  raw.socket.destroy();
  await raw.closed;
}

/** A task of the session in `status` (the one a caller that has no answer yet submitted). */
function taskIn(api: ApiClient, sessionId: string, status: string): Promise<any> {
  return eventually(async () => {
    const res = await api(`/session/${sessionId}/tasks`);
    return (res.body.tasks ?? []).find((t: any) => t.status === status);
  }, 30_000, `a ${status} task in ${sessionId}`);
}

async function idle(api: ApiClient, sessionId: string): Promise<void> {
  await eventually(async () => {
    const res = await api(`/session/${sessionId}/tasks`);
    return (res.body.tasks ?? []).every((t: any) => t.status !== 'queued' && t.status !== 'running') ? true : undefined;
  }, 60_000, `${sessionId} to be idle`);
}

/** Callers leave at every moment; those that stay are checked to be answered. */
async function leaveAtEveryMoment(url: string, api: ApiClient, prefix: string): Promise<void> {
  const a = `${prefix}-a`;
  const b = `${prefix}-b`;
  // Before the submit is done, and at once after it.
  await Promise.all([0, 0, 1, 2, 5, 10].map((ms) => postAndLeave(url, { sessionId: a, message: 'quick-leave' }, ms)));
  await idle(api, a);

  // Queued: a caller that stays keeps the session busy; the one behind it leaves.
  const staying = api('/task', { method: 'POST', json: { sessionId: a, message: 'slow-leave' } });
  await taskIn(api, a, 'running');
  const queued = openRaw(url, httpText(url, 'POST', '/task', { sessionId: a, message: 'quick-leave' }));
  const left = await taskIn(api, a, 'queued');
  queued.socket.destroy();
  assert.equal((await staying).status, 200, 'the caller that stayed is answered');

  // Running.
  const running = openRaw(url, httpText(url, 'POST', '/task', { sessionId: b, message: 'slow-leave' }));
  await taskIn(api, b, 'running');
  running.socket.destroy();
  await idle(api, b);

  // Right as it ends: the caller leaves the moment the task's last event is out.
  const ending = openRaw(url, httpText(url, 'POST', '/task', { sessionId: b, message: 'slow-leave' }));
  await new Promise<void>((resolve, reject) => {
    const sse = request(`${url}/session/${b}/events`, (res) => {
      res.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('event: task_complete')) {
          ending.socket.destroy();
          sse.destroy();
          resolve();
        }
      });
    });
    sse.on('error', () => undefined);
    sse.setTimeout(30_000, () => reject(new Error('no task_complete')));
    sse.end();
  });

  // Idempotent replays of a finished task (the store answers "final" while the caller is already gone) ...
  const key = `${prefix}-key-done`;
  const first = await api('/task', { method: 'POST', headers: { 'idempotency-key': key }, json: { sessionId: a, message: 'quick-leave', wait: false } });
  assert.equal(first.status, 202, JSON.stringify(first.body));
  await eventually(async () => ((await api(`/tasks/${first.body.taskId}`)).body.status === 'succeeded' ? true : undefined), 30_000, 'the first task');
  await Promise.all([0, 0, 0, 1, 1, 2, 3, 5, 8, 13].map((ms) => postAndLeave(url, { sessionId: a, message: 'quick-leave' }, ms, { 'Idempotency-Key': key })));
  // ... and of a running one, while another replay stays and is answered.
  const runningKey = `${prefix}-key-running`;
  const slow = await api('/task', { method: 'POST', headers: { 'idempotency-key': runningKey }, json: { sessionId: b, message: 'slow-leave', wait: false } });
  const stays = api('/task', { method: 'POST', headers: { 'idempotency-key': runningKey }, json: { sessionId: b, message: 'slow-leave' } });
  await Promise.all([0, 1, 5, 50, 300].map((ms) => postAndLeave(url, { sessionId: b, message: 'slow-leave' }, ms, { 'Idempotency-Key': runningKey })));
  const replayed = await within(stays, 30_000, 'the replay that stayed');
  assert.equal(replayed.status, 200, JSON.stringify(replayed.body));
  assert.equal(replayed.body.taskId, slow.body.taskId);
  assert.equal(replayed.headers.get('idempotent-replay'), 'true');

  // WebSocket and SSE: mid-handshake (at once, and with half the headers) and mid-stream.
  for (const path of [`/stream/${b}`, `/session/${b}/events`, `/tasks/${slow.body.taskId}/events`]) {
    const handshake = path.startsWith('/stream/') ? upgradeText(url, path) : httpText(url, 'GET', path);
    for (const cut of [handshake.length, Math.floor(handshake.length / 2), 10]) {
      const raw = openRaw(url, handshake.slice(0, cut));
      if (cut === handshake.length) await sleep(1);
      raw.socket.destroy();
      await raw.closed;
    }
  }
  const streaming = api('/task', { method: 'POST', json: { sessionId: b, message: 'stream-leave' } });
  for (const path of [`/stream/${b}`, `/session/${b}/events`]) {
    const raw = openRaw(url, path.startsWith('/stream/') ? upgradeText(url, path) : httpText(url, 'GET', path));
    await eventually(() => (/tool_start|task_start|"type":"text"/.test(raw.received()) ? true : undefined), 30_000, `events on ${path}`);
    raw.socket.destroy();
  }
  assert.equal((await within(streaming, 30_000, 'the streamed task')).status, 200);

  // The tasks whose callers left went on and ended.
  await idle(api, a);
  await idle(api, b);
  assert.equal((await api(`/tasks/${left.taskId}`)).body.status, 'succeeded');
}

describe('callers leaving, in this process', () => {
  let h: Harness;
  const unhandled: unknown[] = [];
  const record = (reason: unknown): void => { unhandled.push(reason); };

  before(async () => {
    process.on('unhandledRejection', record);
    h = await startHarness({ rules: RULES });
  });
  after(async () => {
    process.off('unhandledRejection', record);
    await h?.close();
  });

  test('callers leave at every moment: no unhandled rejection, those who stay are answered, the tasks end', { timeout: 240_000 }, async () => {
    await leaveAtEveryMoment(h.url, h.api, 'in');
    await sleep(200);
    assert.deepEqual(unhandled.map(String), []);
    assert.equal((await h.api('/health')).status, 200);
    const next = await h.api('/task', { method: 'POST', json: { sessionId: 'in-after', message: 'quick-leave' } });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(h.runner.tasks.waitingCallers(), 0, 'a wait stayed behind');
  });

  test('a slow store: callers leave while their wait reads it, for a finished task and a fresh one; no unhandled rejection', async () => {
    const key = 'slow-store-key';
    const first = await h.api('/task', { method: 'POST', headers: { 'idempotency-key': key }, json: { sessionId: 'in-a', message: 'quick-leave', wait: false } });
    await eventually(async () => ((await h.api(`/tasks/${first.body.taskId}`)).body.status === 'succeeded' ? true : undefined), 30_000, 'the task');
    const store = h.runner.store;
    const getTask = store.getTask;
    store.getTask = async function (this: typeof store, id: string) {
      await sleep(60);
      return getTask.call(this, id);
    } as typeof store.getTask;
    try {
      await Promise.all([0, 5, 10, 20, 30, 45].map((ms) => postAndLeave(h.url, { sessionId: 'in-a', message: 'quick-leave' }, ms, { 'Idempotency-Key': key })));
      await Promise.all([5, 20, 40].map((ms) => postAndLeave(h.url, { sessionId: 'in-b', message: 'quick-leave' }, ms)));
      const stays = await within(h.api('/task', { method: 'POST', headers: { 'idempotency-key': key }, json: { sessionId: 'in-a', message: 'quick-leave' } }), 10_000, 'the replay that stayed');
      assert.equal(stays.status, 200);
      await sleep(200);
    } finally {
      store.getTask = getTask;
    }
    assert.deepEqual(unhandled.map(String), []);
    await idle(h.api, 'in-b');
  });

  test('the store fails during the wait: 500 INTERNAL with the request id, no store text, and the server goes on', async () => {
    const key = 'store-fails-key';
    const submitted = await h.api('/task', { method: 'POST', headers: { 'idempotency-key': key }, json: { sessionId: 'in-a', message: 'quick-leave', wait: false } });
    const taskId: string = submitted.body.taskId;
    await eventually(async () => ((await h.api(`/tasks/${taskId}`)).body.status === 'succeeded' ? true : undefined), 30_000, 'the task');
    const store = h.runner.store;
    const getTask = store.getTask;
    let failures = 0;
    store.getTask = async function (this: typeof store, id: string) {
      if (id === taskId) {
        failures++;
        throw new Error('SQLITE_IOERR: disk I/O error at /srv/secret-data/runner.db');
      }
      return getTask.call(this, id);
    } as typeof store.getTask;
    try {
      const res = await within(h.api('/task', { method: 'POST', headers: { 'idempotency-key': key }, json: { sessionId: 'in-a', message: 'quick-leave' } }), 10_000, 'the blocking replay');
      assert.equal(res.status, 500, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'INTERNAL');
      assert.equal(res.body.taskId, taskId, 'answered from the wait');
      assert.ok(failures > 0);
      const requestId = res.headers.get('x-request-id');
      assert.match(String(requestId), /^[0-9a-f-]{36}$/);
      assert.equal(res.body.error.details.reference, requestId);
      assert.doesNotMatch(res.text, /SQLITE|disk|secret-data/);
    } finally {
      store.getTask = getTask;
    }
    await sleep(100);
    assert.deepEqual(unhandled.map(String), []);
    assert.equal((await h.api('/task', { method: 'POST', json: { sessionId: 'in-a', message: 'quick-leave' } })).status, 200);
  });
});

describe('callers leaving, the runner as its own process', () => {
  let r: SpawnedRunner;
  before(async () => {
    r = await spawnRunner({ rules: RULES, upstreamKey: UPSTREAM });
  });
  after(async () => r?.close());

  test('it stays up: /health and a new task are answered after every caller left', { timeout: 240_000 }, async () => {
    await leaveAtEveryMoment(r.url, r.api, 'proc');
    await sleep(200);
    assert.equal(r.child.exitCode, null, `the runner exited:\n${r.logs().slice(-3000)}`);
    assert.equal(r.child.signalCode, null);
    assert.equal((await r.api('/health')).status, 200);
    const next = await r.api('/task', { method: 'POST', json: { sessionId: 'proc-after', message: 'quick-leave' } });
    assert.equal(next.status, 200, JSON.stringify(next.body));
  });
});
