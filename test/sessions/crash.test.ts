/**
 * kill -9 of the server (its own process) during a task, then a new server
 * on the same DATA_DIR: the task is interrupted and never re-run, the
 * session's queued tasks run (and still remember), the container of a
 * session that no longer exists is removed, nothing the dead server started
 * keeps running in a container, and the database passes integrity_check.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, startScriptedModel, text, type ScriptedModel } from '../../src/scripted-model/index.ts';
import { sqliteIntegrityCheck } from '../../src/store/sqlite/index.ts';
import { removeContainers, spawnRunner, testEnv, UPSTREAM_KEY, writeTemplate } from '../support/harness.ts';
import { agentProcesses, apiAt, containerOf, conversationOf, readDb, waitFinal, runningInSandbox } from './support.ts';

describe('crash recovery', () => {
  let model: ScriptedModel;
  let base: string;
  let env: Record<string, string>;
  let runnerId: string;
  let current: ReturnType<typeof spawnRunner> | undefined;
  let url = '';
  const api = apiAt(() => url);

  before(async () => {
    model = await startScriptedModel({
      requireApiKey: UPSTREAM_KEY,
      rules: [
        rule('crash-warmup', text('Warm: the code word is kumquat.')),
        rule('crash-slow-job', bash('echo busy; sleep 60'), text('slow job finished')),
        rule('crash-after', text('after the crash')),
        rule('crash-doomed', text('doomed answer')),
      ],
    });
    base = mkdtempSync('/tmp/cr-');
    writeTemplate(join(base, 'agents'), {});
    runnerId = `t${randomBytes(4).toString('hex')}`;
    env = testEnv({ DATA_DIR: join(base, 'data'), AGENT_DIR: join(base, 'agents'), ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId });
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

  async function start(): Promise<void> {
    current = spawnRunner(env);
    url = await current.url;
  }

  test('kill -9 during a task, restart: interrupted, queue runs, no orphan container or process, database sound', async () => {
    await start();
    const dbFile = join(env.DATA_DIR!, 'runner.db');
    assert.equal((await api('/task', { method: 'POST', json: { sessionId: 'doomed', message: 'crash-doomed' } })).status, 200);
    const warm = await api('/task', { method: 'POST', json: { sessionId: 'victim', message: 'crash-warmup' } });
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
    const slow = await api('/task', { method: 'POST', json: { sessionId: 'victim', message: 'crash-slow-job', wait: false } });
    assert.equal(slow.status, 202);
    const containerId = await runningInSandbox(runnerId, 'victim', 'sleep 60');
    const queued = [];
    for (const n of [1, 2]) {
      const res = await api('/task', { method: 'POST', json: { sessionId: 'victim', message: `crash-after ${n}`, wait: false } });
      assert.equal(res.status, 202);
      queued.push(res.body.taskId as string);
    }
    const startedAt = (await api(`/tasks/${slow.body.taskId}`)).body.startedAt;
    assert.ok(startedAt);

    current!.child.kill('SIGKILL');
    assert.equal(await current!.exited, null);
    // What the dead server started goes on inside the container: the restart must deal with it.
    const left = await agentProcesses(containerId);
    assert.ok(left.some((p) => p.includes('sleep 60')), `left running: ${left.join(' | ')}`);
    assert.deepEqual(sqliteIntegrityCheck(dbFile), ['ok']);
    // While the server is down, the session "doomed" goes from the store; its container stays behind.
    const doomed = (await containerOf(runnerId, 'doomed'))!;
    assert.ok(doomed);
    const doomedKey = readDb(dbFile, (db) => {
      db.exec('PRAGMA foreign_keys = ON');
      const row = db.prepare("SELECT key FROM sessions WHERE id = 'doomed'").get() as { key: string };
      db.prepare("DELETE FROM sessions WHERE id = 'doomed'").run();
      return row.key;
    });
    assert.ok(existsSync(join(env.DATA_DIR!, 'sessions', doomedKey)));

    await start();
    const interrupted = await waitFinal(api, slow.body.taskId);
    assert.equal(interrupted.status, 'interrupted');
    assert.equal(interrupted.error.code, 'TASK_INTERRUPTED');
    assert.equal(interrupted.startedAt, startedAt, 'not started again');
    // Money is never lost: the model call it made before the kill, and the tool it ran, were stored as they happened.
    const spent = readDb(dbFile, (db) => (db.prepare("SELECT data FROM events WHERE task_id = ? AND type = 'usage'").all(slow.body.taskId) as Array<{ data: string }>)
      .reduce((sum, row) => sum + (JSON.parse(row.data) as { costUsd: number }).costUsd, 0));
    assert.ok(spent > 0, 'the slow task made a metered model call');
    assert.ok(Math.abs(interrupted.cost - spent) < 1e-12, `cost ${interrupted.cost} = metered ${spent}`);
    assert.deepEqual(interrupted.tools, ['Bash']);
    assert.ok(interrupted.usage.inputTokens > 0, JSON.stringify(interrupted.usage));
    for (const taskId of queued) await waitFinal(api, taskId);
    const victim = (await api('/session/victim')).body;
    const everyTask = (await api('/session/victim/tasks')).body.tasks as Array<{ cost: number }>;
    const sum = everyTask.reduce((total, task) => total + task.cost, 0);
    assert.equal(everyTask.length, 4);
    assert.ok(Math.abs(victim.totalCost - sum) < 1e-9, `session total ${victim.totalCost} = its tasks' ${sum}, the interrupted one's included`);
    for (const taskId of queued) {
      const final = await waitFinal(api, taskId);
      assert.equal(final.status, 'succeeded', JSON.stringify(final));
      assert.deepEqual(final.output, { response: 'after the crash' });
    }
    const [one, two] = await Promise.all(queued.map(async (id) => (await api(`/tasks/${id}`)).body));
    assert.ok(Date.parse(one.finishedAt) <= Date.parse(two.startedAt), 'queue order kept');
    // Never re-run: the model saw the slow task's prompt once, and never its second turn.
    const slowCalls = model.findRequests({ prompt: 'crash-slow-job', kind: 'main' });
    assert.deepEqual(slowCalls.map((r) => r.turnIndex), [0]);
    // The queued tasks continued the conversation.
    assert.match(conversationOf(model.findRequests({ prompt: 'crash-after 1' })[0]), /kumquat/);

    // The orphan container is gone; the dead server's processes are gone from the session's container.
    assert.equal(await containerOf(runnerId, 'doomed'), undefined);
    assert.equal(existsSync(join(env.DATA_DIR!, 'sessions', doomedKey)), false, 'its folders too');
    assert.equal(existsSync(join(env.DATA_DIR!, 'sockets', doomedKey)), false);
    assert.ok(existsSync(join(env.DATA_DIR!, 'sessions', (await containerOf(runnerId, 'victim'))!.Labels['dev.claude-runner.session-key']!)));
    const now = await agentProcesses(containerId);
    assert.ok(!now.some((p) => p.includes('sleep')), `still running: ${now.join(' | ')}`);
    assert.ok(now.filter((p) => p.includes('claude')).length <= 1, `one live agent at most: ${now.join(' | ')}`);
    const health = await api('/health');
    assert.equal(health.body.runningTasks, 0);

    current!.child.kill('SIGTERM');
    assert.equal(await current!.exited, 0);
    assert.deepEqual(sqliteIntegrityCheck(dbFile), ['ok']);
    readDb(dbFile, (db) => {
      const events = db.prepare('SELECT type FROM events WHERE task_id = ? ORDER BY seq').all(slow.body.taskId) as Array<{ type: string }>;
      assert.equal(events.at(-1)?.type, 'task_error');
      const running = db.prepare("SELECT count(*) AS n FROM tasks WHERE status IN ('running', 'queued')").get() as { n: number };
      assert.equal(running.n, 0);
    });
  });
});
