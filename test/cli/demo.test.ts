/**
 * The demo (`claude-runner demo`) leaves nothing behind: after its example
 * task, with its session's container still running, Ctrl-C ends it, and then
 * no container labelled with its runner id remains, its ports (runner, mock
 * API, scripted model) are closed and its temporary data folder is gone.
 * `--once` cleans up the same way by itself.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { containersOf, eventually, removeContainers, ROOT, testRunnerId } from '../support/harness.ts';

interface DemoRun {
  child: ReturnType<typeof spawn>;
  output(): string;
  exited: Promise<number | null>;
}

function startDemo(args: string[], runnerId: string): DemoRun {
  const child = spawn(process.execPath, ['bin/claude-runner.js', 'demo', '--port', '0', '--api-port', '0', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', DEMO_RUNNER_ID: runnerId, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** The demo's addresses and data folder, as it printed them. */
function printed(output: string): { ports: number[]; dataDir: string } {
  const ports = [...output.matchAll(/^(?:scripted model|mock Acme API|Claude Runner)\s+http:\/\/127\.0\.0\.1:(\d+)/gm)].map((m) => Number(m[1]));
  const dataDir = /data in (\S+)\)/.exec(output)?.[1] ?? '';
  return { ports, dataDir };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

async function assertNothingLeft(runnerId: string, ports: number[], dataDir: string): Promise<void> {
  assert.deepEqual((await containersOf(runnerId)).map((c) => c.Names[0]), [], 'no container of the demo\'s runner');
  for (const port of ports) assert.equal(await listening(port), false, `port ${port} is closed`);
  assert.ok(dataDir.startsWith('/tmp/') || dataDir.includes('claude-runner-demo-'), dataDir);
  assert.equal(existsSync(dataDir), false, 'the data folder is gone');
}

describe('the demo leaves nothing behind', () => {
  test('interactive: Ctrl-C after the example task removes its container, closes its ports, exits 130', { timeout: 180_000 }, async () => {
    const runnerId = testRunnerId();
    const demo = startDemo([], runnerId);
    try {
      await eventually(() => (/demo ready/.test(demo.output()) ? true : undefined), 150_000, `the demo's task:\n${demo.output()}`);
      const output = demo.output();
      assert.match(output, /task_complete/);
      assert.match(output, /tool_end .*"name":"Alice Chen"/, "the tool reached the mock API");
      assert.doesNotMatch(output, /egress_refused/);
      assert.match(output, /"status": "succeeded"/);
      const { ports, dataDir } = printed(output);
      assert.equal(ports.length, 3, output);
      for (const port of ports) assert.equal(await listening(port), true, `port ${port} is open while the demo runs`);
      // The situation of the bug: the session's container runs on after its task.
      assert.equal((await containersOf(runnerId)).filter((c) => c.State === 'running').length, 1, 'the session\'s container runs');

      demo.child.kill('SIGINT');
      assert.equal(await demo.exited, 130, demo.output());
      await assertNothingLeft(runnerId, ports, dataDir);
    } finally {
      demo.child.kill('SIGKILL');
      await removeContainers(runnerId);
    }
  });

  test('--once: the example task, then everything removed, exit 0', { timeout: 180_000 }, async () => {
    const runnerId = testRunnerId();
    const demo = startDemo(['--once'], runnerId);
    try {
      assert.equal(await demo.exited, 0, demo.output());
      assert.match(demo.output(), /"status": "succeeded"/);
      const { ports, dataDir } = printed(demo.output());
      assert.equal(ports.length, 3);
      await assertNothingLeft(runnerId, ports, dataDir);
    } finally {
      demo.child.kill('SIGKILL');
      await removeContainers(runnerId);
    }
  });
});
