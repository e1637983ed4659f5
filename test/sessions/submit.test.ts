/**
 * Submitting and reading tasks: wait:false, Idempotency-Key, history pages,
 * the per-session queue limit, the session cap, and the session list.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { waitFinal, waitStatus } from './support.ts';

describe('submitting tasks', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      env: { MAX_QUEUED_PER_SESSION: '3' },
      rules: [
        rule('blocking-sleeper', bash('echo busy; sleep 60'), text('never')),
        rule('idem-job', text('idempotent answer', { delayMs: 300 })),
        rule('list-job', text('listed')),
      ],
    });
  });
  after(async () => h?.close());

  const submit = (json: Record<string, unknown>, headers: Record<string, string> = {}) =>
    h.api('/task', { method: 'POST', json, headers });

  test('wait:false answers 202 with the task id at once; GET /tasks/:id follows it to its end', async () => {
    const t0 = Date.now();
    const res = await submit({ sessionId: 'async', message: 'list-job async', wait: false });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.deepEqual(Object.keys(res.body).sort(), ['sessionId', 'status', 'taskId']);
    assert.equal(res.body.sessionId, 'async');
    assert.equal(res.body.status, 'queued');
    assert.ok(Date.now() - t0 < 1000, 'answered before the task ran');
    // Stored before the answer: readable at once.
    const first = await h.api(`/tasks/${res.body.taskId}`);
    assert.equal(first.status, 200);
    assert.ok(['queued', 'running'].includes(first.body.status));
    assert.equal(first.body.message, 'list-job async');
    const final = await waitFinal(h.api, res.body.taskId);
    assert.equal(final.status, 'succeeded');
    assert.deepEqual(final.output, { response: 'listed' });
    assert.equal(final.error, null);
    assert.ok(final.cost > 0);
    const [created, started, finished] = [final.createdAt, final.startedAt, final.finishedAt].map((t: string) => Date.parse(t)) as [number, number, number];
    assert.ok(created <= started && started <= finished, `${final.createdAt} ${final.startedAt} ${final.finishedAt}`);
    const unknown = await h.api('/tasks/task_unknown');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'TASK_NOT_FOUND');
  });

  test('20 concurrent submits with one Idempotency-Key create one task; all answers carry its id', async () => {
    const body = { sessionId: 'idem', message: 'idem-job please' };
    const answers = await Promise.all(Array.from({ length: 20 }, () => submit(body, { 'idempotency-key': 'key-20' })));
    for (const res of answers) assert.equal(res.status, 200, JSON.stringify(res.body));
    const ids = new Set(answers.map((r) => r.body.taskId));
    assert.equal(ids.size, 1, `task ids: ${[...ids].join(', ')}`);
    for (const res of answers) assert.deepEqual(res.body.output, { response: 'idempotent answer' });
    assert.equal(answers.filter((r) => r.headers.get('idempotent-replay') === 'true').length, 19);
    const history = await h.api('/session/idem/tasks');
    assert.deepEqual(history.body.tasks.map((t: any) => t.taskId), [...ids]);
    assert.equal(h.model.findRequests({ prompt: 'idem-job please' }).length, 1, 'the model was asked once');
    const sessions = (await h.api('/sessions')).body.filter((s: any) => s.sessionId === 'idem');
    assert.equal(sessions.length, 1, 'one session, although 20 requests created it at once');

    // A retry later returns the first task, ended; nothing runs again.
    const retry = await submit(body, { 'idempotency-key': 'key-20' });
    assert.equal(retry.status, 200);
    assert.equal(retry.body.taskId, [...ids][0]);
    assert.equal(retry.headers.get('idempotent-replay'), 'true');
    assert.equal(h.model.findRequests({ prompt: 'idem-job please' }).length, 1);
    // wait:false replays answer 202 with the same id.
    const asyncRetry = await submit({ ...body, wait: false }, { 'idempotency-key': 'key-20' });
    assert.equal(asyncRetry.status, 202);
    assert.equal(asyncRetry.body.taskId, [...ids][0]);

    // The same key with a different body is a conflict, and creates nothing.
    for (const other of [{ ...body, message: 'idem-job other' }, { ...body, context: 'ctx' }, { ...body, maxTurns: 3 }]) {
      const conflict = await submit(other, { 'idempotency-key': 'key-20' });
      assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
      assert.equal(conflict.body.error.code, 'IDEMPOTENCY_CONFLICT');
    }
    assert.equal((await h.api('/session/idem/tasks')).body.tasks.length, 1);
    // A new key is a new task.
    const fresh = await submit(body, { 'idempotency-key': 'key-21' });
    assert.equal(fresh.status, 200);
    assert.notEqual(fresh.body.taskId, [...ids][0]);
    const bad = await submit(body, { 'idempotency-key': 'has space' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'INVALID_REQUEST');
  });

  test('GET /session/:id/tasks lists newest first, page by page with a cursor, no gap and no duplicate', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      // One after the other: the queue holds at most 3.
      const res = await submit({ sessionId: 'history', message: `list-job ${i}` });
      assert.equal(res.status, 200);
      ids.push(res.body.taskId);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await h.api(`/session/history/tasks?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      assert.equal(res.status, 200);
      assert.ok(res.body.tasks.length <= 3);
      seen.push(...res.body.tasks.map((t: any) => t.taskId));
      cursor = res.body.nextCursor;
      assert.equal(res.headers.get('x-next-cursor'), cursor);
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...ids].reverse());
    const all = await h.api('/session/history/tasks');
    assert.deepEqual(all.body.tasks.map((t: any) => t.message), ids.map((_, i) => `list-job ${i}`).reverse());
    assert.ok(all.body.tasks.every((t: any) => t.status === 'succeeded'));
    const badCursor = await h.api('/session/history/tasks?cursor=not-a-cursor');
    assert.equal(badCursor.status, 400);
    assert.equal(badCursor.body.error.code, 'INVALID_REQUEST');
    const badLimit = await h.api('/session/history/tasks?limit=0');
    assert.equal(badLimit.status, 400);
    const unknown = await h.api('/session/nobody/tasks');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'SESSION_NOT_FOUND');
  });

  test('a session queue past MAX_QUEUED_PER_SESSION answers 429 QUEUE_FULL and stores nothing', async () => {
    const running = await submit({ sessionId: 'full', message: 'blocking-sleeper', wait: false });
    await waitStatus(h.api, running.body.taskId, 'running');
    for (let i = 0; i < 3; i++) {
      const queued = await submit({ sessionId: 'full', message: `list-job full ${i}`, wait: false });
      assert.equal(queued.status, 202, JSON.stringify(queued.body));
    }
    const refused = await submit({ sessionId: 'full', message: 'list-job one too many', wait: false });
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'QUEUE_FULL');
    const blocking = await submit({ sessionId: 'full', message: 'list-job one too many, blocking' });
    assert.equal(blocking.status, 429);
    const history = await h.api('/session/full/tasks');
    assert.equal(history.body.tasks.length, 4);
    assert.ok(!history.body.tasks.some((t: any) => t.message.includes('one too many')));
    const session = await h.api('/session/full');
    assert.equal(session.body.queueDepth, 3);
    assert.equal(session.body.state, 'busy');
    // Other sessions are not limited by this one.
    assert.equal((await submit({ sessionId: 'not-full', message: 'list-job elsewhere', wait: false })).status, 202);
    await h.api('/task/full/abort', { method: 'POST' });
    // With room again, the queue takes tasks.
    const again = await submit({ sessionId: 'full', message: 'list-job after the queue emptied' });
    assert.equal(again.status, 200);
  });
});

describe('session limits and the session list', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      env: { MAX_SESSIONS: '3' },
      rules: [
        rule('list-sleeper', bash('echo busy; sleep 60'), text('never')),
        rule('priced-job', text('priced')),
      ],
    });
  });
  after(async () => h?.close());

  test('past MAX_SESSIONS a new session is 429 SESSION_LIMIT_REACHED; existing sessions keep working', async () => {
    for (const id of ['cap-1', 'cap-2', 'cap-3']) {
      const res = await h.api('/task', { method: 'POST', json: { sessionId: id, message: `priced-job ${id}` } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const refused = await h.api('/task', { method: 'POST', json: { sessionId: 'cap-4', message: 'priced-job cap-4' } });
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'SESSION_LIMIT_REACHED');
    assert.equal((await h.api('/session/cap-4')).status, 404);
    assert.equal(h.model.findRequests({ prompt: 'priced-job cap-4' }).length, 0);
    const sessionsDirs = (await import('node:fs')).readdirSync(`${h.dataDir}/sessions`);
    assert.equal(sessionsDirs.length, 3, 'no folder left for the refused session');
    // An existing session still takes tasks.
    assert.equal((await h.api('/task', { method: 'POST', json: { sessionId: 'cap-1', message: 'priced-job cap-1 again' } })).status, 200);
    // Deleting one makes room.
    assert.equal((await h.api('/session/cap-3', { method: 'DELETE' })).status, 200);
  });

  test('GET /sessions is an array with status, queue depth, total cost and last activity, paged by x-next-cursor', async () => {
    // cap-1: two tasks, idle. cap-2: one task. busy-one: a running and a queued task.
    const busy = await h.api('/task', { method: 'POST', json: { sessionId: 'busy-one', message: 'list-sleeper', wait: false } });
    assert.equal(busy.status, 202, JSON.stringify(busy.body));
    await waitStatus(h.api, busy.body.taskId, 'running');
    await h.api('/task', { method: 'POST', json: { sessionId: 'busy-one', message: 'priced-job queued', wait: false } });

    const res = await h.api('/sessions');
    assert.equal(res.status, 200);
    assert.ok(Array.isArray(res.body));
    assert.equal(res.headers.get('x-next-cursor'), null);
    assert.deepEqual(res.body.map((s: any) => s.sessionId), ['busy-one', 'cap-2', 'cap-1'], 'newest first');
    const byId = Object.fromEntries(res.body.map((s: any) => [s.sessionId, s]));
    for (const s of res.body) {
      assert.deepEqual(Object.keys(s).sort(), ['agent', 'agentLive', 'busy', 'createdAt', 'lastActivity', 'queueDepth', 'sessionId', 'state', 'totalCost', 'turns']);
      assert.equal(s.agent, 'default');
    }
    assert.equal(byId['busy-one'].state, 'busy');
    assert.equal(byId['busy-one'].busy, true);
    assert.equal(byId['busy-one'].queueDepth, 1);
    assert.equal(byId['cap-2'].state, 'idle');
    assert.equal(byId['cap-2'].queueDepth, 0);
    assert.equal(byId['cap-1'].turns, 2);
    // Total cost is the sum of the session's task costs; last activity is when its last task ended.
    const tasks = (await h.api('/session/cap-1/tasks')).body.tasks;
    const sum = tasks.reduce((acc: number, t: any) => acc + t.cost, 0);
    assert.ok(sum > 0);
    assert.ok(Math.abs(byId['cap-1'].totalCost - sum) < 1e-12, `${byId['cap-1'].totalCost} vs ${sum}`);
    assert.equal(byId['cap-1'].lastActivity, tasks[0].finishedAt);
    const one = await h.api('/session/cap-1');
    assert.equal(one.body.lastTaskId, tasks[0].taskId);
    assert.equal(one.body.totalCost, byId['cap-1'].totalCost);

    // Pages of 2: the cursor travels in x-next-cursor, the body stays an array.
    const first = await h.api('/sessions?limit=2');
    assert.deepEqual(first.body.map((s: any) => s.sessionId), ['busy-one', 'cap-2']);
    const cursor = first.headers.get('x-next-cursor');
    assert.ok(cursor);
    const second = await h.api(`/sessions?limit=2&cursor=${encodeURIComponent(cursor)}`);
    assert.deepEqual(second.body.map((s: any) => s.sessionId), ['cap-1']);
    assert.equal(second.headers.get('x-next-cursor'), null);
    const bad = await h.api('/sessions?cursor=garbage');
    assert.equal(bad.status, 400);
    await h.api('/task/busy-one/abort', { method: 'POST' });
  });
});
