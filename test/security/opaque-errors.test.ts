/**
 * Internal details stay internal (issue 9, point 6, the HTTP part). INTERNAL
 * and SANDBOX_UNAVAILABLE answers (REST, a blocking POST /task, a task's
 * record, an SSE error frame) carry the table's message and a reference, never
 * engine messages, socket paths, container names or log tails; those are in
 * the log under the request id, which every answer carries in x-request-id
 * (unique, random, never the caller's). The open /health names codes only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RunnerError } from '../../src/core/errors.ts';
import type { Task } from '../../src/core/model.ts';
import { rule, text } from '../../src/scripted-model/index.ts';
import { apiClient, eventually, spawnRunner, startHarness, testEnv, writeTemplate, type ApiClient, type Harness, type RunnerProcess } from '../support/harness.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ENGINE_TEXT = 'connect EACCES /var/run/secret-engine.sock: container claude-runner-t0p53cr3t exited; log tail: token=abc123';
const LEAKS = /secret-engine|t0p53cr3t|log tail|abc123|EACCES/;

describe('no Docker engine: answers by reference, details in the log', () => {
  const socket = `/tmp/no-docker-${process.pid}-opaque.sock`;
  let base: string;
  let runner: RunnerProcess;
  let api: ApiClient;

  before(async () => {
    base = mkdtempSync('/tmp/cr-');
    writeTemplate(join(base, 'agents'), {});
    runner = spawnRunner(testEnv({
      DATA_DIR: join(base, 'data'), AGENT_DIR: join(base, 'agents'), ANTHROPIC_BASE_URL: 'http://127.0.0.1:9', RUNNER_ID: `topq${process.pid}`, DOCKER_SOCKET: socket,
    }));
    const url = await runner.url;
    api = apiClient(() => url);
  });
  after(async () => {
    runner?.child.kill('SIGTERM');
    await runner?.exited;
    rmSync(base, { recursive: true, force: true });
  });

  test('a task that fails with SANDBOX_UNAVAILABLE is answered with the task id as reference, no socket path', async () => {
    const res = await api('/task', { method: 'POST', json: { sessionId: 'no-engine', message: 'hello' } });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.body.error.code, 'SANDBOX_UNAVAILABLE');
    assert.ok(!res.text.includes(socket), res.text);
    assert.equal(res.body.error.details.reference, res.body.taskId);
    assert.match(res.body.error.message, new RegExp(`^The Docker engine is not reachable\\. .*${res.body.taskId}`));
    const record = await api(`/tasks/${res.body.taskId}`);
    assert.equal(record.body.status, 'failed');
    assert.equal(record.body.error.code, 'SANDBOX_UNAVAILABLE');
    assert.ok(!record.text.includes(socket), record.text);
  });

  test('a request that fails with SANDBOX_UNAVAILABLE refers to its request id, under which the log has the engine\'s message', async () => {
    const res = await api('/session/no-engine/reset', { method: 'POST' });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.body.error.code, 'SANDBOX_UNAVAILABLE');
    assert.ok(!res.text.includes(socket), res.text);
    const requestId = res.headers.get('x-request-id')!;
    assert.match(requestId, UUID);
    assert.equal(res.body.error.details.reference, requestId);
    // (The log reaches us through a pipe: it may come a moment after the answer.)
    await eventually(() => (runner.logs().split('\n').some((line) => line.includes(requestId) && line.includes(socket)) ? true : undefined), 5_000, 'the error in the log under the request id');
  });

  test('/health names the code only', async () => {
    const health = await api('/health');
    assert.equal(health.status, 503);
    assert.equal(health.body.docker, 'SANDBOX_UNAVAILABLE');
    assert.ok(!health.text.includes(socket), health.text);
    await eventually(() => (runner.logs().includes(socket) ? true : undefined), 5_000, 'the engine\'s message in the log');
  });
});

describe('request ids and opaque answers', () => {
  let h: Harness;
  let finished: Task;

  before(async () => {
    h = await startHarness({ rules: [rule('hello-opaque', text('hi'))] });
    const res = await h.api('/task', { method: 'POST', headers: { 'idempotency-key': 'opaque-1' }, json: { sessionId: 'opaque', message: 'hello-opaque' } });
    assert.equal(res.status, 200, res.text);
    finished = (await h.runner.store.getTask(res.body.taskId))!;
  });
  after(async () => h?.close());

  test('every answer carries a unique random x-request-id, never the caller\'s', async () => {
    const ids: string[] = [];
    for (const [path, init] of [['/health', {}], ['/sessions', {}], ['/nope', {}], ['/task', { method: 'POST', json: {} }], ['/sessions', { headers: { 'x-request-id': 'chosen-by-caller' } }]] as const) {
      const res = await h.api(path, init as RequestInit);
      const id = res.headers.get('x-request-id');
      assert.match(String(id), UUID, `${path}: ${id}`);
      ids.push(id!);
    }
    // The streams too: SSE, and the WebSocket's 101.
    const sseAbort = new AbortController();
    const sse = await fetch(`${h.url}/session/opaque/events?after=0`, { signal: sseAbort.signal });
    assert.equal(sse.status, 200);
    ids.push(String(sse.headers.get('x-request-id')));
    sseAbort.abort();
    const { WebSocket } = await import('ws');
    const ws = new WebSocket(`${h.url.replace('http', 'ws')}/stream/opaque`);
    ids.push(await new Promise<string>((resolve, reject) => {
      ws.once('upgrade', (res) => resolve(String(res.headers['x-request-id'])));
      ws.once('error', reject);
    }));
    ws.terminate();
    for (const id of ids) assert.match(id, UUID);
    assert.equal(new Set(ids).size, ids.length, 'ids repeat');
  });

  test('an unknown error is 500 INTERNAL with the request id as reference, and none of its text', async () => {
    const list = h.runner.sessions.list;
    h.runner.sessions.list = (async () => { throw new Error(ENGINE_TEXT); }) as typeof list;
    try {
      const res = await h.api('/sessions');
      assert.equal(res.status, 500);
      assert.equal(res.body.error.code, 'INTERNAL');
      assert.equal(res.body.error.details.reference, res.headers.get('x-request-id'));
      assert.doesNotMatch(res.text, LEAKS);
    } finally {
      h.runner.sessions.list = list;
    }
  });

  test('a SANDBOX_UNAVAILABLE thrown with the engine\'s text is answered without it', async () => {
    const describeSession = h.runner.sessions.describe;
    h.runner.sessions.describe = (async () => { throw new RunnerError('SANDBOX_UNAVAILABLE', ENGINE_TEXT, { tail: ENGINE_TEXT }); }) as typeof describeSession;
    try {
      const res = await h.api('/session/opaque');
      assert.equal(res.status, 503);
      assert.equal(res.body.error.code, 'SANDBOX_UNAVAILABLE');
      assert.equal(res.body.error.details.reference, res.headers.get('x-request-id'));
      assert.doesNotMatch(res.text, LEAKS);
    } finally {
      h.runner.sessions.describe = describeSession;
    }
  });

  test('a stored INTERNAL or SANDBOX_UNAVAILABLE text is not echoed by the blocking POST /task nor by GET /tasks/:id', async () => {
    const store = h.runner.store;
    const getTask = store.getTask;
    for (const code of ['INTERNAL', 'SANDBOX_UNAVAILABLE'] as const) {
      store.getTask = async function (this: typeof store, id: string) {
        const task = await getTask.call(this, id);
        return task && id === finished.id ? { ...task, status: 'failed', output: null, error: { code, message: ENGINE_TEXT, details: { tail: ENGINE_TEXT } } } : task;
      } as typeof store.getTask;
      try {
        const replay = await h.api('/task', { method: 'POST', headers: { 'idempotency-key': 'opaque-1' }, json: { sessionId: 'opaque', message: 'hello-opaque' } });
        assert.equal(replay.status, code === 'INTERNAL' ? 500 : 503, replay.text);
        assert.equal(replay.body.error.code, code);
        assert.equal(replay.body.error.details.reference, finished.id);
        assert.doesNotMatch(replay.text, LEAKS);
        const record = await h.api(`/tasks/${finished.id}`);
        assert.equal(record.body.error.code, code);
        assert.doesNotMatch(record.text, LEAKS);
        const list = await h.api('/session/opaque/tasks');
        assert.doesNotMatch(list.text, LEAKS);
      } finally {
        store.getTask = getTask;
      }
    }
  });

  test('an SSE stream that fails sends an error frame with the request id as reference, not the error\'s text', async () => {
    const subscribe = h.runner.events.subscribe;
    h.runner.events.subscribe = (async () => { throw new RunnerError('SANDBOX_UNAVAILABLE', ENGINE_TEXT); }) as typeof subscribe;
    try {
      const res = await fetch(`${h.url}/session/opaque/events?after=0`);
      const body = await res.text();
      assert.match(body, /event: error/);
      assert.doesNotMatch(body, LEAKS);
      assert.ok(body.includes(res.headers.get('x-request-id')!), body);
    } finally {
      h.runner.events.subscribe = subscribe;
    }
  });
});
