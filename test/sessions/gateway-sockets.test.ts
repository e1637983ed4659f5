/**
 * A session's gateway socket lives exactly as long as its sandbox: sandboxes
 * stopped by the running-sandbox cap, after a failed task, or when idle take
 * their socket (and its descriptors) with them, so the runner's open file
 * descriptors return to their level however many sessions come and go.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { runningInSandbox, waitFinal } from './support.ts';

function openSockets(dataDir: string): string[] {
  const dir = join(dataDir, 'sockets');
  return readdirSync(dir).filter((key) => existsSync(join(dir, key, 'gateway.sock')));
}

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 300));
}

describe('gateway sockets follow their sandboxes', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      rules: [rule('gs-quick', text('quick answer')), rule('gs-slow', bash('echo busy; sleep 60'), text('never'))],
      env: { MAX_RUNNING_SANDBOXES: '1', MAX_CONCURRENT_TASKS: '1', IDLE_TIMEOUT_MS: '600000' },
    });
  });
  after(async () => h?.close());

  /** Sessions that each evict the one before (a socket leak shows within a few). */
  const EVICTIONS = 5;

  test('evictions by the cap and failed tasks close the sockets; descriptors return to their level', async () => {
    const run = async (sessionId: string): Promise<void> => {
      const res = await h.api('/task', { method: 'POST', json: { sessionId, message: 'gs-quick' } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };
    await run('gs-0');
    await run('gs-1');
    await settle();
    const level = openDescriptors();
    assert.equal(openSockets(h.dataDir).length, 1, 'the evicted session\'s socket is closed');

    for (let n = 2; n < EVICTIONS + 1; n++) await run(`gs-${n}`);
    // A task that fails by an abort stops its sandbox: its socket goes too.
    const slow = await h.api('/task', { method: 'POST', json: { sessionId: 'gs-aborted', message: 'gs-slow', wait: false } });
    await runningInSandbox(h.runnerId, 'gs-aborted', 'sleep 60');
    assert.equal((await h.api('/task/gs-aborted/abort', { method: 'POST' })).status, 200);
    assert.equal((await waitFinal(h.api, slow.body.taskId)).status, 'aborted');
    await settle();

    assert.deepEqual(openSockets(h.dataDir), [], 'no sandbox runs, no socket is open');
    const now = openDescriptors();
    assert.ok(now <= level + 2, `open descriptors went from ${level} to ${now} over ${EVICTIONS} evictions and an abort`);

    // A session whose socket was closed is served again on its next task.
    await run('gs-3');
    assert.equal(openSockets(h.dataDir).length, 1);
  });
});
