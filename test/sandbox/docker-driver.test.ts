/**
 * The Docker sandbox driver against the real engine: processes, lifecycle,
 * hardening, network modes, the relay and the resource counters.
 * Builds the sandbox image (offline path) when it is missing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { RunnerError } from '../../src/core/errors.ts';
import type { SandboxHandle, SandboxProcess, SandboxSpec, NetworkMode } from '../../src/core/ports/sandbox.ts';
import { DockerSandboxDriver, LABELS, containerName } from '../../src/sandbox/docker/index.ts';
import { ensureSandboxImage } from '../../src/sandbox/docker/image.ts';

const docker = new Docker();
const IMAGE = process.env.SANDBOX_IMAGE ?? 'claude-runner-sandbox:latest';
const CLAUDE = path.resolve(import.meta.dirname, '../../node_modules/@anthropic-ai/claude-agent-sdk-linux-x64/claude');
const RUN = randomBytes(4).toString('hex');
const RUNNER_ID = `test-${RUN}`;
const OTHER_RUNNER_ID = `test-other-${RUN}`;
const TEST_LABEL = 'dev.claude-runner.test';
const BUSYBOX_IMAGE = `claude-runner-test-busybox:${RUN}`;
/** This run's own network for `open` sandboxes (the driver creates it; removed at the end). */
const OPEN_NET = `claude-runner-test-open-${RUN}`;
const MiB = 1024 * 1024;
/** Per-test time limit: a broken stream must fail the test, not hang it. */
const T = { timeout: 30_000 };
const LIMITS = { memoryBytes: 256 * MiB, nanoCpus: 1_000_000_000, pidsLimit: 64, tmpSizeBytes: 64 * MiB };

let root: string;
let driver: DockerSandboxDriver;
let httpdIp: string | null = null;
/** A server of this test on the host: what `open` sandboxes reach, as they reach the host. */
let hostServer: http.Server;
let hostPort = 0;

function makeDriver(runnerId = RUNNER_ID, extra: Partial<ConstructorParameters<typeof DockerSandboxDriver>[0]> = {}): DockerSandboxDriver {
  return new DockerSandboxDriver({ docker, runnerId, image: IMAGE, claudeExecutablePath: CLAUDE, limits: LIMITS, openNetwork: OPEN_NET, ...extra });
}

async function specFor(name: string, network: NetworkMode = 'none'): Promise<SandboxSpec> {
  const base = path.join(root, name);
  return {
    sessionKey: `${RUN}-${name}`,
    tenantId: 'tenant-t',
    sessionId: name,
    workspaceDir: path.join(base, 'workspace'),
    homeDir: path.join(base, 'home'),
    gatewaySocketDir: path.join(base, 'gateway'),
    network,
  };
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  exits: number;
}

/** Runs a command to its end through driver.exec, optionally writing stdin. */
function run(handle: SandboxHandle, command: string[], options: { input?: string; env?: Record<string, string>; cwd?: string; d?: DockerSandboxDriver } = {}): Promise<RunResult> {
  const proc = (options.d ?? driver).exec(handle, command, { cwd: options.cwd ?? '/workspace', env: options.env ?? {}, onStderr: (text) => { stderr += text; } });
  let stderr = '';
  return collect(proc, options.input, () => stderr);
}

function collect(proc: SandboxProcess, input: string | undefined, stderr: () => string): Promise<RunResult> {
  let stdout = '';
  let exits = 0;
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => { stdout += chunk; });
  if (input !== undefined) proc.stdin.write(input);
  proc.stdin.end();
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      exits++;
      // let a (wrong) second 'exit' show up before resolving
      setTimeout(() => resolve({ code, signal, stdout, stderr: stderr(), exits }), 50);
    });
  });
}

async function sh(handle: SandboxHandle, script: string, d?: DockerSandboxDriver): Promise<RunResult> {
  return run(handle, ['sh', '-c', script], { d });
}

/** Processes in the sandbox as "uid comm args" lines (ps itself and its shell left out). */
async function processes(handle: SandboxHandle): Promise<string[]> {
  const result = await sh(handle, 'ps -eo uid=,args=');
  return result.stdout.split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter((l) => l && !/ps -eo|sh -c ps/.test(l));
}

async function containersOf(runnerId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${runnerId}`] } });
}

function tarImport(dir: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [repo, tag] = name.split(':');
    docker.importImage(tar.stdout, { repo, tag } as object).then((stream) => {
      docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
    }, reject);
  });
}

/** A busybox httpd on Docker's default bridge: another program's container, which `open` sandboxes must not reach. */
async function startTestHost(): Promise<string | null> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) return null;
  const dir = path.join(root, 'busybox-image');
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await mkdir(path.join(dir, 'www'), { recursive: true });
  await copyFile(busybox, path.join(dir, 'bin', 'busybox'));
  await chmod(path.join(dir, 'bin', 'busybox'), 0o755);
  await writeFile(path.join(dir, 'www', 'index.html'), 'hello from the test host\n');
  await tarImport(dir, BUSYBOX_IMAGE);
  const container = await docker.createContainer({
    name: `claude-runner-test-httpd-${RUN}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'],
    Labels: { [TEST_LABEL]: RUN },
    HostConfig: { NetworkMode: 'bridge' },
  });
  await container.start();
  const info = await container.inspect();
  return info.NetworkSettings.Networks.bridge?.IPAddress || null;
}

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

before(async () => {
  const built = await ensureSandboxImage({ docker, tag: IMAGE, offline: true, log: (line) => console.log(`[image] ${line}`) });
  if (built.built) console.log(`built ${IMAGE}`);
  root = await mkdtemp(path.join(tmpdir(), 'claude-runner-sandbox-test-'));
  driver = makeDriver();
  httpdIp = await startTestHost();
  hostServer = http.createServer((req, res) => res.end(`hello from the host to ${req.socket.remoteAddress}\n`));
  await new Promise<void>((resolve) => hostServer.listen(0, '0.0.0.0', resolve));
  hostPort = (hostServer.address() as net.AddressInfo).port;
}, { timeout: 300_000 });

after(async () => {
  for (const runnerId of [RUNNER_ID, OTHER_RUNNER_ID]) {
    for (const c of await containersOf(runnerId)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  }
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } })) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  }
  await docker.getImage(BUSYBOX_IMAGE).remove({ force: true }).catch(() => {});
  for (const image of await docker.listImages({ filters: { label: [`${TEST_LABEL}=${RUN}`] } })) {
    await docker.getImage(image.Id).remove({ force: true }).catch(() => {});
  }
  if (root) await rm(root, { recursive: true, force: true });
  await new Promise((resolve) => hostServer?.close(resolve));
  await docker.getNetwork(OPEN_NET).remove().catch(() => {});
  for (const n of await docker.listNetworks()) if (n.Name.startsWith(`claude-runner-test-open-bad-${RUN}`)) await docker.getNetwork(n.Id).remove().catch(() => {});
  // nothing leaked
  assert.deepEqual((await docker.listNetworks()).filter((n) => n.Name.includes(RUN)).map((n) => n.Name), []);
  assert.deepEqual(await containersOf(RUNNER_ID), []);
  assert.deepEqual(await containersOf(OTHER_RUNNER_ID), []);
  assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } }), []);
  await assert.rejects(docker.getImage(BUSYBOX_IMAGE).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
  assert.deepEqual(await docker.listImages({ filters: { label: [`${TEST_LABEL}=${RUN}`] } }), []);
  assert.deepEqual((await docker.listImages()).filter((i) => (i.RepoTags ?? []).some((t) => t.startsWith('claude-runner-test-'))), []);
});

describe('check', () => {
  test('passes with the engine and image present', T, async () => {
    await driver.check();
  });
  test('SANDBOX_IMAGE_MISSING names npm run image', T, async () => {
    const d = makeDriver(RUNNER_ID, { image: `claude-runner-missing-${RUN}:latest` });
    await assert.rejects(d.check(), (e: RunnerError) => e.code === 'SANDBOX_IMAGE_MISSING' && e.message.includes('npm run image'));
  });
  test('SANDBOX_UNAVAILABLE says how to start Docker', T, async () => {
    const d = makeDriver(RUNNER_ID, { docker: { socketPath: path.join(tmpdir(), `no-docker-${RUN}.sock`) } });
    await assert.rejects(d.check(), (e: RunnerError) => e.code === 'SANDBOX_UNAVAILABLE' && /start it/i.test(e.message));
  });
});

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

describe('lifecycle', () => {
  test('ensure twice returns the same container; host folders belong to the agent', T, async () => {
    const spec = await specFor('twice');
    const first = await driver.ensure(spec);
    const second = await driver.ensure(spec);
    assert.equal(second.id, first.id);
    assert.equal(first.sessionKey, spec.sessionKey);
    for (const dir of [spec.workspaceDir, spec.homeDir]) {
      const info = await stat(dir);
      assert.equal(info.uid, 1000);
      assert.equal(info.gid, 1000);
    }
  });

  test('concurrent ensure creates one container', T, async () => {
    const spec = await specFor('concurrent');
    const handles = await Promise.all([driver.ensure(spec), driver.ensure(spec), driver.ensure(spec), driver.ensure(spec)]);
    assert.equal(new Set(handles.map((h) => h.id)).size, 1);
    const mine = (await containersOf(RUNNER_ID)).filter((c) => c.Labels[LABELS.sessionKey] === spec.sessionKey);
    assert.equal(mine.length, 1);
  });

  test('stop is prompt and keeps the container; ensure starts it again with files kept', T, async () => {
    const spec = await specFor('stop');
    const handle = await driver.ensure(spec);
    assert.equal((await sh(handle, 'echo kept > /workspace/note.txt && echo home > ~/h.txt')).code, 0);
    const started = Date.now();
    await driver.stop(spec.sessionKey);
    assert.ok(Date.now() - started < 3000, `stop took ${Date.now() - started} ms`);
    const listed = (await driver.list()).find((s) => s.sessionKey === spec.sessionKey);
    assert.deepEqual(listed, { sessionKey: spec.sessionKey, id: handle.id, running: false });
    await driver.stop(spec.sessionKey); // stopping a stopped sandbox is fine
    await driver.killAgentProcesses(handle); // nothing to kill in a stopped sandbox
    assert.deepEqual(await driver.resourceCounters(handle), { oomKills: 0, pidsLimitHits: 0 });
    const again = await driver.ensure(spec);
    assert.equal(again.id, handle.id);
    assert.equal((await sh(again, 'cat /workspace/note.txt ~/h.txt')).stdout, 'kept\nhome\n');
    assert.equal(await readFile(path.join(spec.workspaceDir, 'note.txt'), 'utf8'), 'kept\n');
    // the relay is back and listening
    assert.match((await sh(again, 'cat /proc/net/tcp')).stdout, / 0100007F:1004 .* 0A /);
  });

  test('a changed spec recreates the container', T, async () => {
    const spec = await specFor('respec');
    const first = await driver.ensure(spec);
    const second = await driver.ensure({ ...spec, network: 'open' });
    assert.notEqual(second.id, first.id);
    await assert.rejects(docker.getContainer(first.id).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    const third = await driver.ensure({ ...spec, network: 'open' });
    assert.equal(third.id, second.id);
  });

  test('a rebuilt image (same name, new id) recreates the container', T, async () => {
    const altImage = `claude-runner-test-alt:${RUN}`;
    await docker.getImage(IMAGE).tag({ repo: 'claude-runner-test-alt', tag: RUN });
    try {
      const alt = makeDriver(RUNNER_ID, { image: altImage });
      const spec = await specFor('rebuilt');
      const first = await alt.ensure(spec);
      assert.equal(first.id, (await alt.ensure(spec)).id);
      // "rebuild" the image: same name, another id
      const context = path.join(root, 'alt-image');
      await mkdir(context, { recursive: true });
      await writeFile(path.join(context, 'Dockerfile'), `FROM ${IMAGE}\nLABEL dev.claude-runner.test-rebuilt=${RUN}\n`);
      const stream = await docker.buildImage({ context, src: ['Dockerfile'] }, { t: altImage, labels: { [TEST_LABEL]: RUN } });
      await new Promise((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve(null))));
      const second = await alt.ensure(spec);
      assert.notEqual(second.id, first.id);
      assert.equal((await docker.getContainer(second.id).inspect()).Image, (await docker.getImage(altImage).inspect()).Id);
      await alt.remove(spec.sessionKey);
    } finally {
      await docker.getImage(altImage).remove({ force: true }).catch(() => {});
    }
  });

  test('remove makes it gone', T, async () => {
    const spec = await specFor('remove');
    const handle = await driver.ensure(spec);
    await driver.remove(spec.sessionKey);
    await assert.rejects(docker.getContainer(handle.id).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    assert.equal((await driver.list()).some((s) => s.sessionKey === spec.sessionKey), false);
    await driver.remove(spec.sessionKey); // removing twice is fine
    await driver.stop(spec.sessionKey); // so is stopping a missing one
  });

  test("list shows only this runner's containers", T, async () => {
    const other = makeDriver(OTHER_RUNNER_ID);
    const otherSpec = await specFor('other-runner');
    const otherHandle = await other.ensure(otherSpec);
    const mine = await driver.list();
    assert.ok(mine.length >= 1);
    assert.equal(mine.some((s) => s.id === otherHandle.id), false);
    for (const s of mine) {
      const info = await docker.getContainer(s.id).inspect();
      assert.equal(info.Config.Labels[LABELS.instance], RUNNER_ID);
      assert.equal(info.Name, `/${containerName(s.sessionKey)}`);
    }
    assert.deepEqual(await other.list(), [{ sessionKey: otherSpec.sessionKey, id: otherHandle.id, running: true }]);
    // the same name under another runner id is left alone
    const clash = makeDriver(RUNNER_ID);
    await assert.rejects(clash.ensure(otherSpec), (e: RunnerError) => e.code === 'SANDBOX_UNAVAILABLE' && e.message.includes(OTHER_RUNNER_ID));
    await other.remove(otherSpec.sessionKey);
    assert.deepEqual(await other.list(), []);
  });
});

describe('hardening', () => {
  let handle: SandboxHandle;
  let spec: SandboxSpec;
  before(async () => {
    spec = await specFor('hard');
    handle = await driver.ensure(spec);
  });

  test('the container spec as Docker sees it', T, async () => {
    const info = await docker.getContainer(handle.id).inspect();
    const hc = info.HostConfig as Docker.HostConfig & { Init?: boolean; Mounts?: Docker.MountSettings[] };
    assert.equal(hc.ReadonlyRootfs, true);
    assert.equal(hc.Init, true);
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.equal(hc.CapAdd ?? null, null);
    assert.deepEqual(hc.SecurityOpt, ['no-new-privileges']);
    assert.equal(hc.Privileged, false);
    assert.equal(hc.Memory, LIMITS.memoryBytes);
    assert.equal(hc.MemorySwap, LIMITS.memoryBytes);
    assert.equal(hc.NanoCpus, LIMITS.nanoCpus);
    assert.equal(hc.PidsLimit, LIMITS.pidsLimit);
    assert.equal(hc.NetworkMode, 'none');
    assert.equal(info.Config.User, '1001:1001');
    assert.deepEqual(info.Config.Env.filter((e) => !e.startsWith('PATH=') && !e.startsWith('LANG=')), ['HOME=/home/agent']);
    const mounts = info.Mounts.map((m) => `${m.Type} ${m.Source} -> ${m.Destination} ${m.RW ? 'rw' : 'ro'}`).sort();
    assert.deepEqual(mounts, [
      `bind ${CLAUDE} -> /opt/claude/claude ro`,
      `bind ${spec.gatewaySocketDir} -> /run/claude-runner ro`,
      `bind ${spec.homeDir} -> /home/agent rw`,
      `bind ${spec.workspaceDir} -> /workspace rw`,
    ].sort());
    assert.deepEqual(Object.keys(hc.Tmpfs ?? {}), ['/tmp']);
    const wanted = driver.containerSpec(spec).Labels!;
    assert.deepEqual(Object.keys(wanted).sort(), Object.values(LABELS).sort());
    for (const [key, value] of Object.entries(wanted)) assert.equal(info.Config.Labels[key], value, key);
  });

  test('inside: agent uid, no capabilities, read-only root, writable workspace and tmp, no docker socket', T, async () => {
    const script = [
      'echo "uid=$(id -u) gid=$(id -g)"',
      'grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs)" /proc/self/status',
      'touch /x 2>/dev/null && echo root-writable || echo root-readonly',
      'touch /etc/x 2>/dev/null && echo etc-writable || echo etc-readonly',
      'touch /workspace/w && echo workspace-writable',
      'touch /tmp/t && echo tmp-writable',
      'touch ~/h && echo home-writable',
      'touch /run/claude-runner/x 2>/dev/null && echo gateway-writable || echo gateway-readonly',
      'ls /var/run/docker.sock /run/docker.sock 2>/dev/null; echo sockets-checked',
      'test -x /opt/claude/claude && echo claude-executable',
      'kill -9 "$(pgrep -x socat | head -1)" 2>/dev/null && echo relay-killed || echo relay-protected',
    ].join('; ');
    const result = await sh(handle, script);
    const lines = result.stdout.trim().split('\n').map((l) => l.replace(/\s+/g, ' '));
    assert.deepEqual(lines, [
      'uid=1000 gid=1000',
      'CapPrm: 0000000000000000',
      'CapEff: 0000000000000000',
      'CapBnd: 0000000000000000',
      'NoNewPrivs: 1',
      'root-readonly',
      'etc-readonly',
      'workspace-writable',
      'tmp-writable',
      'home-writable',
      'gateway-readonly',
      'sockets-checked',
      'claude-executable',
      'relay-protected',
    ]);
    assert.equal((await stat(path.join(spec.workspaceDir, 'w'))).uid, 1000);
  });

  test('claude runs in the sandbox', T, async () => {
    const result = await run(handle, ['/opt/claude/claude', '--version'], { env: { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' } });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\d+\.\d+\.\d+/);
  });
});

/** The sandbox's address on its (only) network. */
async function addressOf(handle: SandboxHandle): Promise<string> {
  const networks = (await docker.getContainer(handle.id).inspect()).NetworkSettings.Networks;
  const ip = Object.values(networks)[0]?.IPAddress;
  assert.ok(ip, `no address: ${JSON.stringify(networks)}`);
  return ip;
}

/** Docker's default bridge gateway: an address of this host. */
async function hostAddress(): Promise<string> {
  const info = (await docker.getNetwork('bridge').inspect()) as Docker.NetworkInspectInfo;
  return info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway ?? '172.17.0.1';
}

describe('network', () => {
  test("'none' cannot reach a server on the host that an 'open' sandbox reaches", T, async () => {
    const url = `http://${await hostAddress()}:${hostPort}/`;
    const closed = await driver.ensure(await specFor('net-none', 'none'));
    const open = await driver.ensure(await specFor('net-open', 'open'));
    const fromOpen = await run(open, ['curl', '-sS', '--max-time', '5', url]);
    assert.equal(fromOpen.code, 0, fromOpen.stderr);
    assert.equal(fromOpen.stdout, `hello from the host to ${await addressOf(open)}\n`);
    const fromNone = await run(closed, ['curl', '-sS', '--max-time', '5', url]);
    assert.notEqual(fromNone.code, 0);
    assert.equal(fromNone.stdout, '');
    // loopback only
    const links = await sh(closed, 'ls /sys/class/net');
    assert.equal(links.stdout.trim(), 'lo');
    const hosts = await sh(open, 'getent hosts host.docker.internal');
    assert.match(hosts.stdout, /^\d+\.\d+\.\d+\.\d+\s+host\.docker\.internal/);
  });

  test("two 'open' sandboxes (two tenants) cannot reach each other, nor other containers; both reach the host", { timeout: 60_000 }, async (t) => {
    const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
    if (!busybox) return t.skip('busybox-static is not installed');
    const specA = { ...(await specFor('open-a', 'open')), tenantId: 'tenant-a' };
    const specB = { ...(await specFor('open-b', 'open')), tenantId: 'tenant-b' };
    await mkdir(path.join(specA.workspaceDir, 'www'), { recursive: true });
    await copyFile(busybox, path.join(specA.workspaceDir, 'busybox'));
    await chmod(path.join(specA.workspaceDir, 'busybox'), 0o755);
    await writeFile(path.join(specA.workspaceDir, 'www', 'index.html'), 'hello from sandbox a\n');
    const a = await driver.ensure(specA);
    const b = await driver.ensure(specB);
    const httpd = driver.exec(a, ['/workspace/busybox', 'httpd', '-f', '-p', '8080', '-h', '/workspace/www'], { cwd: '/workspace', env: {} });
    const httpdDone = collect(httpd, undefined, () => '');
    try {
      const ipA = await addressOf(a);
      const urlA = `http://${ipA}:8080/index.html`;
      // the control: A's server answers (from inside A)
      let self: RunResult | null = null;
      for (let i = 0; i < 50 && self?.code !== 0; i++) {
        if (i > 0) await sleep(100);
        self = await run(a, ['curl', '-sS', '--max-time', '2', urlA]);
      }
      assert.equal(self?.stdout, 'hello from sandbox a\n', self?.stderr);
      const fromB = await run(b, ['curl', '-sS', '--max-time', '3', urlA]);
      assert.notEqual(fromB.code, 0, `sandbox b reached sandbox a: ${fromB.stdout}`);
      assert.equal(fromB.stdout, '');
      // another program's container on Docker's default bridge is out of reach too
      if (httpdIp) {
        const other = await run(b, ['curl', '-sS', '--max-time', '3', `http://${httpdIp}:8080/index.html`]);
        assert.notEqual(other.code, 0, `reached a container on the default bridge: ${other.stdout}`);
      }
      // both still reach the host, by its alias
      for (const handle of [a, b]) {
        const result = await run(handle, ['curl', '-sS', '--max-time', '5', `http://host.docker.internal:${hostPort}/`]);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `hello from the host to ${await addressOf(handle)}\n`);
      }
    } finally {
      httpd.kill('SIGKILL');
      await httpdDone;
    }
    // Docker's own network facts: our network, not the default bridge, with inter-container traffic off.
    const container = await docker.getContainer(a.id).inspect();
    assert.deepEqual(Object.keys(container.NetworkSettings.Networks), [OPEN_NET]);
    const network = (await docker.getNetwork(OPEN_NET).inspect()) as Docker.NetworkInspectInfo;
    assert.equal(network.Driver, 'bridge');
    assert.equal(network.Options?.['com.docker.network.bridge.enable_icc'], 'false');
    assert.equal(network.Labels?.['dev.claude-runner.network'], 'open');
  });

  test("the runner tells the open network's addresses apart (isSandboxAddress), from check() on", T, async () => {
    const open = await driver.ensure(await specFor('net-open', 'open'));
    const ip = await addressOf(open);
    const network = (await docker.getNetwork(OPEN_NET).inspect()) as Docker.NetworkInspectInfo;
    const gateway = network.IPAM?.Config?.[0]?.Gateway;
    assert.ok(gateway);
    assert.equal(driver.isSandboxAddress(ip), true);
    assert.equal(driver.isSandboxAddress(`::ffff:${ip}`), true);
    assert.equal(driver.isSandboxAddress(gateway), false, 'the host itself, on that network');
    assert.equal(driver.isSandboxAddress(await hostAddress()), false);
    assert.equal(driver.isSandboxAddress('127.0.0.1'), false);
    // A runner that starts while the network exists knows it before its first open sandbox.
    const fresh = makeDriver();
    assert.equal(fresh.isSandboxAddress(ip), false);
    await fresh.check();
    assert.equal(fresh.isSandboxAddress(ip), true);
  });

  test('a network of that name that lets containers talk is refused', T, async () => {
    const bad = `claude-runner-test-open-bad-${RUN}`;
    await docker.createNetwork({ Name: bad, CheckDuplicate: true, Labels: { [TEST_LABEL]: RUN } });
    try {
      const d = makeDriver(RUNNER_ID, { openNetwork: bad });
      await assert.rejects(d.ensure(await specFor('net-bad', 'open')), (e: RunnerError) =>
        e.code === 'SANDBOX_UNAVAILABLE' && e.message.includes('enable_icc=false') && e.message.includes(`docker network rm ${bad}`));
      assert.deepEqual((await d.list()).filter((s) => s.sessionKey.endsWith('net-bad')), []);
    } finally {
      await docker.getNetwork(bad).remove().catch(() => {});
    }
  });

  test('a sandbox whose network was removed while it was stopped starts again on a new one', T, async () => {
    const own = `claude-runner-test-open-bad-${RUN}-gone`;
    const d = makeDriver(RUNNER_ID, { openNetwork: own });
    const spec = await specFor('net-gone', 'open');
    try {
      const first = await d.ensure(spec);
      await d.stop(spec.sessionKey);
      await docker.getNetwork(own).remove();
      const second = await d.ensure(spec);
      assert.notEqual(second.id, first.id);
      assert.equal(d.isSandboxAddress(await addressOf(second)), true);
      const result = await run(second, ['curl', '-sS', '--max-time', '5', `http://host.docker.internal:${hostPort}/`], { d });
      assert.equal(result.code, 0, result.stderr);
    } finally {
      await d.remove(spec.sessionKey);
      await docker.getNetwork(own).remove().catch(() => {});
    }
  });

  test('the relay forwards 127.0.0.1:4100 to the gateway socket', T, async () => {
    const spec = await specFor('relay', 'none');
    const handle = await driver.ensure(spec);
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-test'] ?? ''}`);
      res.end(`gateway says hi to ${req.url}\n`);
    });
    const socketPath = path.join(spec.gatewaySocketDir, 'gateway.sock');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      await chmod(socketPath, 0o666); // the relay (uid 1001) connects to it
      const result = await run(handle, ['curl', '-sS', '--max-time', '5', '-H', 'x-test: 1', 'http://127.0.0.1:4100/v1/messages']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'gateway says hi to /v1/messages\n');
      assert.deepEqual(seen, ['GET /v1/messages 1']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('resource counters', () => {
  test('a memory hog shows up as an OOM kill', T, async () => {
    const handle = await driver.ensure(await specFor('oom'));
    const before = await driver.resourceCounters(handle);
    assert.deepEqual(before, { oomKills: 0, pidsLimitHits: 0 });
    const hog = await sh(handle, 'head -c 600m /dev/zero | tail; echo "tail=$?"');
    assert.match(hog.stdout, /tail=137/);
    const afterCounters = await driver.resourceCounters(handle);
    assert.ok(afterCounters.oomKills >= 1, JSON.stringify(afterCounters));
    assert.equal(afterCounters.pidsLimitHits, 0);
    // the same numbers when read from inside the sandbox
    const inside = await makeDriver(RUNNER_ID, { countersFrom: 'sandbox' }).resourceCounters(handle);
    assert.deepEqual(inside, afterCounters);
    assert.equal((await sh(handle, 'echo alive')).stdout, 'alive\n');
  });

  test('a fork bomb is bounded by the pids limit, counted, killed, and the sandbox still answers', T, async () => {
    const handle = await driver.ensure(await specFor('forkbomb'));
    const before = await driver.resourceCounters(handle);
    assert.equal(before.pidsLimitHits, 0);
    const bomb = driver.exec(handle, ['bash', '-c', 'bomb() { bomb | bomb & }; bomb'], { cwd: '/workspace', env: {} });
    const bombDone = collect(bomb, undefined, () => '');
    let counters = before;
    for (let i = 0; i < 100 && counters.pidsLimitHits === 0; i++) {
      await sleep(50);
      counters = await driver.resourceCounters(handle);
    }
    assert.ok(counters.pidsLimitHits > 0, JSON.stringify(counters));
    const inside = await makeDriver(RUNNER_ID, { countersFrom: 'sandbox' }).resourceCounters(handle);
    assert.ok(inside.pidsLimitHits >= counters.pidsLimitHits);
    await driver.killAgentProcesses(handle);
    await bombDone;
    const info = await docker.getContainer(handle.id).inspect();
    assert.equal(info.State.Running, true, 'the relay survived');
    assert.equal((await sh(handle, 'echo alive')).stdout, 'alive\n');
    assert.deepEqual((await processes(handle)).filter((p) => p.startsWith('1000 ')), []);
  });
});
