/**
 * A web page cannot drive a runner (issue 9, point 9). Without API keys the
 * runner serves only loopback Host names and ALLOWED_HOSTS (DNS rebinding);
 * in every mode a WebSocket or SSE handshake and every state-changing request
 * from a foreign Origin is refused; the runner's own origin, listed
 * CORS_ORIGINS and callers without Origin keep working, and listed origins
 * get CORS answers (preflights before authentication).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rule, text } from '../../src/scripted-model/index.ts';
import { rawRequest } from '../sessions/support.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { tryWebSocket } from './support.ts';

const EVIL = 'http://evil.example';
const APP = 'https://app.example.com';

/** An SSE handshake with any headers (Host included): its status, headers and the first bytes of its body. */
async function sseHandshake(baseUrl: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: import('node:http').IncomingHttpHeaders; text: string }> {
  const { request } = await import('node:http');
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      let body = '';
      const done = (): void => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: body });
      };
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
        if (res.statusCode === 200 && body.includes('event: connected')) done();
      });
      res.on('end', done);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('without API keys: Host and Origin', () => {
  let h: Harness;
  let port: string;
  const wsUrl = (path: string) => `${h.url.replace('http', 'ws')}${path}`;

  before(async () => {
    h = await startHarness({ env: { ALLOWED_HOSTS: 'runner.internal,[fd00::7]', CORS_ORIGINS: `${APP},http://localhost:8080/` }, rules: [rule('hello-origin', text('hi'))] });
    port = new URL(h.url).port;
    const first = await h.api('/task', { method: 'POST', json: { sessionId: 'kept', message: 'hello-origin' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
  });
  after(async () => h?.close());

  test('a foreign Host is refused with 403 HOST_NOT_ALLOWED on every route, /health included (DNS rebinding)', async () => {
    for (const host of [`evil.example:${port}`, 'evil.example', `localhost.evil.example:${port}`, `127.0.0.1.evil.example:${port}`, `runner.internal.evil.example:${port}`, `10.0.0.1:${port}`, `[fd00::8]:${port}`, 'local host']) {
      for (const [method, path] of [['GET', '/health'], ['GET', '/sessions'], ['GET', '/session/kept'], ['POST', '/task'], ['DELETE', '/session/kept'], ['GET', '/session/kept/events']] as const) {
        const res = await rawRequest(h.url, method, path, method === 'POST' ? JSON.stringify({ sessionId: 'rebound', message: 'hello-origin' }) : undefined, { host, 'content-type': 'application/json' });
        assert.equal(res.status, 403, `${method} ${path} Host: ${host}`);
        assert.equal(res.json.error.code, 'HOST_NOT_ALLOWED');
      }
    }
    const ws = await tryWebSocket(wsUrl('/stream/kept'), { host: `evil.example:${port}` });
    assert.equal(ws.opened, false);
    assert.equal(ws.status, 403);
    assert.equal(JSON.parse(ws.body!).error.code, 'HOST_NOT_ALLOWED');
    assert.equal(ws.serverClosed, true);
    // Nothing was done for the refused callers.
    assert.equal((await h.api('/session/rebound')).status, 404);
    assert.equal((await h.api('/session/kept')).status, 200);
  });

  test('loopback names with any port, and ALLOWED_HOSTS, are served', async () => {
    for (const host of [`localhost:${port}`, 'localhost', `127.0.0.1:${port}`, `127.12.0.250:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`, `runner.internal:${port}`, 'Runner.Internal', `[fd00::7]:${port}`]) {
      const res = await rawRequest(h.url, 'GET', '/session/kept', undefined, { host });
      assert.equal(res.status, 200, `Host: ${host}: ${res.body.toString()}`);
    }
  });

  test('a WebSocket from a foreign Origin is refused before it opens and sees no event; the same origin and no Origin open', async () => {
    for (const origin of [EVIL, 'null', `http://127.0.0.1:${Number(port) + 1}`, `https://127.0.0.1:${port}`, 'http://app.example.com']) {
      const ws = await tryWebSocket(wsUrl('/stream/kept?after=0'), { origin });
      assert.equal(ws.opened, false, origin);
      assert.equal(ws.status, 403, origin);
      assert.equal(JSON.parse(ws.body!).error.code, 'ORIGIN_NOT_ALLOWED');
      assert.equal(ws.serverClosed, true);
      assert.deepEqual(ws.frames, []);
    }
    for (const headers of [{ origin: `http://127.0.0.1:${port}` }, { origin: APP }, {}] as Array<Record<string, string>>) {
      const ws = await tryWebSocket(wsUrl('/stream/kept?after=0'), headers);
      assert.equal(ws.opened, true, JSON.stringify(headers));
      ws.close();
    }
    // The page at http://localhost:<port> is the runner's own origin when it names the runner so.
    const local = await tryWebSocket(`ws://localhost:${port}/stream/kept`, { origin: `http://localhost:${port}` });
    assert.equal(local.opened, true);
    local.close();
  });

  test('SSE from a foreign Origin is refused; from the same or a listed origin it streams, with CORS headers for the listed one', async () => {
    for (const path of ['/session/kept/events?after=0', '/session/not-yet/events']) {
      const refused = await sseHandshake(h.url, path, { origin: EVIL });
      assert.equal(refused.status, 403);
      assert.equal(JSON.parse(refused.text).error.code, 'ORIGIN_NOT_ALLOWED');
    }
    const same = await sseHandshake(h.url, '/session/kept/events?after=0', { origin: `http://127.0.0.1:${port}` });
    assert.equal(same.status, 200);
    assert.match(same.text, /event: connected/);
    assert.match(String(same.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const listed = await sseHandshake(h.url, '/session/kept/events?after=0', { origin: APP });
    assert.equal(listed.status, 200);
    assert.equal(listed.headers['access-control-allow-origin'], APP);
    assert.match(String(listed.headers.vary), /Origin/i);
  });

  test('state-changing requests from a foreign Origin are refused and change nothing; reads are answered without CORS headers', async () => {
    const calls: Array<[string, string, string | undefined]> = [
      ['POST', '/task', JSON.stringify({ sessionId: 'from-evil', message: 'hello-origin' })],
      ['POST', '/session/kept/reset', undefined],
      ['POST', '/task/kept/abort', undefined],
      ['POST', '/auth/stream-token', '{}'],
      ['DELETE', '/session/kept', undefined],
      ['PUT', '/session/kept/files/evil.txt', 'pwned'],
      ['DELETE', '/session/kept/files/AGENTS.md', undefined],
      ['PATCH', '/session/kept', '{}'],
    ];
    for (const [method, path, body] of calls) {
      // A form post (text/plain) is what a page can send without a preflight: it is refused too.
      for (const type of ['application/json', 'text/plain']) {
        const res = await rawRequest(h.url, method, path, body, { origin: EVIL, 'content-type': type });
        assert.equal(res.status, 403, `${method} ${path} ${type}`);
        assert.equal(res.json.error.code, 'ORIGIN_NOT_ALLOWED');
        assert.equal(res.headers['access-control-allow-origin'], undefined);
      }
    }
    assert.equal((await h.api('/session/from-evil')).status, 404);
    const kept = await h.api('/session/kept');
    assert.equal(kept.status, 200);
    assert.equal(kept.body.turns, 1, 'the session was not reset');
    assert.equal((await h.api('/session/kept/files/evil.txt')).status, 404);
    assert.equal((await h.api('/session/kept/files/AGENTS.md')).status, 200);
    // A read from a foreign page is answered, but without Access-Control-Allow-Origin its page cannot read it.
    const read = await rawRequest(h.url, 'GET', '/sessions', undefined, { origin: EVIL });
    assert.equal(read.status, 200);
    assert.equal(read.headers['access-control-allow-origin'], undefined);
    // A preflight from a foreign page is refused.
    const preflight = await rawRequest(h.url, 'OPTIONS', '/task', undefined, { origin: EVIL, 'access-control-request-method': 'POST' });
    assert.equal(preflight.status, 403);
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
  });

  test('the same origin, a listed origin (trailing slash and default port as browsers send them) and no Origin keep working', async () => {
    for (const origin of [`http://127.0.0.1:${port}`, APP, `${APP}:443`, 'http://localhost:8080', 'HTTPS://APP.EXAMPLE.COM', undefined]) {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...(origin ? { origin } : {}) };
      const token = await rawRequest(h.url, 'POST', '/auth/stream-token', '{}', headers);
      assert.equal(token.status, 200, `${origin}: ${token.body.toString()}`);
      const task = await rawRequest(h.url, 'POST', '/task', JSON.stringify({ sessionId: 'kept', message: 'hello-origin' }), headers);
      assert.equal(task.status, 200, `${origin}: ${task.body.toString()}`);
      const listed = origin !== undefined && origin !== `http://127.0.0.1:${port}`;
      assert.equal(task.headers['access-control-allow-origin'], listed ? origin : undefined, String(origin));
      if (listed) assert.match(String(task.headers['access-control-expose-headers']), /X-Request-Id/i);
    }
  });

  test('a listed origin\'s preflight is answered with the methods and headers the API uses', async () => {
    const res = await rawRequest(h.url, 'OPTIONS', '/task', undefined, {
      origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,idempotency-key',
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], APP);
    assert.match(String(res.headers.vary), /Origin/i);
    const methods = String(res.headers['access-control-allow-methods']).split(/,\s*/);
    for (const method of ['GET', 'POST', 'PUT', 'DELETE']) assert.ok(methods.includes(method), method);
    const allowed = String(res.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/);
    for (const header of ['authorization', 'x-api-key', 'content-type', 'idempotency-key', 'last-event-id']) assert.ok(allowed.includes(header), header);
  });
});

describe('with API keys: any Host, the Origin still checked, preflights before authentication', () => {
  const KEY = 'key-origin-test-5d1c8e2b9a';
  let h: Harness;
  before(async () => {
    h = await startHarness({ env: { API_KEYS: KEY, CORS_ORIGINS: APP }, rules: [rule('hello-origin', text('hi'))] });
  });
  after(async () => h?.close());

  test('a public Host name is served to a caller with a key', async () => {
    const res = await rawRequest(h.url, 'GET', '/sessions', undefined, { host: 'runner.example.com', authorization: `Bearer ${KEY}` });
    assert.equal(res.status, 200);
  });

  test('a foreign Origin is refused even with a valid key; WebSocket and SSE too', async () => {
    const res = await rawRequest(h.url, 'POST', '/task', JSON.stringify({ sessionId: 'k', message: 'hello-origin' }), { origin: EVIL, authorization: `Bearer ${KEY}`, 'content-type': 'application/json' });
    assert.equal(res.status, 403);
    assert.equal(res.json.error.code, 'ORIGIN_NOT_ALLOWED');
    const ws = await tryWebSocket(`${h.url.replace('http', 'ws')}/stream/k`, { origin: EVIL, authorization: `Bearer ${KEY}` });
    assert.equal(ws.opened, false);
    assert.equal(ws.status, 403);
    const sse = await sseHandshake(h.url, '/session/k/events', { origin: EVIL, authorization: `Bearer ${KEY}` });
    assert.equal(sse.status, 403);
  });

  test('a listed origin\'s preflight needs no key; its request needs one, and can read the 401', async () => {
    const preflight = await rawRequest(h.url, 'OPTIONS', '/task', undefined, { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], APP);
    const unauthorized = await rawRequest(h.url, 'POST', '/task', JSON.stringify({ sessionId: 'k', message: 'hello-origin' }), { origin: APP, 'content-type': 'application/json' });
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.headers['access-control-allow-origin'], APP);
    const ok = await rawRequest(h.url, 'POST', '/task', JSON.stringify({ sessionId: 'k', message: 'hello-origin' }), { origin: APP, authorization: `Bearer ${KEY}`, 'content-type': 'application/json' });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(ok.headers['access-control-allow-origin'], APP);
    // An OPTIONS that is no listed origin's preflight still needs a key.
    assert.equal((await rawRequest(h.url, 'OPTIONS', '/task', undefined, {})).status, 401);
  });
});
