/**
 * What the Docker sandbox driver's test files share: this file's run id,
 * driver and folders, helpers that run commands through driver.exec, and
 * useDriverSuite(), which builds the sandbox image when missing (offline
 * path) and checks at the end that the file left nothing behind.
 */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import type { SandboxHandle, SandboxProcess, SandboxSpec, NetworkMode } from '../../src/core/ports/sandbox.ts';
import { DockerSandboxDriver, LABELS } from '../../src/sandbox/docker/index.ts';
import { ensureSandboxImage } from '../../src/sandbox/docker/image.ts';

export const docker = new Docker();
export const IMAGE = process.env.SANDBOX_IMAGE ?? 'claude-runner-sandbox:latest';
export const CLAUDE = path.resolve(import.meta.dirname, '../../node_modules/@anthropic-ai/claude-agent-sdk-linux-x64/claude');
export const RUN = randomBytes(4).toString('hex');
export const RUNNER_ID = `test-${RUN}`;
export const OTHER_RUNNER_ID = `test-other-${RUN}`;
export const TEST_LABEL = 'dev.claude-runner.test';
/** This run's own network for `open` sandboxes (the driver creates it; removed at the end). */
export const OPEN_NET = `claude-runner-test-open-${RUN}`;
export const MiB = 1024 * 1024;
/** Per-test time limit: a broken stream must fail the test, not hang it. */
export const T = { timeout: 30_000 };
export const LIMITS = { memoryBytes: 256 * MiB, nanoCpus: 1_000_000_000, pidsLimit: 64, tmpSizeBytes: 64 * MiB };

/** This file's folder of session folders (set in before()). */
export let root: string;
/** This file's driver (set in before()). */
export let driver: DockerSandboxDriver;

export function makeDriver(runnerId = RUNNER_ID, extra: Partial<ConstructorParameters<typeof DockerSandboxDriver>[0]> = {}): DockerSandboxDriver {
  return new DockerSandboxDriver({ docker, runnerId, image: IMAGE, claudeExecutablePath: CLAUDE, limits: LIMITS, openNetwork: OPEN_NET, ...extra });
}

export async function specFor(name: string, network: NetworkMode = 'none'): Promise<SandboxSpec> {
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

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  exits: number;
}

/** Runs a command to its end through driver.exec, optionally writing stdin. */
export function run(handle: SandboxHandle, command: string[], options: { input?: string; env?: Record<string, string>; cwd?: string; d?: DockerSandboxDriver } = {}): Promise<RunResult> {
  const proc = (options.d ?? driver).exec(handle, command, { cwd: options.cwd ?? '/workspace', env: options.env ?? {}, onStderr: (text) => { stderr += text; } });
  let stderr = '';
  return collect(proc, options.input, () => stderr);
}

export function collect(proc: SandboxProcess, input: string | undefined, stderr: () => string): Promise<RunResult> {
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

export async function sh(handle: SandboxHandle, script: string, d?: DockerSandboxDriver): Promise<RunResult> {
  return run(handle, ['sh', '-c', script], { d });
}

/** Processes in the sandbox as "uid comm args" lines (ps itself and its shell left out). */
export async function processes(handle: SandboxHandle): Promise<string[]> {
  const result = await sh(handle, 'ps -eo uid=,args=');
  return result.stdout.split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter((l) => l && !/ps -eo|sh -c ps/.test(l));
}

export async function containersOf(runnerId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${runnerId}`] } });
}

/** Registers the file's before and after hooks: the image, the driver, and the checks that nothing leaked. */
export function useDriverSuite(hooks: { before?: () => Promise<void>; after?: () => Promise<void> } = {}): void {
  before(async () => {
    const built = await ensureSandboxImage({ docker, tag: IMAGE, offline: true, log: (line) => console.log(`[image] ${line}`) });
    if (built.built) console.log(`built ${IMAGE}`);
    root = await mkdtemp(path.join(tmpdir(), 'claude-runner-sandbox-test-'));
    driver = makeDriver();
    await hooks.before?.();
  }, { timeout: 300_000 });

  after(async () => {
    driver?.close();
    await hooks.after?.();
    for (const runnerId of [RUNNER_ID, OTHER_RUNNER_ID]) {
      for (const c of await containersOf(runnerId)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    }
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } })) {
      await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    }
    for (const image of await docker.listImages({ filters: { label: [`${TEST_LABEL}=${RUN}`] } })) {
      await docker.getImage(image.Id).remove({ force: true }).catch(() => {});
    }
    if (root) await rm(root, { recursive: true, force: true });
    await docker.getNetwork(OPEN_NET).remove().catch(() => {});
    for (const n of await docker.listNetworks()) if (n.Name.startsWith(`claude-runner-test-open-bad-${RUN}`)) await docker.getNetwork(n.Id).remove().catch(() => {});
    // nothing leaked
    assert.deepEqual((await docker.listNetworks()).filter((n) => n.Name.includes(RUN)).map((n) => n.Name), []);
    assert.deepEqual(await containersOf(RUNNER_ID), []);
    assert.deepEqual(await containersOf(OTHER_RUNNER_ID), []);
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } }), []);
    assert.deepEqual(await docker.listImages({ filters: { label: [`${TEST_LABEL}=${RUN}`] } }), []);
    assert.deepEqual((await docker.listImages()).filter((i) => (i.RepoTags ?? []).some((t) => t.startsWith('claude-runner-test-') && t.includes(RUN))), []);
  });
}
