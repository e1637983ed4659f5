/**
 * The packed package works for a consumer: `npm pack` (prepack builds dist/),
 * a fresh project `npm install`s the tarball from the npm cache, then the
 * system's Node 20 (not the project's Node 24) imports `claude-runner/client`
 * and runs a task, follows its events and round-trips a file against a real
 * runner; and the project's tsc type-checks a consumer .ts against the
 * installed .d.ts files (with a deliberate mistake it must catch).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { ROOT, startHarness, type Harness } from '../support/harness.ts';

const run = promisify(execFile);

/** The system's Node 20: the first `node` on PATH (or a well-known place) that says v20. */
function findNode20(): string {
  const candidates = [
    ...execFileSync('sh', ['-c', 'which -a node || true'], { encoding: 'utf8' }).split('\n'),
    '/usr/local/bin/node', '/usr/bin/node',
  ].filter((path) => path && !path.includes('node_modules'));
  for (const path of candidates) {
    try {
      if (execFileSync(path, ['--version'], { encoding: 'utf8' }).startsWith('v20.')) return path;
    } catch {
      // not there
    }
  }
  throw new Error(`no Node 20 among ${candidates.join(', ')}`);
}

const CONSUMER_MJS = `
import { ClaudeRunnerClient, ClaudeRunnerError, isClaudeRunnerError } from 'claude-runner/client';
const client = new ClaudeRunnerClient({ baseUrl: process.env.RUNNER_URL });
const out = { node: process.version };
const result = await client.runTask({ sessionId: 'pack-consumer', message: 'pk-hello' });
out.status = result.status;
out.output = result.output;
out.events = [];
for await (const frame of client.taskEvents(result.taskId)) out.events.push(frame.type);
const bytes = new Uint8Array(70000).map((_, i) => (i * 7) % 256);
await client.uploadFile('pack-consumer', 'dir/bytes.bin', new Blob([bytes]).stream());
const back = await client.readFile('pack-consumer', 'dir/bytes.bin');
out.fileEqual = back.length === bytes.length && back.every((b, i) => b === bytes[i]);
try {
  await client.getTask('task_nope');
} catch (error) {
  out.error = { typed: isClaudeRunnerError(error) && error instanceof ClaudeRunnerError, code: error.code, status: error.status };
}
console.log(JSON.stringify(out));
`;

const CONSUMER_TS = `
import { ClaudeRunnerClient, isClaudeRunnerError, type ErrorCode, type StreamFrame, type TaskResult } from 'claude-runner/client';
const client = new ClaudeRunnerClient({ baseUrl: 'http://127.0.0.1:3456', apiKey: 'k' });
export async function demo(): Promise<string> {
  const result: TaskResult = await client.runTask({ sessionId: 's', message: 'm', maxTurns: 3 });
  for await (const frame of client.taskEvents(result.taskId, { after: 0 })) {
    const typed: StreamFrame = frame;
    if (typed.type === 'tool_start') return typed.tool;
  }
  try {
    await client.getSession('s');
  } catch (error) {
    if (isClaudeRunnerError(error)) {
      const code: ErrorCode | 'NETWORK_ERROR' | 'INVALID_RESPONSE' = error.code;
      return code;
    }
  }
  const files = await client.listFiles('s');
  return files.map((file) => file.path).join();
}
// The types are real, not any: each of these is an error tsc must report.
// @ts-expect-error a status that does not exist
export const badStatus: TaskResult['status'] = 'nearly';
// @ts-expect-error no such method
client.runTaskNow();
`;

describe('the packed package in a consumer project', () => {
  let h: Harness;
  let work: string;
  before(() => {
    work = mkdtempSync('/tmp/cr-pack-');
  });
  after(async () => {
    await h?.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('npm pack, npm install, Node 20 imports claude-runner/client and uses it; tsc checks the .d.ts', { timeout: 180_000 }, async () => {
    const node20 = findNode20();
    // The runner starts while the package is built and installed.
    const harness = startHarness({ rules: [rule('pk-hello', bash('echo packed', { chunkDelayMs: 5 }), text('Hello from a packed client.'))] })
      .then((started) => (h = started));
    harness.catch(() => undefined);
    assert.match(execFileSync(node20, ['--version'], { encoding: 'utf8' }), /^v20\./);

    let started = Date.now();
    // prepack builds dist/ (the project's Node is first on PATH, as under npm run).
    await run('npm', ['pack', '--pack-destination', work], { cwd: ROOT, env: { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}` }, maxBuffer: 16 << 20 });
    const packMs = Date.now() - started;
    const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    const packBytes = statSync(join(work, tarball)).size;
    const listing = execFileSync('tar', ['-tzf', join(work, tarball)], { encoding: 'utf8' }).split('\n');
    for (const needed of ['package/dist/client/index.js', 'package/dist/client/index.d.ts', 'package/dist/cli/main.js', 'package/bin/claude-runner.js', 'package/image/Dockerfile']) {
      assert.ok(listing.includes(needed), `${needed} is packed`);
    }
    assert.ok(!listing.some((path) => path.startsWith('package/src/') || path.startsWith('package/test/')), 'no sources or tests packed');

    const consumer = join(work, 'consumer');
    mkdirSync(consumer);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    started = Date.now();
    // The client needs none of the server's optional platform binaries (claude, 200+ MB) nor the install script
    // that unpacks Node 24 (the consumer runs on its own Node 20): left out to keep this quick.
    await run('npm', ['install', join(work, tarball), '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts'], { cwd: consumer, maxBuffer: 16 << 20 });
    const installMs = Date.now() - started;

    writeFileSync(join(consumer, 'consumer.mjs'), CONSUMER_MJS);
    writeFileSync(join(consumer, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, types: [], lib: ['es2022', 'dom', 'dom.asynciterable'] },
      files: ['consumer.ts'],
    }));
    await harness;
    const [ran, checked] = await Promise.all([
      run(node20, ['consumer.mjs'], { cwd: consumer, env: { PATH: process.env.PATH ?? '', RUNNER_URL: h.url } }),
      run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', consumer]).then(() => ({ ok: true, out: '' }), (e: { stdout: string }) => ({ ok: false, out: e.stdout })),
    ]);
    const out = JSON.parse(ran.stdout.trim().split('\n').at(-1)!);
    assert.match(out.node, /^v20\./);
    assert.equal(out.status, 'succeeded');
    assert.deepEqual(out.output, { response: 'Hello from a packed client.' });
    assert.equal(out.events[0], 'connected');
    assert.ok(out.events.includes('tool_start'));
    assert.equal(out.events.at(-1), 'task_complete');
    assert.equal(out.fileEqual, true);
    assert.deepEqual(out.error, { typed: true, code: 'TASK_NOT_FOUND', status: 404 });
    assert.ok(checked.ok, `tsc on the consumer:\n${checked.out}`);
    console.log(`pack ${(packMs / 1000).toFixed(1)} s (${(packBytes / 1024).toFixed(0)} KiB), install ${(installMs / 1000).toFixed(1)} s`);
  });
});
