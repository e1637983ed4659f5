/**
 * The model gateway: an HTTP server that listens on one unix socket per
 * session (mounted into that session's sandbox, where a relay exposes it at
 * 127.0.0.1:4100). The socket a request arrives on says which session sent
 * it; the token it carries must be that session's running task's token, or
 * the previous task's token (a live agent still holds it for its first call).
 *
 *   /v1/...            → the Messages API upstream, with the real credential
 *                        swapped in; usage metered per task, budget and call
 *                        limit enforced, at most `concurrentCalls` at once
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
import { setTimeout as delay } from 'node:timers/promises';
import { RunnerError } from '../core/errors.ts';
import type { TokenUsage } from '../core/model.ts';
import type { ModelGateway, TaskGrant, TaskMeter } from '../core/ports/model-gateway.ts';
import type { ApiUsage } from '../pricing/prices.ts';
import type { Redactor } from '../secrets/redactor.ts';
import { HeaderDeadlines } from './connection-deadlines.ts';
import { proxyConnect, proxyHttp, type EgressPolicy } from './egress-proxy.ts';
import { serverSideNetworkUse } from './request-policy.ts';
import { addUsage, emptyUsage, UsageMeter } from './usage-meter.ts';

export interface GatewayLimits {
  /**
   * Upstream calls of one task at once; more wait for a slot (Claude Code just
   * sees a slower answer, where a 429 would spend its retries). A budget is
   * overshot by at most the call that crosses it and `concurrentCalls - 1`
   * calls already under way.
   */
  concurrentCalls: number;
  /** Connections of one session's socket at once; more are closed as they come. */
  maxConnections: number;
  /** A connection (or tunnel) with no traffic for this long is closed. */
  idleTimeoutMs: number;
  /** A request head must be complete this long after it starts (see connection-deadlines.ts). */
  headersTimeoutMs: number;
  maxRequestBody: number;
}

export const DEFAULT_GATEWAY_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  concurrentCalls: 4,
  maxConnections: 32,
  idleTimeoutMs: 10 * 60_000,
  headersTimeoutMs: 10_000,
  maxRequestBody: 16 * 1024 * 1024,
});

export interface GatewayOptions {
  upstream: { baseUrl: string; apiKey: string | undefined; oauthToken: string | undefined };
  /** Ports of this machine no sandbox may reach through the proxy (the runner's API). */
  deniedLocalPorts: number[];
  /** Prices one call's usage as the API reported it (1-hour cache writes and web searches included). */
  priceUsage(model: string, usage: ApiUsage): number;
  redactor: Redactor;
  logger: { debug(obj: object, msg?: string): void; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
  limits?: Partial<GatewayLimits>;
}

interface Call {
  /** Ends the call now (the task is over); it still records what it metered. */
  cut(): void;
  /** Settles once the call has recorded its usage and let go of its slot. */
  done: Promise<void>;
}

interface OpenTask {
  grant: TaskGrant;
  /** This task's token, and the previous task's (still cached by a live agent). */
  tokenHashes: string[];
  usage: TokenUsage;
  costUsd: number;
  /** Calls that were metered. */
  modelCalls: number;
  /** Model calls counted against maxModelCalls: admitted, less those refused before or by the upstream. */
  countedCalls: number;
  limitReported: boolean;
  closed: boolean;
  /** Upstream slots in use, and the calls waiting for one, first come first served. */
  active: number;
  waiting: Array<() => void>;
  calls: Set<Call>;
}

export interface ModelApiRoute {
  /** The path (and query) to send upstream. */
  path: string;
  /** A model call (metered, counted); count_tokens is not. */
  metered: boolean;
}

const MESSAGES_PATH = '/v1/messages';
const SERVED_PATHS = new Set([MESSAGES_PATH, '/v1/messages/count_tokens']);
/** closeTask waits this long at most for cut calls to record their usage. */
const CLOSE_WAIT_MS = 10_000;
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Where to send the request upstream, or null when it is not a POST to the
 * Messages API. Dot segments and their %2e spellings are resolved first, so
 * "/v1/messages/../files" cannot pass for the Messages API.
 */
export function modelApiRoute(req: { method?: string | undefined; url?: string | undefined }): ModelApiRoute | null {
  if (req.method !== 'POST') return null;
  let url: URL;
  try {
    url = new URL(req.url ?? '', 'http://gateway.invalid');
  } catch {
    return null;
  }
  if (url.host !== 'gateway.invalid' || !SERVED_PATHS.has(url.pathname)) return null;
  return { path: `${url.pathname}${url.search}`, metered: url.pathname === MESSAGES_PATH };
}

function presentedToken(req: IncomingMessage): string | undefined {
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey;
  const auth = req.headers.authorization;
  return auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
}

/** The whole body; 'too large' past the limit; null when the client left or the call was cut first. */
function readBody(req: IncomingMessage, limit: number, stop: AbortSignal): Promise<Buffer | 'too large' | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (value: Buffer | 'too large' | null): void => {
      req.off('data', onData).off('end', onEnd).off('close', onGone).off('error', onGone);
      stop.removeEventListener('abort', onGone);
      resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) settle('too large');
      else chunks.push(chunk);
    };
    const onEnd = (): void => settle(Buffer.concat(chunks));
    const onGone = (): void => settle(null);
    if (stop.aborted) return settle(null);
    req.on('data', onData).once('end', onEnd).once('close', onGone).once('error', onGone);
    stop.addEventListener('abort', onGone, { once: true });
  });
}

export class SocketModelGateway implements ModelGateway {
  private readonly options: GatewayOptions;
  private readonly limits: GatewayLimits;
  private readonly http = createServer({ keepAliveTimeout: 60_000 });
  private readonly deadlines: HeaderDeadlines;
  private readonly sessions = new Map<string, { server: NetServer; socketDir: string; lastTokenHash: string | null; sockets: Set<Socket> }>();
  private readonly socketSession = new WeakMap<Socket, string>();
  private readonly tasks = new Map<string, OpenTask>();
  private readonly byToken = new Map<string, OpenTask>();
  private readonly bySession = new Map<string, OpenTask>();
  private readonly upstreamAgent: HttpAgent;
  private readonly egress: EgressPolicy;

  constructor(options: GatewayOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_GATEWAY_LIMITS, ...options.limits };
    this.deadlines = new HeaderDeadlines(this.limits.headersTimeoutMs);
    // Applied by Node to every connection handed to it (it never listens, so headersTimeout is not: see deadlines).
    this.http.timeout = this.limits.idleTimeoutMs;
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
      // First: Node removed its own error listener when it emitted 'connect'; a peer that leaves (EPIPE) must not end the process.
      socket.on('error', () => socket.destroy());
      const raw = socket as Socket;
      this.deadlines.release(raw);
      // Node's idle timeout no longer applies to a socket it handed over: the tunnel gets its own.
      raw.setTimeout(this.limits.idleTimeoutMs, () => raw.destroy());
      const sessionKey = this.socketSession.get(raw);
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
      this.deadlines.connected(socket);
      this.http.emit('connection', socket);
    });
    server.maxConnections = this.limits.maxConnections;
    // For good, not only while listening: a later error (EMFILE on accept) must not end the process.
    server.on('error', (error) => this.options.logger.warn({ sessionKey, err: error.message }, 'gateway socket error'));
    server.on('drop', () => this.options.logger.warn({ sessionKey, max: this.limits.maxConnections }, 'gateway connection refused: too many'));
    this.sessions.set(sessionKey, { server, socketDir, lastTokenHash: null, sockets });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // The relay in the sandbox runs as another uid; the socket is only mounted into this session's sandbox.
      await chmod(path, 0o666);
    } catch (error) {
      this.sessions.delete(sessionKey);
      server.close();
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
    // The file first, the grant after: a failed write must not leave a live token that no closeTask will revoke.
    const file = join(session.socketDir, 'token');
    try {
      await writeFile(`${file}.next`, token, { mode: 0o644 });
      await rename(`${file}.next`, file);
    } catch (error) {
      await rm(`${file}.next`, { force: true }).catch(() => undefined);
      throw error;
    }
    const tokenHash = hashToken(token);
    const tokenHashes = session.lastTokenHash ? [tokenHash, session.lastTokenHash] : [tokenHash];
    session.lastTokenHash = tokenHash;
    const task: OpenTask = {
      grant, tokenHashes, usage: emptyUsage(), costUsd: 0, modelCalls: 0, countedCalls: 0, limitReported: false, closed: false,
      active: 0, waiting: [], calls: new Set(),
    };
    this.tasks.set(grant.taskId, task);
    for (const hash of tokenHashes) this.byToken.set(hash, task);
    this.bySession.set(grant.sessionKey, task);
    return { token };
  }

  async closeTask(taskId: string): Promise<TaskMeter> {
    const task = this.tasks.get(taskId);
    if (!task) return { usage: emptyUsage(), costUsd: 0, modelCalls: 0 };
    this.tasks.delete(taskId);
    for (const hash of task.tokenHashes) if (this.byToken.get(hash) === task) this.byToken.delete(hash);
    if (this.bySession.get(task.grant.sessionKey) === task) this.bySession.delete(task.grant.sessionKey);
    task.closed = true;
    const calls = [...task.calls];
    for (const call of calls) call.cut();
    // A cut call still records what it was billed so far: the totals wait for it (an aborted task reports its true cost).
    const settled = await Promise.race([Promise.all(calls.map((call) => call.done)).then(() => true), delay(CLOSE_WAIT_MS, false, { ref: false })]);
    if (!settled) this.options.logger.warn({ taskId, calls: task.calls.size }, 'model calls still open after the task closed; their usage is not in its total');
    return { usage: task.usage, costUsd: task.costUsd, modelCalls: task.modelCalls };
  }

  async close(): Promise<void> {
    // Detaching destroys every connection a session had (the HTTP server never listened, so it tracks none itself).
    for (const key of [...this.sessions.keys()]) await this.detachSession(key);
    this.upstreamAgent.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    this.deadlines.requestStarted(socket);
    res.once('close', () => this.deadlines.requestEnded(socket));
    const sessionKey = this.socketSession.get(socket);
    if (!sessionKey) return apiError(res, 500, 'api_error', 'unknown connection');
    if (/^https?:\/\//i.test(req.url ?? '')) {
      void proxyHttp(this.egress, sessionKey, req, res);
      return;
    }
    // Only the Messages API: the real credential would open the whole account (files, batches, models) to the agent.
    const route = modelApiRoute(req);
    if (!route) return apiError(res, 404, 'not_found_error', 'claude-runner gateway: only POST /v1/messages and /v1/messages/count_tokens are served');
    const token = presentedToken(req);
    const task = token ? this.byToken.get(hashToken(token)) : undefined;
    // A 401 makes Claude Code ask its key helper again: that is how a live agent picks up the next task's token.
    if (!task || task.grant.sessionKey !== sessionKey) return apiError(res, 401, 'authentication_error', 'invalid or expired task token');
    void this.modelCall(task, req, res, route);
  }

  /** One call, tracked from its arrival to its metering, so closeTask can cut it and wait for its cost. */
  private async modelCall(task: OpenTask, req: IncomingMessage, res: ServerResponse, route: ModelApiRoute): Promise<void> {
    const cut = new AbortController();
    let settle!: () => void;
    const call: Call = { cut: () => cut.abort(), done: new Promise<void>((resolve) => { settle = resolve; }) };
    task.calls.add(call);
    try {
      await this.runCall(task, req, res, route, cut.signal);
    } catch (error) {
      this.options.logger.warn({ taskId: task.grant.taskId, err: (error as Error).message }, 'model call failed in the gateway');
      apiError(res, 500, 'api_error', 'claude-runner gateway: internal error');
    } finally {
      task.calls.delete(call);
      settle();
    }
  }

  private async runCall(task: OpenTask, req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, cut: AbortSignal): Promise<void> {
    if (this.refuseOverLimit(task, route, res)) return;
    const clientLeft = new AbortController();
    res.once('close', () => clientLeft.abort());
    // Before the call is forwarded, a client that leaves ends it; once forwarded, only the task's end does.
    const stop = AbortSignal.any([cut, clientLeft.signal]);
    if (!(await this.acquireSlot(task, stop))) return this.endedEarly(res, cut);
    let counted = false;
    try {
      // Again: the spend may have moved while it waited.
      if (this.refuseOverLimit(task, route, res)) return;
      if (route.metered) {
        task.countedCalls += 1;
        counted = true;
      }
      const body = await readBody(req, this.limits.maxRequestBody, stop);
      if (body === null) return this.endedEarly(res, cut);
      if (body === 'too large') {
        res.once('finish', () => req.destroy());
        return apiError(res, 413, 'request_too_large', 'request body too large');
      }
      const prepared = this.prepare(task, route, body);
      if ('refused' in prepared) return apiError(res, 400, 'invalid_request_error', `claude-runner gateway: ${prepared.refused}`);
      const status = await this.forward(task, req, res, route, prepared.body, prepared.model, cut);
      // Only calls the model answered count against the limit (not an upstream error, nor an unreachable upstream).
      if (status >= 200 && status < 300) counted = false;
    } finally {
      if (counted) task.countedCalls -= 1;
      this.releaseSlot(task);
    }
  }

  /** The call ended before it was forwarded: by the task's end (the token is dead now) or by the client leaving. */
  private endedEarly(res: ServerResponse, cut: AbortSignal): void {
    if (cut.aborted) apiError(res, 401, 'authentication_error', 'invalid or expired task token');
  }

  /** Refuses the call (403) when the task's budget is spent or its model calls are used up. */
  private refuseOverLimit(task: OpenTask, route: ModelApiRoute, res: ServerResponse): boolean {
    const budget = task.grant.budgetUsd;
    if (budget !== undefined && task.costUsd >= budget) {
      apiError(res, 403, 'permission_error', 'the task budget is spent');
      return true;
    }
    const max = task.grant.maxModelCalls;
    if (route.metered && task.countedCalls >= max) {
      this.reportLimit(task, new RunnerError('MAX_TURNS_REACHED', `The task reached its limit of ${max} model calls.`));
      apiError(res, 403, 'permission_error', `claude-runner gateway: the task's limit of ${max} model calls is reached`);
      return true;
    }
    return false;
  }

  private acquireSlot(task: OpenTask, stop: AbortSignal): Promise<boolean> {
    if (stop.aborted) return Promise.resolve(false);
    if (task.active < this.limits.concurrentCalls) {
      task.active += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const granted = (): void => {
        stop.removeEventListener('abort', gaveUp);
        resolve(true);
      };
      const gaveUp = (): void => {
        const at = task.waiting.indexOf(granted);
        if (at !== -1) task.waiting.splice(at, 1);
        resolve(false);
      };
      task.waiting.push(granted);
      stop.addEventListener('abort', gaveUp, { once: true });
    });
  }

  /** Hands the slot to the next waiting call, if any. */
  private releaseSlot(task: OpenTask): void {
    const next = task.waiting.shift();
    if (next) next();
    else task.active -= 1;
  }

  /**
   * The body to send upstream and the model it asks for. Unless the task's
   * network is open, a model call that would reach the network from
   * Anthropic's side is refused, and what is sent is the body as parsed here
   * (duplicate keys or parser quirks cannot make the upstream see another).
   */
  private prepare(task: OpenTask, route: ModelApiRoute, body: Buffer): { body: Buffer; model: string } | { refused: string } {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    const model = isRecord(parsed) && typeof parsed.model === 'string' ? parsed.model : 'unknown';
    const mode = task.grant.network.mode;
    if (!route.metered || mode === 'open') return { body, model };
    if (parsed === undefined) return { refused: 'the request body is not JSON' };
    const reason = serverSideNetworkUse(parsed);
    if (reason) return { refused: `${reason} under the task's network policy (${mode}): it reaches the network from Anthropic's side` };
    try {
      return { body: Buffer.from(JSON.stringify(parsed)), model };
    } catch {
      return { refused: 'the request body is nested too deeply' };
    }
  }

  /**
   * Sends the call upstream and its answer to the agent; resolves with the
   * upstream status (0: unreachable or cut before it answered) once the usage
   * is recorded. An agent that leaves early does not end the call: the answer
   * is read to its end (and dropped) so its output tokens are metered. Only
   * the task's end (`cut`) ends it.
   */
  private forward(task: OpenTask, req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, body: Buffer, requestModel: string, cut: AbortSignal): Promise<number> {
    const { upstream } = this.options;
    const base = new URL(upstream.baseUrl);
    const target = new URL(base.pathname.replace(/\/$/, '') + route.path, base);
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
    return new Promise<number>((resolve) => {
      let answered = false;
      let settled = false;
      const onCut = (): void => void outgoing.destroy();
      const settle = (status: number): void => {
        if (settled) return;
        settled = true;
        cut.removeEventListener('abort', onCut);
        resolve(status);
      };
      const outgoing = send(target, { method: 'POST', headers, agent: this.upstreamAgent }, (upstreamRes) => {
        answered = true;
        const status = upstreamRes.statusCode ?? 502;
        const meter = route.metered ? new UsageMeter(upstreamRes.headers['content-type'], requestModel) : undefined;
        const responseHeaders = { ...upstreamRes.headers };
        delete responseHeaders.connection;
        delete responseHeaders['keep-alive'];
        delete responseHeaders['transfer-encoding'];
        let clientLeft = res.closed;
        if (!clientLeft) res.writeHead(status, responseHeaders);
        res.once('close', () => {
          clientLeft = true;
          upstreamRes.resume();
        });
        upstreamRes.on('data', (chunk: Buffer) => {
          meter?.push(chunk);
          if (clientLeft) return;
          // A slow reader slows the upstream instead of filling this process's memory.
          if (!res.write(chunk)) {
            upstreamRes.pause();
            res.once('drain', () => upstreamRes.resume());
          }
        });
        // After the end, or when cut (the task's end, the upstream failing): what was seen of it is what it cost.
        upstreamRes.once('close', () => {
          if (meter) {
            meter.end();
            if (meter.unreadable) this.options.logger.warn({ taskId: task.grant.taskId }, 'model response too large to read its usage; not metered');
            this.record(task, meter);
          }
          if (upstreamRes.complete) res.end();
          else res.destroy();
          settle(status);
        });
      });
      outgoing.on('error', (error) => {
        if (answered) return;
        if (!cut.aborted) {
          this.options.logger.warn({ taskId: task.grant.taskId, err: error.message }, 'model upstream unreachable');
          apiError(res, 502, 'api_error', `claude-runner gateway: upstream unreachable (${error.message})`);
        } else {
          apiError(res, 401, 'authentication_error', 'invalid or expired task token');
        }
        settle(0);
      });
      outgoing.once('close', () => {
        if (!answered) settle(0);
      });
      cut.addEventListener('abort', onCut, { once: true });
      if (cut.aborted) outgoing.destroy();
      outgoing.end(body);
    });
  }

  private record(task: OpenTask, meter: UsageMeter): void {
    if (!meter.hasUsage) return;
    const usage = meter.tokens;
    const costUsd = this.options.priceUsage(meter.model, meter.usage);
    task.usage = addUsage(task.usage, usage);
    task.costUsd += costUsd;
    task.modelCalls += 1;
    this.notify(task, () => task.grant.onModelCall({ model: meter.model, usage, costUsd }));
    const budget = task.grant.budgetUsd;
    if (budget !== undefined && task.costUsd >= budget) {
      this.reportLimit(task, new RunnerError('BUDGET_EXCEEDED', `The task spent $${task.costUsd.toFixed(4)} of its $${budget} budget.`));
    }
  }

  /** Once per task, the first limit it reaches; none after it closed (it is over already). */
  private reportLimit(task: OpenTask, error: RunnerError): void {
    if (task.limitReported || task.closed) return;
    task.limitReported = true;
    this.notify(task, () => task.grant.onLimitReached(error));
  }

  /** A callback that throws must not end the process from inside a socket event. */
  private notify(task: OpenTask, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.options.logger.warn({ taskId: task.grant.taskId, err: (error as Error).message }, 'a task grant callback threw');
    }
  }
}
