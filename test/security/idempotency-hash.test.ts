/**
 * The idempotency request hash stored with a task is keyed (an HMAC under a
 * sub-key of the sealing key): the database alone cannot test a guessed env
 * value against it. Replays still find their task, also for keys stored
 * before the hash was keyed. TaskService on a real SQLite store; no sandbox.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Store } from '../../src/core/ports/store.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { EnvSealer } from '../../src/secrets/sealer.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/index.ts';
import { TaskService, type SubmitTaskInput, type TaskServiceDeps } from '../../src/tasks/task-service.ts';
import { makeSession, makeTask } from '../store/fixtures.ts';

const session = makeSession('idem');

/** Only what submit uses; the rest of the runner is not there. */
function serviceWith(store: Store, sealer: EnvSealer): TaskService {
  return new TaskService({
    store,
    sealer,
    redactor: new Redactor(),
    sessions: { exclusive: (_t: string, _s: string, fn: () => Promise<unknown>) => fn(), ensure: async () => session },
    events: { append: async () => undefined },
    scheduler: { poke: () => undefined },
    announcements: { begin: () => () => undefined },
    execution: {}, completions: {}, endings: {},
    maxQueuedPerSession: 100,
    isAccepting: () => true,
  } as unknown as TaskServiceDeps);
}

/** The request as the hash covers it (src/tasks/task-service.ts, requestText). */
function plainHash(input: SubmitTaskInput, env: Record<string, string>): string {
  const text = JSON.stringify([input.tenantId, input.sessionId, input.message, input.context ?? null, env, input.agent ?? null, input.options ?? {}]);
  return createHash('sha256').update(text).digest('hex');
}

describe('idempotency request hash', () => {
  let dir = '';
  let store: SqliteStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'runner-idem-'));
    store = await openSqliteStore({ file: join(dir, 'runner.db') });
    await store.createSession(session, { maxSessions: 10 });
  });
  after(async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const env = { PIN: '4711-0815' };
  const request = (message: string, idempotencyKey: string): SubmitTaskInput =>
    ({ tenantId: session.tenantId, sessionId: session.id, message, env, idempotencyKey });

  test('the stored hash is keyed: not the plain sha256 of the request, different under another sealing key', async () => {
    const first = await serviceWith(store, new EnvSealer(randomBytes(32))).submit(request('hash me', 'key-a'));
    const second = await serviceWith(store, new EnvSealer(randomBytes(32))).submit(request('hash me', 'key-b'));
    const [a, b] = [(await store.getTask(first.task.id))!.requestHash!, (await store.getTask(second.task.id))!.requestHash!];
    const plain = plainHash(request('hash me', 'key-a'), env);
    assert.match(a, /^hmac1:[0-9a-f]{64}$/);
    assert.ok(!a.includes(plain) && !b.includes(plain), 'the plain sha256 of the request is not stored');
    assert.notEqual(a, b, 'the same request under two sealing keys');
    assert.ok(!a.includes(env.PIN));
  });

  test('the same key and request replay the task; another request with that key is IDEMPOTENCY_CONFLICT', async () => {
    const service = serviceWith(store, new EnvSealer(randomBytes(32)));
    const first = await service.submit(request('replay me', 'key-r'));
    assert.equal(first.created, true);
    const again = await service.submit(request('replay me', 'key-r'));
    assert.deepEqual([again.created, again.task.id], [false, first.task.id]);
    await assert.rejects(service.submit(request('something else', 'key-r')), { name: 'RunnerError', code: 'IDEMPOTENCY_CONFLICT' });
    await assert.rejects(service.submit({ ...request('replay me', 'key-r'), env: { PIN: '4711-0816' } }), { code: 'IDEMPOTENCY_CONFLICT' });
  });

  test('a key stored before the hash was keyed (plain sha256) still replays its task, and still conflicts with another request', async () => {
    const old = request('from before the upgrade', 'key-old');
    const legacy = makeTask(session, 'task_legacy', { message: old.message, idempotencyKey: 'key-old', requestHash: plainHash(old, env) });
    await store.enqueueTask(legacy, { maxQueued: 100 });
    const service = serviceWith(store, new EnvSealer(randomBytes(32)));
    const again = await service.submit(old);
    assert.deepEqual([again.created, again.task.id], [false, 'task_legacy']);
    assert.equal((await store.getTask('task_legacy'))!.requestHash, plainHash(old, env), 'the row is left as it was');
    await assert.rejects(service.submit(request('another request', 'key-old')), { code: 'IDEMPOTENCY_CONFLICT' });
    const tasks = await store.listTasks(session.key, { limit: 100 });
    assert.equal(tasks.items.filter((t) => t.idempotencyKey === 'key-old').length, 1, 'nothing was added for the old key');
  });
});
