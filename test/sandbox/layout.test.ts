/**
 * The sandbox layout is defined once, by the sandbox port: the Docker adapter
 * builds containers from it and the Claude runtime uses it; no other source
 * file spells its paths or the agent's uid again.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import {
  AGENT_GID, AGENT_UID, AGENT_USER, SANDBOX_CLAUDE_PATH, SANDBOX_HOME, SANDBOX_WORKSPACE,
} from '../../src/core/ports/sandbox.ts';
import type { AgentRunRequest } from '../../src/core/ports/agent-runtime.ts';
import { agentProcessEnv } from '../../src/runtime/claude/runtime.ts';
import * as docker from '../../src/sandbox/docker/index.ts';

const ROOT = join(import.meta.dirname, '../..');

test('the port defines the layout the image is built for', () => {
  assert.deepEqual(
    { SANDBOX_WORKSPACE, SANDBOX_HOME, SANDBOX_CLAUDE_PATH, AGENT_USER, AGENT_UID, AGENT_GID },
    { SANDBOX_WORKSPACE: '/workspace', SANDBOX_HOME: '/home/agent', SANDBOX_CLAUDE_PATH: '/opt/claude/claude', AGENT_USER: 'agent', AGENT_UID: 1000, AGENT_GID: 1000 },
  );
  const dockerfile = readFileSync(join(ROOT, 'image/Dockerfile'), 'utf8');
  assert.match(dockerfile, new RegExp(`useradd -u ${AGENT_UID} -g ${AGENT_GID} -d ${SANDBOX_HOME} .* ${AGENT_USER}\\b`));
});

test('the Docker adapter re-exports the same values and builds its container from them', () => {
  assert.deepEqual(
    [docker.SANDBOX_WORKSPACE, docker.SANDBOX_HOME, docker.SANDBOX_CLAUDE_PATH, docker.AGENT_UID, docker.AGENT_GID],
    [SANDBOX_WORKSPACE, SANDBOX_HOME, SANDBOX_CLAUDE_PATH, AGENT_UID, AGENT_GID],
  );
  const spec = docker.buildContainerSpec(
    { runnerId: 'r', image: 'i', claudeExecutablePath: '/host/claude', relayUser: '1001:1001', limits: { memoryBytes: 1, nanoCpus: 1, pidsLimit: 1, tmpSizeBytes: 1 } },
    { sessionKey: 's_1', tenantId: 't', sessionId: 'x', workspaceDir: '/host/w', homeDir: '/host/h', gatewaySocketDir: '/host/g', network: 'none' },
  );
  const targets = Object.fromEntries((spec.HostConfig?.Mounts ?? []).map((m) => [m.Source, m.Target]));
  assert.equal(targets['/host/w'], SANDBOX_WORKSPACE);
  assert.equal(targets['/host/h'], SANDBOX_HOME);
  assert.equal(targets['/host/claude'], SANDBOX_CLAUDE_PATH);
  assert.equal(spec.WorkingDir, SANDBOX_WORKSPACE);
  assert.deepEqual(spec.Env, [`HOME=${SANDBOX_HOME}`]);
  // The relay answers the agent with TCP_NODELAY: under Nagle's algorithm the chunked end of each streamed
  // answer waited for the agent's delayed ACK (~40 ms a task; bench/profile.ts showed it as agent time).
  const [listen] = (spec.Cmd ?? []).filter((arg) => arg.startsWith('TCP-LISTEN:'));
  assert.ok(listen?.split(',').includes('nodelay'), `relay listen address: ${listen}`);
});

test('the agent process gets the home and user of the layout', () => {
  const env = agentProcessEnv({ env: {}, processEnv: {}, modelEndpoint: { baseUrl: 'http://127.0.0.1:4100', keyHelper: 'cat x' } } as unknown as AgentRunRequest, 3);
  assert.equal(env.HOME, SANDBOX_HOME);
  assert.equal(env.USER, AGENT_USER);
});

test('no source file but the port spells the layout again', () => {
  const files = (function walk(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
  })(join(ROOT, 'src'));
  // String literals only (comments may name the paths); uid 1000 as a uid:gid pair or a uid field.
  const retyped = /'\/workspace'|"\/workspace"|'\/home\/agent'|'\/opt\/claude\/claude'|uid: 1000\b|gid: 1000\b|'1000:1000'/;
  const offenders = files
    .map((file) => relative(ROOT, file))
    // The composition root is switched to the port's constants separately.
    .filter((file) => file !== 'src/core/ports/sandbox.ts')
    .filter((file) => retyped.test(readFileSync(join(ROOT, file), 'utf8')));
  assert.deepEqual(offenders, []);
});

test('the relay user is defined once (RELAY_UID:RELAY_GID), and nothing unused is exported', async () => {
  const driverSource = readFileSync(join(ROOT, 'src/sandbox/docker/driver.ts'), 'utf8');
  assert.doesNotMatch(driverSource, /'1001:1001'|"1001:1001"|`1001:1001`/);
  const spec = docker.buildContainerSpec(
    { runnerId: 'r', image: 'i', claudeExecutablePath: '/c', relayUser: 'x', limits: { memoryBytes: 1, nanoCpus: 1, pidsLimit: 1, tmpSizeBytes: 1 } },
    { sessionKey: 's_1', tenantId: 't', sessionId: 'x', workspaceDir: '/w', homeDir: '/h', gatewaySocketDir: '/g', network: 'none' },
  );
  assert.equal(spec.User, 'x');
  const driver = new docker.DockerSandboxDriver({ runnerId: 'r', claudeExecutablePath: '/c', limits: { memoryBytes: 1, nanoCpus: 1, pidsLimit: 1, tmpSizeBytes: 1 } });
  assert.equal(driver.relayUser, `${docker.RELAY_UID}:${docker.RELAY_GID}`);
  const driverModule = await import('../../src/sandbox/docker/driver.ts');
  assert.equal('signalNumber' in driverModule, false);
  const execModule = await import('../../src/sandbox/docker/exec-process.ts');
  assert.equal('signalNumber' in execModule, false);
  assert.equal(Object.getOwnPropertyNames(execModule.DockerExecProcess.prototype).includes('sandboxPid'), false);
});
