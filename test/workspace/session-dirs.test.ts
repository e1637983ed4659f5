/** SessionDirectories refuses a DATA_DIR whose gateway socket paths would not fit. */
import assert from 'node:assert/strict';
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
