/** Task env at rest: sealed with AES-256-GCM, bound to its task. */
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { EnvSealer } from '../../src/secrets/sealer.ts';

test('a sealed env opens for its own task only, and never holds the values in clear', () => {
  const sealer = new EnvSealer(randomBytes(32));
  const sealed = sealer.seal({ API_TOKEN: 'tok-123456789' }, 'task_a')!;
  assert.ok(!sealed.includes('tok-123456789'));
  assert.deepEqual(sealer.unseal(sealed, 'task_a'), { API_TOKEN: 'tok-123456789' });
  // Moved to another task's row, it does not open.
  assert.throws(() => sealer.unseal(sealed, 'task_b'));
  // Another key does not open it either; an empty env is not sealed at all.
  assert.throws(() => new EnvSealer(randomBytes(32)).unseal(sealed, 'task_a'));
  assert.equal(sealer.seal({}, 'task_a'), null);
});

test('request digests are keyed: stable under one key, different under another, never the plain or raw-key hash', () => {
  const key = randomBytes(32);
  const sealer = new EnvSealer(key);
  const request = JSON.stringify(['tenant', 'session', 'message', null, { PIN: '123456' }, null, {}]);
  const digest = sealer.requestDigest(request);
  assert.match(digest, /^[0-9a-f]{64}$/);
  assert.equal(sealer.requestDigest(request), digest);
  assert.equal(new EnvSealer(Buffer.from(key)).requestDigest(request), digest, 'the same key gives the same digest (after a restart)');
  assert.notEqual(sealer.requestDigest(request.replace('123456', '123457')), digest);
  assert.notEqual(new EnvSealer(randomBytes(32)).requestDigest(request), digest);
  // Neither a plain hash (guessable offline) nor an HMAC under the sealing key itself (a sub-key is derived).
  assert.notEqual(createHash('sha256').update(request).digest('hex'), digest);
  assert.notEqual(createHmac('sha256', key).update(request).digest('hex'), digest);
});
