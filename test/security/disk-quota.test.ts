/**
 * The per-session workspace quota (SANDBOX_DISK): a session whose agent
 * writes past it has its task stopped with DISK_QUOTA_EXCEEDED, takes no
 * more writes (uploads and tasks are refused) until files are deleted, and
 * the other sessions go on unaffected.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, statfs } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { errorTable } from '../../src/core/errors.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { isMountPoint, LoopVolumes } from '../../src/workspace/loop-volumes.ts';
import { WorkspaceQuota } from '../../src/workspace/quota.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { containerOf, rawRequest, readDb } from '../sessions/support.ts';
import { lastToolResults } from './support.ts';

const MiB = 1024 * 1024;

describe('workspace disk quota', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { SANDBOX_DISK: '8m' },
      rules: [
        // Written in steps, so the quota is passed while the task still runs.
        rule('dq-fill', bash('for i in 1 2 3 4 5 6; do head -c 4000000 /dev/urandom > /workspace/big-$i; sleep 1; done; echo filled; sleep 30'), text('never')),
        rule('dq-small', bash('head -c 100000 /dev/urandom > /workspace/small && echo small-ok'), text('small done')),
        rule('dq-after', bash('ls /workspace | tr "\\n" " "; echo; echo after-ok'), text('after done')),
        // Left running after its task: it writes past the quota while no task runs.
        rule('dq-background', bash('(sleep 1; head -c 12000000 /dev/urandom > /workspace/bg) > /dev/null 2>&1 & echo started'), text('started in the background')),
      ],
    });
  });
  after(async () => h?.close());

  test('the agent passes the quota: its task stops with DISK_QUOTA_EXCEEDED; writes and tasks are refused until files go', async () => {
    const [filled, neighbour] = await Promise.all([
      h.api('/task', { method: 'POST', json: { sessionId: 'dq-greedy', message: 'dq-fill' } }),
      h.api('/task', { method: 'POST', json: { sessionId: 'dq-neighbour', message: 'dq-small' } }),
    ]);
    assert.equal(filled.status, errorTable.DISK_QUOTA_EXCEEDED.status, JSON.stringify(filled.body));
    assert.equal(filled.body.status, 'failed');
    assert.equal(filled.body.error.code, 'DISK_QUOTA_EXCEEDED');
    assert.equal(filled.body.error.details.limitBytes, 8 * MiB);
    assert.ok(filled.body.error.details.usedBytes > 8 * MiB);
    assert.ok(filled.body.duration < 20_000, `stopped after ${filled.body.duration} ms, not at the end of the script`);
    // Stopped while it ran: it never got to write all six files.
    const listing = (await h.api('/session/dq-greedy/files')).body.files as Array<{ path: string }>;
    assert.ok(listing.filter((f) => f.path.startsWith('big-')).length < 6, JSON.stringify(listing));
    assert.equal(neighbour.status, 200, JSON.stringify(neighbour.body));
    assert.match(lastToolResults(h.model, 'dq-small'), /small-ok/);

    // Further writes are refused: a task, and an upload.
    const refused = await h.api('/task', { method: 'POST', json: { sessionId: 'dq-greedy', message: 'dq-after' } });
    assert.equal(refused.status, 507, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'DISK_QUOTA_EXCEEDED');
    assert.equal(h.model.findRequests({ prompt: 'dq-after' }).length, 0, 'the agent never ran');
    const upload = await h.api('/session/dq-greedy/files/more.txt', { method: 'PUT', body: 'x'.repeat(1000) });
    assert.equal(upload.status, 507, upload.text);
    assert.equal(upload.body.error.code, 'DISK_QUOTA_EXCEEDED');
    // The other session still takes uploads.
    assert.equal((await h.api('/session/dq-neighbour/files/more.txt', { method: 'PUT', body: 'x'.repeat(1000) })).status, 201);

    // Files deleted: the session works again.
    for (const file of listing.filter((f) => f.path.startsWith('big-'))) {
      assert.equal((await h.api(`/session/dq-greedy/files/${file.path}`, { method: 'DELETE' })).status, 200);
    }
    const again = await h.api('/task', { method: 'POST', json: { sessionId: 'dq-greedy', message: 'dq-after' } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.match(lastToolResults(h.model, 'dq-after'), /after-ok/);
  });

  test('a writer the agent left running after its task is stopped between tasks', async () => {
    const started = await h.api('/task', { method: 'POST', json: { sessionId: 'dq-bg', message: 'dq-background' } });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    // The sweep (every 5 s) finds the workspace past its quota and stops the sandbox, and what runs in it.
    const stopped = await eventually(async () => {
      const container = await containerOf(h.runnerId, 'dq-bg');
      return container && container.State !== 'running' ? container : undefined;
    }, 30_000, 'the sandbox past its quota to be stopped');
    assert.ok(stopped);
    const refused = await h.api('/task', { method: 'POST', json: { sessionId: 'dq-bg', message: 'dq-after' } });
    assert.equal(refused.status, 507, JSON.stringify(refused.body));
  });

  test('an upload may take only what is left of the quota', async () => {
    assert.equal((await h.api('/task', { method: 'POST', json: { sessionId: 'dq-upload', message: 'dq-small' } })).status, 200);
    // A raw client: the answer comes while the body is still being sent (fetch would only see the reset).
    const tooBig = await rawRequest(h.url, 'PUT', '/session/dq-upload/files/huge.bin', Buffer.alloc(9 * MiB, 1));
    assert.equal(tooBig.status, 507, tooBig.body.toString());
    assert.equal(tooBig.json.error.code, 'DISK_QUOTA_EXCEEDED');
    assert.equal((await h.api('/session/dq-upload/files/huge.bin')).status, 404, 'nothing of it stays');
    assert.equal((await h.api('/session/dq-upload/files/fits.bin', { method: 'PUT', body: Buffer.alloc(2 * MiB, 1) })).status, 201);
  });
});

describe('a session\'s files are measured as the disk sees them', () => {
  test('blocks of files and folders, hard links once, symlinks not followed; the home counts too', async () => {
    const { mkdtempSync, writeFileSync, linkSync, symlinkSync, mkdirSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/cr-quota-');
    const dirs = { workspace: `${dir}/workspace`, home: `${dir}/home` };
    try {
      mkdirSync(dirs.workspace);
      mkdirSync(dirs.home);
      const quota = new WorkspaceQuota(3 * MiB);
      writeFileSync(`${dirs.workspace}/a`, Buffer.alloc(2 * MiB, 1));
      linkSync(`${dirs.workspace}/a`, `${dirs.workspace}/a-again`);
      symlinkSync('/usr', `${dirs.workspace}/usr`);
      mkdirSync(`${dirs.workspace}/sub`);
      writeFileSync(`${dirs.workspace}/sub/b`, Buffer.alloc(512 * 1024, 1));
      const used = await quota.usage(dirs.workspace);
      assert.ok(used >= 2.5 * MiB && used < 2.5 * MiB + 64 * 1024, `used ${used}`);
      assert.equal(await quota.overLimit(dirs), undefined);
      assert.ok((await quota.remaining(dirs)) < 0.6 * MiB);
      // The agent's home is no way around the quota.
      writeFileSync(`${dirs.home}/c`, Buffer.alloc(MiB, 1));
      assert.equal((await quota.overLimit(dirs))?.code, 'DISK_QUOTA_EXCEEDED');
      await assert.rejects(quota.remaining(dirs), { code: 'DISK_QUOTA_EXCEEDED' });
      assert.equal(await new WorkspaceQuota(0).overLimit(dirs), undefined, 'no quota, no limit');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Loop volumes need root and loop devices; CI has both. */
const loopReason = await LoopVolumes.check().then(() => undefined, (error: Error) => error.message);

describe('workspace disk quota on loop volumes (SANDBOX_DISK_MODE=loop)', { skip: loopReason }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { SANDBOX_DISK: '16m', SANDBOX_DISK_MODE: 'loop' },
      rules: [
        rule('dql-fill', bash('for i in 1 2 3 4 5 6 7 8; do head -c 4000000 /dev/urandom > /workspace/big-$i || echo "write $i refused"; sleep 0.5; done; echo filled; sleep 30'), text('never')),
        rule('dql-after', bash('df -B1 /workspace | tail -1; echo after-ok'), text('after done')),
      ],
    });
  });
  after(async () => {
    if (!h) return;
    try {
      // Deleting the sessions unmounts their volumes, so the test's folder can go.
      for (const id of ['dql-a', 'dql-b']) await h.api(`/session/${id}`, { method: 'DELETE' }).catch(() => undefined);
    } finally {
      // Whatever a failed test left mounted goes before the folder does.
      for (const mount of await mountsUnder(h.dataDir)) execFileSync('umount', ['-l', mount]);
      await h.close();
    }
  });

  test('the kernel refuses writes past the size; the task stops with DISK_QUOTA_EXCEEDED; delete and reset free it', async () => {
    const filled = await h.api('/task', { method: 'POST', json: { sessionId: 'dql-a', message: 'dql-fill' } });
    assert.equal(filled.status, 507, JSON.stringify(filled.body));
    assert.equal(filled.body.error.code, 'DISK_QUOTA_EXCEEDED');
    // The kernel refused what did not fit: the files written add up to less than the volume, one of them cut short.
    const written = ((await h.api('/session/dql-a/files')).body.files as Array<{ path: string; size: number }>).filter((f) => f.path.startsWith('big-'));
    const total = written.reduce((sum, f) => sum + f.size, 0);
    assert.ok(written.length >= 3 && total < 16 * MiB, JSON.stringify(written));
    assert.ok(written.some((f) => f.size < 4_000_000), `a write was cut short: ${JSON.stringify(written)}`);
    const workspace = join(h.dataDir, 'sessions', sessionKeyOf(h.dataDir, 'dql-a'), 'workspace');
    assert.ok(await isMountPoint(workspace), 'the workspace is a volume of its own');
    const size = (await statfs(workspace)).blocks * (await statfs(workspace)).bsize;
    assert.ok(size <= 16 * MiB, `volume of ${size} bytes`);
    assert.equal((await h.api('/session/dql-a/files/more.bin', { method: 'PUT', body: Buffer.alloc(MiB, 1) })).status, 507);
    // Another session has its own volume, untouched.
    const other = await h.api('/task', { method: 'POST', json: { sessionId: 'dql-b', message: 'dql-after' } });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    assert.match(lastToolResults(h.model, 'dql-after'), /after-ok/);
    // A reset gives a fresh, empty volume.
    assert.equal((await h.api('/session/dql-a/reset', { method: 'POST' })).status, 200);
    const again = await h.api('/task', { method: 'POST', json: { sessionId: 'dql-a', message: 'dql-after' } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    // Deleted: unmounted, image gone.
    const root = join(h.dataDir, 'sessions', sessionKeyOf(h.dataDir, 'dql-a'));
    assert.equal((await h.api('/session/dql-a', { method: 'DELETE' })).status, 200);
    assert.equal(await isMountPoint(join(root, 'workspace')), false);
    assert.equal(existsSync(join(root, 'workspace.img')), false);
  });
});

async function mountsUnder(dir: string): Promise<string[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  return lines.map((line) => line.split(' ')[4] ?? '').filter((mount) => mount.startsWith(`${dir}/`));
}

/** The internal key of a session, read from the runner's database. */
function sessionKeyOf(dataDir: string, sessionId: string): string {
  return readDb(join(dataDir, 'runner.db'), (db) => (db.prepare('SELECT key FROM sessions WHERE id = ?').get(sessionId) as { key: string }).key);
}
