/**
 * The model gateway: an HTTP server that listens on one unix socket per
 * session (mounted into that session's sandbox, where a relay exposes it at
 * 127.0.0.1:4100). The socket a request arrives on says which session sent
 * it; the token it carries must be that session's running task's token.
 *
 *   /v1/...            → the Messages API upstream, with the real credential
 *                        swapped in; usage metered per task, budget enforced
 *   CONNECT, http://…  → the egress proxy (allowlist policy)
 *
 * Owns: sockets, task tokens, metering. Must not touch: the store, events,
 * the sandbox; it reports through the callbacks of each TaskGrant.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { RunnerError } from '../core/errors.ts';
import type { TokenUsage } from '../core/model.ts';
import type { ModelGateway, TaskGrant, TaskMeter } from '../core/ports/model-gateway.ts';
import type { Redactor } from '../secrets/redactor.ts';
import { proxyConnect, proxyHttp, type EgressPolicy } from './egress-proxy.ts';
import { addUsage, emptyUsage, UsageMeter } from './usage-meter.ts';

export interface GatewayOptions {
  upstream: { baseUrl: string; apiKey: string | undefined; oauthToken: string | undefined };
  /** Ports of this machine no sandbox may reach through the proxy (the runner's API, its database). */
  deniedLocalPorts: number[];
  priceUsage(model: string, usage: TokenUsage): number;
  redactor: Redactor;
  logger: { debug(obj: object, msg?: string): void; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

interface OpenTask {
  grant: TaskGrant;
  /** This task's token, and the previous task's (still cached by a live agent). */
  tokenHashes: string[];
  usage: TokenUsage;
  costUsd: number;
  modelCalls: number;
  budgetReported: boolean;
  inflight: Set<{ destroy(): void }>;
}

const MAX_REQUEST_BODY = 32 * 1024 * 1024;
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'x-api-key', 'authorization',
]);

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function apiError(res: ServerResponse, status: number, type: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ type: 'error', error: { type, message } }));
}

const MESSAGES_PATH = '/v1/messages';
const SERVED_PATHS = new Set([MESSAGES_PATH, '/v1/messages/count_tokens']);

/**
 * The path (and query) to send upstream, or null when the request is not a
 * POST to the Messages API. Dot segments and their %2e spellings are resolved
 * first, so "/v1/messages/../files" cannot pass for the Messages API.
 */
export function modelApiPath(req: { method?: string | undefined; url?: string | undefined }): string | null {
  if (req.method !== 'POST') return null;
  let url: URL;
  try {
    url = new URL(req.url ?? '', 'http://gateway.invalid');
  } catch {
    return null;
  }
  if (url.host !== 'gateway.invalid' || !SERVED_PATHS.has(url.pathname)) return null;
  return `${url.pathname}${url.search}`;
}

function presentedToken(req: IncomingMessage): string | undefined {
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey;
  const auth = req.headers.authorization;
  return auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
}

export class SocketModelGateway implements ModelGateway {
  private readonly options: GatewayOptions;
  private readonly http = createServer({ keepAliveTimeout: 60_000 });
  private readonly sessions = new Map<string, { server: NetServer; socketDir: string; lastTokenHash: string | null; sockets: Set<Socket> }>();
  private readonly socketSession = new WeakMap<Socket, string>();
  private readonly tasks = new Map<string, OpenTask>();
  private readonly byToken = new Map<string, OpenTask>();
  private readonly bySession = new Map<string, OpenTask>();
  private readonly upstreamAgent: HttpAgent;
  private readonly egress: EgressPolicy;

  constructor(options: GatewayOptions) {
    this.options = options;
    const secure = new URL(options.upstream.baseUrl).protocol === 'https:';
    this.upstreamAgent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.egress = {
      allowFor: (sessionKey) => {
        const task = this.bySession.get(sessionKey);
        if (!task) return null;
        return task.grant.network.mode === 'none' ? [] : task.grant.network.allow;
      },
      deniedLocalPorts: options.deniedLocalPorts,
      log: options.logger,
    };
    this.http.on('request', (req, res) => this.onRequest(req, res));
    this.http.on('connect', (req, socket, head) => {
      const sessionKey = this.socketSession.get(req.socket);
      if (!sessionKey) return void socket.destroy();
      void proxyConnect(this.egress, sessionKey, req, socket, head);
    });
  }

  checkConfigured(): void {
    if (!this.options.upstream.apiKey && !this.options.upstream.oauthToken) throw new RunnerError('MODEL_CREDENTIALS_MISSING');
  }

  async attachSession(sessionKey: string, socketDir: string): Promise<void> {
    if (this.sessions.has(sessionKey)) return;
    const path = join(socketDir, 'gateway.sock');
    await rm(path, { force: true });
    const sockets = new Set<Socket>();
    const server = createNetServer((socket) => {
      this.socketSession.set(socket, sessionKey);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      this.http.emit('connection', socket);
    });
    this.sessions.set(sessionKey, { server, socketDir, lastTokenHash: null, sockets });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      // The relay in the sandbox runs as another uid; the socket is only mounted into this session's sandbox.
      await chmod(path, 0o666);
    } catch (error) {
      this.sessions.delete(sessionKey);
      throw error;
    }
  }

  async detachSession(sessionKey: string): Promise<void> {
    const entry = this.sessions.get(sessionKey);
    if (!entry) return;
    this.sessions.delete(sessionKey);
    const closed = new Promise<void>((resolve) => entry.server.close(() => resolve()));
    // Kept-alive connections of the sandbox would hold the close open for as long as they idle.
    for (const socket of entry.sockets) socket.destroy();
    await closed;
    await rm(join(entry.socketDir, 'gateway.sock'), { force: true });
  }

  async openTask(grant: TaskGrant): Promise<{ token: string }> {
    const session = this.sessions.get(grant.sessionKey);
    if (!session) throw new Error(`gateway: session ${grant.sessionKey} is not attached`);
    const token = `crt_${randomBytes(24).toString('base64url')}`;
    this.options.redactor.add(grant.sessionKey, token);
    const tokenHash = hashToken(token);
    const tokenHashes = session.lastTokenHash ? [tokenHash, session.lastTokenHash] : [tokenHash];
    session.lastTokenHash = tokenHash;
    const task: OpenTask = {
      grant, tokenHashes, usage: emptyUsage(), costUsd: 0, modelCalls: 0, budgetReported: false, inflight: new Set(),
    };
    this.tasks.set(grant.taskId, task);
    for (const hash of tokenHashes) this.byToken.set(hash, task);
    this.bySession.set(grant.sessionKey, task);
    const file = join(session.socketDir, 'token');
    await writeFile(`${file}.next`, token, { mode: 0o644 });
    await rename(`${file}.next`, file);
    return { token };
  }

  async closeTask(taskId: string): Promise<TaskMeter> {
    const task = this.tasks.get(taskId);
    if (!task) return { usage: emptyUsage(), costUsd: 0, modelCalls: 0 };
    this.tasks.delete(taskId);
    for (const hash of task.tokenHashes) if (this.byToken.get(hash) === task) this.byToken.delete(hash);
    if (this.bySession.get(task.grant.sessionKey) === task) this.bySession.delete(task.grant.sessionKey);
    for (const request of task.inflight) request.destroy();
    return { usage: task.usage, costUsd: task.costUsd, modelCalls: task.modelCalls };
  }

  async close(): Promise<void> {
    for (const key of [...this.sessions.keys()]) await this.detachSession(key);
    this.http.closeAllConnections();
    this.upstreamAgent.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const sessionKey = this.socketSession.get(req.socket);
    if (!sessionKey) return apiError(res, 500, 'api_error', 'unknown connection');
    if (/^https?:\/\//i.test(req.url ?? '')) {
      void proxyHttp(this.egress, sessionKey, req, res);
      return;
    }
    // Only the Messages API: the real credential would open the whole account (files, batches, models) to the agent.
    const path = modelApiPath(req);
    if (!path) return apiError(res, 404, 'not_found_error', 'claude-runner gateway: only POST /v1/messages and /v1/messages/count_tokens are served');
    const token = presentedToken(req);
    const task = token ? this.byToken.get(hashToken(token)) : undefined;
    // A 401 makes Claude Code ask its key helper again: that is how a live agent picks up the next task's token.
    if (!task || task.grant.sessionKey !== sessionKey) return apiError(res, 401, 'authentication_error', 'invalid or expired task token');
    if (task.grant.budgetUsd !== undefined && task.costUsd >= task.grant.budgetUsd) {
      return apiError(res, 403, 'permission_error', 'the task budget is spent');
    }
    this.forward(task, req, path, res);
  }

  private forward(task: OpenTask, req: IncomingMessage, path: string, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BODY) {
        apiError(res, 413, 'request_too_large', 'request body too large');
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_REQUEST_BODY) return;
      const body = Buffer.concat(chunks);
      let requestModel = 'unknown';
      try {
        requestModel = (JSON.parse(body.toString('utf8')) as { model?: string }).model ?? 'unknown';
      } catch {
        // the upstream will say what is wrong with it
      }
      this.sendUpstream(task, req, path, body, requestModel, res);
    });
  }

  private sendUpstream(task: OpenTask, req: IncomingMessage, path: string, body: Buffer, requestModel: string, res: ServerResponse): void {
    const { upstream } = this.options;
    const base = new URL(upstream.baseUrl);
    const target = new URL(base.pathname.replace(/\/$/, '') + path, base);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    headers['content-length'] = String(body.length);
    if (upstream.apiKey) {
      headers['x-api-key'] = upstream.apiKey;
    } else if (upstream.oauthToken) {
      headers.authorization = `Bearer ${upstream.oauthToken}`;
      const beta = headers['anthropic-beta'];
      headers['anthropic-beta'] = [beta, 'oauth-2025-04-20'].flat().filter(Boolean).join(',');
    }
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const metered = path.startsWith(`${MESSAGES_PATH}?`) || path === MESSAGES_PATH;
    const outgoing = send(target, { method: req.method, headers, agent: this.upstreamAgent }, (upstreamRes) => {
      const meter = new UsageMeter(upstreamRes.headers['content-type'], requestModel);
      const responseHeaders = { ...upstreamRes.headers };
      delete responseHeaders.connection;
      delete responseHeaders['keep-alive'];
      delete responseHeaders['transfer-encoding'];
      res.writeHead(upstreamRes.statusCode ?? 502, responseHeaders);
      upstreamRes.on('data', (chunk: Buffer) => {
        if (metered) meter.push(chunk);
        res.write(chunk);
      });
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        task.inflight.delete(outgoing);
        if (!metered) return;
        meter.end();
        this.record(task, meter);
      };
      upstreamRes.on('end', () => {
        finish();
        res.end();
      });
      upstreamRes.on('aborted', () => {
        finish();
        res.destroy();
      });
      // A stream cut by either side still costs what was seen of it.
      upstreamRes.on('close', () => {
        if (finished) return;
        finish();
        res.destroy();
      });
    });
    task.inflight.add(outgoing);
    outgoing.on('error', (error) => {
      task.inflight.delete(outgoing);
      this.options.logger.warn({ taskId: task.grant.taskId, err: error.message }, 'model upstream unreachable');
      apiError(res, 502, 'api_error', `claude-runner gateway: upstream unreachable (${error.message})`);
    });
    res.on('close', () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    outgoing.end(body);
  }

  private record(task: OpenTask, meter: UsageMeter): void {
    const usage = meter.usage;
    if (usage.inputTokens + usage.outputTokens + usage.cacheCreationInputTokens + usage.cacheReadInputTokens === 0) return;
    const costUsd = this.options.priceUsage(meter.model, usage);
    task.usage = addUsage(task.usage, usage);
    task.costUsd += costUsd;
    task.modelCalls += 1;
    task.grant.onModelCall({ model: meter.model, usage, costUsd });
    const budget = task.grant.budgetUsd;
    if (budget !== undefined && task.costUsd >= budget && !task.budgetReported) {
      task.budgetReported = true;
      task.grant.onBudgetExceeded(task.costUsd);
    }
  }
}
