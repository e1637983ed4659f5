/**
 * A ready pool whose entries cannot be made (here: the template's folder is
 * gone, so the workspace copy fails) logs each failure and tries again less
 * and less often; it never spins. The ports past the copy are never reached.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReadyPool, type ReadyPoolDeps } from '../../src/sessions/ready-pool.ts';
import type { AgentTemplate } from '../../src/templates/catalog.ts';
import { SessionDirectories } from '../../src/workspace/session-dirs.ts';

const unreachable = (): never => {
  throw new Error('reached past the failed workspace copy');
};

test('entries that cannot be made are retried with a growing backoff, each failure logged, nothing left behind', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'crp-'));
  const warnings: Array<{ failures: number }> = [];
  const deps: ReadyPoolDeps = {
    templates: { names: () => ['gone'], get: () => ({ name: 'gone', dir: join(dataDir, 'no-such-template') }) as AgentTemplate, readyPoolSize: () => 1 },
    dirs: new SessionDirectories(dataDir),
    sandbox: { ensureSpare: unreachable, remove: async () => {} },
    gateway: { attachSession: unreachable, standbyToken: unreachable, rehearse: unreachable, sandboxEnv: unreachable },
    runtime: { prestart: unreachable, release: async () => {}, liveSessions: () => [] },
    defaults: { model: undefined, network: 'none' },
    size: 1,
    maxLiveAgents: 4,
    isBusy: () => false,
    minFreeMemoryBytes: 0,
    retryMs: 40,
    quietMs: 0,
    logger: {
      info: () => {},
      debug: () => {},
      warn: (obj, msg) => {
        if (msg === 'ready pool: could not prepare a session') warnings.push(obj as { failures: number });
      },
    },
  };
  const pool = new ReadyPool(deps);
  try {
    pool.wake();
    // Backoff 40, 80, 160, 320 ms: at most five attempts in 700 ms (a spinning pool makes hundreds).
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.ok(warnings.length >= 2 && warnings.length <= 5, `attempts: ${warnings.length}`);
    assert.deepEqual(warnings.map((w) => w.failures), warnings.map((_, i) => i + 1), 'each failure counted');
    assert.deepEqual(pool.status(), { size: 1, ready: 0 });
  } finally {
    await pool.close();
  }
  const sessions = join(dataDir, 'sessions');
  assert.deepEqual(existsSync(sessions) ? readdirSync(sessions) : [], [], 'every half-made entry removed');
  rmSync(dataDir, { recursive: true, force: true });
});
