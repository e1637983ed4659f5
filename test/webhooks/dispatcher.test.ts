/**
 * The dispatcher stopped and started again (a node that lost and regained
 * the cluster's leadership): deliveries go on, made once each.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openSqliteStore } from '../../src/store/sqlite/index.ts';
import { WebhookDispatcher } from '../../src/webhooks/dispatcher.ts';
import { WebhookSigner } from '../../src/webhooks/signer.ts';
import { eventually } from '../support/harness.ts';
import { makeOutcome, makeSession, makeTask, NO_ACTIVITY } from '../store/fixtures.ts';
import { signatureIsValid, startReceiver, WEBHOOK_SECRET } from './support.ts';

const silent = { warn: () => undefined, error: () => undefined };

test('stopped and started again, the dispatcher delivers what ends after, once each', async () => {
  const dir = mkdtempSync('/tmp/cr-dispatch-');
  const store = await openSqliteStore({ file: join(dir, 'runner.db') });
  const receiver = await startReceiver(() => 200);
  const dispatcher = new WebhookDispatcher({
    outbox: store.webhookOutbox, signer: new WebhookSigner(WEBHOOK_SECRET), render: (task) => ({ taskId: task.id, status: task.status }),
    timeoutMs: 5_000, retryScheduleMs: [100], allowPrivate: true, logger: silent,
  });
  try {
    const session = makeSession(1);
    await store.createSession(session, { maxSessions: 10 });
    const delivered = async (id: string) => (await store.webhookOutbox.listDeliveries(id)).map((d) => [d.status, d.attemptCount]);
    const finish = async (id: string): Promise<void> => {
      await store.enqueueTask(makeTask(session, id, { createdAt: Date.now(), options: { webhookUrl: receiver.url } }), { maxQueued: 10 });
      await store.claimTasks('node-1', 1, Date.now());
      assert.equal(await store.finishTask(id, 'node-1', makeOutcome({ finishedAt: Date.now() }), NO_ACTIVITY), true);
      dispatcher.wake();
    };
    dispatcher.start();
    await finish('t1');
    // Recorded before the stop (an attempt a stop cuts short is made again after the next start).
    await eventually(async () => ((await delivered('t1'))[0]?.[0] === 'delivered' ? true : undefined), 10_000, 'the first delivery');
    await dispatcher.stop();
    dispatcher.start();
    await finish('t2');
    await eventually(async () => ((await delivered('t2'))[0]?.[0] === 'delivered' ? true : undefined), 10_000, 't2 to be recorded delivered');
    assert.deepEqual([await delivered('t1'), await delivered('t2')], [[['delivered', 1]], [['delivered', 1]]]);
    assert.deepEqual(receiver.received.map((r) => JSON.parse(r.body).data.taskId), ['t1', 't2']);
    assert.ok(receiver.received.every((r) => signatureIsValid(r)));
  } finally {
    await dispatcher.stop();
    await receiver.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
