/**
 * A stand-in for a product's own API (the seed's mock-api.mjs): Acme's users
 * and plans, behind a bearer token. The demo and the tests start it; it
 * records what it was sent so a test can check that a tool passed the token.
 * Run alone: `node examples/support-bot/mock-api.ts` (PORT, ACME_API_TOKEN).
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockApiRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
}

export interface MockAcmeApi {
  url: string;
  port: number;
  requests: MockApiRequest[];
  close(): Promise<void>;
}

const USERS = [
  { name: 'Alice Chen', email: 'alice@startup.io', plan: 'growth', callsRemaining: 188 },
  { name: 'Bob Okafor', email: 'bob@bigco.com', plan: 'enterprise', callsRemaining: 49_210 },
];
const PLANS = [
  { id: 'free', monthlyCalls: 100 },
  { id: 'growth', monthlyCalls: 1_000 },
  { id: 'enterprise', monthlyCalls: 100_000 },
];

export async function startMockAcmeApi(options: { port?: number; host?: string; token: string }): Promise<MockAcmeApi> {
  const requests: MockApiRequest[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://mock');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers });
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${options.token}`) return send(401, { error: 'invalid token' });
    if (url.pathname === '/plans') return send(200, PLANS);
    if (url.pathname === '/users') {
      const user = USERS.find((u) => u.email === url.searchParams.get('email'));
      return user ? send(200, user) : send(404, { error: 'no such user' });
    }
    return send(404, { error: 'not found' });
  });
  // 0.0.0.0: the sandbox reaches it as host.docker.internal (through the gateway's proxy).
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '0.0.0.0', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://host.docker.internal:${port}`,
    port,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

if (import.meta.main) {
  const api = await startMockAcmeApi({ port: Number(process.env.PORT ?? 3457), token: process.env.ACME_API_TOKEN ?? 'acme-demo-token' });
  console.log(`mock Acme API on port ${api.port}`);
}
