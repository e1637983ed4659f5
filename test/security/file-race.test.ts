/**
 * The workspace file API against an agent that races it (issue 9, point 1).
 *
 * A small C program (the same system calls a static binary in the sandbox
 * would make, run on the host for speed) works in a session's workspace for
 * ATTACK_MS, as fast as it can:
 *   (a) swaps the folder `d` with a symlink to a host folder and back
 *       (renameat2 RENAME_EXCHANGE of `d` and `d-link`: `d` is always one of them);
 *   (b) re-points the symlink `e` between a workspace folder and the host
 *       folder (a fresh symlink renamed over it).
 * Meanwhile tenants hammer, through the real HTTP server, GET d/m.txt,
 * PUT d/x, DELETE d/x, PUT then DELETE the folder d/sub, and the listing
 * ?path=d (and the same through `e`), and the test also drives WorkspaceFiles
 * directly (no HTTP in between: tighter loops). The host folder holds a
 * sentinel in every file, with the names the requests use.
 *
 * Whatever the timing: no answer carries the sentinel, no listing names a
 * host file, the host folder gains and loses nothing, no request is a 500,
 * no descriptor into the workspace or the host folder is left open, and
 * enough requests through `d` succeeded for the test to mean something.
 * A second test has callers leave mid-download and mid-upload: no
 * descriptor and no temporary file stays behind.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { text, rule } from '../../src/scripted-model/index.ts';
import { WorkspaceFiles } from '../../src/workspace/files.ts';
import { rawRequest } from '../sessions/support.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';

const ATTACK_MS = 10_000;
const SENTINEL = `HOST-SENTINEL-${randomBytes(6).toString('hex')}`;

const SWAPPER_C = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
/* swapper <workspace> <ms> <host folder>: (a) exchanges d and d-link, (b) re-points e between e-real and the host folder. */
int main(int argc, char **argv) {
  if (argc != 4 || chdir(argv[1]) != 0) return 2;
  long long end = now_ms() + atoll(argv[2]);
  long exchanges = 0, exchangeFails = 0, repoints = 0, repointFails = 0;
  const char *targets[2] = { "e-real", argv[3] };
  while (now_ms() < end) {
    for (int i = 0; i < 200; i++) {
      if (syscall(SYS_renameat2, AT_FDCWD, "d", AT_FDCWD, "d-link", RENAME_EXCHANGE) == 0) exchanges++; else exchangeFails++;
      unlink("e.tmp");
      if (symlink(targets[i & 1], "e.tmp") == 0 && rename("e.tmp", "e") == 0) repoints++; else repointFails++;
    }
  }
  printf("%ld %ld %ld %ld\n", exchanges, exchangeFails, repoints, repointFails);
  return 0;
}
`;

interface Tally { tried: number; ok: number; refused: number; failed: number }
const tally = (): Tally => ({ tried: 0, ok: 0, refused: 0, failed: 0 });
const show = (name: string, t: Tally) => `${name} ${t.tried} (ok ${t.ok}, refused ${t.refused}${t.failed ? `, FAILED ${t.failed}` : ''})`;

/** Every entry of a folder, recursively, with file contents and link targets: what must not change. */
function snapshot(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const info = lstatSync(full);
    const key = prefix + name;
    if (info.isSymbolicLink()) out[key] = `link:${readlinkSync(full)}`;
    else if (info.isDirectory()) Object.assign(out, { [key]: 'dir' }, snapshot(full, `${key}/`));
    else out[key] = `file:${readFileSync(full, 'utf8')}`;
  }
  return out;
}

/** Descriptors of this process (the runner runs in it) that point into one of the folders. */
function openInto(...dirs: string[]): string[] {
  const found: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (dirs.some((d) => target === d || target.startsWith(`${d}/`))) found.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return found;
}

describe('workspace file API under a racing agent', () => {
  let h: Harness;
  let workspace: string;
  let host: string;
  let swapperBin: string;
  const scratch = mkdtempSync(join(tmpdir(), 'cr-race-bin-'));

  before(async () => {
    swapperBin = join(scratch, 'swapper');
    writeFileSync(join(scratch, 'swapper.c'), SWAPPER_C);
    const compile = (extra: string[]) => execFileSync('gcc', ['-O2', ...extra, '-o', swapperBin, join(scratch, 'swapper.c')], { stdio: 'pipe' });
    try {
      compile(['-static']); // as an agent would bring it
    } catch {
      compile([]); // no static libc here: the same system calls all the same
    }

    // The host folder: outside DATA_DIR, every file a sentinel, with the names the requests use.
    host = mkdtempSync(join(tmpdir(), 'cr-race-host-'));
    mkdirSync(join(host, 'sub'));
    for (const name of ['m.txt', 'x', 'host-only-secret.txt', 'sub/host-inner.txt', 'sub/f.txt']) writeFileSync(join(host, name), `${SENTINEL} ${name}`);

    h = await startHarness({ rules: [rule('plain-hello', text('hello'))] });
    const made = await h.api('/task', { method: 'POST', json: { sessionId: 'race', message: 'plain-hello' } });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    workspace = join(h.dataDir, 'sessions', (await h.runner.store.findSession('default', 'race'))!.key, 'workspace');
    // What the agent prepares: d (a folder) and d-link (to the host), e-real (a folder) and e (a link to it).
    for (const dir of ['d', 'd/sub', 'e-real', 'e-real/sub']) mkdirSync(join(workspace, dir));
    writeFileSync(join(workspace, 'd/m.txt'), 'workspace d');
    writeFileSync(join(workspace, 'e-real/m.txt'), 'workspace e');
    symlinkSync(host, join(workspace, 'd-link'));
    symlinkSync('e-real', join(workspace, 'e'));
  });
  after(async () => {
    await h?.close();
    rmSync(scratch, { recursive: true, force: true });
    if (host) rmSync(host, { recursive: true, force: true });
  });

  test('swapping folders and symlinks never lets a read, write, delete or listing reach the host folder', async (t) => {
    const before = snapshot(host);
    const counts = {
      read: tally(), write: tally(), delete: tally(), deleteFolder: tally(), list: tally(),
      linkRead: tally(), linkWrite: tally(), linkDelete: tally(), linkList: tally(), direct: tally(),
    };
    const leaks: string[] = [];
    const failures: string[] = [];
    const check = (what: string, body: string) => {
      if (body.includes(SENTINEL)) leaks.push(`${what}: ${body.slice(0, 120)}`);
      if (/host-only|host-inner/.test(body)) leaks.push(`${what} names a host file: ${body.slice(0, 200)}`);
    };
    const record = (tally: Tally, what: string, status: number, body: Buffer) => {
      tally.tried++;
      check(what, body.toString());
      if (status >= 200 && status < 300) tally.ok++;
      else if (status === 400 || status === 404) tally.refused++;
      else {
        tally.failed++;
        if (failures.length < 5) failures.push(`${what}: ${status} ${body.toString().slice(0, 200)}`);
      }
    };

    const base = '/session/race/files';
    const call = async (tally: Tally, method: string, path: string, body?: string) => {
      const res = await rawRequest(h.url, method, `${base}${path}`, body);
      record(tally, `${method} ${path}`, res.status, res.body);
      return res;
    };
    const ops: Array<() => Promise<unknown>> = [
      () => call(counts.read, 'GET', '/d/m.txt'),
      () => call(counts.write, 'PUT', '/d/x', 'tenant x'),
      () => call(counts.delete, 'DELETE', '/d/x'),
      () => call(counts.list, 'GET', '?path=d'),
      () => call(counts.write, 'PUT', '/d/sub/f.txt', 'tenant f'),
      () => call(counts.deleteFolder, 'DELETE', '/d/sub'),
      () => call(counts.linkRead, 'GET', '/e/m.txt'),
      () => call(counts.linkWrite, 'PUT', '/e/x', 'tenant x'),
      () => call(counts.linkDelete, 'DELETE', '/e/sub'),
      () => call(counts.linkList, 'GET', '?path=e'),
    ];

    // The same without HTTP: WorkspaceFiles driven directly, in a tighter loop.
    const files = new WorkspaceFiles();
    const direct = async (what: string, fn: () => Promise<string>) => {
      counts.direct.tried++;
      try {
        check(`direct ${what}`, await fn());
        counts.direct.ok++;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === 'INVALID_PATH' || code === 'FILE_NOT_FOUND') counts.direct.refused++;
        else {
          counts.direct.failed++;
          if (failures.length < 5) failures.push(`direct ${what}: ${String(error)}`);
        }
      }
    };
    const readAll = async (path: string) => {
      const { stream } = await files.read(workspace, path);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString();
    };
    const directOps: Array<() => Promise<unknown>> = [
      () => direct('read d/m.txt', () => readAll('d/m.txt')),
      () => direct('read e/m.txt', () => readAll('e/m.txt')),
      () => direct('write d/x', async () => String(await files.write(workspace, 'd/x', Readable.from([Buffer.from('direct x')]), { maxBytes: 1024 }))),
      () => direct('list d', async () => JSON.stringify(await files.list(workspace, 'd'))),
      () => direct('remove d/x', async () => { await files.remove(workspace, 'd/x'); return ''; }),
    ];

    // The attack runs ATTACK_MS; the tenants stop when it has ended.
    const swapper = spawn(swapperBin, [workspace, String(ATTACK_MS), host], { stdio: ['ignore', 'pipe', 'inherit'] });
    let swapOut = '';
    swapper.stdout.on('data', (chunk: Buffer) => { swapOut += chunk.toString(); });
    const swapperDone = new Promise<number | null>((resolve) => swapper.once('exit', resolve));
    let attacking = true;
    void swapperDone.then(() => { attacking = false; });
    let maxOpen = 0;
    const sampler = setInterval(() => { maxOpen = Math.max(maxOpen, openInto(workspace, host).length); }, 50);

    try {
      const worker = async (list: Array<() => Promise<unknown>>, offset: number) => {
        for (let i = offset; attacking; i++) await list[i % list.length]!();
      };
      await Promise.all([
        ...Array.from({ length: 6 }, (_, i) => worker(ops, i * 3)),
        ...Array.from({ length: 2 }, (_, i) => worker(directOps, i * 2)),
      ]);
    } finally {
      clearInterval(sampler);
      if (swapper.exitCode === null) swapper.kill();
    }
    assert.equal(await swapperDone, 0, 'the swapper ran');
    const [exchanges, exchangeFails, repoints, repointFails] = swapOut.trim().split(' ').map(Number);
    const lines = [
      `attack ${ATTACK_MS / 1000} s: d swapped with a host symlink ${exchanges} times (${exchangeFails} failed), e re-pointed ${repoints} times (${repointFails} failed)`,
      `through d (HTTP): ${show('reads', counts.read)}; ${show('writes', counts.write)}; ${show('deletes', counts.delete)}; ${show('folder deletes', counts.deleteFolder)}; ${show('lists', counts.list)}`,
      `through e (HTTP): ${show('reads', counts.linkRead)}; ${show('writes', counts.linkWrite)}; ${show('folder deletes', counts.linkDelete)}; ${show('lists', counts.linkList)}`,
      `WorkspaceFiles directly: ${show('calls', counts.direct)}; most descriptors open into the workspace or host folder at once: ${maxOpen}`,
      `leaks: ${leaks.length}; host folder: ${JSON.stringify(before) === JSON.stringify(snapshot(host)) ? 'unchanged' : 'CHANGED'}`,
    ];
    for (const line of lines) t.diagnostic(line);
    console.log(lines.map((l) => `# ${l}`).join('\n'));

    assert.ok(exchanges! > 10_000 && repoints! > 10_000, 'the swapper really raced');
    assert.deepEqual(leaks.slice(0, 10), [], 'no answer carries host content or names a host file');
    assert.deepEqual(snapshot(host), before, 'the host folder gained and lost nothing');
    assert.deepEqual(failures, [], 'no request failed with a server error');
    // Not vacuous: through d (a folder half of the time) requests did succeed.
    const through = { read: counts.read, write: counts.write, list: counts.list, delete: counts.delete, deleteFolder: counts.deleteFolder, direct: counts.direct };
    for (const [name, tally] of Object.entries(through)) {
      assert.ok(tally.ok >= 10, `${name}: only ${tally.ok} of ${tally.tried} succeeded`);
    }
    // Every descriptor into the workspace or the host folder is closed again.
    await eventually(() => (openInto(workspace, host).length === 0 ? true : undefined), 5_000, 'descriptors to close');
    assert.ok(maxOpen <= 64, `descriptors stayed bounded (${maxOpen})`);
  });

  test('callers leaving mid-download and mid-upload leave no descriptor and no temporary file', async () => {
    // In a folder of its own (the attack may have left d as the link).
    const big = randomBytes(16 * 1024 * 1024);
    rmSync(join(workspace, 'big'), { recursive: true, force: true });
    const up = await rawRequest(h.url, 'PUT', '/session/race/files/big/file.bin', big);
    assert.equal(up.status, 201, up.body.toString());
    const { port } = new URL(h.url);
    for (let i = 0; i < 5; i++) {
      // Download: leave after the first chunk.
      await new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/session/race/files/big/file.bin' }, (res) => {
          res.once('data', () => { req.destroy(); resolve(); });
        });
        req.on('error', () => resolve());
        req.setTimeout(10_000, () => reject(new Error('no data')));
        req.end();
      });
      // Upload: announce 16 MB, send 1 MB, leave.
      await new Promise<void>((resolve) => {
        const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/session/race/files/big/partial.bin', headers: { 'content-length': String(big.length) } });
        req.on('error', () => resolve());
        req.write(big.subarray(0, 1024 * 1024), () => setTimeout(() => { req.destroy(); resolve(); }, 100));
      });
    }
    // HEAD answers without a body: the file's stream is drained and closed too.
    const head = await rawRequest(h.url, 'HEAD', '/session/race/files/big/file.bin');
    assert.equal(head.status, 200);
    await eventually(() => (openInto(workspace).length === 0 ? true : undefined), 10_000, 'descriptors into the workspace to close');
    await eventually(() => (readdirSync(join(workspace, 'big')).some((n) => n.startsWith('.upload-')) ? undefined : true), 10_000, 'temporary files to go');
    assert.deepEqual(readdirSync(join(workspace, 'big')), ['file.bin']);
    assert.ok((await rawRequest(h.url, 'GET', '/session/race/files/big/file.bin')).body.equals(big));
  });
});
