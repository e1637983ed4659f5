/**
 * Task webhooks end to end with a real runner and receivers on 127.0.0.1:
 * retries keep one webhook-id and sign each attempt, the payload's data is
 * the task as GET /tasks/:taskId shows it, attempts are listed, a hanging
 * receiver does not hold up the task's answer, private targets are refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { rule, text } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { signatureIsValid, startReceiver, WEBHOOK_SECRET, type Receiver } from './support.ts';

const RULES = [rule('wh-hello', text('Hello from the agent.'))];

describe('webhooks with a real runner', () => {
  let h: Harness;
  const receivers: Receiver[] = [];
  before(async () => {
    h = await startHarness({
      rules: RULES,
      env: { WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE: '1', WEBHOOK_RETRY_SCHEDULE: '50,50,50', WEBHOOK_TIMEOUT_MS: '60000' },
    });
  });
  after(async () => {
    for (const r of receivers) r.release();
    await h?.close();
    for (const r of receivers) await r.close();
  });

  test('500, 500, then 200: three signed deliveries with one webhook-id, data equal to GET /tasks/:taskId', async () => {
    const receiver = await startReceiver((n) => (n < 2 ? 500 : 200));
    receivers.push(receiver);
    const answer = await h.api('/task', { method: 'POST', json: { sessionId: 'wh-retry', message: 'wh-hello', webhookUrl: receiver.url } });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const taskId = answer.body.taskId as string;
    const list = await eventually(async () => {
      const r = await h.api(`/tasks/${taskId}/deliveries`);
      return r.body.deliveries?.[0]?.status === 'delivered' ? r.body : undefined;
    }, 20_000, 'the delivery to succeed');

    assert.equal(receiver.received.length, 3);
    const ids = new Set(receiver.received.map((r) => r.headers['webhook-id']));
    assert.equal(ids.size, 1);
    const [webhookId] = [...ids];
    assert.match(String(webhookId), /^msg_/);
    assert.equal(new Set(receiver.received.map((r) => r.body)).size, 1, 'every retry sends the same bytes');
    const wh = new Webhook(WEBHOOK_SECRET);
    for (const r of receiver.received) {
      assert.ok(signatureIsValid(r), 'the spec\'s HMAC matches');
      assert.ok(wh.verify(r.body, r.headers as Record<string, string>));
      assert.equal(r.headers['content-type'], 'application/json');
      assert.match(String(r.headers['user-agent']), /claude-runner/);
    }
    assert.equal(signatureIsValid({ ...receiver.received[0]!, body: receiver.received[0]!.body.replace('succeeded', 'failed') }), false);

    const payload = JSON.parse(receiver.received[0]!.body);
    assert.equal(payload.type, 'task.succeeded');
    assert.ok(!Number.isNaN(Date.parse(payload.timestamp)));
    const shown = await h.api(`/tasks/${taskId}`);
    assert.deepEqual(payload.data, shown.body);

    const delivery = list.deliveries[0];
    assert.equal(delivery.webhookId, webhookId);
    assert.equal(delivery.url, receiver.url);
    assert.equal(delivery.type, 'task.succeeded');
    assert.deepEqual(delivery.attempts.map((a: { statusCode: number }) => a.statusCode), [500, 500, 200]);
    assert.equal(delivery.nextAttemptAt, null);
    for (const a of delivery.attempts) assert.equal(typeof a.durationMs, 'number');
  });

  test('a hanging receiver does not hold up the blocking POST /task answer', async () => {
    const receiver = await startReceiver(() => 'hang');
    receivers.push(receiver);
    const answer = await h.api('/task', { method: 'POST', json: { sessionId: 'wh-hang', message: 'wh-hello', webhookUrl: receiver.url } });
    assert.equal(answer.status, 200);
    // The delivery starts (the receiver holds it) and is still pending after the answer came back.
    await eventually(() => (receiver.received.length > 0 ? true : undefined), 20_000, 'the delivery to arrive');
    const list = await h.api(`/tasks/${answer.body.taskId}/deliveries`);
    assert.equal(list.body.deliveries[0].status, 'pending');
    assert.equal(list.body.deliveries[0].attempts.length, 0);
    receiver.release();
    await eventually(async () => {
      const r = await h.api(`/tasks/${answer.body.taskId}/deliveries`);
      return r.body.deliveries[0].status === 'delivered' ? true : undefined;
    }, 20_000, 'the held delivery to settle');
  });

  test('a task without a webhook lists no deliveries; another tenant\'s or unknown task is 404', async () => {
    const answer = await h.api('/task', { method: 'POST', json: { sessionId: 'wh-none', message: 'wh-hello' } });
    const list = await h.api(`/tasks/${answer.body.taskId}/deliveries`);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body, { taskId: answer.body.taskId, deliveries: [] });
    const missing = await h.api('/tasks/task_nope/deliveries');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'TASK_NOT_FOUND');
  });
});

describe('webhook targets without WEBHOOK_ALLOW_PRIVATE', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { WEBHOOK_SECRET } });
  });
  after(async () => h?.close());

  for (const url of ['http://127.0.0.1:9/hook', 'http://10.0.0.1/hook', 'http://169.254.169.254/latest', 'http://[::1]:9/hook', 'http://localhost:9/hook']) {
    test(`${url} is refused with 400 WEBHOOK_TARGET_NOT_ALLOWED and nothing is queued`, async () => {
      const sessionId = `wh-private-${Buffer.from(url).toString('hex').slice(-12)}`;
      const answer = await h.api('/task', { method: 'POST', json: { sessionId, message: 'wh-hello', webhookUrl: url } });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.equal(answer.body.error.code, 'WEBHOOK_TARGET_NOT_ALLOWED');
      assert.match(answer.body.error.message, /private or internal|metadata/);
      assert.equal((await h.api(`/session/${sessionId}`)).status, 404, 'no session, so no task, was created');
    });
  }
});

describe('webhooks without WEBHOOK_SECRET', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ rules: RULES, env: { WEBHOOK_ALLOW_PRIVATE: '1' } });
  });
  after(async () => h?.close());

  test('a task asking for a webhook is refused with 400 WEBHOOK_NOT_CONFIGURED', async () => {
    const answer = await h.api('/task', { method: 'POST', json: { sessionId: 'wh-unset', message: 'wh-hello', webhookUrl: 'http://127.0.0.1:9/x' } });
    assert.equal(answer.status, 400);
    assert.equal(answer.body.error.code, 'WEBHOOK_NOT_CONFIGURED');
  });
});

describe('a template\'s default webhook', () => {
  let h: Harness;
  let receiver: Receiver;
  before(async () => {
    receiver = await startReceiver(() => 200);
    h = await startHarness({
      rules: RULES, template: { 'runner.json': { webhook: receiver.url } },
      env: { WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE: '1' },
    });
  });
  after(async () => {
    await h?.close();
    await receiver?.close();
  });

  test('a task naming no webhookUrl is delivered to its template\'s webhook', async () => {
    const answer = await h.api('/task', { method: 'POST', json: { sessionId: 'wh-template', message: 'wh-hello' } });
    assert.equal(answer.status, 200);
    await eventually(() => (receiver.received.length === 1 ? true : undefined), 20_000, 'the delivery');
    assert.ok(signatureIsValid(receiver.received[0]!));
    assert.equal(JSON.parse(receiver.received[0]!.body).data.taskId, answer.body.taskId);
    const list = await h.api(`/tasks/${answer.body.taskId}/deliveries`);
    assert.equal(list.body.deliveries[0].url, receiver.url);
  });
});
