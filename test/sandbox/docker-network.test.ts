/**
 * The Docker sandbox driver against the real engine: network modes, the
 * network of `open` sandboxes (isSandboxAddress) and the relay.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { RunnerError } from '../../src/core/errors.ts';
import type { SandboxHandle } from '../../src/core/ports/sandbox.ts';
import {
  OPEN_NET, RUN, RUNNER_ID, T, TEST_LABEL, collect, docker, driver, makeDriver, root, run, sh, specFor, useDriverSuite, type RunResult,
} from './driver-support.ts';

const BUSYBOX_IMAGE = `claude-runner-test-busybox:${RUN}`;
let httpdIp: string | null = null;
/** A server of this test on the host: what `open` sandboxes reach, as they reach the host. */
let hostServer: http.Server;
let hostPort = 0;

useDriverSuite({
  before: async () => {
    httpdIp = await startTestHost();
    hostServer = http.createServer((req, res) => res.end(`hello from the host to ${req.socket.remoteAddress}\n`));
    await new Promise<void>((resolve) => hostServer.listen(0, '0.0.0.0', resolve));
    hostPort = (hostServer.address() as net.AddressInfo).port;
  },
  after: async () => {
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } })) {
      await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    }
    await docker.getImage(BUSYBOX_IMAGE).remove({ force: true }).catch(() => {});
    await new Promise((resolve) => hostServer?.close(resolve));
    await assert.rejects(docker.getImage(BUSYBOX_IMAGE).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
  },
});

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
