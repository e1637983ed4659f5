/**
 * Ready sessions (READY_POOL_SIZE): a new session takes a container and a
 * live `claude` made before it asked, the pool refills behind it (never while
 * a task runs), an entry is never handed out twice, spares are hardened like
 * any sandbox, they yield their slot to a real session under the caps, a
 * template change drains them, their agent's rehearsal never reaches the
 * model nor the first task's conversation (which starts with Claude Code's
 * record of `/clear`), and a session's cost and memory of its conversation
 * are the same whether it came from the pool or not.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { bash, filterRequests, rule, text, toolUse } from '../../src/scripted-model/index.ts';
import { containersOf, eventually, startHarness, type Harness } from '../support/harness.ts';

const docker = new Docker();
const RULES = [
  rule('slow-task', bash('sleep 1.5; echo slept'), text('slow done')),
  rule('read-notes', bash('cat NOTES.md'), text('notes read')),
  rule(/remember/, text('I will remember.')),
];

async function readyPool(h: Harness): Promise<{ size: number; ready: number }> {
  return (await h.api('/health')).body.readyPool;
}

async function waitReady(h: Harness, ready: number): Promise<void> {
  await eventually(async () => ((await readyPool(h)).ready === ready ? true : undefined), 30_000, `${ready} ready sessions`);
}

async function keyOf(h: Harness, sessionId: string): Promise<string> {
  return (await h.runner.store.findSession('default', sessionId))!.key;
}

/** Container name → id of the runner's running containers. */
async function runningContainers(h: Harness): Promise<Map<string, string>> {
  const list = await containersOf(h.runnerId);
  return new Map(list.filter((c) => c.State === 'running').map((c) => [c.Names[0]!.replace(/^\//, ''), c.Id]));
}

/** The pid of the `claude` process in a container (docker top, from the host). */
async function claudePid(containerId: string): Promise<string | undefined> {
  const top = await docker.getContainer(containerId).top({ ps_args: '-o pid,args' }) as { Processes: string[][] };
  return top.Processes.find((row) => row.slice(1).join(' ').includes('/opt/claude/claude'))?.[0];
}

/** Running containers that belong to no stored session: the ready ones. */
async function spareNames(h: Harness): Promise<string[]> {
  const spares: string[] = [];
  for (const name of (await runningContainers(h)).keys()) {
    if (!(await h.runner.store.getSessionByKey(name.replace('claude-runner-', '')))) spares.push(name);
  }
  return spares;
}

async function submit(h: Harness, sessionId: string, message: string, extra: Record<string, unknown> = {}) {
  const res = await h.api('/task', { method: 'POST', json: { sessionId, message, ...extra } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

describe('ready sessions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { READY_POOL_SIZE: '1' } });
  });
  after(async () => h?.close());

  test('a new session takes the ready container and its live claude; the pool refills once no task runs, never with the same one', async () => {
    await waitReady(h, 1);
    assert.deepEqual(await readyPool(h), { size: 1, ready: 1 });
    assert.match((await h.api('/metrics')).text, /^claude_runner_ready_sessions 1$/m);
    const before = await runningContainers(h);
    assert.equal(before.size, 1, 'the ready session is the only container');
    const [readyName, readyId] = [...before][0]!;
    const pidBefore = await claudePid(readyId!);
    assert.ok(pidBefore, 'claude already runs in the ready container');
    assert.deepEqual((await h.api('/sessions')).body, [], 'a ready session is no session until claimed');

    // While the claimed session's task runs, the pool waits: no container is made beside it.
    const answer = h.api('/task', { method: 'POST', json: { sessionId: 'pool-a', message: 'slow-task' } });
    const seenWhileRunning: number[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 200));
      seenWhileRunning.push((await runningContainers(h)).size);
    }
    const res = await answer;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'succeeded');
    assert.match(JSON.stringify(res.body.output), /slow done/);
    assert.deepEqual(seenWhileRunning, [1, 1, 1, 1, 1]);

    const keyA = await keyOf(h, 'pool-a');
    assert.equal(readyName, `claude-runner-${keyA}`, 'the session has the ready key');
    assert.equal((await runningContainers(h)).get(`claude-runner-${keyA}`), readyId, 'and its very container');
    assert.equal(await claudePid(readyId!), pidBefore, 'the task went to the claude that was waiting (not a new one)');

    await waitReady(h, 1);
    const refilled = [...(await runningContainers(h))].filter(([name]) => name !== readyName);
    assert.equal(refilled.length, 1);
    assert.notEqual(refilled[0]![1], readyId);

    await submit(h, 'pool-b', 'remember b');
    const keyB = await keyOf(h, 'pool-b');
    assert.equal(refilled[0]![0], `claude-runner-${keyB}`);
    assert.notEqual(keyA, keyB);

    // A deleted session's container is removed, not handed to the pool.
    assert.equal((await h.api('/session/pool-a', { method: 'DELETE' })).status, 200);
    await waitReady(h, 1);
    const names = [...(await runningContainers(h)).keys()];
    assert.ok(!names.includes(readyName!), 'pool-a\'s container is gone');
    assert.equal(names.length, 2, 'pool-b and one new ready session');
  });

  test('a ready agent rehearses without the model: nothing reaches it, and the first task\'s conversation holds none of it', async () => {
    await waitReady(h, 1);
    const spare = (await spareNames(h))[0]!.replace('claude-runner-', '');
    const projects = join(h.dataDir, 'sessions', spare, 'home', '.claude', 'projects', '-workspace');
    const transcripts = (): string[] => readdirSync(projects).filter((name) => name.endsWith('.jsonl'));
    // The conversation `/clear` began, which the first task continues; the rehearsal's own is removed.
    const before = transcripts();
    assert.equal(before.length, 1);
    assert.doesNotMatch(readFileSync(join(projects, before[0]!), 'utf8'), /Rehearsal/);
    assert.deepEqual(h.model.requests.filter((request) => /Rehearsal/.test(JSON.stringify(request.body))), [], 'no rehearsal call reached the model');
    h.model.clearRequests();

    const res = await submit(h, 'rehearsed', 'remember pear');
    assert.equal(res.status, 'succeeded');
    assert.equal(await keyOf(h, 'rehearsed'), spare, 'the session came from the pool');
    const calls = filterRequests(h.model.requests, { kind: 'main' });
    assert.equal(calls.length, 1);
    const messages = (calls[0]!.body as { messages: unknown[] }).messages;
    assert.doesNotMatch(JSON.stringify(messages), /Rehearsal|Ready\./, 'the rehearsal is not in the conversation');
    assert.match(JSON.stringify(messages), /remember pear/);
    const session = (await h.runner.store.findSession('default', 'rehearsed'))!;
    assert.deepEqual(transcripts(), before, 'still one transcript');
    assert.equal(before[0], `${session.agentSessionId}.jsonl`, 'the session\'s');
  });

  test('a ready sandbox is hardened exactly like one made for a session\'s first task', async () => {
    await waitReady(h, 1);
    const [spare] = await spareNames(h);
    // Two new sessions at once: one claims the ready session, the other is made the usual way
    // (the pool does not refill while a task runs).
    const [one, two] = await Promise.all([submit(h, 'hard-1', 'remember 1'), submit(h, 'hard-2', 'remember 2')]);
    assert.equal(one.status, 'succeeded');
    assert.equal(two.status, 'succeeded');
    const shape = async (sessionId: string) => {
      const key = await keyOf(h, sessionId);
      const info = await docker.getContainer(`claude-runner-${key}`).inspect();
      const labels = { ...info.Config.Labels };
      for (const label of ['dev.claude-runner.session-id', 'dev.claude-runner.tenant', 'dev.claude-runner.spec-hash']) delete labels[label];
      const hostConfig = { ...info.HostConfig } as Record<string, unknown>;
      return JSON.parse(JSON.stringify({ host: hostConfig, user: info.Config.User, entrypoint: info.Config.Entrypoint, cmd: info.Config.Cmd,
        env: info.Config.Env, image: info.Image, workdir: info.Config.WorkingDir, labels, mounts: info.Mounts.map((m) => `${m.Destination}:${m.RW}`).sort() }).split(key).join('KEY'));
    };
    const keys = [await keyOf(h, 'hard-1'), await keyOf(h, 'hard-2')];
    assert.equal(keys.filter((key) => spare === `claude-runner-${key}`).length, 1, 'one of them is the ready session');
    assert.deepEqual(await shape('hard-1'), await shape('hard-2'));
    const [a, b] = [await shape('hard-1'), await shape('hard-2')];
    assert.deepEqual(a.host.CapDrop, ['ALL']);
    assert.equal(a.host.ReadonlyRootfs, true);
    assert.equal(b.host.NetworkMode, 'none');
  });

  test('cost, usage and conversation memory are the same for a session from the pool and one without', async () => {
    await waitReady(h, 1);
    const readyNames = [...(await runningContainers(h)).keys()];
    const first = await Promise.all([submit(h, 'mem-1', 'remember apple'), submit(h, 'mem-2', 'remember apple')]);
    const keys = [await keyOf(h, 'mem-1'), await keyOf(h, 'mem-2')];
    assert.equal(keys.filter((key) => readyNames.includes(`claude-runner-${key}`)).length, 1, 'exactly one came from the pool');
    const second = [await submit(h, 'mem-1', 'remember again'), await submit(h, 'mem-2', 'remember again')];
    for (const [i, task] of [...first, ...second].entries()) {
      assert.equal(task.status, 'succeeded', `task ${i}`);
      assert.ok(task.cost > 0);
    }
    assert.equal(first[0].cost, first[1].cost);
    assert.deepEqual(first[0].usage, first[1].usage);
    assert.equal(second[0].cost, second[1].cost);
    for (const id of ['mem-1', 'mem-2']) {
      const session = (await h.runner.store.findSession('default', id))!;
      assert.equal(session.turns, 2);
      assert.ok(Math.abs(session.totalCostUsd - (first[0].cost + second[0].cost)) < 1e-12);
    }
    // The second task's model call carries the first exchange: the conversation was remembered.
    const again = filterRequests(h.model.requests, { kind: 'main', prompt: 'remember again' });
    assert.equal(again.length, 2);
    for (const request of again) assert.match(JSON.stringify((request.body as { messages: unknown[] }).messages), /remember apple[\s\S]*I will remember/);
  });

  test('a change to the template drains its ready sessions; the next session gets the new files', async () => {
    await waitReady(h, 1);
    const before = new Set((await runningContainers(h)).keys());
    const [oldSpare] = await spareNames(h);
    assert.ok(oldSpare);
    writeFileSync(join(h.agentDir, 'NOTES.md'), 'notes v2\n');
    const replaced = await eventually(async () => {
      const now = await runningContainers(h);
      const fresh = [...now.keys()].filter((name) => !before.has(name));
      return fresh.length === 1 && (await readyPool(h)).ready === 1 ? fresh[0] : undefined;
    }, 30_000, 'a ready session made from the new files');
    assert.ok(!(await containersOf(h.runnerId)).some((c) => c.Names[0] === `/${oldSpare}`), 'the stale ready session is removed');
    assert.ok(!existsSync(join(h.dataDir, 'sessions', oldSpare!.replace('claude-runner-', ''))), 'with its folders');
    const res = await submit(h, 'notes-1', 'read-notes');
    assert.equal(res.status, 'succeeded');
    const key = await keyOf(h, 'notes-1');
    assert.equal(`claude-runner-${key}`, replaced);
    assert.equal(readFileSync(join(h.dataDir, 'sessions', key, 'workspace', 'NOTES.md'), 'utf8'), 'notes v2\n');
  });
});

describe('ready sessions under the caps', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      rules: RULES,
      templates: {
        main: { 'AGENTS.md': 'Main agent.' },
        other: { 'AGENTS.md': 'Other agent.', 'runner.json': JSON.stringify({ readyPool: 0 }) },
      },
      env: { READY_POOL_SIZE: '1', MAX_RUNNING_SANDBOXES: '1' },
    });
  });
  after(async () => h?.close());

  test('a real session\'s task takes the slot of a spare; the pool never stops a real session\'s sandbox for itself', async () => {
    await waitReady(h, 1);
    assert.deepEqual(await readyPool(h), { size: 1, ready: 1 });
    const [spareName] = [...(await runningContainers(h)).keys()];
    const spareKey = spareName!.replace('claude-runner-', '');
    const res = await submit(h, 'real-1', 'remember real', { agent: 'other' });
    assert.equal(res.status, 'succeeded');
    const realName = `claude-runner-${await keyOf(h, 'real-1')}`;
    // The spare made room and went, with its folders; the pool waits for a free slot rather than stop real-1.
    await eventually(async () => (existsSync(join(h.dataDir, 'sessions', spareKey)) ? undefined : true), 10_000, 'the spare\'s folders removed');
    assert.ok(!(await containersOf(h.runnerId)).some((c) => c.Names[0] === `/${spareName}`), 'the spare\'s container removed');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual([...(await runningContainers(h)).keys()], [realName]);
    assert.deepEqual(await readyPool(h), { size: 1, ready: 0 });
  });
});

describe('ready sessions of a template with an output schema', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      rules: [rule('forecast', toolUse('StructuredOutput', { celsius: 21.5 }))],
      template: { 'output.schema.json': { type: 'object', properties: { celsius: { type: 'number' } }, required: ['celsius'] } },
      env: { READY_POOL_SIZE: '1' },
    });
  });
  after(async () => h?.close());

  test('the rehearsal ends without structured output, and the first task from the pool answers with it', async () => {
    await waitReady(h, 1);
    const [spare] = await spareNames(h);
    const res = await submit(h, 'schema-1', 'forecast');
    assert.equal(`claude-runner-${await keyOf(h, 'schema-1')}`, spare, 'from the pool');
    assert.equal(res.status, 'succeeded', JSON.stringify(res));
    assert.deepEqual(res.output, { celsius: 21.5 });
    assert.equal(filterRequests(h.model.requests, { kind: 'main' }).length, 1, 'one model call, the task\'s');
  });
});
