/** The shared rig of the gateway tests: a scripted upstream, a gateway on temporary sockets, tasks, calls and raw connections. */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { RunnerError } from '../../src/core/errors.ts';
import type { ModelCall, TaskGrant } from '../../src/core/ports/model-gateway.ts';
import { SocketModelGateway, type GatewayLimits } from '../../src/gateway/gateway.ts';
import { priceUsage } from '../../src/pricing/prices.ts';
import { Redactor } from '../../src/secrets/redactor.ts';

export const MODEL = 'claude-opus-5-5';
export const KEY = 'sk-ant-gateway-test-upstream';
export const CALL = priceUsage(MODEL, { input_tokens: 100, output_tokens: 20 });
export const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const silent = { debug() {}, info() {}, warn() {} };

export async function until(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------
// A fake Messages API: the `x-scenario` header (forwarded as is) says how it answers.

export interface Seen { path: string; headers: IncomingMessage['headers']; raw: string; body: unknown }

export interface Upstream {
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

export const sse = (event: object) => `event: ${(event as { type: string }).type}\ndata: ${JSON.stringify(event)}\n\n`;
export const messageStart = (usage: object) => sse({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [], usage } });

export async function startUpstream(): Promise<Upstream> {
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

export interface Rig {
  gateway: SocketModelGateway;
  dir: string;
  sock: string;
  close(): Promise<void>;
}

export async function startGateway(upstream: Upstream, extra: { limits?: Partial<GatewayLimits>; redactor?: Redactor; deniedLocalPorts?: number[] } = {}): Promise<Rig> {
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

export let taskCounter = 0;
export interface OpenedTask { taskId: string; token: string; calls: ModelCall[]; limits: RunnerError[] }

export async function openTask(rig: Rig, grant: Partial<TaskGrant> = {}): Promise<OpenedTask> {
  const taskId = `task_${++taskCounter}`;
  const calls: ModelCall[] = [];
  const limits: RunnerError[] = [];
  const { token } = await rig.gateway.openTask({
    taskId, sessionKey: 's1', network: { mode: 'none', allow: [] }, budgetUsd: undefined, maxModelCalls: 100,
    onModelCall: (call) => calls.push(call), onLimitReached: (error) => limits.push(error), ...grant,
  });
  return { taskId, token, calls, limits };
}

export interface Answer { status: number; body: string; json: { type?: string; error?: { type: string; message: string } } }

export function call(rig: Rig, token: string, options: { scenario?: string; body?: object | string; path?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
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
export function raw(rig: Rig): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(rig.sock, () => resolve(socket));
    socket.once('error', reject);
  });
}

export function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => { clearTimeout(timer); resolve(true); });
  });
}

/** A TCP server on 127.0.0.1 that accepts and stays silent; `allowHalfOpen` keeps its side open after the peer's FIN. */
export async function silentServer(): Promise<{ port: number; sockets: Socket[]; server: NetServer; close(): Promise<void> }> {
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
export function tunnel(rig: Rig, authority: string): Promise<{ socket: Socket; status: number; text: string }> {
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
