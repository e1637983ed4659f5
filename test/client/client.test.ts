/**
 * The typed client (src/client) against a real runner: every method, typed
 * errors with the server's code, event streams that resume after the
 * server goes away (a restart) with no duplicate and no gap, and a binary
 * file uploaded and downloaded as streams, byte for byte.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ClaudeRunnerClient, ClaudeRunnerError, isClaudeRunnerError, type StreamFrame } from '../../src/client/index.ts';
import { bash, errorTurn, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';

const RULES = [
  rule('cl-hello', bash('echo hi-from-tool', { chunkDelayMs: 5 }), text('Hello from the agent.', { chunkDelayMs: 5 })),
  rule('cl-slow', bash('sleep 3; echo slept', { chunkDelayMs: 5 }), text('Woke up.', { chunkDelayMs: 5 })),
  rule('cl-long', bash('echo started-long; sleep 60', { chunkDelayMs: 5 }), text('never')),
  rule('cl-fail', errorTurn(400, 'scripted refusal')),
];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function collect(frames: AsyncIterable<StreamFrame>, until?: (frame: StreamFrame) => boolean): Promise<StreamFrame[]> {
  const seen: StreamFrame[] = [];
  for await (const frame of frames) {
    seen.push(frame);
    if (until?.(frame)) break;
  }
  return seen;
}

async function rejectsWith(promise: Promise<unknown>, code: string, status: number): Promise<ClaudeRunnerError> {
  const error = await promise.then(() => assert.fail(`expected ${code}`), (e: unknown) => e);
  assert.ok(isClaudeRunnerError(error), String(error));
  assert.ok(error instanceof ClaudeRunnerError);
  assert.equal(error.code, code);
  assert.equal(error.status, status);
  assert.match(error.requestId ?? '', /^[0-9a-f-]{36}$/);
  return error;
}

const seqs = (frames: StreamFrame[]) => frames.flatMap((f) => ('seq' in f ? [f.seq] : []));

describe('the typed client', () => {
  let h: Harness;
  let client: ClaudeRunnerClient;
  before(async () => {
    // A fixed port, so the client's base URL stays right across restartRunner.
    h = await startHarness({ rules: RULES, env: { PORT: String(await freePort()), SHUTDOWN_GRACE_MS: '300' } });
    client = new ClaudeRunnerClient({ baseUrl: h.url });
  });
  after(async () => h?.close());

  test('runTask, getTask, listTasks, sessions, health, metrics, stream token', async () => {
    const sessionId = 'cl-basics';
    const result = await client.runTask({ sessionId, message: 'cl-hello' }, { idempotencyKey: 'cl-basics-1' });
    assert.equal(result.status, 'succeeded');
    assert.deepEqual(result.output, { response: 'Hello from the agent.' });
    assert.deepEqual(result.tools, ['Bash']);
    // The same key answers the same task.
    const replay = await client.runTask({ sessionId, message: 'cl-hello' }, { idempotencyKey: 'cl-basics-1' });
    assert.equal(replay.taskId, result.taskId);

    const task = await client.getTask(result.taskId);
    assert.equal(task.taskId, result.taskId);
    assert.equal(task.message, 'cl-hello');
    const page = await client.listTasks(sessionId, { limit: 10 });
    assert.deepEqual(page.tasks.map((t) => t.taskId), [result.taskId]);
    assert.equal(page.nextCursor, null);

    const session = await client.getSession(sessionId);
    assert.equal(session.sessionId, sessionId);
    assert.equal(session.turns, 1);
    await client.runTask({ sessionId: 'cl-basics-2', message: 'cl-hello' });
    const first = await client.listSessions({ limit: 1 });
    assert.equal(first.sessions.length, 1);
    assert.ok(first.nextCursor, 'a full page names the next');
    const second = await client.listSessions({ limit: 1, cursor: first.nextCursor! });
    assert.equal(second.sessions.length, 1);
    assert.notEqual(second.sessions[0]!.sessionId, first.sessions[0]!.sessionId);

    const health = await client.health();
    assert.equal(health.status, 'ok');
    assert.equal(health.runnerId, h.runnerId);
    assert.match(await client.metrics(), /^# (HELP|TYPE) /m);
    const token = await client.streamToken({ sessionId, ttlSeconds: 60 });
    assert.ok(token.token.startsWith('st_'));
    assert.ok(Date.parse(token.expiresAt) > Date.now());
  });

  test('typed errors: 404 and 400 codes, a failed task with its fields, a network error', async () => {
    await rejectsWith(client.getTask('task_doesnotexist'), 'TASK_NOT_FOUND', 404);
    await rejectsWith(client.getSession('cl-nobody'), 'SESSION_NOT_FOUND', 404);
    await rejectsWith(client.runTask({ sessionId: '-bad id', message: 'x' }), 'INVALID_SESSION_ID', 400);
    const invalid = await rejectsWith(client.runTask({ sessionId: 'cl-errors', message: '' }), 'INVALID_REQUEST', 400);
    assert.ok(invalid.details, 'INVALID_REQUEST names the failing fields');
    await rejectsWith(client.readFile('cl-basics', 'no/such/file.txt'), 'FILE_NOT_FOUND', 404);
    await rejectsWith(client.listTasks('cl-basics', { limit: 0 }), 'INVALID_REQUEST', 400);

    const failed = await rejectsWith(client.runTask({ sessionId: 'cl-errors', message: 'cl-fail' }), 'MODEL_ERROR', 502);
    assert.ok(failed.task, 'the task fields came with the error');
    assert.equal(failed.task.sessionId, 'cl-errors');
    assert.equal(failed.task.status, 'failed');
    assert.equal((await client.getTask(failed.task.taskId)).status, 'failed');

    const nowhere = new ClaudeRunnerClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    const network = await nowhere.health().then(() => assert.fail('no server'), (e: unknown) => e as ClaudeRunnerError);
    assert.equal(network.code, 'NETWORK_ERROR');
    assert.equal(network.status, 0);
  });

  test('submitTask and taskEvents: the whole task in order, ending after its last event; after resumes', async () => {
    const accepted = await client.submitTask({ sessionId: 'cl-events', message: 'cl-hello' });
    assert.equal(accepted.status, 'queued');
    const frames = await collect(client.taskEvents(accepted.taskId));
    assert.equal(frames[0]!.type, 'connected');
    const events = frames.filter((f) => 'seq' in f);
    assert.equal(events[0]!.type, 'task_queued');
    assert.equal(events.at(-1)!.type, 'task_complete');
    assert.ok(events.some((f) => f.type === 'tool_start' && f.tool === 'Bash'));
    const numbers = seqs(events);
    assert.deepEqual(numbers, [...numbers].sort((a, b) => a - b));
    assert.equal(new Set(numbers).size, numbers.length);

    const middle = numbers[Math.floor(numbers.length / 2)]!;
    const rest = await collect(client.taskEvents(accepted.taskId, { after: middle }));
    assert.deepEqual(seqs(rest), numbers.filter((n) => n > middle));
  });

  test('sessionEvents resumes across a server restart: no duplicate, no gap', async () => {
    const sessionId = 'cl-resume';
    const controller = new AbortController();
    const seen: StreamFrame[] = [];
    const following = (async () => {
      for await (const frame of client.sessionEvents(sessionId, { after: 0, signal: controller.signal })) seen.push(frame);
    })();
    const firstTask = await client.runTask({ sessionId, message: 'cl-hello' });
    await eventually(() => (seen.some((f) => f.type === 'task_complete' && f.taskId === firstTask.taskId) ? true : undefined), 20_000, 'the first task\'s events');

    // A task running while the server goes away, and one after it comes back.
    const slow = await client.submitTask({ sessionId, message: 'cl-slow' });
    await eventually(() => (seen.some((f) => f.type === 'tool_start' && f.taskId === slow.taskId) ? true : undefined), 30_000, 'the slow tool to start');
    await h.stopRunner();
    await h.restartRunner();
    const third = await client.runTask({ sessionId, message: 'cl-hello' });
    await eventually(() => (seen.some((f) => f.type === 'task_complete' && f.taskId === third.taskId) ? true : undefined), 30_000, 'the third task\'s events');
    controller.abort();
    await following;

    const connects = seen.filter((f) => f.type === 'connected');
    assert.ok(connects.length >= 2, `reconnected (${connects.length} connected frames)`);
    const numbers = seqs(seen);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1), 'every seq from 1, once, in order');
    // The slow task was interrupted by the restart and said so.
    assert.ok(seen.some((f) => f.type === 'task_error' && f.taskId === slow.taskId && f.error.code === 'TASK_INTERRUPTED'));
  });

  test('taskEvents resumes after its connection is cut mid-task: the same events as an uncut stream', async () => {
    // A fetch whose first event stream breaks off right after the tool call shows up, as a dropped connection would.
    let cut = 0;
    const cutting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!String(input).endsWith('/events') || cut > 0 || !response.body) return response;
      cut += 1;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          controller.enqueue(value);
          if (decoder.decode(value, { stream: true }).includes('event: tool_start')) {
            await reader.cancel();
            controller.error(new TypeError('terminated'));
          }
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const flaky = new ClaudeRunnerClient({ baseUrl: h.url, fetch: cutting });
    const accepted = await flaky.submitTask({ sessionId: 'cl-task-cut', message: 'cl-slow' });
    const frames = await collect(flaky.taskEvents(accepted.taskId));
    assert.equal(cut, 1, 'the first stream was cut');
    assert.equal(frames.filter((f) => f.type === 'connected').length, 2, 'it reconnected once');
    assert.equal(frames.at(-1)!.type, 'task_complete');
    const whole = await collect(client.taskEvents(accepted.taskId));
    assert.deepEqual(seqs(frames), seqs(whole), 'no duplicate, no gap');
    assert.deepEqual(frames.filter((f) => 'seq' in f), whole.filter((f) => 'seq' in f));
  });

  test('files: a binary file up and down as streams, byte-exact; list, delete; abort, reset, delete session', async () => {
    const sessionId = 'cl-files';
    await client.runTask({ sessionId, message: 'cl-hello' });
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    // An async iterable of chunks (a Node stream), sent as it is read.
    const written = await client.uploadFile(sessionId, 'data/blob.bin', Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]));
    assert.deepEqual(written, { sessionId, path: 'data/blob.bin', size: bytes.length });
    const { stream, size } = await client.downloadFile(sessionId, 'data/blob.bin');
    assert.equal(size, bytes.length);
    const chunks: Uint8Array[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(Buffer.concat(chunks).equals(bytes), 'downloaded bytes equal the uploaded ones');

    // A web ReadableStream, a string and a Blob are bodies too.
    await client.uploadFile(sessionId, 'web.bin', new Blob([bytes.subarray(0, 4096)]).stream());
    assert.ok(Buffer.from(await client.readFile(sessionId, 'web.bin')).equals(bytes.subarray(0, 4096)));
    await client.uploadFile(sessionId, 'note.txt', 'héllo');
    assert.equal(Buffer.from(await client.readFile(sessionId, 'note.txt')).toString(), 'héllo');
    await rejectsWith(client.uploadFile(sessionId, 'note.txt/inside', 'x'), 'INVALID_PATH', 400);
    await client.uploadFile(sessionId, 'blob.txt', new Blob(['from a blob']));
    assert.equal(Buffer.from(await client.readFile(sessionId, 'blob.txt')).toString(), 'from a blob');

    const listed = await client.listFiles(sessionId, 'data');
    assert.deepEqual(listed.map((f) => [f.path, f.type, f.size]), [['data/blob.bin', 'file', bytes.length]]);
    assert.deepEqual(await client.deleteFile(sessionId, 'data/blob.bin'), { sessionId, path: 'data/blob.bin', deleted: true });
    await rejectsWith(client.readFile(sessionId, 'data/blob.bin'), 'FILE_NOT_FOUND', 404);

    const long = await client.submitTask({ sessionId, message: 'cl-long' });
    await eventually(async () => ((await client.getTask(long.taskId)).status === 'running' ? true : undefined), 30_000, 'the long task to run');
    const aborted = await client.abortTask(long.taskId);
    assert.equal(aborted.taskId, long.taskId);
    await eventually(async () => ((await client.getTask(long.taskId)).status === 'aborted' ? true : undefined), 30_000, 'the abort');
    const idle = await client.abortSession(sessionId);
    assert.equal(idle.aborted, false);

    const reset = await client.resetSession(sessionId);
    assert.equal(reset.reset, true);
    assert.equal(reset.turns, 0);
    assert.deepEqual(await client.deleteSession(sessionId), { sessionId, deleted: true });
    await rejectsWith(client.getSession(sessionId), 'SESSION_NOT_FOUND', 404);
  });
});
