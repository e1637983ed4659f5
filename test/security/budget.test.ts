/**
 * Budgets, metered by the model gateway from the upstream's usage: per task
 * (MAX_BUDGET_USD, or the task's budgetUsd) and per session
 * (SESSION_BUDGET_USD). The scripted usage makes every call cost exactly
 * CALL (100 input and 20 output tokens at the default model's price), so
 * budgets can sit below one call, or between two.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunnerError } from '../../src/core/errors.ts';
import { SocketModelGateway } from '../../src/gateway/gateway.ts';
import { priceUsage } from '../../src/pricing/prices.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { bash, rule, startScriptedModel, text, type ScriptedModel } from '../../src/scripted-model/index.ts';
import { startHarness, UPSTREAM_KEY, type Harness } from '../support/harness.ts';

const MODEL = 'claude-opus-5-5';
const CALL = priceUsage(MODEL, { input_tokens: 100, output_tokens: 20 });
const loop = (tag: string) => rule(tag, ...Array.from({ length: 40 }, (_, i) => bash(`echo ${tag}-${i}`)), text('loop ended'));
const calls = (model: ScriptedModel, prompt: string) => model.findRequests({ prompt, kind: 'main' }).length;
const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

describe('budgets end an endless tool loop', () => {
  let h: Harness;
  before(async () => {
    assert.ok(Math.abs(CALL - 0.0008) < 1e-12, `one call costs ${CALL}`);
    h = await startHarness({
      // Tasks lower MAX_BUDGET_USD with budgetUsd (never raise it); sessions may spend a little over three calls.
      env: { MAX_BUDGET_USD: String(CALL * 10), SESSION_BUDGET_USD: String(CALL * 3.5) },
      rules: [loop('budget-default-b3'), loop('budget-field-b3'), loop('budget-session-b3'), loop('budget-after-b3'), rule('budget-small-b3', text('cheap'))],
    });
  });
  after(async () => h?.close());

  test('a budget below one call: the task ends after that call with budget_exceeded / BUDGET_EXCEEDED', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'b-default', message: 'budget-default-b3', budgetUsd: CALL * 0.6 } });
    assert.equal(res.status, 402, JSON.stringify(res.body));
    assert.equal(res.body.status, 'budget_exceeded');
    assert.equal(res.body.error.code, 'BUDGET_EXCEEDED');
    assert.ok(close(res.body.cost, CALL), String(res.body.cost));
    assert.equal(calls(h.model, 'budget-default-b3'), 1);
    const task = await h.api(`/tasks/${res.body.taskId}`);
    assert.equal(task.body.status, 'budget_exceeded');
    assert.deepEqual(task.body.usage, { inputTokens: 100, outputTokens: 20, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 });
  });

  test('budgetUsd between one and two calls: two calls, then budget_exceeded; the cost is within one call of the budget', async () => {
    const budget = CALL * 1.5;
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'b-field', message: 'budget-field-b3', budgetUsd: budget } });
    assert.equal(res.status, 402, JSON.stringify(res.body));
    assert.equal(res.body.status, 'budget_exceeded');
    assert.equal(res.body.error.code, 'BUDGET_EXCEEDED');
    assert.ok(close(res.body.cost, 2 * CALL), String(res.body.cost));
    assert.ok(res.body.cost >= budget && res.body.cost - budget < CALL);
    assert.equal(calls(h.model, 'budget-field-b3'), 2);
  });

  test('SESSION_BUDGET_USD: the session spends it across tasks; its next task fails at once, without a model call', async () => {
    const small = await h.api('/task', { method: 'POST', json: { sessionId: 'b-session', message: 'budget-small-b3' } });
    assert.equal(small.status, 200, JSON.stringify(small.body));
    // 3.5 calls for the session, one spent: the loop gets three more (the third crosses it), though its own budget is large.
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'b-session', message: 'budget-session-b3' } });
    assert.equal(res.status, 402, JSON.stringify(res.body));
    assert.equal(res.body.status, 'budget_exceeded');
    assert.equal(res.body.error.code, 'BUDGET_EXCEEDED');
    assert.equal(calls(h.model, 'budget-session-b3'), 3);
    assert.ok(close(res.body.cost, 3 * CALL), String(res.body.cost));
    const session = await h.api('/session/b-session');
    assert.ok(close(session.body.totalCost, 4 * CALL), String(session.body.totalCost));
    const next = await h.api('/task', { method: 'POST', json: { sessionId: 'b-session', message: 'budget-after-b3' } });
    assert.equal(next.status, 402, JSON.stringify(next.body));
    assert.equal(next.body.status, 'budget_exceeded');
    assert.equal(next.body.error.code, 'BUDGET_EXCEEDED');
    assert.match(next.body.error.message, /session/i);
    assert.equal(next.body.cost, 0);
    assert.ok(next.body.duration < 1000, String(next.body.duration));
    assert.equal(calls(h.model, 'budget-after-b3'), 0);
  });
});

describe('the gateway refuses calls once a task has spent its budget', () => {
  let model: ScriptedModel;
  let gateway: SocketModelGateway;
  let dir: string;

  before(async () => {
    model = await startScriptedModel({ rules: [rule('gateway-budget-b3', text('one'), text('two'), text('three'))], requireApiKey: UPSTREAM_KEY });
    dir = mkdtempSync('/tmp/cr-gw-');
    const silent = { debug() {}, info() {}, warn() {} };
    gateway = new SocketModelGateway({
      upstream: { baseUrl: model.url, apiKey: UPSTREAM_KEY, oauthToken: undefined },
      deniedLocalPorts: [], priceUsage, redactor: new Redactor(), logger: silent,
    });
  });
  after(async () => {
    await gateway?.close();
    await model?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** One Messages API call through the session's socket, as the relay would make it. */
  const call = (token: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const body = JSON.stringify({ model: MODEL, max_tokens: 10, stream: false, messages: [{ role: 'user', content: 'gateway-budget-b3' }] });
    const req = request({ socketPath: join(dir, 'gateway.sock'), method: 'POST', path: '/v1/messages', headers: { 'x-api-key': token, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => { text += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });

  test('a call that brings the spend to the budget is the last one forwarded, even when nobody stops the task', async () => {
    await gateway.attachSession('s_gateway', dir);
    const exceeded: RunnerError[] = [];
    const { token } = await gateway.openTask({
      taskId: 'task_gateway', sessionKey: 's_gateway', network: { mode: 'none', allow: [] }, budgetUsd: CALL * 1.5, maxModelCalls: 50,
      onModelCall: () => undefined,
      // The task runner would abort here; this test does not, to see the gateway refuse on its own.
      onLimitReached: (error) => exceeded.push(error),
    });
    assert.equal((await call(token)).status, 200);
    assert.equal((await call(token)).status, 200);
    const refused = await call(token);
    assert.equal(refused.status, 403);
    assert.equal(JSON.parse(refused.body).error.type, 'permission_error');
    assert.equal(model.findRequests({ prompt: 'gateway-budget-b3' }).length, 2);
    assert.equal(exceeded.length, 1);
    assert.equal(exceeded[0]!.code, 'BUDGET_EXCEEDED');
    assert.match(exceeded[0]!.message, new RegExp(`spent \\$${(2 * CALL).toFixed(4).replace('.', '\\.')} of its`));
    const meter = await gateway.closeTask('task_gateway');
    assert.ok(close(meter.costUsd, 2 * CALL));
    assert.equal(meter.modelCalls, 2);
    // And after the task, the token is dead.
    assert.equal((await call(token)).status, 401);
    // Detaching the session (idle stop, delete) cuts its kept-alive connections at once, instead of waiting for them.
    const started = Date.now();
    await gateway.detachSession('s_gateway');
    assert.ok(Date.now() - started < 1000, `detach took ${Date.now() - started} ms`);
  });
});
