/**
 * The Docker sandbox driver against the real engine: the resource counters
 * (OOM kills, pids-limit hits), read on the host and from inside.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RUNNER_ID, T, collect, docker, driver, makeDriver, processes, sh, specFor, useDriverSuite } from './driver-support.ts';

useDriverSuite();

describe('resource counters', () => {
  test('a memory hog shows up as an OOM kill', T, async () => {
    const handle = await driver.ensure(await specFor('oom'));
    const before = await driver.resourceCounters(handle);
    assert.deepEqual(before, { oomKills: 0, pidsLimitHits: 0 });
    const hog = await sh(handle, 'head -c 600m /dev/zero | tail; echo "tail=$?"');
    assert.match(hog.stdout, /tail=137/);
    const afterCounters = await driver.resourceCounters(handle);
    assert.ok(afterCounters.oomKills >= 1, JSON.stringify(afterCounters));
    assert.equal(afterCounters.pidsLimitHits, 0);
    // the same numbers when read from inside the sandbox
    const inside = await makeDriver(RUNNER_ID, { countersFrom: 'sandbox' }).resourceCounters(handle);
    assert.deepEqual(inside, afterCounters);
    assert.equal((await sh(handle, 'echo alive')).stdout, 'alive\n');
  });

  test('a fork bomb is bounded by the pids limit, counted, killed, and the sandbox still answers', T, async () => {
    const handle = await driver.ensure(await specFor('forkbomb'));
    const before = await driver.resourceCounters(handle);
    assert.equal(before.pidsLimitHits, 0);
    const bomb = driver.exec(handle, ['bash', '-c', 'bomb() { bomb | bomb & }; bomb'], { cwd: '/workspace', env: {} });
    const bombDone = collect(bomb, undefined, () => '');
    let counters = before;
    for (let i = 0; i < 100 && counters.pidsLimitHits === 0; i++) {
      await sleep(50);
      counters = await driver.resourceCounters(handle);
    }
    assert.ok(counters.pidsLimitHits > 0, JSON.stringify(counters));
    await driver.killAgentProcesses(handle);
    await bombDone;
    const info = await docker.getContainer(handle.id).inspect();
    assert.equal(info.State.Running, true, 'the relay survived');
    assert.equal((await sh(handle, 'echo alive')).stdout, 'alive\n');
    assert.deepEqual((await processes(handle)).filter((p) => p.startsWith('1000 ')), []);
  });

  test('pids-limit hits read from inside are the host\'s', T, async () => {
    const handle = await driver.ensure(await specFor('pids-burst'));
    // A burst past the limit that then ends by itself (a fork bomb holds every pid, and no exec could read then).
    // (The subshell dies at its first failed fork; the sleeps it started end 2 s later.)
    const burst = await sh(handle, '(for i in $(seq 100); do sleep 2 & done) 2>/dev/null; echo done');
    assert.match(burst.stdout, /done/);
    await sleep(3000);
    const host = await driver.resourceCounters(handle);
    assert.ok(host.pidsLimitHits > 0, JSON.stringify(host));
    const inside = await makeDriver(RUNNER_ID, { countersFrom: 'sandbox' }).resourceCounters(handle);
    assert.deepEqual(inside, host);
  });
});
