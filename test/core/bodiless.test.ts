/**
 * Bodiless calls labelled `Content-Type: application/json` (issue 9, point 3):
 * generic HTTP helpers send that header on every call, and the seed accepted
 * them. An empty JSON body is no body on routes that take none; POST /task
 * with an empty body still names the missing fields; a broken body is still 400.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rule, text } from '../../src/scripted-model/index.ts';
import { rawRequest as rawRequestOf } from '../sessions/support.ts';
import { startHarness, type Harness } from '../support/harness.ts';

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8'];

/** rawRequest with the body's Content-Length said (node's client leaves it out for a DELETE with a body). */
function rawRequest(baseUrl: string, method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  const length: Record<string, string> = body !== undefined && headers['transfer-encoding'] === undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {};
  return rawRequestOf(baseUrl, method, path, body, { ...length, ...headers });
}

describe('bodiless calls with Content-Type: application/json', () => {
  let h: Harness;
  let taskId: string;

  before(async () => {
    h = await startHarness({ rules: [rule('hello-bodiless', text('hi'))] });
    const first = await h.api('/task', { method: 'POST', json: { sessionId: 'bodiless', message: 'hello-bodiless' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    taskId = first.body.taskId;
    const other = await h.api('/task', { method: 'POST', json: { sessionId: 'to-delete', message: 'hello-bodiless' } });
    assert.equal(other.status, 200, JSON.stringify(other.body));
  });
  after(async () => h?.close());

  test('routes that take no body answer as without the header (an empty or blank body, with Content-Length or chunked)', async () => {
    for (const type of JSON_TYPES) {
      for (const body of ['', '  \n']) {
        const label = `${type} ${JSON.stringify(body)}`;
        const abortTask = await rawRequest(h.url, 'POST', `/tasks/${taskId}/abort`, body, { 'content-type': type });
        assert.equal(abortTask.status, 200, `${label}: ${abortTask.body.toString()}`);
        assert.equal(abortTask.json.status, 'succeeded');

        const abortSession = await rawRequest(h.url, 'POST', '/task/bodiless/abort', body, { 'content-type': type });
        assert.equal(abortSession.status, 200, `${label}: ${abortSession.body.toString()}`);
        assert.equal(abortSession.json.aborted, false);

        const reset = await rawRequest(h.url, 'POST', '/session/bodiless/reset', body, { 'content-type': type });
        assert.equal(reset.status, 200, `${label}: ${reset.body.toString()}`);
        assert.equal(reset.json.reset, true);

        const token = await rawRequest(h.url, 'POST', '/auth/stream-token', body, { 'content-type': type });
        assert.equal(token.status, 200, `${label}: ${token.body.toString()}`);
        assert.match(token.json.token, /^st_/);

        const missing = await rawRequest(h.url, 'DELETE', '/session/no-such-session', body, { 'content-type': type });
        assert.equal(missing.status, 404, `${label}: ${missing.body.toString()}`);
        assert.equal(missing.json.error.code, 'SESSION_NOT_FOUND');
      }
    }
    // Chunked, with no byte in it (what a streaming client sends for "no body").
    const chunked = await rawRequest(h.url, 'POST', '/session/bodiless/reset', undefined, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    assert.equal(chunked.status, 200, chunked.body.toString());
    const deleted = await rawRequest(h.url, 'DELETE', '/session/to-delete', '', { 'content-type': 'application/json' });
    assert.equal(deleted.status, 200, deleted.body.toString());
    assert.deepEqual(deleted.json, { sessionId: 'to-delete', deleted: true });
  });

  test('the same calls through fetch, as a generic helper makes them', async () => {
    const headers = { 'content-type': 'application/json' };
    assert.equal((await fetch(`${h.url}/task/bodiless/abort`, { method: 'POST', headers })).status, 200);
    assert.equal((await fetch(`${h.url}/session/bodiless/reset`, { method: 'POST', headers })).status, 200);
    assert.equal((await fetch(`${h.url}/auth/stream-token`, { method: 'POST', headers, body: '' })).status, 200);
  });

  test('POST /task with an empty body is 400 INVALID_REQUEST naming the missing fields', async () => {
    for (const type of JSON_TYPES) {
      for (const body of ['', ' ']) {
        const res = await rawRequest(h.url, 'POST', '/task', body, { 'content-type': type });
        assert.equal(res.status, 400, res.body.toString());
        assert.equal(res.json.error.code, 'INVALID_REQUEST');
        assert.match(res.json.error.message, /sessionId/);
        assert.match(res.json.error.message, /message/);
      }
    }
    const none = await rawRequest(h.url, 'POST', '/task', undefined, {});
    assert.equal(none.status, 400);
    assert.match(none.json.error.message, /sessionId/);
  });

  test('a body that is not JSON, or poisons prototypes, is still refused', async () => {
    for (const body of ['{', 'null x', '{"__proto__": {"polluted": 1}}', '{"constructor": {"prototype": {"polluted": 1}}}']) {
      const res = await rawRequest(h.url, 'POST', '/auth/stream-token', body, { 'content-type': 'application/json' });
      assert.equal(res.status, 400, `${body}: ${res.body.toString()}`);
      assert.equal(res.json.error.code, 'INVALID_REQUEST');
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const ok = await rawRequest(h.url, 'POST', '/auth/stream-token', '{"ttlSeconds": 60}', { 'content-type': 'application/json' });
    assert.equal(ok.status, 200);
  });
});
