/**
 * The workspace file API: bytes go in and out exactly, uploads are bounded,
 * and no path (traversal, absolute, encoded, NUL) or symlink the agent made
 * (to /etc, to another session's workspace, dangling) reaches outside the
 * session's workspace, for list, read, write and delete. Symlinks are never
 * followed, not even to a place inside the workspace. (The same under an
 * agent racing the API: test/security/file-race.test.ts.)
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { rawRequest } from './support.ts';

const LIMIT = 4 * 1024 * 1024;
const OUTSIDE = `/tmp/cr-outside-${randomBytes(4).toString('hex')}`;

describe('workspace files', () => {
  let h: Harness;
  let workspace: string;
  let otherWorkspace: string;

  before(async () => {
    h = await startHarness({
      env: { FILE_UPLOAD_LIMIT_BYTES: String(LIMIT) },
      rules: [
        // The message carries the shell command to run: the agent makes the links itself, inside its sandbox.
        rule('run-this-shell:', (ctx) => bash(ctx.prompt.slice(ctx.prompt.indexOf(':') + 1).trim()), text('shell done')),
        rule('plain-hello', text('hello')),
      ],
    });
    const other = await h.api('/task', { method: 'POST', json: { sessionId: 'files-other', message: 'plain-hello' } });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    const secret = await h.api('/session/files-other/files/secret.txt', { method: 'PUT', body: 'other-session-secret' });
    assert.equal(secret.status, 201);
    const keyOf = async (id: string) => (await h.runner.store.findSession('default', id))!.key;
    otherWorkspace = join(h.dataDir, 'sessions', await keyOf('files-other'), 'workspace');
    const links = [
      'ln -s /etc etc-link', 'ln -s /etc/passwd passwd-link',
      `ln -s ${otherWorkspace} other-link`, `ln -s ${otherWorkspace}/secret.txt other-file`,
      `ln -s ${OUTSIDE}/new.txt dangling-link`, `ln -s ${OUTSIDE} dangling-dir`,
      'mkdir -p sub && ln -s ../../.. sub/up-link', 'ln -s sub inner-link', 'echo mine > mine.txt',
    ].join(' && ');
    const made = await h.api('/task', { method: 'POST', json: { sessionId: 'files', message: `run-this-shell: ${links}` } });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    workspace = join(h.dataDir, 'sessions', await keyOf('files'), 'workspace');
    assert.ok(readdirSync(workspace).includes('etc-link'), 'the agent made its links');
  });
  after(async () => h?.close());

  const put = (path: string, body: Buffer | string, headers: Record<string, string> = {}) =>
    rawRequest(h.url, 'PUT', `/session/files/files/${path}`, body, headers);
  const get = (path: string) => rawRequest(h.url, 'GET', `/session/files/files/${path}`);

  test('uploads and downloads round-trip bytes exactly: random binary of a few MB, JSON that is not parsed, empty', async () => {
    const binary = randomBytes(3 * 1024 * 1024 + 17);
    const up = await put('docs/blob.bin', binary, { 'content-type': 'application/octet-stream' });
    assert.equal(up.status, 201, up.body.toString());
    assert.deepEqual(up.json, { sessionId: 'files', path: 'docs/blob.bin', size: binary.length });
    const down = await get('docs/blob.bin');
    assert.equal(down.status, 200);
    assert.equal(down.headers['content-type'], 'application/octet-stream');
    assert.equal(Number(down.headers['content-length']), binary.length);
    assert.ok(down.body.equals(binary), 'downloaded bytes equal the uploaded ones');

    // JSON is stored as sent (spacing, key order, duplicates), not parsed and re-serialized; invalid JSON too.
    for (const [name, body] of [['data.json', '{ "b":1,  "a" : [2,3], "b": 4 }\n'], ['broken.json', '{"not json']] as const) {
      const res = await put(name, body, { 'content-type': 'application/json' });
      assert.equal(res.status, 201, res.body.toString());
      assert.equal((await get(name)).body.toString(), body);
    }
    // A JSON document bigger than the JSON body limit (BODY_LIMIT_BYTES, 1 MiB) is still just bytes here.
    const bigJson = JSON.stringify({ items: Array.from({ length: 60_000 }, (_, i) => ({ i, s: 'x'.repeat(20) })) });
    assert.ok(bigJson.length > 2 * 1024 * 1024);
    const bigUp = await put('big.json', bigJson, { 'content-type': 'application/json; charset=utf-8' });
    assert.equal(bigUp.status, 201, bigUp.body.toString().slice(0, 200));
    assert.equal((await get('big.json')).body.toString(), bigJson);
    const empty = await put('empty.txt', '');
    assert.equal(empty.status, 201);
    assert.equal(empty.json.size, 0);
    assert.equal((await get('empty.txt')).body.length, 0);

    // The agent sees the same bytes in its sandbox, and what it writes can be downloaded.
    const sha = createHash('sha256').update(binary).digest('hex');
    const run = await h.api('/task', { method: 'POST', json: { sessionId: 'files', message: 'run-this-shell: sha256sum docs/blob.bin && printf "made\\000by-agent" > out.bin' } });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const toolResult = JSON.stringify(h.model.findRequests({ prompt: 'sha256sum docs/blob.bin' })[1]?.body);
    assert.ok(toolResult.includes(sha), 'the sandbox read the uploaded bytes');
    assert.ok((await get('out.bin')).body.equals(Buffer.from('made\0by-agent')));

    const list = await h.api('/session/files/files?path=docs');
    assert.deepEqual(list.body.files.map((f: any) => [f.path, f.type, f.size]), [['docs/blob.bin', 'file', binary.length]]);
  });

  test('an upload over FILE_UPLOAD_LIMIT_BYTES is 413 PAYLOAD_TOO_LARGE and writes nothing', async () => {
    const keep = await put('keep.bin', 'original');
    assert.equal(keep.status, 201);
    for (const headers of [{}, { 'transfer-encoding': 'chunked' }] as Array<Record<string, string>>) {
      const res = await put('too-big.bin', randomBytes(LIMIT + 1024), headers);
      assert.equal(res.status, 413, res.body.toString());
      assert.equal(res.json.error.code, 'PAYLOAD_TOO_LARGE');
      // Over an existing file: it keeps its content.
      const over = await put('keep.bin', randomBytes(LIMIT + 1), headers);
      assert.equal(over.status, 413);
    }
    assert.equal(existsSync(join(workspace, 'too-big.bin')), false);
    assert.equal(readFileSync(join(workspace, 'keep.bin'), 'utf8'), 'original');
    assert.deepEqual(readdirSync(workspace).filter((n) => n.includes('.upload-')), [], 'no temporary file left');
    // Exactly at the limit is fine.
    const exact = await put('exact.bin', randomBytes(LIMIT));
    assert.equal(exact.status, 201);
  });

  const traversal = [
    '..', '../escape.txt', 'a/../../escape.txt', 'docs/../../escape.txt', '%2e%2e/escape.txt', '%2E%2E%2Fescape.txt',
    '..%2fescape.txt', 'a%2f..%2f..%2fescape.txt', '..%5cescape.txt', '%2Fetc%2Fpasswd', '/etc/passwd',
    'x%00.txt', '%00', 'mine.txt%00.png',
  ];

  test('traversal, absolute, encoded and NUL paths are 400 INVALID_PATH for read, write, delete and list', async () => {
    for (const path of traversal) {
      const read = await get(path);
      assert.equal(read.status, 400, `GET ${path}: ${read.status} ${read.body.toString().slice(0, 200)}`);
      assert.equal(read.json.error.code, 'INVALID_PATH', `GET ${path}`);
      const write = await put(path, 'pwned');
      assert.equal(write.status, 400, `PUT ${path}: ${write.status}`);
      assert.equal(write.json.error.code, 'INVALID_PATH');
      const del = await rawRequest(h.url, 'DELETE', `/session/files/files/${path}`);
      assert.equal(del.status, 400, `DELETE ${path}: ${del.status}`);
      assert.equal(del.json.error.code, 'INVALID_PATH');
      const list = await rawRequest(h.url, 'GET', `/session/files/files?path=${path}`);
      assert.equal(list.status, 400, `LIST ${path}: ${list.status}`);
      assert.equal(list.json.error.code, 'INVALID_PATH');
    }
    // Nothing was written next to the workspace, and the files inside are intact.
    assert.equal(existsSync(join(workspace, '..', 'escape.txt')), false);
    assert.equal(existsSync(join(workspace, '..', '..', 'escape.txt')), false);
    assert.equal(readFileSync(join(workspace, 'mine.txt'), 'utf8'), 'mine\n');
    // A double-encoded name is just a name inside the workspace.
    const literal = await put('%252e%252e', 'odd name');
    assert.equal(literal.status, 201);
    assert.equal(readFileSync(join(workspace, '%2e%2e'), 'utf8'), 'odd name');
  });

  test('symlinks the agent made to /etc, to another session or to a missing outside path are refused for read, write, delete and list', async () => {
    const passwd = readFileSync('/etc/passwd', 'utf8');
    const refused = async (method: string, path: string, body?: string) => {
      const res = await rawRequest(h.url, method, path, body);
      assert.equal(res.status, 400, `${method} ${path}: ${res.status} ${res.body.toString().slice(0, 200)}`);
      assert.equal(res.json.error.code, 'INVALID_PATH', `${method} ${path}`);
      assert.ok(!res.body.toString().includes('root:x:0'), 'no host file content');
    };
    const base = '/session/files/files';
    for (const path of ['passwd-link', 'etc-link/passwd', 'etc-link/hostname', 'other-link/secret.txt', 'other-file', 'sub/up-link/runner.db', 'inner-link/up-link/runner.db']) {
      await refused('GET', `${base}/${path}`);
    }
    for (const path of ['etc-link', 'other-link', 'dangling-dir', 'sub/up-link', 'inner-link/up-link']) await refused('GET', `${base}?path=${path}`);
    for (const path of ['etc-link/evil.conf', 'other-link/planted.txt', 'other-file', 'passwd-link', 'dangling-link', 'dangling-dir/new.txt', 'sub/up-link/planted.txt']) {
      await refused('PUT', `${base}/${path}`, 'pwned');
    }
    for (const path of ['etc-link/passwd', 'other-link/secret.txt', 'dangling-dir/x', 'sub/up-link/runner.db']) await refused('DELETE', `${base}/${path}`);

    // Nothing outside changed.
    assert.equal(readFileSync('/etc/passwd', 'utf8'), passwd);
    assert.equal(existsSync('/etc/evil.conf'), false);
    assert.equal(readFileSync(join(otherWorkspace, 'secret.txt'), 'utf8'), 'other-session-secret');
    assert.equal(existsSync(join(otherWorkspace, 'planted.txt')), false);
    assert.equal(existsSync(OUTSIDE), false, 'nothing was created through the dangling links');
    assert.ok(existsSync(join(h.dataDir, 'runner.db')));

    // Listing shows the links as links and does not descend into them.
    const list = await h.api('/session/files/files');
    const byPath = new Map(list.body.files.map((f: any) => [f.path, f]));
    for (const name of ['etc-link', 'passwd-link', 'other-link', 'other-file', 'dangling-link', 'sub/up-link', 'inner-link']) {
      assert.equal((byPath.get(name) as any)?.type, 'symlink', name);
    }
    assert.ok(![...byPath.keys()].some((p) => (p as string).startsWith('etc-link/') || (p as string).startsWith('other-link/')));

    // A link inside the workspace is itself a workspace entry: deleting it removes the link, never its target.
    const del = await h.api('/session/files/files/passwd-link', { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal(readFileSync('/etc/passwd', 'utf8'), passwd);
    const delOther = await h.api('/session/files/files/other-link', { method: 'DELETE' });
    assert.equal(delOther.status, 200);
    assert.equal(readFileSync(join(otherWorkspace, 'secret.txt'), 'utf8'), 'other-session-secret');
    // A link is never followed, even one to a place inside the workspace (the agent could re-point it at any moment).
    assert.equal((await get('inner-link/../mine.txt')).status, 400, '".." stays refused even through an inside link');
    assert.equal((await put('sub/inside.txt', 'inside')).status, 201);
    assert.equal((await get('sub/inside.txt')).body.toString(), 'inside');
    for (const [method, path] of [['GET', 'inner-link/inside.txt'], ['PUT', 'inner-link/new.txt'], ['DELETE', 'inner-link/inside.txt'], ['GET', '?path=inner-link']] as const) {
      const res = await rawRequest(h.url, method, path.startsWith('?') ? `${base}${path}` : `${base}/${path}`, method === 'PUT' ? 'x' : undefined);
      assert.equal(res.status, 400, `${method} ${path}`);
      assert.equal(res.json.error.code, 'INVALID_PATH');
    }
    assert.equal(readFileSync(join(workspace, 'sub', 'inside.txt'), 'utf8'), 'inside');
    assert.equal(existsSync(join(workspace, 'sub', 'new.txt')), false);
  });

  test('missing files and sessions are 404; deleting a file and a folder works', async () => {
    const missing = await get('nope.txt');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'FILE_NOT_FOUND');
    const noSession = await rawRequest(h.url, 'GET', '/session/no-such-session/files/a.txt');
    assert.equal(noSession.status, 404);
    assert.equal(noSession.json.error.code, 'SESSION_NOT_FOUND');
    assert.equal((await put('gone/one.txt', '1')).status, 201);
    assert.equal((await rawRequest(h.url, 'DELETE', '/session/files/files/gone/one.txt')).status, 200);
    assert.equal(existsSync(join(workspace, 'gone', 'one.txt')), false);
    assert.equal((await rawRequest(h.url, 'DELETE', '/session/files/files/gone')).status, 200);
    assert.equal(existsSync(join(workspace, 'gone')), false);
    const again = await rawRequest(h.url, 'DELETE', '/session/files/files/gone');
    assert.equal(again.status, 404);
  });

  test('paths that clash with what is on disk are 4xx with a reason, never 500', async () => {
    assert.equal((await put('clash/file.txt', 'x')).status, 201);
    const cases: Array<[string, string, number, string]> = [
      ['PUT', 'clash', 400, 'INVALID_PATH'], // a folder
      ['PUT', 'clash/file.txt/below', 400, 'INVALID_PATH'], // under a file
      ['PUT', 'n'.repeat(300), 400, 'INVALID_PATH'], // name too long
      ['GET', 'clash', 400, 'INVALID_PATH'],
      ['GET', 'clash/file.txt/below', 404, 'FILE_NOT_FOUND'],
      ['DELETE', 'clash/file.txt/below', 404, 'FILE_NOT_FOUND'],
    ];
    for (const [method, path, status, code] of cases) {
      const res = await rawRequest(h.url, method, `/session/files/files/${path}`, method === 'PUT' ? 'y' : undefined);
      assert.equal(res.status, status, `${method} ${path.slice(0, 40)}: ${res.body.toString()}`);
      assert.equal(res.json.error.code, code);
    }
    const notDir = await rawRequest(h.url, 'GET', '/session/files/files?path=clash/file.txt');
    assert.equal(notDir.status, 400);
    // Concurrent uploads of one path: each is whole, the last rename wins, nothing half-written.
    const bodies = Array.from({ length: 10 }, (_, i) => Buffer.alloc(200_000, i + 1));
    const results = await Promise.all(bodies.map((b) => put('clash/race.bin', b)));
    assert.deepEqual(results.map((r) => r.status), bodies.map(() => 201));
    const final = (await get('clash/race.bin')).body;
    assert.ok(bodies.some((b) => b.equals(final)), 'the file is one of the uploads, whole');
    assert.deepEqual(readdirSync(join(workspace, 'clash')).sort(), ['file.txt', 'race.bin']);
  });
});
