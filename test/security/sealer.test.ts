/** Task env at rest: sealed with AES-256-GCM, bound to its task. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
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
