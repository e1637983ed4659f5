/** SessionDirectories refuses a DATA_DIR whose gateway socket paths would not fit, and keeps it private. */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { newId } from '../../src/core/ids.ts';
import { SessionDirectories } from '../../src/workspace/session-dirs.ts';

/** The guard's limit, in bytes (unix socket paths allow 107). */
const LIMIT = 100;

/** Bytes a socket path adds to DATA_DIR: /sockets/<session key>/gateway.sock. */
const OVERHEAD = Buffer.byteLength(join('/', 'sockets', newId('s'), 'gateway.sock'));

function socketPath(dirs: SessionDirectories): string {
  return join(dirs.of(newId('s')).socketDir, 'gateway.sock');
}

/** An absolute DATA_DIR of `bytes` bytes, made of `unit` repeated (padded with 'd'). */
function dataDirOf(bytes: number, unit = 'd'): string {
  let dir = '/';
  while (Buffer.byteLength(dir + unit) <= bytes) dir += unit;
  return dir + 'd'.repeat(bytes - Buffer.byteLength(dir));
}

test('a DATA_DIR whose longest socket path is exactly at the limit is accepted; a byte more is refused', () => {
  const atLimit = dataDirOf(LIMIT - OVERHEAD);
  const dirs = new SessionDirectories(atLimit);
  assert.equal(Buffer.byteLength(socketPath(dirs)), LIMIT, 'a real session key reaches the limit exactly');

  const tooLong = dataDirOf(LIMIT - OVERHEAD + 1);
  assert.throws(() => new SessionDirectories(tooLong), (error: Error) =>
    error.message === `DATA_DIR ${tooLong} is too long for unix socket paths (limit ${LIMIT} bytes): choose a shorter path`);
});

test('the limit counts bytes, not characters', () => {
  const atLimit = dataDirOf(LIMIT - OVERHEAD, 'é');
  assert.equal(Buffer.byteLength(socketPath(new SessionDirectories(atLimit))), LIMIT);
  const tooLong = dataDirOf(LIMIT - OVERHEAD + 1, 'é');
  assert.ok(tooLong.length < LIMIT - OVERHEAD, 'fewer characters than bytes');
  assert.throws(() => new SessionDirectories(tooLong), /too long for unix socket paths/);
});

test('prepare: DATA_DIR, sessions and sockets are private to the server user (0700), made so when they exist', async () => {
  const base = mkdtempSync(join(tmpdir(), 'cr-dirs-'));
  try {
    const mode = (path: string): string => (statSync(path).mode & 0o7777).toString(8);
    // a fresh DATA_DIR (its parent is created as usual)
    const fresh = new SessionDirectories(join(base, 'parent', 'data'));
    fresh.prepare();
    assert.equal(mode(join(base, 'parent')), (0o777 & ~process.umask()).toString(8), 'the parent is not DATA_DIR');
    for (const dir of ['', 'sessions', 'sockets']) assert.equal(mode(join(base, 'parent', 'data', dir)), '700', dir || 'DATA_DIR');
    // an existing one, as earlier versions left it
    const old = join(base, 'old');
    mkdirSync(join(old, 'sessions'), { recursive: true, mode: 0o755 });
    chmodSync(old, 0o755);
    chmodSync(join(old, 'sessions'), 0o775);
    new SessionDirectories(old).prepare();
    for (const dir of ['', 'sessions', 'sockets']) assert.equal(mode(join(old, dir)), '700', dir || 'DATA_DIR');
    // sessions made afterwards live inside them; create() alone also makes the parents private
    const dirs = new SessionDirectories(join(base, 'unprepared'));
    const template = join(base, 'template');
    mkdirSync(template);
    writeFileSync(join(template, 'AGENTS.md'), '# hi\n');
    const made = await dirs.create(newId('s'), template);
    assert.equal(mode(join(base, 'unprepared')), '700');
    assert.equal(mode(join(base, 'unprepared', 'sessions')), '700');
    assert.equal(mode(join(base, 'unprepared', 'sockets')), '700');
    assert.equal(statSync(join(made.workspace, 'AGENTS.md')).isFile(), true);
    // a shared folder is never locked down
    const shared = join(base, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    assert.throws(() => new SessionDirectories(shared).prepare(), /shared folder/);
    assert.equal(mode(shared), '1777');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
