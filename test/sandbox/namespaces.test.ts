/**
 * Which network namespace none and allowlist sandboxes get (namespaces.ts):
 * under runc, the runtime's own with our /etc/hosts (written whole, 0644
 * whatever the umask); under another runtime, Docker's `none` network.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { RunnerError } from '../../src/core/errors.ts';
import { SANDBOX_ETC_HOSTS, buildContainerSpec } from '../../src/sandbox/docker/container-spec.ts';
import { SandboxNamespaces } from '../../src/sandbox/docker/namespaces.ts';
import { docker } from './driver-support.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'claude-runner-namespaces-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const toError = (error: unknown, action: string): RunnerError => new RunnerError('SANDBOX_UNAVAILABLE', `${action}: ${(error as Error).message}`);

test('runc: the hosts file is written whole and readable by the sandbox whatever the umask; the spec disables Docker networking and mounts it', async () => {
  const hostsFile = path.join(dir, 'runc', 'etc-hosts');
  const namespaces = new SandboxNamespaces({ docker, runtime: 'runc', hostsFile, toError });
  assert.equal(namespaces.current, hostsFile, 'what it will decide, before it has');
  const umask = process.umask(0o077);
  try {
    assert.equal(await namespaces.resolve(), hostsFile);
  } finally {
    process.umask(umask);
  }
  assert.equal(readFileSync(hostsFile, 'utf8'), SANDBOX_ETC_HOSTS);
  assert.match(SANDBOX_ETC_HOSTS, /^127\.0\.0\.1\tlocalhost$/m);
  assert.equal(statSync(hostsFile).mode & 0o777, 0o644);
  const config = { runnerId: 'r', image: 'i', claudeExecutablePath: '/c', relayUser: '1001:1001', limits: { memoryBytes: 1, nanoCpus: 1, pidsLimit: 1, tmpSizeBytes: 1 }, hostsFile };
  const spec = { sessionKey: 's_1', tenantId: 't', sessionId: 'x', workspaceDir: '/w', homeDir: '/h', gatewaySocketDir: '/g' };
  const none = buildContainerSpec(config, { ...spec, network: 'none' });
  assert.equal(none.NetworkDisabled, true);
  assert.equal(none.HostConfig?.NetworkMode, 'none');
  assert.deepEqual(none.HostConfig?.Mounts?.find((m) => m.Target === '/etc/hosts'), { Type: 'bind', Source: hostsFile, Target: '/etc/hosts', ReadOnly: true });
  // open sandboxes are on their Docker network, which writes their /etc/hosts.
  const open = buildContainerSpec(config, { ...spec, network: 'open' });
  assert.equal(open.NetworkDisabled, undefined);
  assert.equal(open.HostConfig?.Mounts?.some((m) => m.Target === '/etc/hosts'), false);
});

test("another runtime (gVisor's runsc) keeps Docker's none network: nothing written, nothing mounted", async () => {
  const hostsFile = path.join(dir, 'runsc', 'etc-hosts');
  const namespaces = new SandboxNamespaces({ docker, runtime: 'runsc', hostsFile, toError });
  assert.equal(namespaces.current, undefined);
  assert.equal(await namespaces.resolve(), undefined);
  assert.equal(existsSync(hostsFile), false);
  const spec = buildContainerSpec(
    { runnerId: 'r', image: 'i', claudeExecutablePath: '/c', relayUser: 'x', limits: { memoryBytes: 1, nanoCpus: 1, pidsLimit: 1, tmpSizeBytes: 1 } },
    { sessionKey: 's_1', tenantId: 't', sessionId: 'x', workspaceDir: '/w', homeDir: '/h', gatewaySocketDir: '/g', network: 'allowlist' },
  );
  assert.equal(spec.NetworkDisabled, undefined);
  assert.equal(spec.HostConfig?.Mounts?.some((m) => m.Target === '/etc/hosts'), false);
});

test("no runtime configured: the engine's default decides; a file that cannot be written is a clear error, asked again next time", async () => {
  const info = (await docker.info()) as { DefaultRuntime?: string };
  const hostsFile = path.join(dir, 'default', 'etc-hosts');
  const decided = await new SandboxNamespaces({ docker, runtime: undefined, hostsFile, toError }).resolve();
  assert.equal(decided, (info.DefaultRuntime ?? 'runc') === 'runc' ? hostsFile : undefined);

  const blocked = path.join(dir, 'a-file');
  rmSync(blocked, { force: true });
  (await import('node:fs')).writeFileSync(blocked, 'not a folder');
  const failing = new SandboxNamespaces({ docker, runtime: 'runc', hostsFile: path.join(blocked, 'etc-hosts'), toError });
  await assert.rejects(failing.resolve(), (error: RunnerError) => error.code === 'SANDBOX_UNAVAILABLE' && /network namespace/.test(error.message));
  rmSync(blocked);
  assert.equal(await failing.resolve(), path.join(blocked, 'etc-hosts'), 'the next ensure tries again');
});
