/**
 * API authentication. Callers present an API key (Authorization: Bearer, or
 * x-api-key); each key belongs to a tenant. Keys are compared in constant
 * time (digests, every key tried). Browsers, which cannot set headers on a
 * WebSocket or EventSource, trade a key for a short-lived stream token bound
 * to one tenant (and optionally one session) and pass it as ?token=.
 * With no key configured, every caller is the "default" tenant.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { RunnerError } from '../core/errors.ts';
import { DEFAULT_TENANT } from '../core/model.ts';

export interface Caller {
  tenantId: string;
  /** Identifies the credential for rate limiting, without being it. */
  keyId: string;
  /** A stream token may be bound to one session. */
  sessionId?: string;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export class ApiAuth {
  private readonly keys: Array<{ tenantId: string; digest: Buffer; keyId: string }>;
  private readonly secret: Buffer;

  /** `secret` signs stream tokens: nodes sharing it accept each other's (random: this process only). */
  constructor(keys: Array<{ tenantId: string; key: string }>, secret: Buffer = randomBytes(32)) {
    this.secret = secret;
    this.keys = keys.map(({ tenantId, key }) => ({ tenantId, digest: digest(key), keyId: digest(key).toString('hex').slice(0, 12) }));
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** The caller of a request, or UNAUTHORIZED. */
  authenticate(request: FastifyRequest, allowStreamToken: boolean): Caller {
    if (!this.enabled) return { tenantId: DEFAULT_TENANT, keyId: request.ip };
    const presented = bearer(request);
    if (presented) {
      const wanted = digest(presented);
      let match: Caller | undefined;
      for (const key of this.keys) if (timingSafeEqual(wanted, key.digest) && !match) match = { tenantId: key.tenantId, keyId: key.keyId };
      if (match) return match;
    }
    const token = (request.query as Record<string, unknown> | undefined)?.token;
    if (allowStreamToken && typeof token === 'string') {
      const caller = this.verifyStreamToken(token);
      if (caller) return caller;
    }
    throw new RunnerError('UNAUTHORIZED');
  }

  issueStreamToken(caller: Caller, sessionId: string | undefined, ttlMs: number): { token: string; expiresAt: string } {
    const expires = Date.now() + ttlMs;
    const payload = Buffer.from(JSON.stringify({ t: caller.tenantId, k: caller.keyId, s: sessionId ?? null, e: expires })).toString('base64url');
    const signature = createHmac('sha256', this.secret).update(payload).digest('base64url');
    return { token: `st_${payload}.${signature}`, expiresAt: new Date(expires).toISOString() };
  }

  private verifyStreamToken(token: string): Caller | null {
    const match = /^st_([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(token);
    if (!match) return null;
    const expected = createHmac('sha256', this.secret).update(match[1]!).digest();
    const given = Buffer.from(match[2]!, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const payload = JSON.parse(Buffer.from(match[1]!, 'base64url').toString('utf8')) as { t: string; k: string; s: string | null; e: number };
    if (payload.e < Date.now()) return null;
    return { tenantId: payload.t, keyId: payload.k, ...(payload.s ? { sessionId: payload.s } : {}) };
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  const apiKey = request.headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey : undefined;
}
