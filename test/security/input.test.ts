/**
 * Input checks at the door: a task's env (strict names, no loader, runtime,
 * proxy or runner variables, no NUL or newline, bounded), user JSON Schemas
 * (size, depth, must compile) and ids. Each refusal is a 400 with its code,
 * and none of them creates a session.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunnerError } from '../../src/core/errors.ts';
import { isReservedEnvName, validateTaskEnv } from '../../src/core/task-env.ts';
import { checkUserSchema, validateOutput } from '../../src/templates/output.ts';
import { startHarness, type Harness } from '../support/harness.ts';

const RESERVED = [
  'LD_PRELOAD', 'LD_LIBRARY_PATH', 'ld_preload', 'DYLD_INSERT_LIBRARIES', 'NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED',
  'PATH', 'HOME', 'SHELL', 'USER', 'TMPDIR', 'IFS', 'ENV', 'BASH_ENV', 'PROMPT_COMMAND', 'PS4', 'SHELLOPTS', 'BASHOPTS',
  'ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL', 'anthropic_auth_token', 'CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_API_KEY_HELPER_TTL_MS', 'IS_SANDBOX',
  'HTTP_PROXY', 'https_proxy', 'ALL_PROXY', 'NO_PROXY', 'no_proxy', 'PYTHONPATH', 'PYTHONSTARTUP', 'PERL5OPT', 'RUBYOPT', 'JAVA_TOOL_OPTIONS',
  'GCONV_PATH', 'HOSTALIASES', 'RES_OPTIONS', 'LOCALDOMAIN', 'SSL_CERT_FILE', 'CURL_CA_BUNDLE', 'GIT_CONFIG_GLOBAL', 'GIT_SSH_COMMAND',
  'GIT_ASKPASS', 'EDITOR', 'PAGER', 'BUN_INSTALL', 'LC_ALL', 'MALLOC_CONF', 'XDG_CONFIG_HOME', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'DISABLE_TELEMETRY',
];
const BAD_NAMES = ['1ABC', 'A-B', 'A B', 'A=B', 'A\nB', 'A\0B', 'A\rB', 'é', 'X'.repeat(129), 'BASH_FUNC_f%%'];
const BAD_VALUES: unknown[] = ['one\nTWO=2', 'nul\0byte', 'carriage\rreturn', 'x'.repeat(32 * 1024 + 1), 5, null, { nested: 'x' }, ['a'], true];

describe('input checks', () => {
  let h: Harness;
  before(async () => { h = await startHarness(); });
  after(async () => h?.close());

  const submit = (json: Record<string, unknown>) => h.api('/task', { method: 'POST', json: { sessionId: 'input-check', message: 'hi', wait: false, ...json } });

  test('reserved env names are refused with 400 INVALID_ENV', async () => {
    for (const name of RESERVED) {
      const res = await submit({ env: { SAFE_NAME: 'ok', [name]: 'value' } });
      assert.equal(res.status, 400, name);
      assert.equal(res.body.error.code, 'INVALID_ENV', name);
      assert.match(res.body.error.message, /reserved/, name);
    }
  });

  test('names outside [A-Za-z_][A-Za-z0-9_]{0,127}, values with NUL or newlines, non-strings and oversize values are refused', async () => {
    for (const name of BAD_NAMES) {
      const res = await submit({ env: { [name]: 'value' } });
      assert.equal(res.status, 400, JSON.stringify(name));
      assert.equal(res.body.error.code, 'INVALID_ENV', JSON.stringify(name));
    }
    for (const value of BAD_VALUES) {
      const res = await submit({ env: { SOME_TOKEN: value } });
      assert.equal(res.status, 400, JSON.stringify(value).slice(0, 40));
      assert.equal(res.body.error.code, 'INVALID_ENV', JSON.stringify(value).slice(0, 40));
    }
    const tooMany = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`VAR_${i}`, 'x']));
    assert.equal((await submit({ env: tooMany })).body.error.code, 'INVALID_ENV');
    for (const env of ['A=B', ['A=B'], 7]) {
      const res = await submit({ env });
      assert.equal(res.status, 400, JSON.stringify(env));
    }
    // A refused value is never echoed back.
    const res = await submit({ env: { SOME_TOKEN: 'secret-looking\nvalue-123' } });
    assert.ok(!JSON.stringify(res.body).includes('secret-looking'));
  });

  test('ordinary tool variables are accepted', async () => {
    const env = { ACME_API_URL: 'http://host.docker.internal:1', ACME_API_TOKEN: 'tok=en;with "quotes" and $dollars', _PRIVATE: 'x', lower_case: 'y', NODE_ENV: 'production', GIT_AUTHOR_NAME: 'Agent' };
    assert.deepEqual(validateTaskEnv(env), env);
    assert.equal(isReservedEnvName('ACME_API_TOKEN'), false);
    const res = await submit({ env, sessionId: 'input-ok' });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    await h.api(`/tasks/${res.body.taskId}/abort`, { method: 'POST' });
  });

  test('user JSON Schemas that are too large, too deep or do not compile are 400 INVALID_SCHEMA', async () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'object', properties: { x: deep } };
    const wide = { type: 'object', properties: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`field_${i}`, { type: 'string', description: 'x'.repeat(20) }])) };
    const deepArrays = { type: 'object', enum: [JSON.parse(`${'['.repeat(40)}1${']'.repeat(40)}`)] };
    for (const [what, schema] of [['deep', deep], ['large', wide], ['deep arrays', deepArrays], ['not compiling', { type: 'no-such-type' }], ['bad pattern', { type: 'string', pattern: '(' }]] as const) {
      const res = await submit({ outputSchema: schema });
      assert.equal(res.status, 400, what);
      assert.equal(res.body.error.code, 'INVALID_SCHEMA', what);
    }
    const fine = await submit({ outputSchema: { type: 'object', properties: { answer: { type: 'number' } }, required: ['answer'] }, sessionId: 'input-schema-ok' });
    assert.equal(fine.status, 202, JSON.stringify(fine.body));
    await h.api(`/tasks/${fine.body.taskId}/abort`, { method: 'POST' });
  });

  test('invalid ids are 400, and no refused request created a session', async () => {
    assert.equal((await submit({ sessionId: 'x'.repeat(129) })).status, 400);
    for (const id of ['../etc', '.hidden', 'a/b', 'spa ce', '%2e%2e', 'a\nb']) {
      const res = await submit({ sessionId: id });
      assert.equal(res.status, 400, id);
      assert.equal(res.body.error.code, 'INVALID_SESSION_ID', id);
    }
    for (const path of ['/session/..%2Fetc', '/session/.x/files', '/session/a%00b/tasks']) {
      const res = await h.api(path);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.error.code, 'INVALID_SESSION_ID', path);
    }
    const sessions = (await h.api('/sessions')).body.map((s: { sessionId: string }) => s.sessionId).sort();
    assert.deepEqual(sessions, ['input-ok', 'input-schema-ok']);
  });

  test('a schema "pattern" runs in linear time: a backtracking one cannot freeze the runner', async () => {
    const schema = checkUserSchema({ type: 'object', properties: { x: { type: 'string', pattern: '^(a+)+$' } } });
    const started = performance.now();
    // With a backtracking engine this one input takes longer than the age of the universe.
    assert.throws(() => validateOutput(schema, { x: `${'a'.repeat(100_000)}!` }), (error: RunnerError) => error.code === 'OUTPUT_INVALID');
    assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`);
    validateOutput(schema, { x: 'aaaa' });
    // Patterns the linear engine cannot run, and \p{...} (whose meaning would change), are refused up front.
    for (const pattern of ['(a)\\1', '(?=a)a', '^\\p{L}+$']) {
      assert.throws(() => checkUserSchema({ type: 'string', pattern }), (error: RunnerError) => error.code === 'INVALID_SCHEMA', pattern);
    }
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'input-redos', message: 'x', outputSchema: { type: 'string', pattern: '(a)\\1' } } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'INVALID_SCHEMA');
  });
});
