/**
 * The `claude-runner` CLI (bin/claude-runner.js) as a user runs it, against a
 * real runner: a task streamed live (no colour codes when not a terminal),
 * --json and --wait=false, sessions, files up and down, tail resuming with
 * --after, abort / reset / delete, and the exit codes (0, 1, 2, 130).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClaudeRunnerClient } from '../../src/client/index.ts';
import { bash, errorTurn, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, ROOT, startHarness, type Harness } from '../support/harness.ts';

const RULES = [
  rule('cli-hello', bash('echo hi-from-tool', { chunkDelayMs: 5 }), text('Hello from the agent.', { chunkDelayMs: 5 })),
  rule('cli-long', bash('echo started-long; sleep 60', { chunkDelayMs: 5 }), text('never')),
  rule('cli-fail', errorTurn(400, 'scripted refusal')),
];
const ANSI = /\x1b\[/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

interface Started {
  child: ReturnType<typeof spawn>;
  stdout(): string;
  done: Promise<Run>;
}

describe('the claude-runner CLI', () => {
  let h: Harness;
  let client: ClaudeRunnerClient;
  let tmp: string;

  function start(args: string[], options: { stdin?: Buffer; env?: Record<string, string> } = {}): Started {
    const child = spawn(process.execPath, [join(ROOT, 'bin/claude-runner.js'), ...args], {
      cwd: tmp,
      env: { PATH: process.env.PATH ?? '', CLAUDE_RUNNER_URL: h.url, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    if (options.stdin) child.stdin!.end(options.stdin);
    else child.stdin!.end();
    const done = new Promise<Run>((resolve) => child.once('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stderr: err, stdoutBytes });
    }));
    return { child, stdout: () => Buffer.concat(out).toString(), done };
  }
  const cli = (args: string[], options: { stdin?: Buffer; env?: Record<string, string> } = {}) => start(args, options).done;

  before(async () => {
    h = await startHarness({ rules: RULES });
    client = new ClaudeRunnerClient({ baseUrl: h.url });
    tmp = mkdtempSync('/tmp/cr-cli-');
  });
  after(async () => {
    await h?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('task streams the agent\'s work without colour codes, then its output; exit 0', async () => {
    const run = await cli(['task', 'cli-s1', 'cli-hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stdout + run.stderr, ANSI);
    assert.match(run.stdout, /▸ Bash echo hi-from-tool/);
    assert.match(run.stdout, /↳ hi-from-tool/);
    // Streamed as it came, then the output.
    assert.match(run.stdout, /Hello from the agent\.[\s\S]*task task_\w+ succeeded[\s\S]*Output[\s\S]*Hello from the agent\./);
  });

  test('a failing task exits 1 and says why on stderr', async () => {
    const run = await cli(['task', 'cli-s2', 'cli-fail']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /failed: MODEL_ERROR/);
    assert.doesNotMatch(run.stderr, ANSI);
  });

  test('--json prints the answer only; --wait=false prints the accepted task', async () => {
    const run = await cli(['task', 'cli-s1', 'cli-hello', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const answer = JSON.parse(run.stdout);
    assert.equal(answer.status, 'succeeded');
    assert.deepEqual(answer.output, { response: 'Hello from the agent.' });
    assert.equal(answer.resumed, true);

    const failed = await cli(['task', 'cli-s2', 'cli-fail', '--json']);
    assert.equal(failed.code, 1);
    assert.equal(JSON.parse(failed.stdout).error.code, 'MODEL_ERROR');

    const accepted = await cli(['task', 'cli-s3', 'cli-hello', '--wait=false', '--json']);
    assert.equal(accepted.code, 0, accepted.stderr);
    const body = JSON.parse(accepted.stdout);
    assert.equal(body.status, 'queued');
    assert.equal(body.sessionId, 'cli-s3');
    const plain = await cli(['task', 'cli-s3', 'cli-hello', '--wait=false']);
    assert.match(plain.stdout, /^task_\w+ queued \(session cli-s3\)$/m);
    await eventually(async () => ((await client.getSession('cli-s3')).turns === 2 ? true : undefined), 60_000, 'both tasks');
  });

  test('sessions and session', async () => {
    const list = await cli(['sessions', '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(JSON.parse(list.stdout).sessions.some((s: { sessionId: string }) => s.sessionId === 'cli-s1'));
    const table = await cli(['sessions']);
    assert.match(table.stdout, /^SESSION\s+AGENT\s+STATE/m);
    assert.match(table.stdout, /^cli-s1\s/m);
    const one = await cli(['session', 'cli-s1', '--json']);
    const details = JSON.parse(one.stdout);
    assert.equal(details.session.sessionId, 'cli-s1');
    assert.equal(details.tasks.length, 2);
    const missing = await cli(['session', 'cli-nobody']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /SESSION_NOT_FOUND \(404\)/);
  });

  test('files put and get round-trip bytes (file, stdin, stdout, -o); ls lists them', async () => {
    const bytes = randomBytes(512 * 1024 + 3);
    writeFileSync(join(tmp, 'up.bin'), bytes);
    const put = await cli(['files', 'put', 'cli-s1', 'in/up.bin', 'up.bin']);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, new RegExp(`in/up.bin ${bytes.length} bytes`));
    const fromStdin = await cli(['files', 'put', 'cli-s1', 'in/stdin.bin', '--json'], { stdin: bytes.subarray(0, 1000) });
    assert.deepEqual(JSON.parse(fromStdin.stdout), { sessionId: 'cli-s1', path: 'in/stdin.bin', size: 1000 });

    const toStdout = await cli(['files', 'get', 'cli-s1', 'in/up.bin']);
    assert.equal(toStdout.code, 0, toStdout.stderr);
    assert.ok(toStdout.stdoutBytes.equals(bytes), 'stdout has the bytes');
    const toFile = await cli(['files', 'get', 'cli-s1', 'in/stdin.bin', '-o', 'down.bin']);
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.ok(readFileSync(join(tmp, 'down.bin')).equals(bytes.subarray(0, 1000)));

    const ls = await cli(['files', 'ls', 'cli-s1', 'in', '--json']);
    assert.deepEqual(JSON.parse(ls.stdout).map((f: { path: string }) => f.path).sort(), ['in/stdin.bin', 'in/up.bin']);
    const missing = await cli(['files', 'get', 'cli-s1', 'in/nothing']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /FILE_NOT_FOUND/);
  });

  test('tail --after resumes after that seq, in order; Ctrl-C ends it with 130', async () => {
    const page = await client.listTasks('cli-s1');
    assert.ok(page.tasks.length >= 2);
    // Everything after the first task's last event: the second task's events, from its task_queued.
    const firstEvents: number[] = [];
    for await (const frame of client.taskEvents(page.tasks.at(-1)!.taskId)) if ('seq' in frame) firstEvents.push(frame.seq);
    const after = firstEvents.at(-1)!;
    const tail = start(['tail', 'cli-s1', '--after', String(after), '--json']);
    const frames = await eventually(() => {
      const lines = tail.stdout().split('\n').filter(Boolean).map((line) => JSON.parse(line));
      return lines.some((f) => f.type === 'task_complete') ? lines : undefined;
    }, 20_000, 'the second task\'s events');
    assert.equal(frames[0].type, 'connected');
    assert.equal(frames[0].after, after);
    const seqs = frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number);
    assert.equal(seqs[0], after + 1);
    assert.deepEqual(seqs, seqs.map((_, i) => after + 1 + i));
    assert.equal(frames[1].type, 'task_queued');
    tail.child.kill('SIGINT');
    assert.equal((await tail.done).code, 130);

    const human = start(['tail', 'cli-s1', '--after', String(after)]);
    await eventually(() => (/succeeded/.test(human.stdout()) ? true : undefined), 20_000, 'the human tail');
    assert.match(human.stdout(), new RegExp(`#${after + 1} queued`));
    assert.doesNotMatch(human.stdout(), ANSI);
    human.child.kill('SIGINT');
    assert.equal((await human.done).code, 130);
  });

  test('Ctrl-C while following a task exits 130 and leaves the task running; abort, reset, delete', async () => {
    const following = start(['task', 'cli-s4', 'cli-long']);
    await eventually(() => (/▸ Bash echo started-long; sleep 60/.test(following.stdout()) ? true : undefined), 60_000, 'the long tool');
    following.child.kill('SIGINT');
    const stopped = await following.done;
    assert.equal(stopped.code, 130);
    assert.match(stopped.stderr, /the task goes on/);
    assert.equal((await client.getSession('cli-s4')).busy, true);

    const abort = await cli(['abort', 'cli-s4']);
    assert.equal(abort.code, 0, abort.stderr);
    assert.match(abort.stdout, /Aborted 1 task/);
    await eventually(async () => ((await client.getSession('cli-s4')).busy ? undefined : true), 30_000, 'the abort');
    const reset = await cli(['reset', 'cli-s4', '--json']);
    assert.equal(reset.code, 0, reset.stderr);
    assert.equal(JSON.parse(reset.stdout).reset, true);
    const deleted = await cli(['delete', 'cli-s4']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /cli-s4 deleted/);
    assert.equal((await cli(['session', 'cli-s4'])).code, 1);
  });

  test('usage errors exit 2; --help lists the commands and exit codes; no runner exits 1', async () => {
    const bad = await cli(['task', 'cli-s1', 'x', '--bogus']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown option '--bogus'/);
    assert.equal((await cli(['task', 'cli-s1'])).code, 2, 'a missing argument');
    assert.equal((await cli(['nonsense'])).code, 2, 'an unknown command');
    assert.equal((await cli(['task', 'cli-s1', 'x', '--wait=maybe'])).code, 2, 'a bad value');
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['task', 'sessions', 'session', 'tail', 'files', 'abort', 'reset', 'delete', 'serve', 'image', 'scripted-model', 'demo', 'tools']) {
      assert.match(help.stdout, new RegExp(`^  ${command}\\b`, 'm'), command);
    }
    assert.match(help.stdout, /130\s+interrupted/);
    assert.doesNotMatch(help.stdout, ANSI);
    const nowhere = await cli(['sessions', '--url', 'http://127.0.0.1:9']);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /cannot reach the runner at http:\/\/127\.0\.0\.1:9/);
  });
});
