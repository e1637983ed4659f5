/**
 * The model gateway: an HTTP server that listens on one unix socket per
 * session (mounted into that session's sandbox, where a relay exposes it at
 * 127.0.0.1:4100). The socket a request arrives on says which session sent
 * it; the token it carries must be that session's token while one of its
 * tasks is open (task-ledger.ts), and the call is that task's.
 *
 *   /v1/...            → the Messages API upstream, with the real credential
 *                        swapped in; usage metered per task, budget and call
 *                        limit enforced, at most `concurrentCalls` at once
 *   (a ready session's agent rehearsing: answered here, rehearsal.ts)
 *   CONNECT, http://…  → the egress proxy (allowlist policy; under none it
 *                        refuses everything, with a reason)
 *
 * The parts: session-sockets.ts (one unix socket per session, as long as its
 * sandbox runs), task-ledger.ts (tokens, spend, budgets, call limits, upstream
 * slots), upstream.ts (what may be sent, forwarding, metering the answer),
 * egress-proxy.ts (the sandbox's way out under `allowlist`), rehearsal.ts (a
 * ready session's agent's first turn, answered here).
 *
 * Owns: sockets, sandbox tokens, metering. Must not touch: the store, events,
 * the sandbox; it reports through the callbacks of each TaskGrant, and what
 * is not one task's (egress refusals, call outcomes, errors) through the
 * GatewayObserver of its options.
 */
import { Agent as HttpAgent, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { RunnerError } from '../core/errors.ts';
import type {
  GatewayErrorKind, GatewayObserver, ModelCallOutcome, ModelGateway, TaskGrant, TaskMeter,
} from '../core/ports/model-gateway.ts';
import { SANDBOX_GATEWAY_URL } from '../core/ports/model-gateway.ts';
import type { NetworkMode } from '../core/ports/sandbox.ts';
import type { ApiUsage } from '../pricing/prices.ts';
import { hotPath } from '../metrics/hot-path.ts';
import type { Redactor } from '../secrets/redactor.ts';
import { HeaderDeadlines } from './connection-deadlines.ts';
import { proxyConnect, proxyHttp, type Destination, type EgressPolicy } from './egress-proxy.ts';
import { answerRehearsal } from './rehearsal.ts';
import { SessionSockets } from './session-sockets.ts';
import { TaskLedger, type Call, type OpenTask } from './task-ledger.ts';
import { apiError, forwardCall, modelApiRoute, prepareBody, readBody, type ModelApiRoute, type UpstreamOptions } from './upstream.ts';

export { modelApiRoute, type ModelApiRoute } from './upstream.ts';

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
  upstream: UpstreamOptions;
  /** Ports of this machine no sandbox may reach through the proxy (the runner's API). */
  deniedLocalPorts: number[];
  /** Prices one call's usage as the API reported it (1-hour cache writes and web searches included). */
  priceUsage(model: string, usage: ApiUsage): number;
  redactor: Redactor;
  logger: { debug(obj: object, msg?: string): void; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
  limits?: Partial<GatewayLimits>;
  /** Told of egress refusals, model call outcomes and errors (events, metrics). */
  observer?: GatewayObserver;
}

function presentedToken(req: IncomingMessage): string | undefined {
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey;
  const auth = req.headers.authorization;
  return auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
}

export class SocketModelGateway implements ModelGateway {
  private readonly options: GatewayOptions;
  private readonly limits: GatewayLimits;
  private readonly http = createServer({ keepAliveTimeout: 60_000 });
  private readonly deadlines: HeaderDeadlines;
  private readonly sockets: SessionSockets;
  private readonly ledger: TaskLedger;
  private readonly upstreamAgent: HttpAgent;
  private readonly egress: EgressPolicy;

  constructor(options: GatewayOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_GATEWAY_LIMITS, ...options.limits };
    this.deadlines = new HeaderDeadlines(this.limits.headersTimeoutMs);
    // Applied by Node to every connection handed to it (it never listens, so headersTimeout is not: see deadlines).
    this.http.timeout = this.limits.idleTimeoutMs;
    this.sockets = new SessionSockets({ http: this.http, deadlines: this.deadlines, maxConnections: this.limits.maxConnections, logger: options.logger });
    this.ledger = new TaskLedger({
      concurrentCalls: this.limits.concurrentCalls,
      priceUsage: options.priceUsage,
      registerSecret: (sessionKey, token) => options.redactor.add(sessionKey, token),
      logger: options.logger,
    });
    const secure = new URL(options.upstream.baseUrl).protocol === 'https:';
    this.upstreamAgent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.egress = {
      policyFor: (sessionKey) => this.ledger.runningIn(sessionKey)?.grant.network ?? null,
      deniedLocalPorts: options.deniedLocalPorts,
      refused: (sessionKey, destination, reason) => this.egressRefused(sessionKey, destination, reason),
    };
    this.http.on('request', (req, res) => this.onRequest(req, res));
    this.http.on('connect', (req, socket, head) => {
      // First: Node removed its own error listener when it emitted 'connect'; a peer that leaves (EPIPE) must not end the process.
      socket.on('error', () => socket.destroy());
      const raw = socket as Socket;
      this.deadlines.release(raw);
      // Node's idle timeout no longer applies to a socket it handed over: the tunnel gets its own.
      raw.setTimeout(this.limits.idleTimeoutMs, () => raw.destroy());
      const sessionKey = this.sockets.sessionOf(raw);
      if (!sessionKey) return void socket.destroy();
      void proxyConnect(this.egress, sessionKey, req, socket, head);
    });
  }

  checkConfigured(): void {
    if (!this.options.upstream.apiKey && !this.options.upstream.oauthToken) throw new RunnerError('MODEL_CREDENTIALS_MISSING');
  }

  attachSession(sessionKey: string, socketDir: string): Promise<void> {
    return this.sockets.attach(sessionKey, socketDir);
  }

  async detachSession(sessionKey: string): Promise<void> {
    await this.sockets.detach(sessionKey);
    this.ledger.forgetSession(sessionKey);
  }

  /** Sessions whose socket is open (tests, metrics). */
  attachedSessions(): string[] {
    return this.sockets.sessions();
  }

  sandboxEnv(mode: NetworkMode): Record<string, string> {
    return proxyEnv(mode);
  }

  async openTask(grant: TaskGrant): Promise<{ token: string; sandboxEnv: Record<string, string> }> {
    const socketDir = this.sockets.socketDir(grant.sessionKey);
    if (socketDir === undefined) throw new Error(`gateway: session ${grant.sessionKey} is not attached`);
    const { token } = await this.ledger.open(grant, socketDir);
    return { token, sandboxEnv: proxyEnv(grant.network.mode) };
  }

  async standbyToken(sessionKey: string): Promise<void> {
    const socketDir = this.sockets.socketDir(sessionKey);
    if (socketDir === undefined) throw new Error(`gateway: session ${sessionKey} is not attached`);
    await this.ledger.standby(sessionKey, socketDir);
  }

  rehearse(sessionKey: string): () => void {
    return this.ledger.rehearse(sessionKey);
  }

  closeTask(taskId: string): Promise<TaskMeter> {
    return this.ledger.close(taskId);
  }

  async close(): Promise<void> {
    // Detaching destroys every connection a session had (the HTTP server never listened, so it tracks none itself).
    await this.sockets.close();
    this.upstreamAgent.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const arrivedAt = performance.now();
    const socket = req.socket;
    this.deadlines.requestStarted(socket);
    res.once('close', () => this.deadlines.requestEnded(socket));
    const sessionKey = this.sockets.sessionOf(socket);
    if (!sessionKey) return apiError(res, 500, 'api_error', 'unknown connection');
    if (/^https?:\/\//i.test(req.url ?? '')) {
      void proxyHttp(this.egress, sessionKey, req, res);
      return;
    }
    // Only the Messages API: the real credential would open the whole account (files, batches, models) to the agent.
    const route = modelApiRoute(req);
    if (!route) {
      this.tell('refused_request');
      return apiError(res, 404, 'not_found_error', 'claude-runner gateway: only POST /v1/messages and /v1/messages/count_tokens are served');
    }
    const token = presentedToken(req);
    const task = token ? this.ledger.byTokenOf(token) : undefined;
    if (!task && token && this.ledger.rehearses(sessionKey, token)) {
      void answerRehearsal(req, res, route, this.limits.maxRequestBody);
      return;
    }
    // No task open for this session (or a stale token): 401, and Claude Code asks its key helper again.
    if (!task || task.grant.sessionKey !== sessionKey) {
      this.tell('bad_token');
      return apiError(res, 401, 'authentication_error', 'invalid or expired task token');
    }
    void this.modelCall(task, req, res, route, arrivedAt);
  }

  /** One call, tracked from its arrival to its metering, so closeTask can cut it and wait for its cost. */
  private async modelCall(task: OpenTask, req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, arrivedAt: number): Promise<void> {
    const cut = new AbortController();
    let settle!: () => void;
    const call: Call = { cut: () => cut.abort(), done: new Promise<void>((resolve) => { settle = resolve; }) };
    task.calls.add(call);
    const timing = { upstreamMs: 0 };
    try {
      await this.runCall(task, req, res, route, cut.signal, timing);
      // The gateway's own time: the whole call but the upstream's answer (hot-path.ts).
      hotPath.observe('upstream', timing.upstreamMs);
      hotPath.observe('gateway', performance.now() - arrivedAt - timing.upstreamMs);
    } catch (error) {
      this.options.logger.warn({ taskId: task.grant.taskId, err: (error as Error).message }, 'model call failed in the gateway');
      this.tell('internal');
      apiError(res, 500, 'api_error', 'claude-runner gateway: internal error');
    } finally {
      task.calls.delete(call);
      settle();
    }
  }

  private async runCall(
    task: OpenTask, req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, cut: AbortSignal, timing: { upstreamMs: number },
  ): Promise<void> {
    if (this.refuseOverLimit(task, route, res)) return;
    const clientLeft = new AbortController();
    res.once('close', () => clientLeft.abort());
    // Before the call is forwarded, a client that leaves ends it; once forwarded, only the task's end does.
    const stop = AbortSignal.any([cut, clientLeft.signal]);
    await task.slots(async () => {
      if (stop.aborted) return this.endedEarly(res, cut);
      // Again: the spend may have moved while it waited.
      if (this.refuseOverLimit(task, route, res)) return;
      let counted = route.metered;
      if (counted) task.countedCalls += 1;
      try {
        const body = await readBody(req, this.limits.maxRequestBody, stop);
        if (body === null) return this.endedEarly(res, cut);
        if (body === 'too large') {
          this.tell('refused_request');
          res.once('finish', () => req.destroy());
          return apiError(res, 413, 'request_too_large', 'request body too large');
        }
        const prepared = prepareBody(task.grant.network.mode, route, body);
        if ('refused' in prepared) {
          this.tell('refused_request');
          return apiError(res, 400, 'invalid_request_error', `claude-runner gateway: ${prepared.refused}`);
        }
        const forwardedAt = performance.now();
        const status = await forwardCall({
          upstream: this.options.upstream, agent: this.upstreamAgent, req, res, route, body: prepared.body, requestModel: prepared.model, cut,
          onMetered: (meter) => {
            if (meter.unreadable) this.options.logger.warn({ taskId: task.grant.taskId }, 'model response too large to read its usage; not metered');
            if (meter.hasUsage) this.ledger.record(task, { model: meter.model, tokens: meter.tokens, usage: meter.usage });
          },
          onUnreachable: (error) => this.options.logger.warn({ taskId: task.grant.taskId, err: error.message }, 'model upstream unreachable'),
          ...(task.textSeen ? {} : {
            onText: (firstByteAt: number) => {
              if (task.textSeen) return;
              task.textSeen = true;
              hotPath.mark(`${task.grant.taskId}:text`, firstByteAt);
            },
          }),
        });
        timing.upstreamMs = performance.now() - forwardedAt;
        // Only calls the model answered count against the limit (not an upstream error, nor an unreachable upstream).
        if (status >= 200 && status < 300) counted = false;
        this.calledModel(route, prepared.model, status, cut);
      } finally {
        if (counted) task.countedCalls -= 1;
      }
    });
  }

  /** The call ended before it was forwarded: by the task's end (the token is dead now) or by the client leaving. */
  private endedEarly(res: ServerResponse, cut: AbortSignal): void {
    if (cut.aborted) apiError(res, 401, 'authentication_error', 'invalid or expired task token');
  }

  /** Refuses the call (403) when the task's budget is spent or its model calls are used up. */
  private refuseOverLimit(task: OpenTask, route: ModelApiRoute, res: ServerResponse): boolean {
    const reason = this.ledger.refusal(task, route.metered);
    if (reason) {
      this.tell('over_limit');
      apiError(res, 403, 'permission_error', reason);
    }
    return reason !== null;
  }

  /** A forwarded call ended: its outcome, and an error when the upstream failed or was out of reach. */
  private calledModel(route: ModelApiRoute, model: string, status: number, cut: AbortSignal): void {
    const outcome: ModelCallOutcome = status >= 200 && status < 300 ? 'ok' : status > 0 ? 'upstream_error' : cut.aborted ? 'cut' : 'unreachable';
    if (outcome === 'upstream_error' || outcome === 'unreachable') this.tell(outcome);
    if (route.metered) this.observe((observer) => observer.modelCall?.(model, outcome));
  }

  /** The proxy refused a connection: logged, and told with the task running in the session (if any). */
  private egressRefused(sessionKey: string, destination: Destination, reason: string): void {
    const task = this.ledger.runningIn(sessionKey);
    const taskId = task?.grant.taskId ?? null;
    const nth = task ? ++task.egressRefusals : 1;
    this.options.logger.info({ sessionKey, taskId, host: destination.host, port: destination.port, reason }, 'egress refused');
    this.observe((observer) => observer.egressRefused?.({ sessionKey, taskId, nth, host: destination.host, port: destination.port, reason }));
  }

  private tell(kind: GatewayErrorKind): void {
    this.observe((observer) => observer.gatewayError?.(kind));
  }

  /** An observer that throws must not break a call (nor end the process from a socket event). */
  private observe(fn: (observer: GatewayObserver) => void): void {
    const observer = this.options.observer;
    if (!observer) return;
    try {
      fn(observer);
    } catch (error) {
      this.options.logger.warn({ err: (error as Error).message }, 'a gateway observer threw');
    }
  }
}

/**
 * Under the allowlist policy, tools reach the outside only through the
 * gateway's proxy. Under none they are sent there too, to be refused with a
 * reason (the sandbox has no route out either way); open needs no proxy.
 */
function proxyEnv(mode: NetworkMode): Record<string, string> {
  if (mode === 'open') return {};
  return {
    HTTP_PROXY: SANDBOX_GATEWAY_URL, HTTPS_PROXY: SANDBOX_GATEWAY_URL, http_proxy: SANDBOX_GATEWAY_URL, https_proxy: SANDBOX_GATEWAY_URL,
    NO_PROXY: '127.0.0.1,localhost,::1', no_proxy: '127.0.0.1,localhost,::1',
  };
}
