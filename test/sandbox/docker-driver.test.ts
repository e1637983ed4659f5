/**
 * The Docker sandbox driver against the real engine: check, lifecycle and
 * hardening. Processes, network modes and the resource counters have their
 * own files (docker-processes, docker-network, docker-counters), and watch()
 * docker-events; driver-support.ts holds what they share.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { RunnerError } from '../../src/core/errors.ts';
import type { SandboxHandle, SandboxSpec } from '../../src/core/ports/sandbox.ts';
import { LABELS, containerName } from '../../src/sandbox/docker/index.ts';
import {
  CLAUDE, IMAGE, LIMITS, OTHER_RUNNER_ID, RUN, RUNNER_ID, T, TEST_LABEL,
  containersOf, docker, driver, makeDriver, root, sh, specFor, run, useDriverSuite,
} from './driver-support.ts';

useDriverSuite();

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

  test('a warm sandbox is trusted until the engine reports it died: no engine call but the image\'s, and one killed behind the driver\'s back starts again', T, async () => {
    const spec = await specFor('known');
    const first = await driver.ensure(spec);
    assert.equal(driver.knownRunning(spec.sessionKey), false, 'just started: not seen running since its death was watched');
    assert.equal((await driver.ensure(spec)).id, first.id);
    assert.equal(driver.knownRunning(spec.sessionKey), true);
    // The third ensure asks the engine only for the image (a rebuilt image still recreates: next test).
    const calls: string[] = [];
    const spied = driver.docker as unknown as Record<string, (...args: unknown[]) => unknown>;
    const originals = Object.fromEntries(['getContainer', 'listContainers', 'getImage'].map((name) => [name, spied[name]!]));
    for (const [name, original] of Object.entries(originals)) spied[name] = (...args: unknown[]) => { calls.push(name); return original.apply(driver.docker, args); };
    try {
      assert.equal((await driver.ensure(spec)).id, first.id);
    } finally {
      Object.assign(spied, originals);
    }
    assert.deepEqual(calls, ['getImage']);
    await docker.getContainer(first.id).kill();
    for (let i = 0; i < 100 && driver.knownRunning(spec.sessionKey); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(driver.knownRunning(spec.sessionKey), false, 'the die event was heard');
    const again = await driver.ensure(spec);
    assert.equal(again.id, first.id);
    assert.equal((await docker.getContainer(again.id).inspect()).State.Running, true);
    assert.equal((await sh(again, 'echo up')).stdout, 'up\n');
    await driver.ensure(spec);
    assert.equal(driver.knownRunning(spec.sessionKey), true);
    await driver.stop(spec.sessionKey);
    assert.equal(driver.knownRunning(spec.sessionKey), false, 'forgotten as soon as stop() resolves');
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
      `bind ${path.join(tmpdir(), 'claude-runner-etc-hosts')} -> /etc/hosts ro`, // the driver's default hostsFile
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
