/**
 * The hardened sandbox, seen from inside by the agent's own tool and from
 * the engine: not root, no capabilities, no-new-privileges, a read-only root
 * filesystem, no Docker socket; callers cannot choose the image, the working
 * directory or anything else of the container. And SANDBOX_RUNTIME: a runtime
 * the engine lacks is reported clearly (gVisor sessions themselves, hardened
 * the same, are checked end to end in test/sandbox/gvisor.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { SANDBOX_ETC_HOSTS } from '../../src/sandbox/docker/container-spec.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { docker, lastToolResults, sessionContainer } from './support.ts';

const INSPECT = [
  'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"',
  "grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
  'touch /usr/probe 2>/dev/null && echo usr-writable || echo usr-readonly',
  'touch /etc/probe 2>/dev/null && echo etc-writable || echo etc-readonly',
  'touch /probe 2>/dev/null && echo root-writable || echo root-readonly',
  'touch /workspace/probe && echo workspace-writable',
  'touch ~/probe && echo home-writable',
  'touch /tmp/probe && echo tmp-writable',
  'touch /run/claude-runner/probe 2>/dev/null && echo gateway-dir-writable || echo gateway-dir-readonly',
  "echo \"docker-sockets=$(find / \\( -path /proc -o -path /sys \\) -prune -o \\( -name 'docker.sock' -o -name 'containerd.sock' \\) -print 2>/dev/null | wc -l)\"",
  "echo \"sockets=$(find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null | tr '\\n' ' ')\"",
  // setuid programs exist in the image; with no-new-privileges they give nothing.
  'su -c "id -u" root </dev/null >/dev/null 2>&1 && echo su-worked || echo su-refused',
  'echo "whoami=$(whoami)"',
  // The network namespace (none): a loopback and nothing else, localhost named, /etc/hosts not the agent's to change.
  "echo \"interfaces=$(awk -F: 'NR > 2 { gsub(/ /, \"\", $1); print $1 }' /proc/net/dev | tr '\\n' ' ')\"",
  'echo "localhost=$(getent hosts localhost | head -1 | tr -s \" \" | cut -d\" \" -f1)"',
  '(echo "127.0.0.1 evil" >> /etc/hosts) 2>/dev/null && echo hosts-writable || echo hosts-readonly',
].join('; ');

describe('inside the sandbox', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      rules: [rule('inspect-the-sandbox-h2', bash(INSPECT), text('inspected'))],
    });
  });
  after(async () => h?.close());

  test('the agent is not root, holds no capability, cannot gain privileges, and sees a read-only root', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'hard', message: 'inspect-the-sandbox-h2' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const seen = lastToolResults(h.model, 'inspect-the-sandbox-h2');
    assert.match(seen, /uid=1000 gid=1000 groups=1000\b/);
    for (const cap of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(seen, new RegExp(`${cap}:\\s+0000000000000000`), cap);
    assert.match(seen, /NoNewPrivs:\s+1/);
    for (const line of ['usr-readonly', 'etc-readonly', 'root-readonly', 'workspace-writable', 'home-writable', 'tmp-writable', 'gateway-dir-readonly', 'su-refused', 'whoami=agent']) {
      assert.match(seen, new RegExp(line), line);
    }
    assert.match(seen, /docker-sockets=0/);
    assert.match(seen, /^interfaces=lo $/m);
    assert.match(seen, /^localhost=(127\.0\.0\.1|::1)$/m);
    assert.match(seen, /hosts-readonly/);
    // Besides Claude Code's own sockets in /tmp, the one socket in reach is this session's gateway.
    const sockets = /^sockets=(.*)$/m.exec(seen)![1]!.trim().split(' ').filter((s) => !s.startsWith('/tmp/'));
    assert.deepEqual(sockets, ['/run/claude-runner/gateway.sock']);
  });

  test('the engine runs the container with the canonical spec: its image, dropped capabilities, limits, no extra mounts', async () => {
    const container = await sessionContainer(h.runnerId, 'hard');
    assert.ok(container);
    const info = await docker.getContainer(container.Id).inspect();
    assert.equal(info.Config.Image, 'claude-runner-sandbox:latest');
    assert.equal(info.Config.WorkingDir, '/workspace');
    assert.equal(info.Config.User, '1001:1001');
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.equal(info.HostConfig.CapAdd, null);
    assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges']);
    assert.equal(info.HostConfig.Privileged, false);
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.equal(info.HostConfig.PidsLimit, 256);
    assert.equal(info.HostConfig.Memory, 1024 ** 3);
    assert.equal(info.HostConfig.MemorySwap, 1024 ** 3);
    assert.equal(info.HostConfig.NanoCpus, 1e9);
    assert.equal(info.HostConfig.NetworkMode, 'none');
    // Its network namespace is made by the OCI runtime (no Docker network, no libnetwork hook): a loopback
    // alone (seen from inside above), and our /etc/hosts, read-only and readable whatever the runner's umask.
    assert.equal((info.Config as { NetworkDisabled?: boolean }).NetworkDisabled, true);
    assert.deepEqual(info.Mounts.map((m) => `${m.Destination}:${m.RW ? 'rw' : 'ro'}`).sort(),
      ['/etc/hosts:ro', '/home/agent:rw', '/opt/claude/claude:ro', '/run/claude-runner:ro', '/workspace:rw']);
    const hosts = info.Mounts.find((m) => m.Destination === '/etc/hosts')!.Source!;
    assert.equal(hosts, `${h.dataDir}/sandbox/etc-hosts`);
    assert.equal(readFileSync(hosts, 'utf8'), SANDBOX_ETC_HOSTS);
    assert.equal(statSync(hosts).mode & 0o777, 0o644);
    assert.ok(!info.Mounts.some((m) => /docker\.sock|containerd/.test(m.Source ?? '')));
    assert.deepEqual(info.Config.Env.filter((e) => !e.startsWith('PATH=') && !e.startsWith('LANG=')), ['HOME=/home/agent']);
  });

  test('callers cannot set the image, working directory, user or any other container field: unknown fields are refused', async () => {
    for (const field of [{ image: 'alpine' }, { workingDir: '/' }, { cwd: '/etc' }, { user: 'root' }, { privileged: true }, { network: 'open' }, { volumes: ['/:/host'] }, { sandbox: { image: 'x' } }]) {
      const res = await h.api('/task', { method: 'POST', json: { sessionId: 'fields', message: 'hi', ...field } });
      assert.equal(res.status, 400, JSON.stringify(field));
      assert.equal(res.body.error.code, 'INVALID_REQUEST');
      assert.match(res.body.error.message, /Unrecognized key/i);
    }
    // An agent name is a template name, never a path.
    const agent = await h.api('/task', { method: 'POST', json: { sessionId: 'fields', message: 'hi', agent: '../../etc' } });
    assert.equal(agent.status, 404);
    assert.equal(agent.body.error.code, 'AGENT_NOT_FOUND');
    assert.equal((await h.api('/session/fields')).status, 404, 'a refused request created a session');
  });
});

describe('SANDBOX_RUNTIME', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ env: { SANDBOX_RUNTIME: 'runsc-not-installed' } }); });
  after(async () => h?.close());

  test('a runtime the engine does not have fails /health and the task with SANDBOX_UNAVAILABLE, the details only in the log', async () => {
    const health = await h.api('/health');
    assert.equal(health.status, 503);
    assert.equal(health.body.docker, 'SANDBOX_UNAVAILABLE');
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'gvisor', message: 'hello' } });
    assert.equal(res.status, 503, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'SANDBOX_UNAVAILABLE');
    // The runtime's name and daemon.json hint are the operator's (the log, under this reference), not the caller's.
    assert.equal(res.body.error.details.reference, res.body.taskId);
    assert.doesNotMatch(JSON.stringify(res.body), /runsc-not-installed|daemon\.json/);
  });
});
