/**
 * The hot-path recorder (src/metrics/hot-path.ts): phases observed directly
 * and between marks, marks bounded, samples reset, and the histogram shown
 * by a runner's registry. (The layers that feed it: test/metrics/metrics.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { HotPathRecorder } from '../../src/metrics/hot-path.ts';

test('observes phases directly and from a mark to its end, once per mark', () => {
  const recorder = new HotPathRecorder();
  recorder.observe('gateway', 2);
  recorder.observe('gateway', 4);
  recorder.observe('gateway', -1);
  recorder.mark('t1:queued', performance.now() - 50);
  recorder.mark('t1:queued', performance.now());
  recorder.end('queue', 't1:queued');
  recorder.end('queue', 't1:queued');
  recorder.end('queue', 'never-marked');
  const stats = recorder.snapshot();
  assert.deepEqual({ count: stats.gateway?.count, sumMs: stats.gateway?.sumMs, samples: stats.gateway?.samples }, { count: 2, sumMs: 6, samples: [2, 4] });
  assert.equal(stats.queue?.count, 1, 'one end per mark; an unknown mark is nothing');
  assert.ok(stats.queue!.sumMs >= 50, `the first mark of a key stays: ${stats.queue!.sumMs}`);
  recorder.reset();
  assert.deepEqual(recorder.snapshot(), {});
});

test('marks whose end never comes are bounded; a dropped mark ends nothing', () => {
  const recorder = new HotPathRecorder();
  for (let i = 0; i < 10_000; i++) recorder.mark(`t${i}:text`);
  assert.equal(recorder.hasMark('t0:text'), false, 'the oldest went');
  assert.equal(recorder.hasMark('t9999:text'), true);
  recorder.drop('t9999:text');
  recorder.end('first_text', 't9999:text');
  assert.equal(recorder.snapshot().first_text, undefined);
});

test('the histogram, by phase in seconds, in a registry', async () => {
  const recorder = new HotPathRecorder();
  const registry = new Registry();
  registry.registerMetric(recorder.histogram);
  recorder.observe('http_out', 1.5);
  recorder.observe('http_out', 0.5);
  const text = await registry.metrics();
  assert.match(text, /^claude_runner_hot_path_seconds_count\{phase="http_out"\} 2$/m);
  assert.match(text, /^claude_runner_hot_path_seconds_sum\{phase="http_out"\} 0\.002$/m);
  assert.match(text, /^claude_runner_hot_path_seconds_bucket\{le="0\.001",phase="http_out"\} 1$/m);
});
