/**
 * WorkspaceFiles on shapes an agent can make that the HTTP tests do not:
 * trees deeper than the descriptors a walk keeps open (listing reopens
 * folders by name, removal moves deep folders up), a FIFO and a socket where
 * a file is expected, and folders an upload makes (given to the workspace
 * owner). Each also checks that no descriptor into the workspace stays open.
 * The quota's measurement (disk-usage-worker.ts, the same rules in a worker
 * thread) is checked against `du` on the deepest of these shapes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { diskUsage } from '../../src/workspace/disk-usage.ts';
import { WorkspaceFiles, type FileEntry } from '../../src/workspace/files.ts';

const files = new WorkspaceFiles();
let root: string;

before(() => { root = mkdtempSync(join(tmpdir(), 'cr-walk-')); });
after(() => rmSync(root, { recursive: true, force: true }));

/** Descriptors of this process that point into the workspace. */
function openIntoRoot(): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target === root || target.startsWith(`${root}/`)) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

/** Runs `fn` while sampling the descriptors into the workspace; the most seen at once. */
async function sampled<T>(fn: () => Promise<T>): Promise<{ value: T; most: number }> {
  let most = 0;
  const timer = setInterval(() => { most = Math.max(most, openIntoRoot()); }, 10);
  try {
    const value = await fn();
    return { value, most };
  } finally {
    clearInterval(timer);
  }
}

/** The listing WorkspaceFiles should give, made with plain path calls (nothing races here). */
function reference(dir: string, out: Array<[string, string]> = []): Array<[string, string]> {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const info = lstatSync(full);
    out.push([relative(root, full), info.isSymbolicLink() ? 'symlink' : info.isDirectory() ? 'directory' : 'file']);
    if (info.isDirectory() && !info.isSymbolicLink()) reference(full, out);
  }
  return out;
}

test('a tree deeper than the open-descriptor window is listed exactly, and removed, with few descriptors', async () => {
  // 120 levels, each with a file, a link and a side folder holding a file: the walk leaves and re-enters closed levels.
  let dir = join(root, 'deep');
  for (let level = 0; level < 120; level++) {
    mkdirSync(join(dir, 'side'), { recursive: true });
    writeFileSync(join(dir, 'f.txt'), String(level));
    writeFileSync(join(dir, 'side', 'g.txt'), String(level));
    symlinkSync('/etc', join(dir, 'link'));
    dir = join(dir, 'n');
  }
  const { value: listed, most } = await sampled(() => files.list(root, 'deep'));
  assert.deepEqual(listed.map((e: FileEntry) => [e.path, e.type]), reference(join(root, 'deep')));
  assert.ok(most <= 40, `listing held ${most} descriptors`);

  const removed = await sampled(() => files.remove(root, 'deep'));
  assert.deepEqual(readdirSync(root).filter((n) => n === 'deep'), []);
  assert.ok(removed.most <= 40, `removal held ${removed.most} descriptors`);
  assert.equal(openIntoRoot(), 0);
});

test('a chain of 2,100 folders (a path longer than PATH_MAX) is removed, deep folders moved up for later rounds, leaving nothing behind', async (t) => {
  mkdirSync(join(root, 'chain'));
  // Made relative to each new folder, as an agent would (the full path would pass PATH_MAX).
  const script = "const fs = require('fs'); for (let i = 0; i < 2100; i++) { fs.mkdirSync('a'); process.chdir('a'); fs.writeFileSync('f', String(i)); }";
  execFileSync(process.execPath, ['-e', script], { cwd: join(root, 'chain') });
  const started = Date.now();
  const { most } = await sampled(() => files.remove(root, 'chain'));
  assert.deepEqual(readdirSync(root).filter((n) => n === 'chain' || n.startsWith('.remove-')), []);
  assert.ok(most <= 40, `removal held ${most} descriptors`);
  assert.equal(openIntoRoot(), 0);
  t.diagnostic(`2,100 levels removed in ${Date.now() - started} ms`);
});

test('the quota measures a 2,100-level chain as du does: each inode once, symlinks not followed, few descriptors, nothing left open', async () => {
  mkdirSync(join(root, 'measured'));
  // Made relative to each new folder (the full path passes PATH_MAX); a symlink out and a hard link at every level.
  const script = "const fs = require('fs'); for (let i = 0; i < 2100; i++) { fs.mkdirSync('a'); process.chdir('a'); "
    + "fs.writeFileSync('f', 'x'.repeat(i * 10)); fs.linkSync('f', 'f-again'); fs.symlinkSync('/usr', 'usr'); }";
  execFileSync(process.execPath, ['-e', script], { cwd: join(root, 'measured') });
  const { value: bytes, most } = await sampled(() => diskUsage(join(root, 'measured'), 1_000_000));
  // du counts the folder itself too; the quota counts what is in it.
  const du = Number(execFileSync('du', ['-s', '-B1', join(root, 'measured')]).toString().split('\t')[0]) - statSync(join(root, 'measured')).blocks * 512;
  assert.equal(bytes, du);
  assert.ok(most <= 40, `the measurement held ${most} descriptors`);
  assert.equal(openIntoRoot(), 0);
  assert.equal(await diskUsage(join(root, 'measured'), 5000), Infinity, 'past maxEntries (2,100 × 4 entries) it counts as past any quota');
  assert.equal(await diskUsage(join(root, 'no-such-folder'), 1000), 0);
  // Measurements take turns: a small one asked while the chain is measured is not held up behind it.
  mkdirSync(join(root, 'small'));
  writeFileSync(join(root, 'small', 'f'), 'x');
  const order: string[] = [];
  await Promise.all([
    diskUsage(join(root, 'measured'), 1_000_000).then(() => order.push('chain')),
    diskUsage(join(root, 'small'), 1_000_000).then(() => order.push('small')),
  ]);
  assert.deepEqual(order, ['small', 'chain']);
});

test('a listing does not go below paths no request could name (over 1024 characters)', async () => {
  const name = 'x'.repeat(200);
  mkdirSync(join(root, 'long', name, name, name, name, name, name, name), { recursive: true });
  const listed = await files.list(root, 'long');
  assert.deepEqual(listed.map((e) => e.path.length), [205, 406, 607, 808, 1009, 1210], 'the folder past the limit is listed, not entered');
  await files.remove(root, 'long');
});

test('a FIFO or a socket where a file is read is refused at once; neither is opened for long', async () => {
  execFileSync('mkfifo', [join(root, 'fifo')]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(root, 'sock'), resolve));
  try {
    for (const name of ['fifo', 'sock']) {
      await assert.rejects(files.read(root, name), (error: { code?: string }) => error.code === 'INVALID_PATH', name);
    }
    const listed = await files.list(root);
    assert.deepEqual(listed.filter((e) => e.path === 'fifo' || e.path === 'sock').map((e) => [e.type, e.size]), [['file', 0], ['file', 0]]);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  await files.remove(root, 'fifo');
  assert.equal(openIntoRoot(), 0);
});

test('folders an upload makes, and the file, belong to the workspace owner; folders that were there keep theirs', { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async () => {
  mkdirSync(join(root, 'kept'));
  const owner = { uid: 1000, gid: 1000 };
  const size = await files.write(root, 'kept/made/deeper/file.txt', Readable.from([Buffer.from('hello')]), { maxBytes: 100, owner });
  assert.equal(size, 5);
  assert.equal(statSync(join(root, 'kept')).uid, 0);
  for (const path of ['kept/made', 'kept/made/deeper', 'kept/made/deeper/file.txt']) {
    const info = statSync(join(root, path));
    assert.deepEqual([info.uid, info.gid], [1000, 1000], path);
  }
  // A symlink on the way is refused, not followed, and nothing is made behind it.
  symlinkSync('kept', join(root, 'kept-link'));
  await assert.rejects(files.write(root, 'kept-link/other/file.txt', Readable.from(['x']), { maxBytes: 100, owner }),
    (error: { code?: string }) => error.code === 'INVALID_PATH');
  assert.deepEqual(readdirSync(join(root, 'kept')), ['made']);
  assert.equal(openIntoRoot(), 0);
});
