import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { newWebhookId, WebhookSigner, webhookSecretProblem } from '../../src/webhooks/signer.ts';

const secret = `whsec_${randomBytes(32).toString('base64')}`;

/** The spec's algorithm, written out, as a receiver without the library would. */
function specSignatureValid(headers: Record<string, string>, body: string): boolean {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`)
    .digest('base64');
  return (headers['webhook-signature'] ?? '').split(' ').some((entry) => entry === `v1,${expected}`);
}

test('signature verifies with plain node:crypto and with the standardwebhooks library', () => {
  const signer = new WebhookSigner(secret);
  const id = newWebhookId();
  const body = JSON.stringify({ type: 'task.succeeded', timestamp: new Date().toISOString(), data: { id: 't1' } });
  const headers = signer.headers(id, body);
  assert.match(id, /^msg_[0-9a-f]{32}$/);
  assert.equal(headers['webhook-id'], id);
  assert.ok(specSignatureValid({ ...headers }, body));
  assert.deepEqual(new Webhook(secret).verify(body, { ...headers }), JSON.parse(body));
  assert.equal(specSignatureValid({ ...headers }, body.replace('t1', 't2')), false);
});

test('the timestamp is the attempt time in unix seconds', () => {
  const headers = new WebhookSigner(secret).headers('msg_x', '{}', new Date(1_700_000_000_500));
  assert.equal(headers['webhook-timestamp'], '1700000000');
});

test('secrets that are not whsec_ + base64 of >= 24 bytes are refused', () => {
  assert.equal(webhookSecretProblem(secret), null);
  assert.match(webhookSecretProblem('abc') ?? '', /whsec_/);
  assert.match(webhookSecretProblem(`whsec_${randomBytes(16).toString('base64')}`) ?? '', /at least 24 bytes/);
  assert.match(webhookSecretProblem('whsec_not base64!') ?? '', /base64/);
  assert.throws(() => new WebhookSigner('whsec_'), /WEBHOOK_SECRET/);
});
