/**
 * A stand-in for a product's own API (the seed's mock-api.mjs): Acme's users
 * and plans, behind a bearer token. The demo and the tests start it; it
 * records what it was sent so a test can check that a tool passed the token.
 * Run alone: `node examples/support-bot/mock-api.ts` (PORT, ACME_API_TOKEN).
 *
 * It also serves "Acme admin" at /admin, a small web UI (sign in, look up a
 * customer, list their orders, refund one, export) whose fetch calls carry a
 * bearer token, a session cookie and a token in a query string: a browser
 * drives it to record a realistic HAR for `claude-runner tools from-har`.
 */
import { randomBytes } from 'node:crypto';
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
const CUSTOMERS = USERS.map((user, index) => ({ id: `cus_${index + 1}`, name: user.name, email: user.email, plan: user.plan }));
const ORDERS = [
  { id: 'ord_1001', customerId: 'cus_1', amount: 49, currency: 'USD', status: 'paid' },
  { id: 'ord_1002', customerId: 'cus_1', amount: 120, currency: 'USD', status: 'paid' },
  { id: 'ord_2001', customerId: 'cus_2', amount: 4_900, currency: 'USD', status: 'paid' },
];
export const ADMIN_LOGIN = { email: 'admin@acme.test', password: 'correct-horse-battery-staple' };
const PLANS = [
  { id: 'free', monthlyCalls: 100 },
  { id: 'growth', monthlyCalls: 1_000 },
  { id: 'enterprise', monthlyCalls: 100_000 },
];

export async function startMockAcmeApi(options: { port?: number; host?: string; token: string }): Promise<MockAcmeApi> {
  const requests: MockApiRequest[] = [];
  const orders = ORDERS.map((order) => ({ ...order }));
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://mock');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers });
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (url.pathname === '/admin' || url.pathname.startsWith('/admin/')) {
      let body = '';
      for await (const chunk of req) body += chunk;
      try {
        return adminRoute({ method: req.method ?? 'GET', url, authorization: req.headers.authorization, body, res, send, token: options.token, orders });
      } catch {
        return send(400, { error: 'bad request' });
      }
    }
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

interface AdminRequest {
  method: string;
  url: URL;
  authorization: string | undefined;
  body: string;
  res: import('node:http').ServerResponse;
  send(status: number, body: unknown): void;
  token: string;
  orders: typeof ORDERS;
}

/** Acme admin: the page, its sign-in (token + session cookie), and the calls it makes. */
function adminRoute({ method, url, authorization, body, res, send, token, orders }: AdminRequest): void {
  const path = url.pathname;
  if (path === '/admin' && method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(ADMIN_PAGE);
    return;
  }
  if (path === '/admin/api/login' && method === 'POST') {
    const login = JSON.parse(body || '{}') as { email?: string; password?: string };
    if (login.email !== ADMIN_LOGIN.email || login.password !== ADMIN_LOGIN.password) return send(401, { error: 'wrong email or password' });
    res.setHeader('set-cookie', `acme_session=sess-${randomBytes(12).toString('hex')}; Path=/admin; HttpOnly; SameSite=Strict`);
    return send(200, { token, user: { email: ADMIN_LOGIN.email, role: 'admin' } });
  }
  // The export link is opened, not fetched: its token travels in the query string.
  const bearer = path === '/admin/api/orders/export' ? url.searchParams.get('access_token') : authorization?.replace(/^Bearer /, '');
  if (bearer !== token) return send(401, { error: 'invalid token' });
  if (path === '/admin/api/customers' && method === 'GET') {
    const customer = CUSTOMERS.find((c) => c.email === url.searchParams.get('email'));
    return customer ? send(200, customer) : send(404, { error: 'no such customer' });
  }
  const customerOrders = /^\/admin\/api\/customers\/([\w-]+)\/orders$/.exec(path);
  if (customerOrders && method === 'GET') return send(200, orders.filter((o) => o.customerId === customerOrders[1]));
  const refund = /^\/admin\/api\/orders\/([\w-]+)\/refund$/.exec(path);
  if (refund && method === 'POST') {
    const order = orders.find((o) => o.id === refund[1]);
    if (!order) return send(404, { error: 'no such order' });
    const { amount, reason } = JSON.parse(body || '{}') as { amount?: number; reason?: string };
    if (typeof amount !== 'number' || amount <= 0 || amount > order.amount) return send(400, { error: `amount must be between 0 and ${order.amount}` });
    order.status = amount === order.amount ? 'refunded' : 'partially_refunded';
    return send(200, { orderId: order.id, refunded: amount, reason: reason ?? null, status: order.status });
  }
  if (path === '/admin/api/orders/export' && method === 'GET') return send(200, orders.filter((o) => o.customerId === url.searchParams.get('customer')));
  return send(404, { error: 'not found' });
}

const ADMIN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme admin</title></head>
<body>
<h1>Acme admin</h1>
<form id="login"><input name="email" placeholder="email"> <input name="password" type="password" placeholder="password">
<button>Sign in</button></form>
<form id="lookup" hidden><input name="email" placeholder="customer email"> <button>Look up</button></form>
<div id="customer"></div>
<button id="orders" hidden>List orders</button>
<ul id="order-list"></ul>
<a id="export" hidden>Export orders</a>
<pre id="result"></pre>
<script>
let token = null;
let customer = null;
const show = (value) => { document.querySelector('#result').textContent = JSON.stringify(value, null, 2); };
const api = async (path, init = {}) => {
  const response = await fetch(path, { ...init, credentials: 'same-origin',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token, ...(init.headers || {}) } });
  const body = await response.json();
  show(body);
  return body;
};
document.querySelector('#login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch('/admin/api/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: form.get('email'), password: form.get('password') }) });
  const body = await response.json();
  if (!response.ok) return show(body);
  token = body.token;
  document.querySelector('#lookup').hidden = false;
  show({ signedIn: body.user.email });
});
document.querySelector('#lookup').addEventListener('submit', async (event) => {
  event.preventDefault();
  customer = await api('/admin/api/customers?email=' + encodeURIComponent(new FormData(event.target).get('email')));
  document.querySelector('#customer').textContent = customer.name + ' (' + customer.plan + ')';
  document.querySelector('#orders').hidden = false;
  const link = document.querySelector('#export');
  link.href = '/admin/api/orders/export?customer=' + customer.id + '&access_token=' + encodeURIComponent(token);
  link.hidden = false;
});
document.querySelector('#orders').addEventListener('click', async () => {
  const orders = await api('/admin/api/customers/' + customer.id + '/orders');
  const list = document.querySelector('#order-list');
  list.replaceChildren(...orders.map((order) => {
    const item = document.createElement('li');
    item.textContent = order.id + ' ' + order.amount + ' ' + order.currency + ' ' + order.status + ' ';
    const refund = document.createElement('button');
    refund.textContent = 'Refund ' + order.id;
    refund.addEventListener('click', () => api('/admin/api/orders/' + order.id + '/refund',
      { method: 'POST', body: JSON.stringify({ amount: order.amount, reason: 'requested by customer' }) }));
    item.append(refund);
    return item;
  }));
});
</script>
</body></html>
`;

if (import.meta.main) {
  const api = await startMockAcmeApi({ port: Number(process.env.PORT ?? 3457), token: process.env.ACME_API_TOKEN ?? 'acme-demo-token' });
  console.log(`mock Acme API on port ${api.port}`);
}
