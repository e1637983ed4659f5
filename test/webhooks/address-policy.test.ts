import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkWebhookTarget } from '../../src/webhooks/address-policy.ts';

const refused = [
  'http://127.0.0.1/hook',
  'http://10.0.0.1/hook',
  'http://169.254.169.254/latest/meta-data',
  'http://[::1]/hook',
  'http://[fd00:ec2::254]/hook',
  'http://100.64.0.1/hook',
  'http://0.0.0.0/hook',
  'http://224.0.0.1/hook',
  'http://localhost:8080/hook',
  'http://metadata.google.internal/computeMetadata',
];

for (const url of refused) {
  test(`refuses ${url}`, async () => {
    const check = await checkWebhookTarget(url, false);
    assert.equal(check.allowed, false);
    if (!check.allowed) assert.ok(check.reason.length > 0);
  });
}

test('refuses non-http schemes, relative URLs and credentials in the URL', async () => {
  for (const url of ['ftp://93.184.215.14/x', '/hook', 'https://user:pw@93.184.215.14/x']) {
    assert.equal((await checkWebhookTarget(url, true)).allowed, false, url);
  }
});

test('a public address is allowed and returned for pinning', async () => {
  const check = await checkWebhookTarget('https://93.184.215.14/hook', false);
  assert.deepEqual(check, { allowed: true, addresses: [{ address: '93.184.215.14', family: 4 }] });
});

test('WEBHOOK_ALLOW_PRIVATE lets loopback through', async () => {
  const check = await checkWebhookTarget('http://127.0.0.1:9/hook', true);
  assert.equal(check.allowed, true);
});
