/**
 * The cap on running sandboxes, around an in-memory driver: how long ensure()
 * waits when every running sandbox is busy, and that it stops waiting when
 * the task's signal aborts or the engine does not answer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RunnerError } from '../../src/core/errors.ts';
import type { SandboxDriver, SandboxHandle, SandboxInfo, SandboxSpec } from '../../src/core/ports/sandbox.ts';
import { CappedSandboxDriver, type SandboxCapOptions } from '../../src/sandbox/capped-driver.ts';

const T = { timeout: 20_000 };
const quiet = { info() {}, warn() {} };

/** Sandboxes as a map of running flags; `list` can be made to hang (a stuck engine). */
class MemoryDriver implements SandboxDriver {
  running = new Map<string, boolean>();
  ensures: string[] = [];
  listHangs = false;
  async check(): Promise<void> {}
  async ensure(spec: SandboxSpec): Promise<SandboxHandle> {
    this.ensures.push(spec.sessionKey);
    this.running.set(spec.sessionKey, true);
    return { sessionKey: spec.sessionKey, id: `id-${spec.sessionKey}` };
  }
  exec(): never {
    throw new Error('not used');
  }
  async killAgentProcesses(): Promise<void> {}
  async resourceCounters() {
    return { oomKills: 0, pidsLimitHits: 0 };
  }
  watch(): () => void {
    return () => {};
  }
  async stop(sessionKey: string): Promise<void> {
    this.running.set(sessionKey, false);
  }
  async remove(sessionKey: string): Promise<void> {
    this.running.delete(sessionKey);
  }
  list(): Promise<SandboxInfo[]> {
    if (this.listHangs) return new Promise(() => {});
    return Promise.resolve([...this.running].map(([sessionKey, running]) => ({ sessionKey, id: `id-${sessionKey}`, running })));
  }
}

function spec(sessionKey: string): SandboxSpec {
  return { sessionKey, tenantId: 't', sessionId: sessionKey, workspaceDir: '/w', homeDir: '/h', gatewaySocketDir: '/g', network: 'none' };
}

/** One slot, held by a sandbox whose task runs: the next start has to wait. */
async function fullCap(options: Partial<SandboxCapOptions> = {}): Promise<{ inner: MemoryDriver; capped: CappedSandboxDriver; busy: Set<string> }> {
  const inner = new MemoryDriver();
  const busy = new Set(['busy']);
  const capped = new CappedSandboxDriver(inner, {
    maxRunning: 1, isBusy: (key) => busy.has(key), beforeStop: async () => {}, waitMs: 10_000, logger: quiet, ...options,
  });
  await capped.ensure(spec('busy'));
  return { inner, capped, busy };
}

describe('sandbox cap', () => {
  test('a known-running sandbox skips the slot decision, unless a decision is stopping it: then its start waits and restarts it', T, async () => {
    const inner = new MemoryDriver();
    const known = new Set<string>();
    let releaseStop: () => void = () => {};
    const stopGate = new Promise<void>((resolve) => { releaseStop = resolve; });
    Object.assign(inner, {
      knownRunning: (key: string) => known.has(key) && inner.running.get(key) === true,
      stop: async (key: string) => {
        await stopGate; // the first stop is slow, until released
        inner.running.set(key, false);
      },
    });
    const capped = new CappedSandboxDriver(inner, { maxRunning: 1, isBusy: () => false, beforeStop: async () => {}, waitMs: 10_000, logger: quiet });
    await capped.ensure(spec('a'));
    known.add('a');
    const listed = inner.ensures.length;
    await capped.ensure(spec('a'));
    assert.equal(inner.ensures.length, listed + 1, 'the warm start went straight to the driver');
    // b needs the one slot: a (idle) is being stopped for it, slowly.
    const b = capped.ensure(spec('b'));
    await sleep(50);
    let aStarted = false;
    const a = capped.ensure(spec('a')).then((handle) => { aStarted = true; return handle; });
    await sleep(50);
    assert.equal(aStarted, false, 'a waits for the decision that is stopping it');
    releaseStop();
    await b;
    await a;
    assert.equal(inner.running.get('a'), true, 'a started again once b had its slot decided');
  });

  test('an idle sandbox is stopped to make room (the cap works at all)', T, async () => {
    const { inner, capped } = await fullCap({ isBusy: () => false });
    await capped.ensure(spec('next'));
    assert.equal(inner.running.get('busy'), false);
    assert.equal(inner.running.get('next'), true);
  });

  test('waiting for a busy cap ends as soon as the signal aborts, with its reason', T, async () => {
    const { inner, capped, busy } = await fullCap();
    const controller = new AbortController();
    const reason = new RunnerError('TASK_ABORTED', 'aborted by the caller');
    const started = Date.now();
    setTimeout(() => controller.abort(reason), 300);
    const outcome = await Promise.race([
      capped.ensure(spec('waiting'), controller.signal).then(() => 'started', (error: unknown) => error),
      sleep(5000).then(() => 'still waiting 5 s later'),
    ]);
    assert.equal(outcome, reason);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    assert.deepEqual(inner.ensures, ['busy'], 'the waiting sandbox was never started');
    // it kept no place: once the busy one is idle, another start gets the slot
    busy.clear();
    const later = await capped.ensure(spec('later'));
    assert.equal(later.sessionKey, 'later');
    assert.deepEqual(inner.ensures, ['busy', 'later']);
  });

  test('an already aborted signal fails at once, without a look at the engine', T, async () => {
    const { inner, capped } = await fullCap();
    const reason = new RunnerError('TASK_TIMEOUT');
    await assert.rejects(capped.ensure(spec('late'), AbortSignal.abort(reason)), (error) => error === reason);
    assert.deepEqual(inner.ensures, ['busy']);
  });

  test('without a signal, a busy cap still ends at waitMs with SANDBOX_BUSY', T, async () => {
    const { capped } = await fullCap({ waitMs: 600 });
    const started = Date.now();
    await assert.rejects(capped.ensure(spec('waiting')), (error: RunnerError) => error.code === 'SANDBOX_BUSY' && /MAX_RUNNING_SANDBOXES/.test(error.message));
    assert.ok(Date.now() - started < 2000);
  });

  test('an engine that does not answer: ensure ends at waitMs (or on abort) instead of hanging', T, async () => {
    const { inner, capped } = await fullCap({ waitMs: 800 });
    inner.listHangs = true;
    const outcome = await Promise.race([
      capped.ensure(spec('stuck')).then(() => 'started', (error: unknown) => error),
      sleep(5000).then(() => 'still waiting 5 s later'),
    ]);
    assert.ok(outcome instanceof RunnerError, String(outcome));
    assert.equal(outcome.code, 'SANDBOX_BUSY');
    assert.match(outcome.message, /within 800 ms/);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new RunnerError('TASK_ABORTED')), 100);
    await assert.rejects(capped.ensure(spec('stuck-too'), controller.signal), (error: RunnerError) => error.code === 'TASK_ABORTED');
  });
});
