import assert from 'node:assert/strict';
import { test } from 'node:test';
import { afterAttempt, jittered, webhookEventType } from '../../src/webhooks/dispatcher.ts';

const schedule = [5_000, 300_000];

test('2xx delivers; 410 Gone and a spent schedule fail; other answers and errors wait the next jittered step', () => {
  assert.equal(afterAttempt({ statusCode: 204, error: null }, 1, schedule, 1000).status, 'delivered');
  assert.equal(afterAttempt({ statusCode: 410, error: null }, 1, schedule, 1000).status, 'failed');
  const first = afterAttempt({ statusCode: 500, error: null }, 1, schedule, 1000);
  assert.equal(first.status, 'pending');
  assert.ok(first.nextAttemptAt >= 1000 + 2_500 && first.nextAttemptAt <= 1000 + 5_000, String(first.nextAttemptAt));
  const second = afterAttempt({ statusCode: null, error: 'ECONNREFUSED' }, 2, schedule, 1000);
  assert.ok(second.nextAttemptAt >= 1000 + 150_000 && second.nextAttemptAt <= 1000 + 300_000);
  assert.equal(afterAttempt({ statusCode: 503, error: null }, 3, schedule, 1000).status, 'failed');
  assert.equal(afterAttempt({ statusCode: 301, error: null }, 1, schedule, 1000).status, 'pending', 'a redirect is not followed');
});

test('jitter stays between half and all of the scheduled wait', () => {
  assert.equal(jittered(1000, () => 0), 500);
  assert.equal(jittered(1000, () => 1), 1000);
});

test('timed_out and budget_exceeded are task.failed; the other endings keep their name', () => {
  assert.equal(webhookEventType('succeeded'), 'task.succeeded');
  assert.equal(webhookEventType('failed'), 'task.failed');
  assert.equal(webhookEventType('timed_out'), 'task.failed');
  assert.equal(webhookEventType('budget_exceeded'), 'task.failed');
  assert.equal(webhookEventType('aborted'), 'task.aborted');
  assert.equal(webhookEventType('interrupted'), 'task.interrupted');
});
