/**
 * The Docker sandbox driver against the real engine: processes run in a
 * sandbox (stdin and stdout, exit codes, kill, a dropped stream, a stuck
 * engine).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { RunnerError } from '../../src/core/errors.ts';
import type { SandboxHandle } from '../../src/core/ports/sandbox.ts';
import { RUNNER_ID, T, collect, docker, driver, makeDriver, processes, root, run, sh, specFor, useDriverSuite } from './driver-support.ts';

useDriverSuite();

/**
 * A unix socket in front of the Docker engine that forwards every request but
 * those matching `stall`: those get no answer, ever (an engine that is stuck).
 */
async function stallingDockerProxy(stall: RegExp): Promise<{ socketPath: string; stalled(): number; close(): Promise<void> }> {
  const socketPath = path.join(root, `docker-proxy-${randomBytes(3).toString('hex')}.sock`);
  const configured = (docker.modem as unknown as { socketPath?: unknown }).socketPath;
  const engine = typeof configured === 'string' ? configured : '/var/run/docker.sock';
  const clients = new Set<net.Socket>();
  let stalled = 0;
  const server = net.createServer((client) => {
    clients.add(client);
    const upstream = net.connect(engine);
    let holding = false;
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      clients.delete(client);
    };
    client.on('data', (chunk: Buffer) => {
      // a keep-alive connection carries several requests: each starts a chunk
      if (!holding && stall.test(chunk.toString('latin1', 0, 200))) {
        holding = true;
        stalled++;
        upstream.destroy();
      }
      if (!holding) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => { if (!holding) client.write(chunk); });
    client.on('close', end);
    client.on('error', end);
    upstream.on('close', () => { if (!holding) end(); });
    upstream.on('error', () => { if (!holding) end(); });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    stalled: () => stalled,
    close: async () => {
      for (const client of clients) client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}


describe('processes', () => {
  let handle: SandboxHandle;
  before(async () => {
    handle = await driver.ensure(await specFor('proc'));
  });

  test('cat echoes stdin (written before the exec is ready) and exits 0 when stdin ends', T, async () => {
    const big = 'x'.repeat(300_000) + '\nend\n';
    const proc = driver.exec(handle, ['cat'], { cwd: '/workspace', env: {} });
    proc.stdin.write('hello\n'); // synchronously: before the exec exists
    const result = await collect(proc, big, () => '');
    assert.equal(result.stdout, 'hello\n' + big);
    assert.equal(result.code, 0);
    assert.equal(result.signal, null);
    assert.equal(result.exits, 1);
    assert.equal(proc.exitCode, 0);
  });

  test('env, cwd and HOME reach the process; nothing from the host', T, async () => {
    process.env.CLAUDE_RUNNER_TEST_SECRET = 'host-secret';
    const result = await run(handle, ['sh', '-c', 'printf "%s|%s|%s|" "$GREETING" "$HOME" "$(pwd)"; env'], {
      env: { GREETING: 'hi there', ANOTHER: 'x=y' },
      cwd: '/tmp',
    });
    delete process.env.CLAUDE_RUNNER_TEST_SECRET;
    assert.ok(result.stdout.startsWith('hi there|/home/agent|/tmp|'), result.stdout);
    assert.match(result.stdout, /^ANOTHER=x=y$/m);
    assert.doesNotMatch(result.stdout, /host-secret/);
    const names = result.stdout.split('|').at(-1)!.split('\n').filter(Boolean).map((l) => l.split('=')[0]).sort();
    assert.deepEqual(names, ['ANOTHER', 'GREETING', 'HOME', 'HOSTNAME', 'LANG', 'PATH', 'PWD'].sort());
  });

  test('exit codes and stderr (without the pid marker)', T, async () => {
    const result = await run(handle, ['sh', '-c', 'echo out; echo oops >&2; exit 7']);
    assert.equal(result.code, 7);
    assert.equal(result.stdout, 'out\n');
    assert.equal(result.stderr, 'oops\n');
    assert.equal(result.exits, 1);
    const missing = await run(handle, ['/no/such/program']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /not found/);
    // Docker's own error (the process never started) goes to stderr, not stdout
    const badCwd = await run(handle, ['true'], { cwd: '/no/such/dir' });
    assert.equal(badCwd.code, 126);
    assert.equal(badCwd.stdout, '');
    assert.match(badCwd.stderr, /chdir to cwd/);
  });

  test('exec on a removed container emits a RunnerError', T, async () => {
    const proc = driver.exec({ sessionKey: 'nope', id: 'claude-runner-does-not-exist' }, ['true'], { cwd: '/workspace', env: {} });
    const error = await new Promise<Error>((resolve) => proc.on('error', resolve));
    assert.ok(error instanceof RunnerError);
    assert.equal(error.code, 'SANDBOX_UNAVAILABLE');
  });

  test("a process that cannot start: 'error', then exactly one 'exit' (null, null)", T, async () => {
    const cases: Array<{ handle: SandboxHandle; env: Record<string, string>; code: string }> = [
      { handle: { sessionKey: 'nope', id: 'claude-runner-does-not-exist' }, env: {}, code: 'SANDBOX_UNAVAILABLE' },
      { handle, env: { 'NOT-A-NAME': 'x' }, code: 'INVALID_ENV' },
    ];
    for (const c of cases) {
      const proc = driver.exec(c.handle, ['true'], { cwd: '/workspace', env: c.env });
      const events: string[] = [];
      proc.on('error', (e) => events.push(`error ${(e as RunnerError).code}`));
      const exited = new Promise<void>((resolve) => proc.on('exit', (code, signal) => { events.push(`exit ${code} ${signal}`); resolve(); }));
      await Promise.race([exited, sleep(5000)]);
      await sleep(50); // a second 'exit' would show up here
      assert.deepEqual(events, [`error ${c.code}`, 'exit null null']);
      assert.equal(proc.exitCode, null);
      assert.equal(proc.kill('SIGTERM'), false, 'nothing to kill');
    }
  });

  test("a process whose stream drops while it runs on: 'error', one 'exit' (null, null) within seconds, and it is killed", T, async () => {
    // A Docker client that hands the test every process stream, so the test can cut one.
    const streams: Duplex[] = [];
    const spy = Object.create(docker) as Docker;
    spy.getContainer = (id: string) => {
      const container = docker.getContainer(id);
      const createExec = container.exec.bind(container);
      container.exec = (async (options: Docker.ExecCreateOptions) => {
        const exec = await createExec(options);
        if (options.AttachStdin) {
          const start = exec.start.bind(exec);
          exec.start = (async (startOptions: Docker.ExecStartOptions) => {
            const stream = await start(startOptions);
            streams.push(stream);
            return stream;
          }) as typeof exec.start;
        }
        return exec;
      }) as typeof container.exec;
      return container;
    };
    const d = makeDriver(RUNNER_ID, { docker: spy });
    const proc = d.exec(handle, ['sleep', '304'], { cwd: '/workspace', env: {} });
    const errors: Error[] = [];
    const exits: Array<[number | null, string | null]> = [];
    proc.on('error', (error) => errors.push(error));
    const exited = new Promise<void>((resolve) => proc.on('exit', (code, signal) => { exits.push([code, signal]); resolve(); }));
    proc.stdout.resume();
    for (let i = 0; i < 100 && !(await processes(handle)).includes('1000 sleep 304'); i++) await sleep(50);
    assert.ok((await processes(handle)).includes('1000 sleep 304'));
    assert.equal(streams.length, 1);
    const dropped = Date.now();
    streams[0]!.destroy(); // the connection to the engine is gone; the process is not
    await Promise.race([exited, sleep(15_000).then(() => { throw new Error("no 'exit' within 15 s of the stream dropping"); })]);
    assert.ok(Date.now() - dropped < 10_000, `exit after ${Date.now() - dropped} ms`);
    await sleep(50);
    assert.deepEqual(exits, [[null, null]]);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof RunnerError);
    assert.equal(errors[0].code, 'SANDBOX_UNAVAILABLE');
    assert.match(errors[0].message, /after its output stream closed; it was killed/);
    assert.equal(proc.exitCode, null);
    let left = ['?'];
    for (let i = 0; i < 50 && left.length > 0; i++) {
      if (i > 0) await sleep(100);
      left = (await processes(handle)).filter((p) => p.includes('sleep 304'));
    }
    assert.deepEqual(left, [], 'the process was killed');
  });

  test('an engine that never starts an exec: the driver gives up with SANDBOX_UNAVAILABLE, it does not hang', { timeout: 60_000 }, async () => {
    const proxy = await stallingDockerProxy(/^POST (\/v[\d.]+)?\/exec\/[0-9a-f]+\/start /);
    try {
      const d = makeDriver(RUNNER_ID, { docker: { socketPath: proxy.socketPath }, countersFrom: 'sandbox' });
      const started = Date.now();
      const outcome = await Promise.race([
        d.resourceCounters(handle).then(() => 'answered', (error: unknown) => error),
        sleep(25_000).then(() => 'still waiting after 25 s'),
      ]);
      assert.ok(outcome instanceof RunnerError, String(outcome));
      assert.equal(outcome.code, 'SANDBOX_UNAVAILABLE');
      assert.match(outcome.message, /did not run `head` in the sandbox of session .* within 10000 ms/);
      assert.ok(proxy.stalled() >= 1, 'the exec start was held');
      assert.ok(Date.now() - started < 15_000);
    } finally {
      await proxy.close();
    }
    assert.equal((await sh(handle, 'echo alive')).stdout, 'alive\n');
  });

  test('kill stops a sleep inside the container', T, async () => {
    const proc = driver.exec(handle, ['sleep', '300'], { cwd: '/workspace', env: {} });
    const done = collect(proc, undefined, () => '');
    for (let i = 0; i < 100 && !(await processes(handle)).some((p) => p === '1000 sleep 300'); i++) await sleep(50);
    assert.ok((await processes(handle)).includes('1000 sleep 300'));
    const started = Date.now();
    assert.equal(proc.kill('SIGTERM'), true);
    assert.equal(proc.killed, true);
    const result = await done;
    assert.equal(result.signal, 'SIGTERM');
    assert.equal(result.code, null);
    assert.ok(Date.now() - started < 3000);
    assert.deepEqual((await processes(handle)).filter((p) => p.includes('sleep')), []);
    assert.equal(proc.kill('SIGKILL'), false, 'kill after exit does nothing');
  });

  test('kill right after exec (before the process exists) still stops it', T, async () => {
    const proc = driver.exec(handle, ['sh', '-c', 'sleep 300 & wait'], { cwd: '/workspace', env: {} });
    proc.kill('SIGKILL');
    const result = await collect(proc, undefined, () => '');
    assert.equal(result.signal, 'SIGKILL');
    assert.deepEqual((await processes(handle)).filter((p) => p.includes('sleep')), [], 'the group (child sleep too) is gone');
  });

  test('killAgentProcesses kills every agent process, not the relay', T, async () => {
    const a = collect(driver.exec(handle, ['sh', '-c', 'sleep 301 & sleep 302 & wait'], { cwd: '/workspace', env: {} }), undefined, () => '');
    const b = collect(driver.exec(handle, ['sleep', '303'], { cwd: '/workspace', env: {} }), undefined, () => '');
    const sleeps = async () => (await processes(handle)).filter((p) => /^1000 sleep 30[123]$/.test(p)).sort();
    for (let i = 0; i < 100 && (await sleeps()).length < 3; i++) await sleep(50);
    assert.deepEqual(await sleeps(), ['1000 sleep 301', '1000 sleep 302', '1000 sleep 303']);
    await driver.killAgentProcesses(handle);
    const [ra, rb] = await Promise.all([a, b]);
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0);
    const left = await processes(handle);
    assert.deepEqual(left.filter((p) => p.startsWith('1000 ')), []);
    assert.ok(left.some((p) => p.startsWith('1001 socat')), `relay still there: ${left.join('; ')}`);
  });
});
