/** A webhook receiver on 127.0.0.1 for tests, and the spec's signature check written out with node:crypto. */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';

export const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Responses held open (a hanging receiver); answered by release(). */
  release(): void;
  close(): Promise<void>;
}

/** `answer(n)` for the n-th request (0-based): a status, or 'hang' to never answer until release(). */
export async function startReceiver(answer: (n: number) => number | 'hang', port = 0): Promise<Receiver> {
  const received: Received[] = [];
  const held: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = received.length;
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const what = answer(n);
      if (what === 'hang') held.push(res);
      else res.writeHead(what).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}/hook?source=test`,
    received,
    release: () => { for (const res of held.splice(0)) res.writeHead(200).end(); },
    close: () => new Promise<void>((resolve) => {
      for (const res of held.splice(0)) res.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Standard Webhooks: HMAC-SHA256 of "id.timestamp.body" keyed by the base64 part of the secret, one of the "v1,…" entries. */
export function signatureIsValid(received: Received, secret = WEBHOOK_SECRET): boolean {
  const id = String(received.headers['webhook-id']);
  const timestamp = String(received.headers['webhook-timestamp']);
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = Buffer.from(createHmac('sha256', key).update(`${id}.${timestamp}.${received.body}`).digest('base64'));
  return String(received.headers['webhook-signature']).split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    const given = Buffer.from(signature ?? '');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}
