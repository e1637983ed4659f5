/**
 * Reset and delete do exactly what they say. Reset: running and queued tasks
 * aborted, container recreated, workspace a fresh copy of the template, home
 * (conversation memory) emptied, turns 0, same id and template, history kept.
 * Delete: tasks stopped, container, folders, memory, tasks and events gone.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { containerOf, conversationOf, docker, within, runningInSandbox } from './support.ts';

/** Every file under dir with its content, as a sorted list. */
function snapshot(dir: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push([relative(dir, full), readFileSync(full, 'utf8')]);
    }
  };
  walk(dir);
  return out.sort(([a], [b]) => a.localeCompare(b));
}

describe('reset and delete', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      template: { 'notes/template.txt': 'from the template\n', 'tools/hello.sh': '#!/bin/sh\necho hello\n' },
      rules: [
        rule('remember-the-animal', text('Noted: the animal is a giraffe.')),
        rule('scribble-on-workspace', bash('echo agent-made > agent-made.txt && echo changed > notes/template.txt && rm tools/hello.sh'), text('scribbled')),
        rule('long-sleeper-task', bash('echo busy; sleep 60'), text('never')),
        rule('which-animal-was-it', text('I do not know.')),
      ],
    });
  });
  after(async () => h?.close());

  const submit = (sessionId: string, message: string, wait = true) =>
    h.api('/task', { method: 'POST', json: { sessionId, message, wait } });
  const keyOf = async (id: string) => (await h.runner.store.findSession('default', id))?.key;

  async function busySession(sessionId: string) {
    const running = submit(sessionId, 'long-sleeper-task');
    const containerId = await runningInSandbox(h.runnerId, sessionId, 'sleep 60');
    const queued = submit(sessionId, 'which-animal-was-it queued');
    await eventually(async () => ((await h.api(`/session/${sessionId}`)).body.queueDepth === 1 ? true : undefined));
    return { running, queued, containerId };
  }

  test('reset: tasks aborted, container recreated, workspace a fresh template copy, memory gone, turns 0, same id', async () => {
    assert.equal((await submit('resettable', 'remember-the-animal: giraffe')).status, 200);
    assert.equal((await submit('resettable', 'scribble-on-workspace')).status, 200);
    assert.equal((await h.api('/session/resettable/files/uploaded.txt', { method: 'PUT', body: 'uploaded' })).status, 201);
    const key = (await keyOf('resettable'))!;
    const workspace = join(h.dataDir, 'sessions', key, 'workspace');
    const home = join(h.dataDir, 'sessions', key, 'home');
    assert.notDeepEqual(snapshot(workspace), snapshot(h.agentDir));
    assert.ok(existsSync(join(home, '.claude')), 'the conversation is stored in the home folder');
    const before = (await h.api('/session/resettable')).body;
    assert.equal(before.turns, 2);
    const { running, queued, containerId } = await busySession('resettable');
    const historyBefore = (await h.api('/session/resettable/tasks')).body.tasks.map((t: any) => t.taskId);

    const res = await h.api('/session/resettable/reset', { method: 'POST' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.reset, true);
    assert.equal(res.body.sessionId, 'resettable');
    assert.equal(res.body.agent, 'default');
    assert.equal(res.body.turns, 0);
    assert.ok(res.body.totalCost >= before.totalCost, "money spent stays spent");
    assert.ok(before.totalCost > 0);
    assert.equal(res.body.queueDepth, 0);
    assert.equal(res.body.busy, false);
    assert.equal(res.body.createdAt, before.createdAt);

    // The blocked callers were answered: aborted.
    for (const answer of await within(Promise.all([running, queued]), 10_000, 'answers to the blocked callers')) {
      assert.equal(answer.status, 409);
      assert.equal(answer.body.error.code, 'TASK_ABORTED');
    }
    // Same session (same key), the container is gone, the workspace is the template again, the home is empty.
    assert.equal(await keyOf('resettable'), key);
    await assert.rejects(docker.getContainer(containerId).inspect(), /no such container/i);
    assert.deepEqual(snapshot(workspace), snapshot(h.agentDir));
    assert.deepEqual(readdirSync(home), []);
    // History stays, with the stopped tasks marked aborted; a session_reset event is logged.
    const history = (await h.api('/session/resettable/tasks')).body.tasks;
    assert.deepEqual(history.map((t: any) => t.taskId), historyBefore);
    assert.deepEqual(history.slice(0, 2).map((t: any) => t.status), ['aborted', 'aborted']);
    const events = await h.runner.store.readEvents(key, 0, 1000);
    assert.equal(events.at(-1)!.type, 'session_reset');

    // The next task starts from nothing: a new container, no earlier exchange in the model request.
    const next = await submit('resettable', 'which-animal-was-it after reset');
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(next.body.resumed, false);
    const conversation = conversationOf(h.model.findRequests({ prompt: 'which-animal-was-it after reset' })[0]);
    assert.ok(!conversation.includes('giraffe'), 'the model request has no earlier exchange');
    assert.ok(!conversation.includes('scribble'));
    const container = await containerOf(h.runnerId, 'resettable');
    assert.ok(container && container.Id !== containerId, 'a new container');
    assert.equal((await h.api('/session/resettable')).body.turns, 1);
    // A template tool is back and works.
    assert.ok(existsSync(join(workspace, 'tools', 'hello.sh')));
  });

  test('delete: tasks stopped, container, workspace, memory, tasks and events gone; the id can start afresh', async () => {
    assert.equal((await submit('deletable', 'remember-the-animal: giraffe')).status, 200);
    const key = (await keyOf('deletable'))!;
    const firstTasks = (await h.api('/session/deletable/tasks')).body.tasks.map((t: any) => t.taskId);
    const { running, queued, containerId } = await busySession('deletable');
    assert.ok((await h.runner.store.eventBounds(key)).lastSeq > 0);

    const res = await h.api('/session/deletable', { method: 'DELETE' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { sessionId: 'deletable', deleted: true });
    const answers = await within(Promise.all([running, queued]), 10_000, 'answers to the blocked callers');
    for (const answer of answers) {
      assert.equal(answer.status, 409);
      assert.equal(answer.body.error.code, 'TASK_ABORTED');
    }

    await assert.rejects(docker.getContainer(containerId).inspect(), /no such container/i);
    assert.equal(existsSync(join(h.dataDir, 'sessions', key)), false, 'workspace and home removed');
    assert.equal(existsSync(join(h.dataDir, 'sockets', key)), false);
    assert.equal(await h.runner.store.getSessionByKey(key), undefined);
    for (const taskId of [...firstTasks, ...answers.map((a) => a.body.taskId)]) {
      assert.equal(await h.runner.store.getTask(taskId), undefined, `task ${taskId} row`);
      assert.equal((await h.api(`/tasks/${taskId}`)).status, 404);
    }
    assert.deepEqual(await h.runner.store.readEvents(key, 0, 1000), []);
    assert.equal((await h.api('/session/deletable')).status, 404);
    assert.ok(!(await h.api('/sessions')).body.some((s: any) => s.sessionId === 'deletable'));
    const again = await h.api('/session/deletable', { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'SESSION_NOT_FOUND');

    // The same id later is a brand-new session with no memory.
    const fresh = await submit('deletable', 'which-animal-was-it after delete');
    assert.equal(fresh.status, 200, JSON.stringify(fresh.body));
    assert.equal(fresh.body.resumed, false);
    assert.ok(!conversationOf(h.model.findRequests({ prompt: 'which-animal-was-it after delete' })[0]).includes('giraffe'));
    assert.notEqual(await keyOf('deletable'), key);
    assert.equal((await h.api('/session/deletable/tasks')).body.tasks.length, 1);
  });

  test('submits racing a delete or a reset are all answered, and leave no task behind on a dead session', async () => {
    for (const op of ['DELETE', 'reset'] as const) {
      const id = `racy-${op.toLowerCase()}`;
      assert.equal((await submit(id, 'remember-the-animal: giraffe')).status, 200);
      const key = (await keyOf(id))!;
      const racing = Array.from({ length: 8 }, (_, i) => submit(id, `which-animal-was-it race ${op} ${i}`));
      const opDone = op === 'DELETE' ? h.api(`/session/${id}`, { method: 'DELETE' }) : h.api(`/session/${id}/reset`, { method: 'POST' });
      const timeout = new Promise<'hang'>((resolve) => setTimeout(() => resolve('hang'), 20_000).unref());
      const answers = await Promise.race([Promise.all(racing), timeout]);
      assert.notEqual(answers, 'hang', `a POST /task racing ${op} was never answered`);
      assert.equal((await opDone).status, 200);
      for (const answer of answers as Array<{ status: number; body: any }>) {
        assert.ok([200, 409].includes(answer.status), `${answer.status} ${JSON.stringify(answer.body)}`);
        if (answer.status === 409) assert.equal(answer.body.error.code, 'TASK_ABORTED');
      }
      // Whatever ran after the operation ran on the new state: a session that exists and has no task stuck.
      const session = await h.runner.store.findSession('default', id);
      if (session) {
        const unfinished = await h.runner.store.oldestUnfinishedTask(session.key);
        assert.equal(unfinished, undefined);
        if (op === 'reset') assert.equal(session.key, key);
      }
    }
  });

  test('reset and delete of an unknown session are 404', async () => {
    for (const [method, path] of [['POST', '/session/ghost/reset'], ['DELETE', '/session/ghost']] as const) {
      const res = await h.api(path, { method });
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, 'SESSION_NOT_FOUND');
    }
  });
});
