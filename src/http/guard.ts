/**
 * Which web pages may drive this runner.
 *
 * - Host (DNS rebinding): without API keys the runner trusts whoever reaches
 *   it, so a page whose own name resolves to 127.0.0.1 must not be served.
 *   Then a request's Host must name loopback (localhost, 127.x.x.x, [::1];
 *   any port) or an ALLOWED_HOSTS entry (`name` or `name:port`), else
 *   403 HOST_NOT_ALLOWED. With API keys a caller needs a key, and any Host goes.
 * - Origin (every mode): a browser says where a request comes from. A
 *   WebSocket or SSE handshake, a preflight and every state-changing request
 *   (POST, PUT, PATCH, DELETE) whose Origin is neither the runner's own
 *   (the request's scheme and Host) nor a CORS_ORIGINS entry is refused with
 *   403 ORIGIN_NOT_ALLOWED. Requests without Origin (curl, servers) pass.
 * - CORS: listed origins get Access-Control-* answers (@fastify/cors),
 *   preflights included, answered before authentication (a browser sends no
 *   credential in a preflight).
 *
 * 403 rather than 421 Misdirected Request for a foreign Host: the request
 * reached the server it meant to reach (that is the attack), no other
 * connection would serve it, and 421 invites clients to retry elsewhere.
 */
import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RunnerError } from '../core/errors.ts';

export interface OriginPolicy {
  /** Check the Host header (no API keys configured). */
  checkHost: boolean;
  /** Lower-cased host names, or host:port, besides the loopback ones. */
  allowedHosts: readonly string[];
  /** Lower-cased origins, no trailing slash, besides the runner's own. */
  corsOrigins: readonly string[];
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Routes (as registered) whose GET opens a stream: WebSocket or SSE. */
const STREAM_ROUTES = new Set(['/stream/:sessionId', '/session/:sessionId/events', '/tasks/:taskId/events']);
const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const CORS_REQUEST_HEADERS = ['Authorization', 'X-Api-Key', 'Content-Type', 'Idempotency-Key', 'Last-Event-ID'];
/** Response headers a listed origin's page may read. */
const CORS_EXPOSED_HEADERS = ['X-Request-Id', 'X-Next-Cursor', 'Link', 'Idempotent-Replay', 'Retry-After'];

const IPV4_127 = /^127(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?$/;

/** A Host header as name (IPv6 in brackets) and port; null when it is not one. */
export function parseHost(header: string | undefined): { name: string; port: string | undefined } | null {
  if (!header) return null;
  const match = HOST_HEADER.exec(header.trim().toLowerCase());
  if (!match) return null;
  return { name: match[1]!, port: match[2] };
}

export function isLoopbackName(name: string): boolean {
  return name === 'localhost' || name === '[::1]' || IPV4_127.test(name);
}

export function hostAllowed(header: string | undefined, allowedHosts: readonly string[]): boolean {
  const host = parseHost(header);
  if (!host) return false;
  if (isLoopbackName(host.name)) return true;
  const bare = host.name.replace(/^\[(.*)\]$/, '$1');
  return allowedHosts.some((entry) => entry === host.name || entry === bare || (host.port !== undefined && entry === `${host.name}:${host.port}`));
}

/** scheme://host[:port], lower-cased, the scheme's default port left out (as browsers send it). */
export function normalizeOrigin(origin: string): string {
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.+?)\/*$/.exec(origin.trim().toLowerCase());
  if (!match) return origin.trim().toLowerCase();
  const [, scheme, authority] = match;
  const port = /:(\d+)$/.exec(authority!)?.[1];
  const defaultPort = scheme === 'http' || scheme === 'ws' ? '80' : scheme === 'https' || scheme === 'wss' ? '443' : undefined;
  return `${scheme}://${port !== undefined && port === defaultPort ? authority!.slice(0, -(port.length + 1)) : authority}`;
}

/** Does this request need an allowed Origin (if it has one)? */
function originChecked(request: FastifyRequest): boolean {
  if (STATE_CHANGING.has(request.method) || request.method === 'OPTIONS') return true;
  // The route found, not the URL as sent (which may spell the same path in other ways).
  return request.headers.upgrade !== undefined || STREAM_ROUTES.has(request.routeOptions.url ?? '');
}

export function originAllowed(request: FastifyRequest, origin: string, listed: ReadonlySet<string>): boolean {
  const wanted = normalizeOrigin(origin);
  if (listed.has(wanted)) return true;
  const host = request.headers.host;
  return host !== undefined && wanted === normalizeOrigin(`${request.protocol}://${host}`);
}

/**
 * Adds the Host and Origin checks (an onRequest hook) and the CORS answers.
 * Call it before the authentication hook is added: hooks run in the order
 * they are added, and a preflight must be answered before authentication.
 */
export async function registerOriginPolicy(app: FastifyInstance, policy: OriginPolicy): Promise<void> {
  const listed = new Set(policy.corsOrigins.map(normalizeOrigin));
  app.addHook('onRequest', async (request, reply) => {
    if (policy.checkHost && !hostAllowed(request.headers.host, policy.allowedHosts)) {
      throw new RunnerError('HOST_NOT_ALLOWED');
    }
    const origin = request.headers.origin;
    if (origin === undefined) return;
    if (originChecked(request) && !originAllowed(request, origin, listed)) {
      reply.header('vary', 'Origin');
      throw new RunnerError('ORIGIN_NOT_ALLOWED');
    }
  });
  await app.register(cors, {
    // Only listed origins get CORS headers; the runner's own origin needs none, any other gets none (nor is it refused
    // for a read: without Access-Control-Allow-Origin its page cannot read the answer).
    origin: (origin, callback) => callback(null, origin !== undefined && listed.has(normalizeOrigin(origin))),
    methods: CORS_METHODS,
    allowedHeaders: CORS_REQUEST_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: 600,
    // A listed origin's OPTIONS without Access-Control-Request-Method is answered as a preflight too, not with a text/plain 400.
    strictPreflight: false,
  });
}
