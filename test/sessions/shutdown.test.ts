/**
 * SIGTERM (the server as its own process): new tasks get 503 SHUTTING_DOWN,
 * a running task that ends within SHUTDOWN_GRACE_MS finishes, one still
 * running after it ends interrupted, queued tasks stay queued for the next
 * start, blocked callers are answered, and the process exits 0.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, startScriptedModel, text, type ScriptedModel } from '../../src/scripted-model/index.ts';
import { sqliteIntegrityCheck } from '../../src/store/sqlite/index.ts';
import { eventually, removeContainers, spawnRunner, testEnv, UPSTREAM_KEY, writeTemplate } from '../support/harness.ts';
import { agentProcesses, apiAt, readDb, waitFinal, within, runningInSandbox } from './support.ts';

describe('SIGTERM', () => {
  let model: ScriptedModel;
  let base: string;
  let runnerId: string;
  let current: ReturnType<typeof spawnRunner> | undefined;
  let url = '';
  const api = apiAt(() => url);

  before(async () => {
    model = await startScriptedModel({
      requireApiKey: UPSTREAM_KEY,
      rules: [
        rule('term-two-seconds', bash('echo busy; sleep 2'), text('finished within the grace')),
        rule('term-endless', bash('echo busy; sleep 60'), text('never')),
        rule('term-quick', text('quick')),
      ],
    });
    base = mkdtempSync('/tmp/cr-');
    writeTemplate(join(base, 'agents'), {});
    runnerId = `t${randomBytes(4).toString('hex')}`;
  });
  after(async () => {
    if (current && current.child.exitCode === null) {
      current.child.kill('SIGKILL');
      await current.exited;
    }
    await removeContainers(runnerId);
    await model?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  async function start(graceMs: number): Promise<void> {
    current = spawnRunner(testEnv({
      DATA_DIR: join(base, 'data'), AGENT_DIR: join(base, 'agents'), ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId,
      SHUTDOWN_GRACE_MS: String(graceMs),
    }));
    url = await current.url;
  }

  test('a task that ends within the grace period finishes; new tasks get 503 meanwhile; exit 0', async () => {
    await start(15_000);
    const blocked = api('/task', { method: 'POST', json: { sessionId: 'term-a', message: 'term-two-seconds' } });
    await runningInSandbox(runnerId, 'term-a', 'sleep 2');
    const t0 = Date.now();
    current!.child.kill('SIGTERM');
    await eventually(async () => ((await api('/health')).body.accepting === false ? true : undefined), 5000, 'shutdown to begin');
    const refused = await api('/task', { method: 'POST', json: { sessionId: 'term-a', message: 'term-quick refused' } });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'SHUTTING_DOWN');
    const refusedNew = await api('/task', { method: 'POST', json: { sessionId: 'term-new', message: 'term-quick refused' } });
    assert.equal(refusedNew.status, 503);
    assert.equal((await api('/health')).status, 503);

    const answer = await within(blocked, 15_000, 'the answer to the blocked caller');
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.output, { response: 'finished within the grace' });
    assert.equal(await current!.exited, 0);
    assert.ok(Date.now() - t0 < 10_000, `exited after ${Date.now() - t0} ms`);
    const file = join(base, 'data', 'runner.db');
    assert.deepEqual(sqliteIntegrityCheck(file), ['ok']);
    readDb(file, (db) => {
      const rows = db.prepare("SELECT message, status FROM tasks ORDER BY seq").all() as Array<{ message: string; status: string }>;
      assert.deepEqual(rows.map((r) => [r.message, r.status]), [['term-two-seconds', 'succeeded']]);
    });
  });

  test('past the grace period the running task ends interrupted, queued ones wait for the next start; callers answered; exit 0', async () => {
    await start(1000);
    const blocked = api('/task', { method: 'POST', json: { sessionId: 'term-b', message: 'term-endless' } });
    const containerId = await runningInSandbox(runnerId, 'term-b', 'sleep 60');
    const queued = api('/task', { method: 'POST', json: { sessionId: 'term-b', message: 'term-quick queued' } });
    await eventually(async () => ((await api('/session/term-b')).body.queueDepth === 1 ? true : undefined));

    const t0 = Date.now();
    current!.child.kill('SIGTERM');
    const [answer, queuedAnswer] = await within(Promise.all([blocked, queued]), 10_000, 'answers to the blocked callers');
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, 'TASK_INTERRUPTED');
    assert.equal(answer.body.status, 'interrupted');
    // The queued task is kept for the next start; its caller is told so instead of being cut off.
    assert.equal(queuedAnswer.status, 503, JSON.stringify(queuedAnswer.body));
    assert.equal(queuedAnswer.body.error.code, 'SHUTTING_DOWN');
    assert.equal(queuedAnswer.body.status, 'queued');
    assert.match(queuedAnswer.body.taskId, /^task_/);
    assert.equal(await current!.exited, 0);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 8000, `exited after ${took} ms`);
    assert.deepEqual(await agentProcesses(containerId), [], 'nothing of the interrupted task is left running');

    const file = join(base, 'data', 'runner.db');
    assert.deepEqual(sqliteIntegrityCheck(file), ['ok']);
    readDb(file, (db) => {
      const status = (m: string) => (db.prepare('SELECT status FROM tasks WHERE message = ?').get(m) as { status: string }).status;
      assert.equal(status('term-endless'), 'interrupted');
      assert.equal(status('term-quick queued'), 'queued');
    });

    // The next start runs what was queued.
    await start(1000);
    const final = await waitFinal(api, queuedAnswer.body.taskId);
    assert.equal(final.status, 'succeeded');
    assert.deepEqual(final.output, { response: 'quick' });
    current!.child.kill('SIGTERM');
    assert.equal(await current!.exited, 0);
  });
});
