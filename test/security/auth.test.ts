/**
 * API authentication and tenants: keys on every route but /health, on
 * WebSocket upgrades and SSE too; short-lived stream tokens bound to one
 * tenant and session; tenants that cannot see each other's sessions, tasks,
 * events or files; and a server with no key that stays on localhost.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { ApiAuth } from '../../src/http/auth.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { bridgeGateway, readSse, sentinel, sessionContainer, spawnRunner, tryWebSocket } from './support.ts';

const KEY_A = 'key-of-tenant-a-7c1e9d5b3f';
const KEY_B = 'key-of-tenant-b-2a8f6e4c0d';
const A = { authorization: `Bearer ${KEY_A}` };
const B = { 'x-api-key': KEY_B };

describe('authentication and tenants', () => {
  let h: Harness;
  let taskOfB: string;
  let taskOfA: string;

  const wsUrl = (path: string) => `${h.url.replace('http', 'ws')}${path}`;

  before(async () => {
    h = await startHarness({
      env: { API_KEYS: `tenantA:${KEY_A},tenantB:${KEY_B}` },
      rules: [
        rule('write-who-a', bash('echo tenant-a-was-here > who.txt'), text('wrote A')),
        rule('write-who-b', bash('echo tenant-b-was-here > who.txt'), text('wrote B')),
        rule('hello-auth', text('hello')),
      ],
    });
    const a = await h.api('/task', { method: 'POST', headers: A, json: { sessionId: 'shared', message: 'write-who-a' } });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    taskOfA = a.body.taskId;
    const b = await h.api('/task', { method: 'POST', headers: B, json: { sessionId: 'shared', message: 'write-who-b' } });
    assert.equal(b.status, 200, JSON.stringify(b.body));
    const bOnly = await h.api('/task', { method: 'POST', headers: B, json: { sessionId: 'b-only', message: 'write-who-b' } });
    assert.equal(bOnly.status, 200, JSON.stringify(bOnly.body));
    taskOfB = bOnly.body.taskId;
  });
  after(async () => h?.close());

  test('without a valid key every route but /health answers 401 with the JSON error shape', async () => {
    const routes: Array<[string, string]> = [
      ['GET', '/sessions'], ['POST', '/task'], ['GET', '/metrics'], ['GET', '/session/shared'], ['GET', `/tasks/${taskOfA}`],
      ['GET', '/session/shared/files'], ['POST', '/auth/stream-token'], ['DELETE', '/session/shared'], ['POST', '/task/shared/abort'],
    ];
    for (const headers of [{}, { authorization: 'Bearer wrong-key' }, { authorization: `Bearer ${KEY_A}x` }, { authorization: `Bearer ${KEY_A.slice(0, -1)}` }, { 'x-api-key': '' }, { authorization: KEY_A }]) {
      for (const [method, path] of routes) {
        const res = await h.api(path, { method, headers, ...(method === 'POST' ? { json: {} } : {}) });
        assert.equal(res.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
        assert.deepEqual(res.body, { error: { code: 'UNAUTHORIZED', message: 'A valid API key is required.' } });
      }
    }
    const health = await h.api('/health');
    assert.equal(health.status, 200);
    // Both header forms work.
    assert.equal((await h.api('/sessions', { headers: A })).status, 200);
    assert.equal((await h.api('/sessions', { headers: B })).status, 200);
    // The shared session is still there: none of the refused requests touched it.
    assert.equal((await h.api('/session/shared', { headers: A })).status, 200);
  });

  test('a WebSocket upgrade without a valid key is refused with 401 and never opened; SSE likewise', async () => {
    for (const headers of [{}, { authorization: 'Bearer nope' }]) {
      const ws = await tryWebSocket(wsUrl('/stream/shared'), headers as Record<string, string>);
      assert.equal(ws.opened, false);
      assert.equal(ws.status, 401);
      assert.equal(JSON.parse(ws.body!).error.code, 'UNAUTHORIZED');
      assert.equal(ws.serverClosed, true, 'the server kept the refused upgrade\'s socket open');
    }
    const withKey = await tryWebSocket(wsUrl('/stream/shared'), A);
    assert.equal(withKey.opened, true);
    withKey.close();
    for (const path of ['/session/shared/events', `/tasks/${taskOfA}/events`]) {
      const sse = await readSse(`${h.url}${path}`, {}, () => true);
      assert.equal(sse.status, 401, path);
      assert.equal(JSON.parse(sse.text).error.code, 'UNAUTHORIZED');
    }
  });

  test('a stream token opens the streams of its own session only, is no API key, and expires', async (t) => {
    const issued = await h.api('/auth/stream-token', { method: 'POST', headers: A, json: { sessionId: 'shared', ttlSeconds: 60 } });
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const token = issued.body.token as string;
    assert.match(token, /^st_/);
    // Its own session: WS and both SSE routes.
    const ws = await tryWebSocket(wsUrl(`/stream/shared?token=${token}`));
    assert.equal(ws.opened, true);
    ws.close();
    const sse = await readSse(`${h.url}/session/shared/events?token=${token}`, {}, (s) => s.includes('event: connected'));
    assert.equal(sse.status, 200);
    const taskSse = await readSse(`${h.url}/tasks/${taskOfA}/events?token=${token}`, {}, (s) => s.includes('task_complete'));
    assert.equal(taskSse.status, 200);
    // Another session of the same tenant: refused (404, as if it did not exist), on every stream route.
    const other = await h.api('/task', { method: 'POST', headers: A, json: { sessionId: 'a-other', message: 'hello-auth' } });
    assert.equal(other.status, 200);
    const wsOther = await tryWebSocket(wsUrl(`/stream/a-other?token=${token}`));
    assert.equal(wsOther.opened, false);
    assert.equal(wsOther.status, 404);
    assert.equal((await readSse(`${h.url}/session/a-other/events?token=${token}`, {}, () => true)).status, 404);
    assert.equal((await readSse(`${h.url}/tasks/${other.body.taskId}/events?token=${token}`, {}, () => true)).status, 404);
    // Another tenant's task: refused.
    assert.equal((await readSse(`${h.url}/tasks/${taskOfB}/events?token=${token}`, {}, () => true)).status, 404);
    // Not an API key: no other route, in the query or as a bearer.
    assert.equal((await h.api(`/sessions?token=${token}`)).status, 401);
    assert.equal((await h.api('/session/shared', { headers: { authorization: `Bearer ${token}` } })).status, 401);
    assert.equal((await h.api(`/session/shared/files?token=${token}`)).status, 401);
    // A forged or altered token is refused.
    const forged = token.replace(/\.(.)/, (_m, c: string) => `.${c === 'A' ? 'B' : 'A'}`);
    assert.equal((await tryWebSocket(wsUrl(`/stream/shared?token=${forged}`))).status, 401);
    // Expired: the same token an hour later.
    const now = Date.now();
    t.mock.method(Date, 'now', () => now + 3_600_000);
    try {
      const late = await tryWebSocket(wsUrl(`/stream/shared?token=${token}`));
      assert.equal(late.opened, false);
      assert.equal(late.status, 401);
      assert.equal((await readSse(`${h.url}/session/shared/events?token=${token}`, {}, () => true)).status, 401);
    } finally {
      t.mock.restoreAll();
    }
    // A token names a session of its own tenant (which may not exist yet): B's session of that id stays out of reach.
    const foreign = await h.api('/auth/stream-token', { method: 'POST', headers: A, json: { sessionId: 'b-only' } });
    assert.equal(foreign.status, 200);
    const ofA = await tryWebSocket(wsUrl(`/stream/b-only?token=${foreign.body.token}`));
    assert.equal(ofA.opened, true);
    const first = await eventually(() => ofA.frames[0] as { type: string; turns: number; lastSeq: number } | undefined, 5_000, 'the connected frame');
    assert.deepEqual([first.type, first.turns, first.lastSeq], ['connected', 0, 0], 'a stream of A\'s (empty) session, not B\'s');
    ofA.close();
  });

  test("tenant A gets 404 for everything of tenant B's (a stream of B's session id shows A nothing of B's), and changes nothing", async () => {
    const probes: Array<[string, string, unknown?]> = [
      ['GET', '/session/b-only'], ['GET', '/session/b-only/tasks'], ['GET', '/session/b-only/files'], ['GET', '/session/b-only/files/who.txt'],
      ['PUT', '/session/b-only/files/planted.txt', 'x'], ['DELETE', '/session/b-only/files/who.txt'], ['POST', '/task/b-only/abort', {}],
      ['POST', '/session/b-only/reset', {}], ['DELETE', '/session/b-only'], ['GET', `/tasks/${taskOfB}`], ['POST', `/tasks/${taskOfB}/abort`, {}],
    ];
    for (const [method, path, body] of probes) {
      const init: RequestInit & { json?: unknown } = { method, headers: A };
      if (typeof body === 'string') Object.assign(init, { body, headers: { ...A, 'content-type': 'application/octet-stream' } });
      else if (body !== undefined) init.json = body;
      const res = await h.api(path, init);
      assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error.code, /^(SESSION|TASK)_NOT_FOUND$/);
    }
    assert.equal((await readSse(`${h.url}/tasks/${taskOfB}/events`, A, () => true)).status, 404);
    // A session stream may open before its session exists (it then waits for the caller's own session of
    // that id): for tenant A, B's session is such a session. Either way nothing of B's may come through.
    const secretOfB = /tenant-b-was-here|write-who-b|wrote B/;
    const sse = await readSse(`${h.url}/session/b-only/events?after=0`, A, () => false, 1500);
    assert.ok(sse.status === 404 || (sse.status === 200 && !secretOfB.test(sse.text) && !sse.text.includes(taskOfB)), `${sse.status} ${sse.text}`);
    if (sse.status === 200) assert.match(sse.text, /"turns":0/);
    const ws = await tryWebSocket(wsUrl('/stream/b-only?after=0'), A);
    if (ws.opened) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      ws.close();
      const frames = JSON.stringify(ws.frames);
      assert.ok(!secretOfB.test(frames) && !frames.includes(taskOfB), frames);
      assert.deepEqual(ws.frames.map((f) => (f as { type: string }).type), ['connected']);
    } else {
      assert.equal(ws.status, 404);
    }
    // Tenant B's own stream of it does show its events (so the checks above can fail).
    const own = await readSse(`${h.url}/session/b-only/events?after=0`, B, (text) => text.includes('task_complete'), 5000);
    assert.match(own.text, secretOfB);
    const listA = await h.api('/sessions', { headers: A });
    const idsOfA = listA.body.map((s: { sessionId: string }) => s.sessionId);
    assert.ok(idsOfA.includes('shared') && !idsOfA.includes('b-only'), JSON.stringify(idsOfA));
    // B's session is untouched: its file, its task, no planted file.
    const file = await h.api('/session/b-only/files/who.txt', { headers: B });
    assert.equal(file.status, 200);
    assert.equal(file.body, 'tenant-b-was-here\n');
    assert.equal((await h.api('/session/b-only/files/planted.txt', { headers: B })).status, 404);
    assert.equal((await h.api(`/tasks/${taskOfB}`, { headers: B })).body.status, 'succeeded');
  });

  test('the same session id in two tenants is two sessions: two containers, two workspaces', async () => {
    const fromA = await h.api('/session/shared/files/who.txt', { headers: A });
    const fromB = await h.api('/session/shared/files/who.txt', { headers: B });
    assert.equal(fromA.body, 'tenant-a-was-here\n');
    assert.equal(fromB.body, 'tenant-b-was-here\n');
    const containerA = await sessionContainer(h.runnerId, 'shared', 'tenantA');
    const containerB = await sessionContainer(h.runnerId, 'shared', 'tenantB');
    assert.ok(containerA && containerB);
    assert.notEqual(containerA.Id, containerB.Id);
    assert.equal((await h.api(`/tasks/${taskOfA}`, { headers: B })).status, 404);
  });
});

describe('API keys are compared in constant time', () => {
  test('every configured key is compared, as an equal-length digest, whether the key matches, misses or is absent', (t) => {
    const auth = new ApiAuth([{ tenantId: 'a', key: 'first-key-123456' }, { tenantId: 'b', key: 'second-key-abcdef' }, { tenantId: 'c', key: 'k' }]);
    const calls: Array<[number, number]> = [];
    const original = crypto.timingSafeEqual;
    t.mock.method(crypto, 'timingSafeEqual', (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      calls.push([a.byteLength, b.byteLength]);
      return original(a, b);
    });
    syncBuiltinESMExports();
    try {
      const request = (authorization?: string) => ({ headers: authorization ? { authorization } : {}, query: {}, ip: '127.0.0.1', url: '/sessions' }) as never;
      for (const [presented, tenant] of [['first-key-123456', 'a'], ['second-key-abcdef', 'b'], ['k', 'c'], ['first-key-12345', null], ['x'.repeat(5000), null]] as const) {
        calls.length = 0;
        if (tenant) assert.equal(auth.authenticate(request(`Bearer ${presented}`), false).tenantId, tenant);
        else assert.throws(() => auth.authenticate(request(`Bearer ${presented}`), false), { code: 'UNAUTHORIZED' });
        assert.deepEqual(calls, [[32, 32], [32, 32], [32, 32]], presented);
      }
    } finally {
      t.mock.restoreAll();
      syncBuiltinESMExports();
    }
  });

  test('a stream token expires at its time to live', (t) => {
    const auth = new ApiAuth([{ tenantId: 'a', key: 'first-key-123456' }]);
    const { token } = auth.issueStreamToken({ tenantId: 'a', keyId: 'k' }, 's1', 10_000);
    const request = { headers: {}, query: { token }, ip: '127.0.0.1', url: `/stream/s1?token=${token}` } as never;
    assert.equal(auth.authenticate(request, true).tenantId, 'a');
    const now = Date.now();
    t.mock.method(Date, 'now', () => now + 10_001);
    assert.throws(() => auth.authenticate(request, true), { code: 'UNAUTHORIZED' });
  });
});

describe('with no API key configured', () => {
  test('the server binds 127.0.0.1 only, even when asked for 0.0.0.0, and says so in its log', async () => {
    const config = loadConfig({ HOST: '0.0.0.0' });
    assert.equal(config.host, '127.0.0.1');
    assert.match(config.warnings.join('\n'), /listening on 127\.0\.0\.1 instead of 0\.0\.0\.0/);
    assert.equal(loadConfig({}).host, '127.0.0.1');
    assert.match(loadConfig({}).warnings.join('\n'), /No API_KEYS are configured: listening on 127\.0\.0\.1 only/);
    // Only an explicit opt-in listens unauthenticated beyond loopback, and it says so.
    const remote = loadConfig({ HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED_REMOTE: 'true' });
    assert.equal(remote.host, '0.0.0.0');
    assert.match(remote.warnings.join('\n'), /0\.0\.0\.0 accepts every caller/);
    assert.equal(loadConfig({ API_KEYS: 'k-123456789' }).host, '0.0.0.0');
    const runner = await spawnRunner({ upstreamKey: sentinel('sk-ant-nokeys'), rules: [], env: { HOST: '0.0.0.0' } });
    try {
      assert.match(runner.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(runner.logs(), /No API_KEYS are configured: listening on 127\.0\.0\.1 instead of 0\.0\.0\.0/);
      assert.equal((await fetch(`${runner.url}/health`)).status, 200);
      // Not on the bridge address: a container could reach that.
      const gateway = await bridgeGateway();
      await assert.rejects(fetch(`http://${gateway}:${runner.port}/health`, { signal: AbortSignal.timeout(3000) }));
    } finally {
      await runner.close();
    }
  });
});
