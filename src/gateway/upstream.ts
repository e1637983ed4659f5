/**
 * The gateway's side of one model call: which requests are the Messages API,
 * reading the request body, what may be sent upstream under the task's
 * network policy, and forwarding the call with the real credential while its
 * usage is metered off the answer.
 *
 * Owns: the upstream connection and the bytes of a call. Must not touch:
 * tokens, budgets or sessions (task-ledger.ts and session-sockets.ts do).
 */
import type { ClientRequest, Agent as HttpAgent, IncomingMessage, ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { NetworkMode } from '../core/ports/sandbox.ts';
import { serverSideNetworkUse } from './request-policy.ts';
import { UsageMeter } from './usage-meter.ts';

export interface ModelApiRoute {
  /** The path (and query) to send upstream. */
  path: string;
  /** A model call (metered, counted); count_tokens is not. */
  metered: boolean;
}

export interface UpstreamOptions {
  baseUrl: string;
  apiKey: string | undefined;
  oauthToken: string | undefined;
}

const MESSAGES_PATH = '/v1/messages';
const SERVED_PATHS = new Set([MESSAGES_PATH, '/v1/messages/count_tokens']);
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'x-api-key', 'authorization',
]);

/** An error in the Messages API's own shape, or a cut connection once the answer has begun. */
export function apiError(res: ServerResponse, status: number, type: string, message: string): void {
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

/** The whole body; 'too large' past the limit; null when the client left or the call was cut first. */
export function readBody(req: IncomingMessage, limit: number, stop: AbortSignal): Promise<Buffer | 'too large' | null> {
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

/**
 * The body to send upstream and the model it asks for. Unless the task's
 * network is open, a model call that would reach the network from
 * Anthropic's side is refused, and what is sent is the body as parsed here
 * (duplicate keys or parser quirks cannot make the upstream see another).
 */
export function prepareBody(mode: NetworkMode, route: ModelApiRoute, body: Buffer): { body: Buffer; model: string } | { refused: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const model = isRecord(parsed) && typeof parsed.model === 'string' ? parsed.model : 'unknown';
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

export interface ForwardedCall {
  upstream: UpstreamOptions;
  agent: HttpAgent;
  req: IncomingMessage;
  res: ServerResponse;
  route: ModelApiRoute;
  body: Buffer;
  requestModel: string;
  /** The task's end: the call is cut, what was seen of it is metered. */
  cut: AbortSignal;
  /** Called once with the usage read off the answer (metered routes only). */
  onMetered(meter: UsageMeter): void;
  onUnreachable(error: Error): void;
  /** Called once if the answer streams text: with the performance.now() its first byte came at (first_text). */
  onText?(firstByteAt: number): void;
}

const TEXT_DELTA = Buffer.from('"text_delta"');

/**
 * Sends the call upstream and its answer to the agent; resolves with the
 * upstream status (0: unreachable or cut before it answered) once the usage
 * is recorded. An agent that leaves early does not end the call: the answer
 * is read to its end (and dropped) so its output tokens are metered. Only
 * the task's end (`cut`) ends it.
 */
export function forwardCall(call: ForwardedCall): Promise<number> {
  const { upstream, req, res, route, body, cut } = call;
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
    let current: ClientRequest | undefined;
    const onCut = (): void => void current?.destroy();
    const settle = (status: number): void => {
      if (settled) return;
      settled = true;
      cut.removeEventListener('abort', onCut);
      resolve(status);
    };
    const attempt = (mayRetry: boolean): void => {
      let retried = false;
      const outgoing = send(target, { method: 'POST', headers, agent: call.agent }, (upstreamRes) => {
        answered = true;
        const status = upstreamRes.statusCode ?? 502;
        const meter = route.metered ? new UsageMeter(upstreamRes.headers['content-type'], call.requestModel) : undefined;
        const responseHeaders = { ...upstreamRes.headers };
        delete responseHeaders.connection;
        delete responseHeaders['keep-alive'];
        delete responseHeaders['transfer-encoding'];
        let clientLeft = res.closed;
        const firstByteAt = performance.now();
        let watchText = call.onText;
        if (!clientLeft) res.writeHead(status, responseHeaders);
        res.once('close', () => {
          clientLeft = true;
          upstreamRes.resume();
        });
        upstreamRes.on('data', (chunk: Buffer) => {
          meter?.push(chunk);
          if (watchText && chunk.includes(TEXT_DELTA)) {
            watchText(firstByteAt);
            watchText = undefined;
          }
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
            call.onMetered(meter);
          }
          if (upstreamRes.complete) res.end();
          else res.destroy();
          settle(status);
        });
      });
      outgoing.on('error', (error: NodeJS.ErrnoException) => {
        if (answered) return;
        // The upstream closed a kept-alive connection just as it was reused, before answering (its idle timeout):
        // the call is sent once more on a fresh connection, as Node advises for reusedSocket, not failed.
        if (mayRetry && outgoing.reusedSocket && error.code === 'ECONNRESET' && !cut.aborted) {
          retried = true;
          attempt(false);
          return;
        }
        if (!cut.aborted) {
          call.onUnreachable(error);
          apiError(res, 502, 'api_error', `claude-runner gateway: upstream unreachable (${error.message})`);
        } else {
          apiError(res, 401, 'authentication_error', 'invalid or expired task token');
        }
        settle(0);
      });
      outgoing.once('close', () => {
        if (!answered && !retried) settle(0);
      });
      current = outgoing;
      if (cut.aborted) outgoing.destroy();
      outgoing.end(body);
    };
    cut.addEventListener('abort', onCut, { once: true });
    attempt(true);
  });
}
