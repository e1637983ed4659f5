/**
 * The model gateway against a hostile sandbox: connections it opens, header
 * and idle deadlines. (Metering and limits: gateway-metering.test.ts; egress:
 * gateway-egress.test.ts; the shared rig: gateway-rig.ts.)
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { type Server as NetServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MODEL, sleep, until, type Upstream, startUpstream, type Rig, startGateway, openTask, call, raw, closedWithin, silentServer, tunnel } from './gateway-rig.ts';

describe('gateway: connections a hostile sandbox opens', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('CONNECT then gone at once, many times, with and without a task: the process lives on and still answers', async () => {
    const hammer = async () => {
      for (let i = 0; i < 30; i++) {
        const socket = await raw(rig);
        socket.on('error', () => undefined);
        socket.write('CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n');
        socket.destroy();
      }
      await sleep(200);
    };
    await hammer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: ['x.example'] } });
    await hammer();
    assert.equal((await call(rig, task.token)).status, 200);
    await rig.gateway.closeTask(task.taskId);
  });

  test("a tunnel's upstream connection is closed when its client goes (a half-open upstream does not linger)", async () => {
    const target = await silentServer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${target.port}`] } });
    try {
      const { socket, status } = await tunnel(rig, `127.0.0.1:${target.port}`);
      assert.equal(status, 200);
      await until(() => target.sockets.length === 1, 2000, 'the upstream connection');
      socket.destroy();
      // The far end only learns that the gateway let go when it writes (a peer's FIN alone leaves it half-open).
      const far = target.sockets[0]!;
      const pings = setInterval(() => far.write('ping'), 50);
      try {
        assert.ok(await closedWithin(far, 2000), "the gateway kept the tunnel's upstream connection");
      } finally {
        clearInterval(pings);
      }
    } finally {
      await rig.gateway.closeTask(task.taskId);
      await target.close();
    }
  });

  test("an absolute-form proxy request's upstream request is closed when its client goes", async () => {
    const held: IncomingMessage[] = [];
    const slow = createServer((req) => { held.push(req); });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const port = (slow.address() as { port: number }).port;
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${port}`] } });
    try {
      const socket = await raw(rig);
      socket.write(`GET http://127.0.0.1:${port}/hang HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      await until(() => held.length === 1, 2000, 'the proxied request');
      const gone = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 2000);
        held[0]!.socket.once('close', () => { clearTimeout(timer); resolve(true); });
      });
      socket.destroy();
      assert.ok(await gone, 'the upstream request outlived its client');
    } finally {
      await rig.gateway.closeTask(task.taskId);
      slow.closeAllConnections();
      slow.close();
    }
  });

  test('at most 32 connections per session socket: the next one is closed at once, the others stay', async () => {
    // A gateway of its own: the other tests' kept-alive connections would count.
    const rig = await startGateway(up);
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 32; i++) sockets.push(await raw(rig));
      const extra = await raw(rig);
      assert.ok(await closedWithin(extra, 1000), 'a 33rd connection was kept');
      await sleep(50);
      assert.ok(sockets.every((s) => !s.destroyed), 'an earlier connection was closed');
    } finally {
      for (const s of sockets) s.destroy();
      await rig.close();
    }
  });

  test('an error of a session socket after it listens (EMFILE on accept) is logged, not thrown', () => {
    const sockets = (rig.gateway as unknown as { sockets: { attached: Map<string, { server: NetServer }> } }).sockets;
    const server = sockets.attached.get('s1')!.server;
    assert.doesNotThrow(() => server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })));
  });

  test('a request body over 16 MiB is refused and never forwarded', async () => {
    const task = await openTask(rig);
    const before = up.seen.length;
    const big = JSON.stringify({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'y'.repeat(17 * 1024 * 1024) }] });
    const answer = await call(rig, task.token, { body: big }).catch((error: Error) => ({ status: 0, body: error.message, json: {} }));
    assert.ok(answer.status === 413 || answer.status === 0, `status ${answer.status}`);
    assert.equal(up.seen.length, before);
    await rig.gateway.closeTask(task.taskId);
  });
});

describe('gateway: header and idle deadlines', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up, { limits: { headersTimeoutMs: 300, idleTimeoutMs: 800 } });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  const dribble = (socket: Socket, text: string) => {
    let i = 0;
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer);
      socket.write(text[i++ % text.length]!);
    }, 50);
    return () => clearInterval(timer);
  };

  test('a connection that dribbles its request head is closed after the header deadline', async () => {
    const socket = await raw(rig);
    socket.on('error', () => undefined);
    socket.write('POST /v1/messages HTTP/1.1\r\n');
    const stop = dribble(socket, 'x-padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n');
    try {
      assert.ok(await closedWithin(socket, 2000), 'a partial request head was kept open');
    } finally {
      stop();
      socket.destroy();
    }
  });

  test('a kept-alive connection that starts a next request head and dribbles it is closed too', async () => {
    const socket = await raw(rig);
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    socket.write('GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n');
    await until(() => /HTTP\/1\.1 404/.test(text), 2000, 'the first answer');
    // An idle kept-alive connection is not cut by the header deadline.
    await sleep(700);
    assert.ok(!socket.destroyed, 'an idle kept-alive connection was closed early');
    socket.write('POST /v1/messages HTTP/1.1\r\n');
    const stop = dribble(socket, 'x-padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n');
    try {
      assert.ok(await closedWithin(socket, 2000), 'a partial second request head was kept open');
    } finally {
      stop();
      socket.destroy();
    }
  });

  test('a CONNECT tunnel with no traffic is closed after the idle timeout', async () => {
    const target = await silentServer();
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${target.port}`] } });
    try {
      const { socket, status } = await tunnel(rig, `127.0.0.1:${target.port}`);
      assert.equal(status, 200);
      assert.ok(await closedWithin(socket, 3000), 'an idle tunnel was kept open');
    } finally {
      await rig.gateway.closeTask(task.taskId);
      await target.close();
    }
  });
});
