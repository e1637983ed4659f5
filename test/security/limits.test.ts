/**
 * Limits: a fork bomb or a memory hog ends its own task (SANDBOX_LIMIT) and
 * nobody else's; wall-clock timeouts (per task and by default) and max turns
 * end the task with their own status and code; request bodies, request rates,
 * sessions and running containers are capped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { errorTable } from '../../src/core/errors.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { containersOf, startHarness, type Harness } from '../support/harness.ts';
import { containerProcesses, docker, lastToolResults, sessionContainer } from './support.ts';

describe('sandbox resource limits', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { SANDBOX_MEMORY: '1g', SANDBOX_PIDS: '256' },
      rules: [
        rule('fork-bomb-r9', bash('bomb() { bomb | bomb & }; bomb; echo busy; sleep 90'), text('the bomb was survived')),
        rule('memory-hog-r9', bash('head -c 3000m /dev/zero | tail; echo "tail=$?"; echo busy; sleep 90'), text('the hog was survived')),
        rule('quiet-neighbour-r9', bash('echo b-start; sleep 4; echo b-done'), text('b finished')),
        rule('alive-after-limit-r9', bash('echo alive-again; ps -eo uid=,comm= | wc -l | sed "s/^/procs:/"'), text('fine')),
      ],
    });
  });
  after(async () => h?.close());

  for (const [what, prompt, message] of [
    ['a fork bomb', 'fork-bomb-r9', /process limit/],
    ['a memory hog', 'memory-hog-r9', /out of memory/],
  ] as const) {
    test(`${what} in session A fails A's task with SANDBOX_LIMIT while B's task, run at the same time, succeeds; A works again after`, async () => {
      const session = `limit-${prompt}`;
      const [a, b] = await Promise.all([
        h.api('/task', { method: 'POST', json: { sessionId: session, message: prompt } }),
        h.api('/task', { method: 'POST', json: { sessionId: `neighbour-${prompt}`, message: 'quiet-neighbour-r9' } }),
      ]);
      assert.equal(a.status, errorTable.SANDBOX_LIMIT.status, JSON.stringify(a.body));
      assert.equal(a.body.status, 'failed');
      assert.equal(a.body.error.code, 'SANDBOX_LIMIT');
      assert.match(a.body.error.message, message);
      // Noticed long before the script would have ended by itself (its sleep), even on a loaded machine.
      assert.ok(a.body.duration < 45_000, `A took ${a.body.duration} ms: the limit was not noticed`);
      assert.equal(b.status, 200, JSON.stringify(b.body));
      assert.equal(b.body.status, 'succeeded');
      assert.match(lastToolResults(h.model, 'quiet-neighbour-r9'), /b-done/);
      // Nothing of the bomb or the hog survives, and the session's sandbox serves the next task.
      const again = await h.api('/task', { method: 'POST', json: { sessionId: session, message: 'alive-after-limit-r9' } });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      const seen = lastToolResults(h.model, 'alive-after-limit-r9');
      assert.match(seen, /alive-again/);
      assert.ok(Number(/procs:(\d+)/.exec(seen)?.[1]) < 20, seen);
    });
  }
});

describe('time and turn limits', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { TASK_TIMEOUT_MS: '4000' },
      rules: [
        rule('slow-tool-r9', bash('echo busy; sleep 60'), text('never')),
        rule('endless-loop-r9', ...Array.from({ length: 30 }, (_, i) => bash(`echo loop-${i}`))),
      ],
    });
  });
  after(async () => h?.close());

  const assertNothingLeft = async (sessionId: string) => {
    const container = await sessionContainer(h.runnerId, sessionId);
    assert.ok(container);
    const info = await docker.getContainer(container.Id).inspect();
    if (info.State.Running) assert.deepEqual((await containerProcesses(container.Id)).filter((p) => p.uid === '1000'), []);
  };

  test('timeoutMs ends the task with timed_out / TASK_TIMEOUT, and its processes are gone', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'slow-field', message: 'slow-tool-r9', timeoutMs: 1500 } });
    assert.equal(res.status, 504, JSON.stringify(res.body));
    assert.equal(res.body.status, 'timed_out');
    assert.equal(res.body.error.code, 'TASK_TIMEOUT');
    assert.match(res.body.error.message, /1500 ms/);
    assert.ok(res.body.duration >= 1500 && res.body.duration < 4000, String(res.body.duration));
    await assertNothingLeft('slow-field');
  });

  test('TASK_TIMEOUT_MS is the default limit', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'slow-default', message: 'slow-tool-r9' } });
    assert.equal(res.status, 504, JSON.stringify(res.body));
    assert.equal(res.body.status, 'timed_out');
    assert.equal(res.body.error.code, 'TASK_TIMEOUT');
    assert.ok(res.body.duration >= 4000 && res.body.duration < 10_000, String(res.body.duration));
    await assertNothingLeft('slow-default');
  });

  test('maxTurns stops an endless tool loop with MAX_TURNS_REACHED', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'looper', message: 'endless-loop-r9', maxTurns: 3 } });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.status, 'failed');
    assert.equal(res.body.error.code, 'MAX_TURNS_REACHED');
    const calls = h.model.findRequests({ prompt: 'endless-loop-r9', kind: 'main' }).length;
    assert.ok(calls >= 3 && calls <= 4, `${calls} model calls for maxTurns 3`);
  });
});

describe('request, session and container caps', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { BODY_LIMIT_BYTES: '4k', MAX_SESSIONS: '5', MAX_RUNNING_SANDBOXES: '2', MAX_CONCURRENT_TASKS: '4' },
      rules: [
        rule('cap-busy-r9', bash('echo busy; sleep 2; echo done'), text('capped task done')),
        rule('cap-remember-r9', text('I will remember: kiwi')),
        rule('cap-recall-r9', text('You said kiwi')),
      ],
    });
  });
  after(async () => h?.close());

  test('a body over BODY_LIMIT_BYTES is 413 PAYLOAD_TOO_LARGE and creates nothing', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'big', message: 'x'.repeat(5000) } });
    assert.equal(res.status, 413);
    assert.deepEqual(res.body, { error: { code: 'PAYLOAD_TOO_LARGE', message: 'The request body is too large.' } });
    assert.equal((await h.api('/session/big')).status, 404);
  });

  test('MAX_RUNNING_SANDBOXES: never more containers running than the cap; the least recently used idle one makes room and resumes later', async () => {
    let maxRunning = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const running = (await containersOf(h.runnerId)).filter((c) => c.State === 'running').length;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const first = await h.api('/task', { method: 'POST', json: { sessionId: 'cap-0', message: 'cap-remember-r9' } });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      // Four at once with a cap of two: they all succeed, two at a time.
      const started = Date.now();
      const batch = await Promise.all([1, 2, 3, 4].map((i) => h.api('/task', { method: 'POST', json: { sessionId: `cap-${i}`, message: 'cap-busy-r9' } })));
      for (const res of batch) assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.ok(Date.now() - started >= 4000, 'four 2-second tasks finished faster than two at a time');
      // cap-0 was stopped to make room; its next task starts it again and continues the conversation.
      const cap0 = await sessionContainer(h.runnerId, 'cap-0');
      assert.equal(cap0?.State, 'exited');
      const recall = await h.api('/task', { method: 'POST', json: { sessionId: 'cap-0', message: 'cap-recall-r9' } });
      assert.equal(recall.status, 200, JSON.stringify(recall.body));
      assert.equal(recall.body.resumed, true);
      const history = JSON.stringify((h.model.findRequests({ prompt: 'cap-recall-r9' })[0]!.body as { messages: unknown[] }).messages);
      assert.match(history, /I will remember: kiwi/);
    } finally {
      polling = false;
      await poll;
    }
    assert.equal(maxRunning, 2);
  });

  test('MAX_SESSIONS: a new session past the cap is 429 SESSION_LIMIT_REACHED', async () => {
    // cap-0 .. cap-4 exist: five sessions.
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'one-too-many', message: 'cap-remember-r9' } });
    assert.equal(res.status, 429, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'SESSION_LIMIT_REACHED');
    // An existing session still takes tasks.
    assert.equal((await h.api('/task', { method: 'POST', json: { sessionId: 'cap-1', message: 'cap-remember-r9' } })).status, 200);
  });
});

describe('rate limit', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ env: { API_KEYS: 'tenant-r:rate-key-one-123456,tenant-r:rate-key-two-654321', RATE_LIMIT_PER_MINUTE: '5' } });
  });
  after(async () => h?.close());

  test('past RATE_LIMIT_PER_MINUTE a key gets 429 RATE_LIMITED in the JSON error shape; another key is not affected', async () => {
    const one = { authorization: 'Bearer rate-key-one-123456' };
    const two = { authorization: 'Bearer rate-key-two-654321' };
    for (let i = 0; i < 5; i++) assert.equal((await h.api('/sessions', { headers: one })).status, 200, `request ${i + 1}`);
    const limited = await h.api('/sessions', { headers: one });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error.code, 'RATE_LIMITED');
    assert.match(limited.body.error.message, /the limit is 5 a minute/);
    assert.deepEqual(Object.keys(limited.body), ['error']);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.equal((await h.api('/sessions', { headers: two })).status, 200);
    // /health is never limited.
    assert.equal((await h.api('/health')).status, 200);
  });
});
