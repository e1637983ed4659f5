/** The per-session lock that keeps submits, resets, deletes and idle stops of one session apart. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedLock } from '../../src/core/keyed-lock.ts';
import { sleep } from '../sessions/support.ts';

test('sections of one key run one at a time, in arrival order; other keys are not held up; errors release the key', async () => {
  const lock = new KeyedLock();
  const log: string[] = [];
  const section = (key: string, name: string, ms: number, fail = false) => lock.run(key, async () => {
    log.push(`${name}+`);
    await sleep(ms);
    log.push(`${name}-`);
    if (fail) throw new Error(`${name} failed`);
    return name;
  });
  const results = await Promise.allSettled([
    section('a', 'a1', 30, true), section('a', 'a2', 10), section('b', 'b1', 5), section('a', 'a3', 1),
  ]);
  assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)), ['a1 failed', 'a2', 'b1', 'a3']);
  const a = log.filter((e) => e.startsWith('a'));
  assert.deepEqual(a, ['a1+', 'a1-', 'a2+', 'a2-', 'a3+', 'a3-']);
  assert.ok(log.indexOf('b1-') < log.indexOf('a1-'), 'b did not wait for a');
  assert.equal(lock.size(), 0, 'nothing kept once all ended');
});
