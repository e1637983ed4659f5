/**
 * The outbox is durable: a delivery whose receiver is down, when the runner
 * process is SIGKILLed mid-backoff and started again, is made after the
 * restart, with the webhook-id fixed before the crash.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { rule, startScriptedModel, text } from '../../src/scripted-model/index.ts';
import { apiClient, eventually, removeContainers, spawnRunner, testEnv, testRunnerId, UPSTREAM_KEY, writeTemplate, type RunnerProcess } from '../support/harness.ts';
import { signatureIsValid, startReceiver, WEBHOOK_SECRET, type Receiver } from './support.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test('a delivery pending when the runner is killed -9 is made after it restarts', async () => {
  const model = await startScriptedModel({ rules: [rule('wh-crash', text('Done before the crash.'))], requireApiKey: UPSTREAM_KEY });
  cleanups.push(() => model.close());
  const base = mkdtempSync('/tmp/cr-wh-');
  cleanups.push(() => rmSync(base, { recursive: true, force: true }));
  const runnerId = testRunnerId();
  cleanups.push(() => removeContainers(runnerId));
  const env = testEnv({
    DATA_DIR: join(base, 'data'), AGENT_DIR: writeTemplate(join(base, 'agent'), {}), ANTHROPIC_BASE_URL: model.url, RUNNER_ID: runnerId,
    WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE: '1', WEBHOOK_RETRY_SCHEDULE: '3000,3000,3000',
  });

  // A port with nothing listening: the first attempt is refused.
  const probe = await startReceiver(() => 200);
  const port = Number(new URL(probe.url).port);
  const webhookUrl = probe.url;
  await probe.close();

  let runner: RunnerProcess = spawnRunner(env);
  cleanups.push(() => runner.child.kill('SIGKILL'));
  let url = await runner.url;
  const api = apiClient(() => url);
  const answer = await api('/task', { method: 'POST', json: { sessionId: 'wh-crash', message: 'wh-crash', webhookUrl } });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const taskId = answer.body.taskId as string;
  const before = await eventually(async () => {
    const r = await api(`/tasks/${taskId}/deliveries`);
    return r.body.deliveries[0]?.attempts.length === 1 ? r.body.deliveries[0] : undefined;
  }, 20_000, 'the first (refused) attempt');
  assert.equal(before.status, 'pending');
  assert.equal(before.attempts[0].statusCode, null);
  assert.match(before.attempts[0].error, /ECONNREFUSED/);

  runner.child.kill('SIGKILL');
  await runner.exited;

  const receiver: Receiver = await startReceiver(() => 200, port);
  cleanups.push(() => receiver.close());
  assert.equal(receiver.received.length, 0);
  runner = spawnRunner(env);
  url = await runner.url;
  const delivered = await eventually(async () => {
    const r = await api(`/tasks/${taskId}/deliveries`);
    return r.body.deliveries[0]?.status === 'delivered' ? r.body.deliveries[0] : undefined;
  }, 20_000, 'the delivery after the restart');
  assert.equal(receiver.received.length, 1);
  assert.equal(receiver.received[0]!.headers['webhook-id'], before.webhookId);
  assert.ok(signatureIsValid(receiver.received[0]!));
  assert.deepEqual(delivered.attempts.map((a: { statusCode: number | null }) => a.statusCode), [null, 200]);
  runner.child.kill('SIGTERM');
  await runner.exited;
});
