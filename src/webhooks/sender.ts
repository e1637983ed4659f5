/**
 * One HTTP attempt of a webhook: POSTs the body to the URL, connecting only
 * to an address the target policy approved just now (a pinned lookup, so DNS
 * rebinding cannot redirect it), within a timeout. Never throws: it answers
 * the status code or the error's text (which never holds the secret).
 */
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { checkWebhookTarget } from './address-policy.ts';

export interface AttemptResult {
  statusCode: number | null;
  error: string | null;
}

export const USER_AGENT = 'claude-runner-webhooks/1.0';

function pinnedLookup(address: string, family: number): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as unknown as LookupFunction;
}

export async function sendWebhook(options: {
  url: string; body: string; headers: Record<string, string>; timeoutMs: number; allowPrivate: boolean;
  /** Aborts at shutdown: the attempt is then not counted. */
  stop?: AbortSignal;
}): Promise<AttemptResult> {
  const target = await checkWebhookTarget(options.url, options.allowPrivate);
  if (!target.allowed) return { statusCode: null, error: `target refused: ${target.reason}` };
  const { address, family } = target.addresses[0]!;
  const url = new URL(options.url);
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<AttemptResult>((resolve) => {
    const request = client.request(url, {
      method: 'POST',
      lookup: pinnedLookup(address, family),
      // A fresh connection each time: a kept-alive one could outlive the check above.
      agent: false,
      signal: options.stop ? AbortSignal.any([options.stop, AbortSignal.timeout(options.timeoutMs)]) : AbortSignal.timeout(options.timeoutMs),
      headers: {
        ...options.headers,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(options.body)),
        'user-agent': USER_AGENT,
      },
    }, (response) => {
      // The receiver's answer is not kept: only its status matters.
      response.resume();
      response.on('end', () => resolve({ statusCode: response.statusCode ?? null, error: null }));
      response.on('error', () => resolve({ statusCode: response.statusCode ?? null, error: null }));
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      const text = error.name === 'AbortError' || error.name === 'TimeoutError'
        ? `timed out after ${options.timeoutMs} ms`
        : error.code ? `${error.code}: ${error.message}` : error.message;
      resolve({ statusCode: null, error: text.slice(0, 500) });
    });
    request.end(options.body);
  });
}
