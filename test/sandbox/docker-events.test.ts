/**
 * DockerSandboxDriver.watch against the real engine: an OOM kill, the pids
 * limit and the end of a sandbox reach its watchers (and only its watchers);
 * unsubscribing and close() stop delivery; one engine event stream per
 * driver, reopened when it drops; and a watch does not inspect the container
 * every second (engine requests counted through a spy on docker.modem.dial).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import type { SandboxEvent, SandboxHandle } from '../../src/core/ports/sandbox.ts';
import type { DockerSandboxDriver } from '../../src/sandbox/docker/index.ts';
import { LIMITS, MiB, RUNNER_ID, T, collect, driver, makeDriver, sh, specFor, useDriverSuite } from './driver-support.ts';

useDriverSuite();

interface Request {
  method: string;
  path: string;
}

/** A Docker client that records every request it sends, and hands over the event streams it opens. */
function spyDocker(): { docker: Docker; requests: Request[]; eventStreams: IncomingMessage[] } {
  const docker = new Docker();
  const requests: Request[] = [];
  const eventStreams: IncomingMessage[] = [];
  const modem = docker.modem as unknown as { dial(options: Request, callback: (error: unknown, data: unknown) => void): void };
  const dial = modem.dial.bind(modem);
  modem.dial = (options, callback) => {
    requests.push({ method: options.method, path: options.path });
    const isEvents = options.path.startsWith('/events');
    return dial(options, (error, data) => {
      if (isEvents && !error) eventStreams.push(data as IncomingMessage);
      callback(error, data);
    });
  };
  return { docker, requests, eventStreams };
}

const isInspect = (id: string) => (r: Request) => r.method === 'GET' && r.path.startsWith(`/containers/${id}/json`);

/** Watches the sandbox into an array. */
function record(d: DockerSandboxDriver, handle: SandboxHandle): { events: SandboxEvent[]; stop: () => void } {
  const events: SandboxEvent[] = [];
  const stop = d.watch(handle, (event) => events.push(event));
  return { events, stop };
}

/** Waits until `events` holds one of `type`; fails after `ms`. */
async function waitFor(events: SandboxEvent[], type: SandboxEvent['type'], ms = 10_000): Promise<SandboxEvent> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = events.find((e) => e.type === type);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${type} event within ${ms} ms (got ${JSON.stringify(events)})`);
    await sleep(50);
  }
}

describe('watch', () => {
  test('an OOM kill reaches the watcher as oom; a watcher of another sandbox hears nothing; an unsubscribed one neither', T, async () => {
    const small = makeDriver(RUNNER_ID, { limits: { ...LIMITS, memoryBytes: 64 * MiB } });
    try {
      const handle = await small.ensure(await specFor('ev-oom'));
      const quiet = await small.ensure(await specFor('ev-quiet'));
      const watcher = record(small, handle);
      const other = record(small, quiet);
      const gone = record(small, handle);
      gone.stop();
      const hog = await sh(handle, 'head -c 200m /dev/zero | tail; echo "tail=$?"', small);
      assert.match(hog.stdout, /tail=137/);
      assert.deepEqual(await waitFor(watcher.events, 'oom'), { type: 'oom' });
      await sleep(1500); // anything else would show up by now
      // the kernel may kill more than one process (one engine event each); the sandbox lives on: no died
      assert.deepEqual(watcher.events.filter((e) => e.type !== 'oom'), []);
      assert.deepEqual(other.events, []);
      assert.deepEqual(gone.events, []);
      watcher.stop();
      other.stop();
    } finally {
      small.close();
    }
  });

  test('a fork bomb reaches the watcher as pids_limit', T, async () => {
    const handle = await driver.ensure(await specFor('ev-forkbomb'));
    const watcher = record(driver, handle);
    try {
      await sleep(200); // the baseline read
      const bomb = driver.exec(handle, ['bash', '-c', 'bomb() { bomb | bomb & }; bomb'], { cwd: '/workspace', env: {} });
      const bombDone = collect(bomb, undefined, () => '');
      assert.deepEqual(await waitFor(watcher.events, 'pids_limit'), { type: 'pids_limit' });
      assert.equal(watcher.events.some((e) => e.type !== 'pids_limit'), false, JSON.stringify(watcher.events));
      // (this may restart the container, when the engine cannot start the kill under the pids limit: then a died follows)
      await driver.killAgentProcesses(handle);
      await bombDone;
    } finally {
      watcher.stop();
    }
  });

  test('stopping the sandbox reaches its watchers as died, with the exit code; unsubscribed watchers hear nothing', T, async () => {
    const spec = await specFor('ev-stop');
    const handle = await driver.ensure(spec);
    const quiet = await driver.ensure(await specFor('ev-stop-quiet'));
    const first = record(driver, handle);
    const second = record(driver, handle);
    const gone = record(driver, handle);
    const other = record(driver, quiet);
    gone.stop();
    gone.stop(); // twice is fine
    await driver.stop(spec.sessionKey);
    // the relay's exit on SIGTERM (143), or SIGKILL's (137)
    const died = await waitFor(first.events, 'died');
    assert.ok(died.type === 'died' && (died.exitCode === 143 || died.exitCode === 137), JSON.stringify(died));
    assert.deepEqual(await waitFor(second.events, 'died'), died);
    await sleep(500);
    assert.deepEqual(gone.events, []);
    assert.deepEqual(other.events, []);
    // A died from before a watch started is not that watch's.
    const late = record(driver, handle);
    await sleep(1000);
    assert.deepEqual(late.events, []);
    for (const w of [first, second, late, other]) w.stop();
  });

  test('one event stream per driver, opened with the first running sandbox (its death is watched), closed with the last, reopened when it drops', T, async () => {
    const spy = spyDocker();
    const d = makeDriver(RUNNER_ID, { docker: spy.docker });
    try {
      const specA = await specFor('ev-stream-a');
      const specB = await specFor('ev-stream-b');
      const opens = () => spy.requests.filter((r) => r.path.startsWith('/events')).length;
      const a = await d.ensure(specA);
      const b = await d.ensure(specB);
      for (let i = 0; i < 100 && spy.eventStreams.length === 0; i++) await sleep(20);
      assert.equal(opens(), 1, 'one stream for two sandboxes (known-running.ts watches their deaths)');
      const watchA = record(d, a);
      const watchB = record(d, b);
      await sleep(100);
      assert.equal(opens(), 1, 'watches share it');
      // The connection drops: the driver opens another, and what happened meanwhile still arrives.
      spy.eventStreams[0]!.destroy();
      await d.stop(specA.sessionKey);
      assert.equal((await waitFor(watchA.events, 'died')).type, 'died');
      assert.equal(opens(), 2);
      assert.deepEqual(watchB.events, []);
      watchA.stop();
      watchB.stop();
      await sleep(100);
      assert.equal(spy.eventStreams.at(-1)!.destroyed, false, 'B still runs: its death is still watched');
      await d.stop(specB.sessionKey);
      await sleep(100);
      assert.equal(spy.eventStreams.at(-1)!.destroyed, true, 'closed once nothing runs and nothing is watched');
      // close() ends every watch.
      const again = await d.ensure(specA);
      const watch = record(d, again);
      for (let i = 0; i < 100 && opens() < 3; i++) await sleep(20);
      d.close();
      await d.stop(specA.sessionKey);
      await sleep(1000);
      assert.deepEqual(watch.events, []);
      assert.equal(spy.eventStreams.at(-1)!.destroyed, true);
    } finally {
      d.close();
    }
  });

  test('a 5-second watch does not inspect the container every second; nor does resourceCounters once it knows the cgroup', { timeout: 60_000 }, async () => {
    for (const countersFrom of ['auto', 'sandbox'] as const) {
      const spy = spyDocker();
      const d = makeDriver(RUNNER_ID, { docker: spy.docker, countersFrom });
      try {
        const handle = await d.ensure(await specFor(`ev-cost-${countersFrom}`));
        await d.resourceCounters(handle);
        const start = spy.requests.length;
        const watcher = record(d, handle);
        await sleep(5000);
        const during = spy.requests.slice(start);
        watcher.stop();
        const inspects = during.filter(isInspect(handle.id)).length;
        const execs = during.filter((r) => r.method === 'POST' && r.path.includes('/exec')).length;
        if (countersFrom === 'auto') {
          // the host's cgroup files are read (this machine sees the engine's /proc), or an exec every few seconds
          assert.ok(inspects <= 1, `${inspects} inspects in 5 s: ${JSON.stringify(during)}`);
          const before = spy.requests.length;
          await d.resourceCounters(handle);
          const reads = spy.requests.slice(before);
          if (execs === 0) assert.deepEqual(reads, [], 'resourceCounters read the known host files');
        } else {
          assert.equal(inspects, 0, JSON.stringify(during));
          // exec create and start, about every 5 s
          assert.ok(execs <= 4, `${execs} exec requests in 5 s: ${JSON.stringify(during)}`);
        }
        // the event stream, and the exec reads' inspects
        assert.ok(during.length <= (countersFrom === 'auto' ? 4 : 12), `${during.length} engine requests in 5 s: ${JSON.stringify(during)}`);
        assert.deepEqual(watcher.events, []);
      } finally {
        d.close();
      }
    }
  });
});
