/**
 * The model gateway against a hostile sandbox, driven directly over a
 * session's unix socket (no Docker): a fake Messages API on this machine
 * answers as each test needs (long streams, hung streams, huge bodies, web
 * searches), and local servers stand in for egress destinations.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunnerError } from '../../src/core/errors.ts';
import type { ModelCall, TaskGrant } from '../../src/core/ports/model-gateway.ts';
import { allowedBy, isInternalAddress } from '../../src/gateway/egress-proxy.ts';
import { SocketModelGateway, type GatewayLimits } from '../../src/gateway/gateway.ts';
import { priceUsage, type ApiUsage } from '../../src/pricing/prices.ts';
import { Redactor } from '../../src/secrets/redactor.ts';

const MODEL = 'claude-opus-5-5';
const KEY = 'sk-ant-gateway-test-upstream';
const CALL = priceUsage(MODEL, { input_tokens: 100, output_tokens: 20 });
const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const silent = { debug() {}, info() {}, warn() {} };

async function until(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------
// A fake Messages API: the `x-scenario` header (forwarded as is) says how it answers.

interface Seen { path: string; headers: IncomingMessage['headers']; raw: string; body: unknown }

interface Upstream {
  url: string;
  seen: Seen[];
  messages(): Seen[];
  active: number;
  maxActive: number;
  /** Responses written to their end, and responses whose connection went before their end. */
  finished: number;
  cut: number;
  close(): Promise<void>;
}

const sse = (event: object) => `event: ${(event as { type: string }).type}\ndata: ${JSON.stringify(event)}\n\n`;
const messageStart = (usage: object) => sse({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [], usage } });

async function startUpstream(): Promise<Upstream> {
  const up: Upstream = {
    url: '', seen: [], active: 0, maxActive: 0, finished: 0, cut: 0,
    messages: () => up.seen.filter((s) => s.path.startsWith('/v1/messages') && !s.path.startsWith('/v1/messages/count_tokens')),
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString();
      let body: unknown;
      try { body = JSON.parse(raw); } catch { body = undefined; }
      up.seen.push({ path: req.url ?? '', headers: req.headers, raw, body });
      up.active += 1;
      up.maxActive = Math.max(up.maxActive, up.active);
      let ended = false;
      res.on('finish', () => { ended = true; up.finished += 1; });
      res.on('close', () => { up.active -= 1; if (!ended) up.cut += 1; });
      if (req.headers['x-api-key'] !== KEY) return void res.writeHead(401).end('{"type":"error","error":{"type":"authentication_error","message":"bad key"}}');
      if (req.url?.startsWith('/v1/messages/count_tokens')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"input_tokens":10}');
      const delayMs = Number(req.headers['x-delay-ms'] ?? 0);
      if (delayMs) await sleep(delayMs);
      const json = (usage: object, content: unknown[] = [{ type: 'text', text: 'ok' }]) => res.writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content, stop_reason: 'end_turn', stop_sequence: null, usage }));
      switch (req.headers['x-scenario']) {
        case 'overloaded':
          return void res.writeHead(529, { 'content-type': 'application/json' }).end('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}');
        case 'sse-long': {
          // 5000 output tokens, told only at the end (message_delta), as the API does.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(messageStart({ input_tokens: 100, output_tokens: 1 }));
          for (let i = 0; i < 40 && !res.destroyed; i++) {
            res.write(sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: `part ${i} `.repeat(50) } }));
            await sleep(10);
          }
          res.write(sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5000 } }));
          return void res.end(sse({ type: 'message_stop' }));
        }
        case 'sse-hang':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return void res.write(messageStart({ input_tokens: 1000, output_tokens: 1 }));
        case 'sse-extras':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(messageStart({
            input_tokens: 100, output_tokens: 1, cache_creation_input_tokens: 2000, cache_read_input_tokens: 0,
            cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2000 },
          }));
          res.write(sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 300, server_tool_use: { web_search_requests: 3 } } }));
          return void res.end(sse({ type: 'message_stop' }));
        case 'json-extras':
          return void json({
            input_tokens: 100, output_tokens: 300, cache_creation_input_tokens: 2000, cache_read_input_tokens: 0,
            cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2000 }, server_tool_use: { web_search_requests: 3 },
          });
        case 'big-json': {
          // 10 MiB of text, and a tool input that tries to pass for the usage, before the real one.
          const text = 'x'.repeat(10 * 1024 * 1024);
          return void json({ input_tokens: 100, output_tokens: 5000 }, [
            { type: 'text', text }, { type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { usage: { input_tokens: 1, output_tokens: 1 } } },
          ]);
        }
        default:
          return void json({ input_tokens: 100, output_tokens: 20 });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  up.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  up.close = () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return up;
}

// ---------------------------------------------------------------------------------------------
// The gateway, a session, a task.

interface Rig {
  gateway: SocketModelGateway;
  dir: string;
  sock: string;
  close(): Promise<void>;
}

async function startGateway(upstream: Upstream, extra: { limits?: Partial<GatewayLimits>; redactor?: Redactor; deniedLocalPorts?: number[] } = {}): Promise<Rig> {
  const dir = mkdtempSync('/tmp/cr-gwt-');
  const gateway = new SocketModelGateway({
    upstream: { baseUrl: upstream.url, apiKey: KEY, oauthToken: undefined },
    deniedLocalPorts: extra.deniedLocalPorts ?? [], priceUsage, redactor: extra.redactor ?? new Redactor(), logger: silent,
    ...(extra.limits ? { limits: extra.limits } : {}),
  });
  await gateway.attachSession('s1', dir);
  return {
    gateway, dir, sock: join(dir, 'gateway.sock'),
    async close() {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let taskCounter = 0;
interface OpenedTask { taskId: string; token: string; calls: ModelCall[]; limits: RunnerError[] }

async function openTask(rig: Rig, grant: Partial<TaskGrant> = {}): Promise<OpenedTask> {
  const taskId = `task_${++taskCounter}`;
  const calls: ModelCall[] = [];
  const limits: RunnerError[] = [];
  const { token } = await rig.gateway.openTask({
    taskId, sessionKey: 's1', network: { mode: 'none', allow: [] }, budgetUsd: undefined, maxModelCalls: 100,
    onModelCall: (call) => calls.push(call), onLimitReached: (error) => limits.push(error), ...grant,
  });
  return { taskId, token, calls, limits };
}

interface Answer { status: number; body: string; json: { type?: string; error?: { type: string; message: string } } }

function call(rig: Rig, token: string, options: { scenario?: string; body?: object | string; path?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body ?? { model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath: rig.sock, method: 'POST', path: options.path ?? '/v1/messages',
      headers: { 'x-api-key': token, 'content-type': 'application/json', ...(options.scenario ? { 'x-scenario': options.scenario } : {}), ...options.headers },
    }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => { text += chunk.toString(); });
      res.on('end', () => {
        let json = {};
        try { json = JSON.parse(text); } catch { /* SSE or text */ }
        resolve({ status: res.statusCode ?? 0, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A raw connection to the session's socket. */
function raw(rig: Rig): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(rig.sock, () => resolve(socket));
    socket.once('error', reject);
  });
}

function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => { clearTimeout(timer); resolve(true); });
  });
}

/** A TCP server on 127.0.0.1 that accepts and stays silent; `allowHalfOpen` keeps its side open after the peer's FIN. */
async function silentServer(): Promise<{ port: number; sockets: Socket[]; server: NetServer; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port, sockets, server,
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/** A CONNECT through the gateway; resolves with the socket once the status line is in. */
function tunnel(rig: Rig, authority: string): Promise<{ socket: Socket; status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(rig.sock, () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const status = /^HTTP\/1\.1 (\d+)/.exec(text);
      if (status && text.includes('\r\n\r\n')) resolve({ socket, status: Number(status[1]), text });
    });
    socket.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------

describe('gateway: connections a hostile sandbox opens', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('CONNECT then gone at once, many times, with and without a task: the process lives on and still answers', async () => {
    const hammer = async () => {
      for (let i = 0; i < 30; i++) {
        const socket = await raw(rig);
        socket.on('error', () => undefined);
        socket.write('CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n');
        socket.destroy();
      }
      await sleep(200);
    };
    await hammer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: ['x.example'] } });
    await hammer();
    assert.equal((await call(rig, task.token)).status, 200);
    await rig.gateway.closeTask(task.taskId);
  });

  test("a tunnel's upstream connection is closed when its client goes (a half-open upstream does not linger)", async () => {
    const target = await silentServer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${target.port}`] } });
    try {
      const { socket, status } = await tunnel(rig, `127.0.0.1:${target.port}`);
      assert.equal(status, 200);
      await until(() => target.sockets.length === 1, 2000, 'the upstream connection');
      socket.destroy();
      // The far end only learns that the gateway let go when it writes (a peer's FIN alone leaves it half-open).
      const far = target.sockets[0]!;
      const pings = setInterval(() => far.write('ping'), 50);
      try {
        assert.ok(await closedWithin(far, 2000), "the gateway kept the tunnel's upstream connection");
      } finally {
        clearInterval(pings);
      }
    } finally {
      await rig.gateway.closeTask(task.taskId);
      await target.close();
    }
  });

  test("an absolute-form proxy request's upstream request is closed when its client goes", async () => {
    const held: IncomingMessage[] = [];
    const slow = createServer((req) => { held.push(req); });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const port = (slow.address() as { port: number }).port;
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${port}`] } });
    try {
      const socket = await raw(rig);
      socket.write(`GET http://127.0.0.1:${port}/hang HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      await until(() => held.length === 1, 2000, 'the proxied request');
      const gone = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 2000);
        held[0]!.socket.once('close', () => { clearTimeout(timer); resolve(true); });
      });
      socket.destroy();
      assert.ok(await gone, 'the upstream request outlived its client');
    } finally {
      await rig.gateway.closeTask(task.taskId);
      slow.closeAllConnections();
      slow.close();
    }
  });

  test('at most 32 connections per session socket: the next one is closed at once, the others stay', async () => {
    // A gateway of its own: the other tests' kept-alive connections would count.
    const rig = await startGateway(up);
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 32; i++) sockets.push(await raw(rig));
      const extra = await raw(rig);
      assert.ok(await closedWithin(extra, 1000), 'a 33rd connection was kept');
      await sleep(50);
      assert.ok(sockets.every((s) => !s.destroyed), 'an earlier connection was closed');
    } finally {
      for (const s of sockets) s.destroy();
      await rig.close();
    }
  });

  test('an error of a session socket after it listens (EMFILE on accept) is logged, not thrown', () => {
    const sockets = (rig.gateway as unknown as { sockets: { attached: Map<string, { server: NetServer }> } }).sockets;
    const server = sockets.attached.get('s1')!.server;
    assert.doesNotThrow(() => server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })));
  });

  test('a request body over 16 MiB is refused and never forwarded', async () => {
    const task = await openTask(rig);
    const before = up.seen.length;
    const big = JSON.stringify({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'y'.repeat(17 * 1024 * 1024) }] });
    const answer = await call(rig, task.token, { body: big }).catch((error: Error) => ({ status: 0, body: error.message, json: {} }));
    assert.ok(answer.status === 413 || answer.status === 0, `status ${answer.status}`);
    assert.equal(up.seen.length, before);
    await rig.gateway.closeTask(task.taskId);
  });
});

describe('gateway: header and idle deadlines', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up, { limits: { headersTimeoutMs: 300, idleTimeoutMs: 800 } });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  const dribble = (socket: Socket, text: string) => {
    let i = 0;
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer);
      socket.write(text[i++ % text.length]!);
    }, 50);
    return () => clearInterval(timer);
  };

  test('a connection that dribbles its request head is closed after the header deadline', async () => {
    const socket = await raw(rig);
    socket.on('error', () => undefined);
    socket.write('POST /v1/messages HTTP/1.1\r\n');
    const stop = dribble(socket, 'x-padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n');
    try {
      assert.ok(await closedWithin(socket, 2000), 'a partial request head was kept open');
    } finally {
      stop();
      socket.destroy();
    }
  });

  test('a kept-alive connection that starts a next request head and dribbles it is closed too', async () => {
    const socket = await raw(rig);
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    socket.write('GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n');
    await until(() => /HTTP\/1\.1 404/.test(text), 2000, 'the first answer');
    // An idle kept-alive connection is not cut by the header deadline.
    await sleep(700);
    assert.ok(!socket.destroyed, 'an idle kept-alive connection was closed early');
    socket.write('POST /v1/messages HTTP/1.1\r\n');
    const stop = dribble(socket, 'x-padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n');
    try {
      assert.ok(await closedWithin(socket, 2000), 'a partial second request head was kept open');
    } finally {
      stop();
      socket.destroy();
    }
  });

  test('a CONNECT tunnel with no traffic is closed after the idle timeout', async () => {
    const target = await silentServer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${target.port}`] } });
    try {
      const { socket, status } = await tunnel(rig, `127.0.0.1:${target.port}`);
      assert.equal(status, 200);
      assert.ok(await closedWithin(socket, 3000), 'an idle tunnel was kept open');
    } finally {
      await rig.gateway.closeTask(task.taskId);
      await target.close();
    }
  });
});

describe('gateway: metering and limits', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('an answer the agent cuts off is still read to its end and its output tokens are billed to the task', async () => {
    const task = await openTask(rig);
    const finishedBefore = up.finished;
    await new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: rig.sock, method: 'POST', path: '/v1/messages', headers: { 'x-api-key': task.token, 'x-scenario': 'sse-long' } }, (res) => {
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', () => undefined);
      req.once('error', reject);
      req.end(JSON.stringify({ model: MODEL, max_tokens: 8000, stream: true, messages: [{ role: 'user', content: 'long' }] }));
    });
    await until(() => task.calls.length === 1, 5000, 'the call to be metered');
    assert.equal(up.finished, finishedBefore + 1, 'the upstream answer was cut');
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.usage.outputTokens, 5000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 100, output_tokens: 5000 })), String(meter.costUsd));
  });

  test('closeTask cuts the calls under way, and returns only once they have recorded what they were billed', async () => {
    const task = await openTask(rig);
    const cutBefore = up.cut;
    let firstBytes = false;
    const answer = new Promise<void>((resolve) => {
      const req = request({ socketPath: rig.sock, method: 'POST', path: '/v1/messages', headers: { 'x-api-key': task.token, 'x-scenario': 'sse-hang' } }, (res) => {
        res.once('data', () => { firstBytes = true; });
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
      req.end(JSON.stringify({ model: MODEL, max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'hang' }] }));
    });
    await until(() => firstBytes, 2000, 'message_start');
    const started = Date.now();
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.ok(Date.now() - started < 2000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 1000, output_tokens: 1 })), `closeTask returned $${meter.costUsd}`);
    assert.equal(meter.usage.inputTokens, 1000);
    assert.equal(meter.modelCalls, 1);
    await answer;
    await until(() => up.cut === cutBefore + 1, 2000, 'the upstream call to be cut');
  });

  test('parallel calls: at most 4 reach the upstream at once; the others wait their turn and succeed', async () => {
    const task = await openTask(rig);
    up.maxActive = 0;
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(rig, task.token, { headers: { 'x-delay-ms': '150' } })));
    assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
    assert.equal(up.maxActive, 4);
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.modelCalls, 10);
  });

  test('parallel calls on a budget: past the call that crosses it, at most the 3 calls then under way are spent', async () => {
    const budget = CALL * 1.5;
    const task = await openTask(rig, { budgetUsd: budget });
    const before = up.messages().length;
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(rig, task.token, { headers: { 'x-delay-ms': '100' } })));
    const forwarded = up.messages().length - before;
    // Two calls reach the budget (the second crosses it); 3 more may have been under way then.
    assert.ok(forwarded <= 5, `${forwarded} calls forwarded`);
    assert.equal(answers.filter((a) => a.status === 200).length, forwarded);
    assert.ok(answers.filter((a) => a.status !== 200).every((a) => a.status === 403 && a.json.error?.type === 'permission_error'));
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.ok(meter.costUsd <= budget + CALL + 3 * CALL + 1e-12, `spent ${meter.costUsd} on a budget of ${budget}`);
    assert.equal(task.limits.length, 1);
    assert.equal(task.limits[0]!.code, 'BUDGET_EXCEEDED');
  });

  for (const scenario of ['json-extras', 'sse-extras']) {
    test(`web searches and 1-hour cache writes are priced (${scenario})`, async () => {
      const task = await openTask(rig);
      const body = { model: MODEL, max_tokens: 10, stream: scenario.startsWith('sse'), messages: [{ role: 'user', content: 'search' }] };
      assert.equal((await call(rig, task.token, { scenario, body })).status, 200);
      const meter = await rig.gateway.closeTask(task.taskId);
      const reported: ApiUsage = {
        input_tokens: 100, output_tokens: 300, cache_creation_input_tokens: 2000, cache_read_input_tokens: 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2000 }, server_tool_use: { web_search_requests: 3 },
      };
      const expected = priceUsage(MODEL, reported);
      // The four counts alone would price the writes at the 5-minute rate and the searches at nothing.
      assert.ok(expected - priceUsage(MODEL, { input_tokens: 100, output_tokens: 300, cache_creation_input_tokens: 2000 }) > 0.03);
      assert.ok(close(meter.costUsd, expected), `metered $${meter.costUsd}, expected $${expected}`);
      assert.ok(close(task.calls[0]!.costUsd, expected));
      assert.deepEqual(meter.usage, { inputTokens: 100, outputTokens: 300, cacheCreationInputTokens: 2000, cacheReadInputTokens: 0 });
    });
  }

  test('a 10 MiB JSON answer is metered from its final usage (not a look-alike in a tool input)', async () => {
    const task = await openTask(rig);
    const answer = await call(rig, task.token, { scenario: 'big-json' });
    assert.equal(answer.status, 200);
    assert.ok(answer.body.length > 10 * 1024 * 1024);
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.usage.inputTokens, 100);
    assert.equal(meter.usage.outputTokens, 5000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 100, output_tokens: 5000 })));
  });

  test('maxModelCalls is a hard cap: the next call is refused (403, never forwarded) and the limit reported once', async () => {
    const task = await openTask(rig, { maxModelCalls: 2 });
    const before = up.messages().length;
    // count_tokens is not a model call, and a call the upstream refused (overloaded) is not counted.
    assert.equal((await call(rig, task.token, { path: '/v1/messages/count_tokens' })).status, 200);
    assert.equal((await call(rig, task.token, { scenario: 'overloaded' })).status, 529);
    assert.equal((await call(rig, task.token)).status, 200);
    assert.equal((await call(rig, task.token)).status, 200);
    for (let i = 0; i < 2; i++) {
      const refused = await call(rig, task.token);
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error?.type, 'permission_error');
      assert.match(refused.json.error?.message ?? '', /limit of 2 model calls/);
    }
    assert.equal(up.messages().length - before, 3);
    assert.equal(task.limits.length, 1);
    assert.equal(task.limits[0]!.code, 'MAX_TURNS_REACHED');
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.modelCalls, 2);
  });
});

describe('gateway: requests that would reach the network from Anthropic\'s side', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  const base = { model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
  const refused: Array<[string, object, RegExp]> = [
    ['web search', { ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, /web_search_20250305/],
    ['web fetch', { ...base, tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] }, /web_fetch_20250910/],
    ['code execution', { ...base, tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }, /code_execution_20250825/],
    ['MCP servers', { ...base, mcp_servers: [{ type: 'url', url: 'https://mcp.example/sse', name: 'x' }] }, /mcp_servers/],
    ['container', { ...base, container: 'container_123' }, /container/],
    ['an image by URL', { ...base, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://exfil.example/?q=secret' } }] }] }, /image blocks with a URL source/],
    ['a document by URL in a tool result', { ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'document', source: { type: 'url', url: 'https://exfil.example/a.pdf' } }] }] }] }, /document blocks with a URL source/],
  ];

  for (const mode of ['none', 'allowlist'] as const) {
    test(`${mode}: server tools, MCP servers, containers and URL sources get a 400 and are never forwarded`, async () => {
      const task = await openTask(rig, { network: { mode, allow: ['example.com'] } });
      const before = up.seen.length;
      for (const [label, body, reason] of refused) {
        const answer = await call(rig, task.token, { body });
        assert.equal(answer.status, 400, label);
        assert.equal(answer.json.type, 'error', label);
        assert.equal(answer.json.error?.type, 'invalid_request_error', label);
        assert.match(answer.json.error?.message ?? '', reason, label);
        assert.match(answer.json.error?.message ?? '', new RegExp(`network policy \\(${mode}\\)`), label);
      }
      assert.equal(up.seen.length, before, 'a refused request reached the upstream');
      // Claude Code's own tools (no type) and Anthropic's client tools, which run in the sandbox, pass.
      const clientTools = [{ name: 'Bash', input_schema: { type: 'object' } }, { type: 'custom', name: 'X', input_schema: { type: 'object' } }, { type: 'bash_20250124', name: 'bash' }, { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' }];
      assert.equal((await call(rig, task.token, { body: { ...base, tools: clientTools } })).status, 200);
      // What is forwarded is what was checked: a duplicate key cannot show the upstream another value.
      const duplicate = `{"model":"${MODEL}","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}],"tools":[]}`;
      assert.equal((await call(rig, task.token, { body: duplicate })).status, 200);
      assert.ok(!up.seen.at(-1)!.raw.includes('web_search'), up.seen.at(-1)!.raw);
      assert.equal((await call(rig, task.token, { body: 'not json' })).status, 400);
      await rig.gateway.closeTask(task.taskId);
    });
  }

  test('open: server tools are forwarded', async () => {
    const task = await openTask(rig, { network: { mode: 'open', allow: [] } });
    assert.equal((await call(rig, task.token, { body: refused[0]![1] })).status, 200);
    assert.ok(up.seen.at(-1)!.raw.includes('web_search_20250305'));
    await rig.gateway.closeTask(task.taskId);
  });
});

describe('gateway: egress to private and internal addresses', () => {
  let up: Upstream;
  let rig: Rig;
  let target: Server;
  let port: number;
  const hosts: string[] = [];
  before(async () => {
    up = await startUpstream();
    target = createServer((req, res) => { hosts.push(req.headers.host ?? ''); res.end('local service\n'); });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    port = (target.address() as { port: number }).port;
    rig = await startGateway(up, { deniedLocalPorts: [up.url ? Number(new URL(up.url).port) : 0] });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
    target?.closeAllConnections();
    target?.close();
  });

  const proxied = async (url: string, host: string): Promise<{ status: number; body: string }> => {
    const socket = await raw(rig);
    let text = '';
    socket.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    socket.write(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    await closedWithin(socket, 3000);
    socket.destroy();
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), body: text };
  };

  test('classifies addresses: loopback, private, link-local, ULA, CGNAT, unspecified, multicast are internal', () => {
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.254',
      '0.0.0.0', '224.0.0.1', '255.255.255.255', '::', '::1', 'fe80::1', 'fd00::1', 'fc00::1', 'ff02::1', '::ffff:169.254.169.254', '::ffff:10.0.0.1',
      '::ffff:127.0.0.1', 'fe80::', 'fc00::', '172.16.5.4', '100.64.12.34']) {
      assert.equal(isInternalAddress(address), true, address);
    }
    for (const address of ['1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '192.169.0.1', '2606:4700:4700::1111', '2606:4700::1']) {
      assert.equal(isInternalAddress(address), false, address);
    }
    assert.deepEqual(allowedBy({ host: 'fd00::1', port: 443 }, ['[fd00::1]', '[fd00::2]:443']), ['fd00::1']);
    assert.deepEqual(allowedBy({ host: 'fd00::1', port: 8443 }, ['[fd00::1]:8443']), ['fd00::1']);
  });

  test('addresses that embed an IPv4 address, benchmarking, reserved and non-global IPv6 are internal too; no text that is not an IP passes', () => {
    for (const address of [
      // NAT64 (RFC 6052, 8215): a NAT64 gateway would lead to the embedded 10.0.0.1 / 127.0.0.1.
      '64:ff9b::a00:1', '64:ff9b::7f00:1', '64:ff9b:1::a00:1',
      // 6to4 (2002::/16) and Teredo (2001::/32), IPv4-mapped to a public address, SIIT (::ffff:0:a.b.c.d).
      '2002:7f00:1::1', '2002:a00:1::', '2001:0:4136:e378:8000:63bf:3fff:fdd2', '::ffff:8.8.8.8', '::ffff:0:a00:1',
      // IPv4-compatible (deprecated) and other IPv6 outside 2000::/3; site-local; discard-only.
      '::a00:1', '::7f00:1', '100::1', 'fec0::1', '4000::1',
      // Benchmarking 198.18.0.0/15, documentation, reserved 240/4, 192.0.0.0/24.
      '198.18.0.1', '198.19.255.254', '192.0.2.1', '203.0.113.9', '240.0.0.1', '192.0.0.8', '2001:db8::1',
      // Not an address: refused rather than guessed at.
      'localhost', '', '127.1', '0x7f000001', '2130706433',
    ]) {
      assert.equal(isInternalAddress(address), true, address);
    }
    // Just outside those ranges: public.
    for (const address of ['198.17.255.254', '198.20.0.1', '8.8.8.8', '2003::1', '2a00:1450:4001:80b::200e']) {
      assert.equal(isInternalAddress(address), false, address);
    }
  });

  test('a listed name that resolves to loopback is refused, plain and CONNECT; a listed IP literal or host.docker.internal is reached', async () => {
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`localhost:${port}`, `127.0.0.1:${port}`, `host.docker.internal:${port}`] } });
    try {
      const byName = await proxied(`http://localhost:${port}/`, `localhost:${port}`);
      assert.equal(byName.status, 403, byName.body);
      assert.match(byName.body, /private or internal address/);
      const tunnelByName = await tunnel(rig, `localhost:${port}`);
      tunnelByName.socket.destroy();
      assert.equal(tunnelByName.status, 403, tunnelByName.text);
      assert.deepEqual(hosts, []);
      // The Host header sent on is the URL's host, whatever the sandbox wrote.
      const byIp = await proxied(`http://127.0.0.1:${port}/`, 'metadata.google.internal');
      assert.equal(byIp.status, 200, byIp.body);
      assert.deepEqual(hosts, [`127.0.0.1:${port}`]);
      const byAlias = await proxied(`http://host.docker.internal:${port}/`, `host.docker.internal:${port}`);
      assert.equal(byAlias.status, 200, byAlias.body);
      assert.equal(hosts.at(-1), `host.docker.internal:${port}`);
    } finally {
      await rig.gateway.closeTask(task.taskId);
    }
  });

  test("the runner's own ports stay refused, even listed by IP", async () => {
    const denied = Number(new URL(up.url).port);
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${denied}`] } });
    try {
      const answer = await proxied(`http://127.0.0.1:${denied}/`, `127.0.0.1:${denied}`);
      assert.equal(answer.status, 403);
      assert.match(answer.body, /a port of the runner itself/);
    } finally {
      await rig.gateway.closeTask(task.taskId);
    }
  });
});

describe('gateway: a failed openTask leaves no live token', () => {
  let up: Upstream;
  let rig: Rig;
  const minted: string[] = [];
  class SpyRedactor extends Redactor {
    override add(scope: string, ...values: Array<string | undefined>): void {
      for (const value of values) if (value?.startsWith('crt_')) minted.push(value);
      super.add(scope, ...values);
    }
  }
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up, { redactor: new SpyRedactor() });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('the token file cannot be written: openTask fails, and the token it minted is refused', async () => {
    // A non-empty directory where the token file goes: the rename into place fails.
    mkdirSync(join(rig.dir, 'token', 'blocker'), { recursive: true });
    writeFileSync(join(rig.dir, 'token', 'blocker', 'x'), 'x');
    await assert.rejects(openTask(rig));
    assert.equal(minted.length, 1);
    assert.ok(!existsSync(join(rig.dir, 'token.next')), 'the half-written token file was left behind');
    const before = up.seen.length;
    const answer = await call(rig, minted[0]!);
    assert.equal(answer.status, 401);
    assert.equal(up.seen.length, before);
    rmSync(join(rig.dir, 'token'), { recursive: true, force: true });
    const task = await openTask(rig);
    assert.equal((await call(rig, task.token)).status, 200);
    await rig.gateway.closeTask(task.taskId);
  });
});
