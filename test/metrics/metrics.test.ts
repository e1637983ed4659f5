/**
 * GET /metrics against a real runner: tasks that succeed, fail and are
 * aborted (one running, one queued) on two agents and two tenants, then the
 * text format scraped and parsed, its values checked exactly against what the
 * store says of those tasks (counts, durations, time to first event, cost),
 * against the calls the model received, and the gauges while work is in
 * flight (a running and a queued task, an open SSE stream) and once idle.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { StoredEvent } from '../../src/core/events.ts';
import type { Task } from '../../src/core/model.ts';
import { errorTurn, rule, text } from '../../src/scripted-model/index.ts';
import { containersOf, eventually, startHarness, type Harness } from '../support/harness.ts';

const KEY_A = 'metrics-tenant-a-key-5b1c7e';
const KEY_B = 'metrics-tenant-b-key-9d3a2f';
const A = { authorization: `Bearer ${KEY_A}` };
const B = { authorization: `Bearer ${KEY_B}` };

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The Prometheus text format, sample by sample (comments skipped). */
function parseMetrics(body: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of the samples of `name` whose labels include `labels`. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

const close = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual} != ${expected}`);
};

describe('GET /metrics', () => {
  let h: Harness;
  const tasks: Array<{ id: string; agent: string }> = [];

  const scrape = async (): Promise<Sample[]> => {
    const res = await h.api('/metrics', { headers: A });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return parseMetrics(res.text);
  };
  const submit = async (headers: Record<string, string>, agent: string, sessionId: string, message: string, wait = true) => {
    const res = await h.api('/task', { method: 'POST', headers, json: { sessionId, agent, message, wait } });
    assert.ok(res.body.taskId, JSON.stringify(res.body));
    tasks.push({ id: res.body.taskId, agent });
    return res;
  };
  const stored = async (id: string): Promise<Task> => (await h.runner.store.getTask(id))!;

  before(async () => {
    h = await startHarness({
      env: { API_KEYS: `tenantA:${KEY_A},tenantB:${KEY_B}` },
      templates: { alpha: {}, beta: {} },
      rules: [
        rule('metrics-ok', text('all good')),
        rule('metrics-fails', errorTurn(500, 'scripted failure')),
        rule('metrics-slow', text('too late', { delayMs: 20_000 })),
      ],
    });
  });
  after(async () => h?.close());

  test('idle at start: every gauge is 0 and no task is counted', async () => {
    const samples = await scrape();
    for (const gauge of ['claude_runner_tasks_queued', 'claude_runner_tasks_running', 'claude_runner_sandboxes_running', 'claude_runner_live_agents', 'claude_runner_stream_subscribers']) {
      assert.ok(samples.some((s) => s.name === gauge), `${gauge} is exposed`);
      assert.equal(valueOf(samples, gauge), 0, gauge);
    }
    assert.equal(valueOf(samples, 'claude_runner_tasks_total'), 0);
    assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'Node\'s default metrics are there');
  });

  test('tasks by status, agent and tenant; durations, time to first event, cost and model calls match the store and the model', async () => {
    assert.equal((await submit(A, 'alpha', 'm-alpha-a', 'metrics-ok 1')).status, 200);
    assert.equal((await submit(B, 'beta', 'm-beta-b', 'metrics-ok 2')).status, 200);
    const failed = await submit(A, 'beta', 'm-beta-a', 'metrics-fails 3');
    assert.equal(failed.body.status, 'failed', JSON.stringify(failed.body));

    // One task running (its model call hangs), one queued behind it, one SSE stream open on the session.
    const slow = await submit(B, 'alpha', 'm-alpha-b', 'metrics-slow 4', false);
    assert.equal(slow.status, 202, JSON.stringify(slow.body));
    await eventually(() => (h.model.findRequests({ prompt: 'metrics-slow 4', kind: 'main' }).length > 0 ? true : undefined), 60_000, 'the slow model call');
    const queued = await submit(B, 'alpha', 'm-alpha-b', 'metrics-ok 5', false);
    assert.equal(queued.status, 202, JSON.stringify(queued.body));
    const stream = new AbortController();
    const sse = await fetch(`${h.url}/session/m-alpha-b/events`, { headers: B, signal: stream.signal });
    assert.equal(sse.status, 200);
    const reader = sse.body!.getReader();
    let seen = '';
    while (!seen.includes('"connected"')) seen += new TextDecoder().decode((await reader.read()).value);

    const busy = await eventually(async () => {
      const samples = await scrape();
      return valueOf(samples, 'claude_runner_stream_subscribers') === 1 ? samples : undefined;
    }, 10_000, 'the stream counted');
    assert.equal(valueOf(busy, 'claude_runner_tasks_queued'), 1);
    assert.equal(valueOf(busy, 'claude_runner_tasks_running'), 1);
    const health = (await h.api('/health')).body;
    assert.ok(health.liveAgents >= 1);
    assert.equal(valueOf(busy, 'claude_runner_live_agents'), health.liveAgents);
    const running = (await containersOf(h.runnerId)).filter((c) => c.State === 'running').length;
    assert.ok(running >= 1);
    assert.equal(valueOf(busy, 'claude_runner_sandboxes_running'), running);

    const abort = await h.api('/task/m-alpha-b/abort', { method: 'POST', headers: B });
    assert.equal(abort.status, 200, JSON.stringify(abort.body));
    assert.deepEqual(abort.body.queuedTaskIds, [queued.body.taskId]);
    for (const { id } of tasks.slice(-2)) await eventually(async () => ((await stored(id)).status === 'aborted' ? true : undefined), 20_000, 'aborted');
    stream.abort();

    const ended = await Promise.all(tasks.map(async ({ id, agent }) => ({ task: await stored(id), agent })));
    const samples = await eventually(async () => {
      const s = await scrape();
      return valueOf(s, 'claude_runner_tasks_total') === tasks.length && valueOf(s, 'claude_runner_stream_subscribers') === 0 ? s : undefined;
    }, 10_000, 'every task counted, the stream gone');

    // Counts by status and agent.
    const count = (status: string, agent: string) => valueOf(samples, 'claude_runner_tasks_total', { status, agent });
    assert.deepEqual(
      { okAlpha: count('succeeded', 'alpha'), okBeta: count('succeeded', 'beta'), failedBeta: count('failed', 'beta'), abortedAlpha: count('aborted', 'alpha') },
      { okAlpha: 1, okBeta: 1, failedBeta: 1, abortedAlpha: 2 },
    );

    for (const agent of ['alpha', 'beta']) {
      const mine = ended.filter((e) => e.agent === agent).map((e) => e.task);
      // Duration: tasks that started (the queued one that was aborted did not), start to end.
      const started = mine.filter((t) => t.startedAt !== null);
      assert.equal(valueOf(samples, 'claude_runner_task_duration_seconds_count', { agent }), started.length, `durations of ${agent}`);
      close(valueOf(samples, 'claude_runner_task_duration_seconds_sum', { agent }), started.reduce((sum, t) => sum + t.durationMs! / 1000, 0), `duration sum of ${agent}`);
      assert.equal(valueOf(samples, 'claude_runner_task_duration_seconds_bucket', { agent, le: '+Inf' }), started.length);
      // Time to first event: submission to the first init/thinking/text/tool_start, for the tasks that had one.
      let firstCount = 0;
      let firstSum = 0;
      for (const task of mine) {
        const log = await h.runner.store.readEvents(task.sessionKey, 0, 1000);
        const first = log.find((e: StoredEvent) => e.taskId === task.id && ['init', 'thinking', 'text', 'tool_start'].includes(e.type));
        if (!first) continue;
        firstCount += 1;
        firstSum += (first.ts - task.createdAt) / 1000;
      }
      assert.ok(firstCount >= 2, `${agent}: tasks with an agent event`);
      assert.equal(valueOf(samples, 'claude_runner_task_first_event_seconds_count', { agent }), firstCount, `first events of ${agent}`);
      close(valueOf(samples, 'claude_runner_task_first_event_seconds_sum', { agent }), firstSum, `first event sum of ${agent}`);
    }

    // Cost by agent and tenant: the sum of the tasks' costs.
    for (const agent of ['alpha', 'beta']) {
      for (const tenant of ['tenantA', 'tenantB']) {
        const expected = ended.filter((e) => e.agent === agent && e.task.tenantId === tenant).reduce((sum, e) => sum + (e.task.costUsd ?? 0), 0);
        close(valueOf(samples, 'claude_runner_cost_usd_total', { agent, tenant }), expected, `cost of ${agent}/${tenant}`);
      }
    }
    assert.ok(valueOf(samples, 'claude_runner_cost_usd_total', { agent: 'alpha', tenant: 'tenantA' }) > 0, 'a succeeded task cost something');

    // Model calls: every POST /v1/messages the model received, by outcome.
    const received = h.model.requests.filter((r) => r.path.split('?')[0] === '/v1/messages');
    const failures = received.filter((r) => r.prompt?.startsWith('metrics-fails')).length;
    assert.ok(failures >= 1);
    assert.equal(valueOf(samples, 'claude_runner_model_calls_total'), received.length, 'every model call counted');
    assert.equal(valueOf(samples, 'claude_runner_model_calls_total', { outcome: 'upstream_error' }), failures);
    assert.equal(valueOf(samples, 'claude_runner_model_calls_total', { outcome: 'cut' }), 1, 'the slow call was cut by the abort');
    assert.equal(valueOf(samples, 'claude_runner_model_calls_total', { outcome: 'ok' }), received.length - failures - 1);
    assert.equal(valueOf(samples, 'claude_runner_gateway_errors_total', { kind: 'upstream_error' }), failures);
    assert.equal(valueOf(samples, 'claude_runner_egress_refused_total'), 0);
    // The hot path (src/metrics/hot-path.ts): each phase fed by its layer, once per occurrence.
    const phase = (name: string) => valueOf(samples, 'claude_runner_hot_path_seconds_count', { phase: name });
    assert.equal(phase('http_in'), tasks.length, 'every POST /task');
    assert.equal(phase('queue'), tasks.length - 1, 'every task that started (not the one aborted in the queue)');
    assert.equal(phase('start'), tasks.length - 1);
    assert.equal(phase('agent'), 2, 'the agent answered the two tasks that succeeded');
    assert.equal(phase('finish'), 2);
    assert.equal(phase('http_out'), 3, 'the three blocking POST /task answered');
    assert.equal(phase('gateway'), received.length, 'every model call');
    assert.equal(phase('upstream'), received.length);
    assert.equal(phase('first_text'), 2, 'the first text of each task that had one');
    assert.ok(phase('store_write') > 0 && phase('store_read') > 0 && phase('event_append') > 0 && phase('event_fanout') > 0);
    assert.equal(phase('event_append'), phase('event_fanout'));
    console.log(`# metrics: ${tasks.length} tasks, ${received.length} model calls (${failures} failed, 1 cut), cost ${valueOf(samples, 'claude_runner_cost_usd_total').toFixed(6)} USD`);

    // Idle again: nothing queued, running or streamed (the sandboxes stay until their idle timeout).
    assert.equal(valueOf(samples, 'claude_runner_tasks_queued'), 0);
    assert.equal(valueOf(samples, 'claude_runner_tasks_running'), 0);
    assert.equal(valueOf(samples, 'claude_runner_stream_subscribers'), 0);
  });

  test('no label carries a session or task id', async () => {
    const body = (await h.api('/metrics', { headers: A })).text;
    assert.doesNotMatch(body, /="(task_|m-alpha|m-beta)/);
    assert.match(body, /agent="alpha"/);
  });
});
