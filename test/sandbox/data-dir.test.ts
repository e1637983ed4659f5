/**
 * DATA_DIR is private to the server's user (SessionDirectories.prepare: 0700),
 * and sandboxes still work on top of it: their bind mounts need no access to
 * the folders above the mounted ones. Checked with real sandboxes, under the
 * engine's default runtime and under gVisor (runsc) when the engine has it:
 * a process writes to /workspace, reads the task token and reaches the
 * gateway's socket through the relay; another local user reaches neither.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { newId } from '../../src/core/ids.ts';
import type { SandboxHandle, SandboxSpec } from '../../src/core/ports/sandbox.ts';
import { DockerSandboxDriver, LABELS } from '../../src/sandbox/docker/index.ts';
import { SessionDirectories } from '../../src/workspace/session-dirs.ts';

const docker = new Docker();
const IMAGE = process.env.SANDBOX_IMAGE ?? 'claude-runner-sandbox:latest';
const CLAUDE = path.resolve(import.meta.dirname, '../../node_modules/@anthropic-ai/claude-agent-sdk-linux-x64/claude');
const RUNNER_ID = `test-data-dir-${randomBytes(4).toString('hex')}`;
/** gVisor's own threads count against the pids limit: room as the runner's tests give it (64 is too few for runsc). */
const LIMITS = { memoryBytes: 1024 * 1024 * 1024, nanoCpus: 1_000_000_000, pidsLimit: 256, tmpSizeBytes: 64 * 1024 * 1024 };
const TOKEN = `token-${randomBytes(8).toString('hex')}`;
const NOBODY = 65534;

let base: string;
let dataDir: string;
let dirs: SessionDirectories;
let template: string;
let runtimes: string[];

/** What another local user (uid 65534) can do with a session's gateway folder: read the token, connect to the socket. */
function asOtherUser(socketDir: string): { token: string; socket: string } {
  const script = `
    const fs = require('node:fs'); const net = require('node:net');
    const out = {};
    try { fs.readFileSync(process.argv[1] + '/token', 'utf8'); out.token = 'read'; } catch (e) { out.token = e.code; }
    const s = net.connect(process.argv[1] + '/gateway.sock');
    s.on('connect', () => { out.socket = 'connected'; s.destroy(); console.log(JSON.stringify(out)); });
    s.on('error', (e) => { out.socket = e.code; console.log(JSON.stringify(out)); });`;
  const result = spawnSync(process.execPath, ['-e', script, socketDir], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 10_000 });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as { token: string; socket: string };
}

/** A session as the runner makes one: folders from SessionDirectories, a gateway socket and token as the gateway leaves them. */
async function session(): Promise<{ key: string; spec: SandboxSpec; socketDir: string; seen: string[]; close(): Promise<void> }> {
  const key = newId('s');
  const made = await dirs.create(key, template);
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.end('gateway answers\n');
  });
  const socketPath = path.join(made.socketDir, 'gateway.sock');
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  // The gateway's own modes (src/gateway/gateway.ts): open to any uid, for the relay and the agent.
  chmodSync(socketPath, 0o666);
  writeFileSync(path.join(made.socketDir, 'token'), TOKEN, { mode: 0o644 });
  const spec: SandboxSpec = {
    sessionKey: key, tenantId: 'tenant-d', sessionId: key, workspaceDir: made.workspace, homeDir: made.home, gatewaySocketDir: made.socketDir, network: 'none',
  };
  return { key, spec, socketDir: made.socketDir, seen, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Runs a shell script in the sandbox; resolves with its stdout and exit code. */
function sh(driver: DockerSandboxDriver, handle: SandboxHandle, script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const proc = driver.exec(handle, ['sh', '-c', script], { cwd: '/workspace', env: {}, onStderr: (text) => { stderr += text; } });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => { stdout += chunk; });
  proc.stdin.end();
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

before(async () => {
  base = mkdtempSync(path.join(tmpdir(), 'cr-data-'));
  chmodSync(base, 0o755); // as a parent folder usually is: only DATA_DIR itself keeps others out
  dataDir = path.join(base, 'data');
  dirs = new SessionDirectories(dataDir);
  dirs.prepare();
  template = path.join(base, 'template');
  mkdirSync(template);
  writeFileSync(path.join(template, 'AGENTS.md'), '# test\n');
  const info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
  runtimes = ['', ...('runsc' in (info.Runtimes ?? {}) ? ['runsc'] : [])];
});

after(async () => {
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${RUNNER_ID}`] } })) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  }
  if (base) rmSync(base, { recursive: true, force: true });
  assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${RUNNER_ID}`] } }), []);
});

describe('a private DATA_DIR', () => {
  test('DATA_DIR, sessions and sockets are 0700', () => {
    for (const dir of ['', 'sessions', 'sockets']) assert.equal((statSync(path.join(dataDir, dir)).mode & 0o777).toString(8), '700', dir || 'DATA_DIR');
  });

  test('another local user can read no token and reach no gateway socket', { timeout: 30_000 }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root, to run a check as another user');
    const s = await session();
    try {
      assert.deepEqual(asOtherUser(s.socketDir), { token: 'EACCES', socket: 'EACCES' });
      // The control: the same folder under an open DATA_DIR (as before prepare()) gives both away.
      chmodSync(dataDir, 0o755);
      chmodSync(path.join(dataDir, 'sockets'), 0o755);
      try {
        assert.deepEqual(asOtherUser(s.socketDir), { token: 'read', socket: 'connected' });
      } finally {
        dirs.prepare();
      }
    } finally {
      await s.close();
    }
  });

  test('sandboxes still write their workspace, read the token and reach the gateway (every runtime of the engine)', { timeout: 120_000 }, async () => {
    for (const runtime of runtimes) {
      const driver = new DockerSandboxDriver({
        docker, runnerId: RUNNER_ID, image: IMAGE, claudeExecutablePath: CLAUDE, limits: LIMITS, ...(runtime ? { runtime } : {}),
      });
      const s = await session();
      try {
        const handle = await driver.ensure(s.spec);
        const result = await sh(driver, handle, [
          'echo written > /workspace/out.txt',
          'echo home > ~/h.txt',
          'printf "token=%s\\n" "$(cat /run/claude-runner/token)"',
          'curl -sS --max-time 5 http://127.0.0.1:4100/v1/ping',
        ].join(' && '));
        const label = runtime || 'default runtime';
        assert.equal(result.code, 0, `${label}: ${result.stderr}`);
        assert.equal(result.stdout, `token=${TOKEN}\ngateway answers\n`, label);
        assert.deepEqual(s.seen, ['GET /v1/ping'], label);
        assert.equal(readFileSync(path.join(s.spec.workspaceDir, 'out.txt'), 'utf8'), 'written\n', label);
        assert.equal(readFileSync(path.join(s.spec.homeDir, 'h.txt'), 'utf8'), 'home\n', label);
        if (runtime) assert.equal((await docker.getContainer(handle.id).inspect()).HostConfig.Runtime, runtime);
      } finally {
        await driver.remove(s.key);
        await s.close();
      }
    }
  });
});
