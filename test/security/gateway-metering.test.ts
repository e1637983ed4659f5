/**
 * The model gateway's metering and limits: usage and cost per call, budgets,
 * call caps, what may reach the network from Anthropic's side, and a failed
 * openTask that must leave no live token.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { priceUsage, type ApiUsage } from '../../src/pricing/prices.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { MODEL, CALL, close, until, type Upstream, startUpstream, type Rig, startGateway, openTask, call } from './gateway-rig.ts';

describe('gateway: metering and limits', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('an answer the agent cuts off is still read to its end and its output tokens are billed to the task', async () => {
    const task = await openTask(rig);
    const finishedBefore = up.finished;
    await new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: rig.sock, method: 'POST', path: '/v1/messages', headers: { 'x-api-key': task.token, 'x-scenario': 'sse-long' } }, (res) => {
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', () => undefined);
      req.once('error', reject);
      req.end(JSON.stringify({ model: MODEL, max_tokens: 8000, stream: true, messages: [{ role: 'user', content: 'long' }] }));
    });
    await until(() => task.calls.length === 1, 5000, 'the call to be metered');
    assert.equal(up.finished, finishedBefore + 1, 'the upstream answer was cut');
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.usage.outputTokens, 5000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 100, output_tokens: 5000 })), String(meter.costUsd));
  });

  test('closeTask cuts the calls under way, and returns only once they have recorded what they were billed', async () => {
    const task = await openTask(rig);
    const cutBefore = up.cut;
    let firstBytes = false;
    const answer = new Promise<void>((resolve) => {
      const req = request({ socketPath: rig.sock, method: 'POST', path: '/v1/messages', headers: { 'x-api-key': task.token, 'x-scenario': 'sse-hang' } }, (res) => {
        res.once('data', () => { firstBytes = true; });
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
      req.end(JSON.stringify({ model: MODEL, max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'hang' }] }));
    });
    await until(() => firstBytes, 2000, 'message_start');
    const started = Date.now();
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.ok(Date.now() - started < 2000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 1000, output_tokens: 1 })), `closeTask returned $${meter.costUsd}`);
    assert.equal(meter.usage.inputTokens, 1000);
    assert.equal(meter.modelCalls, 1);
    await answer;
    await until(() => up.cut === cutBefore + 1, 2000, 'the upstream call to be cut');
  });

  test('parallel calls: at most 4 reach the upstream at once; the others wait their turn and succeed', async () => {
    const task = await openTask(rig);
    up.maxActive = 0;
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(rig, task.token, { headers: { 'x-delay-ms': '150' } })));
    assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
    assert.equal(up.maxActive, 4);
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.modelCalls, 10);
  });

  test('parallel calls on a budget: past the call that crosses it, at most the 3 calls then under way are spent', async () => {
    const budget = CALL * 1.5;
    const task = await openTask(rig, { budgetUsd: budget });
    const before = up.messages().length;
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(rig, task.token, { headers: { 'x-delay-ms': '100' } })));
    const forwarded = up.messages().length - before;
    // Two calls reach the budget (the second crosses it); 3 more may have been under way then.
    assert.ok(forwarded <= 5, `${forwarded} calls forwarded`);
    assert.equal(answers.filter((a) => a.status === 200).length, forwarded);
    assert.ok(answers.filter((a) => a.status !== 200).every((a) => a.status === 403 && a.json.error?.type === 'permission_error'));
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.ok(meter.costUsd <= budget + CALL + 3 * CALL + 1e-12, `spent ${meter.costUsd} on a budget of ${budget}`);
    assert.equal(task.limits.length, 1);
    assert.equal(task.limits[0]!.code, 'BUDGET_EXCEEDED');
  });

  for (const scenario of ['json-extras', 'sse-extras']) {
    test(`web searches and 1-hour cache writes are priced (${scenario})`, async () => {
      const task = await openTask(rig);
      const body = { model: MODEL, max_tokens: 10, stream: scenario.startsWith('sse'), messages: [{ role: 'user', content: 'search' }] };
      assert.equal((await call(rig, task.token, { scenario, body })).status, 200);
      const meter = await rig.gateway.closeTask(task.taskId);
      const reported: ApiUsage = {
        input_tokens: 100, output_tokens: 300, cache_creation_input_tokens: 2000, cache_read_input_tokens: 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2000 }, server_tool_use: { web_search_requests: 3 },
      };
      const expected = priceUsage(MODEL, reported);
      // The four counts alone would price the writes at the 5-minute rate and the searches at nothing.
      assert.ok(expected - priceUsage(MODEL, { input_tokens: 100, output_tokens: 300, cache_creation_input_tokens: 2000 }) > 0.03);
      assert.ok(close(meter.costUsd, expected), `metered $${meter.costUsd}, expected $${expected}`);
      assert.ok(close(task.calls[0]!.costUsd, expected));
      assert.deepEqual(meter.usage, { inputTokens: 100, outputTokens: 300, cacheCreationInputTokens: 2000, cacheReadInputTokens: 0 });
    });
  }

  test('a 10 MiB JSON answer is metered from its final usage (not a look-alike in a tool input)', async () => {
    const task = await openTask(rig);
    const answer = await call(rig, task.token, { scenario: 'big-json' });
    assert.equal(answer.status, 200);
    assert.ok(answer.body.length > 10 * 1024 * 1024);
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.usage.inputTokens, 100);
    assert.equal(meter.usage.outputTokens, 5000);
    assert.ok(close(meter.costUsd, priceUsage(MODEL, { input_tokens: 100, output_tokens: 5000 })));
  });

  test('maxModelCalls is a hard cap: the next call is refused (403, never forwarded) and the limit reported once', async () => {
    const task = await openTask(rig, { maxModelCalls: 2 });
    const before = up.messages().length;
    // count_tokens is not a model call, and a call the upstream refused (overloaded) is not counted.
    assert.equal((await call(rig, task.token, { path: '/v1/messages/count_tokens' })).status, 200);
    assert.equal((await call(rig, task.token, { scenario: 'overloaded' })).status, 529);
    assert.equal((await call(rig, task.token)).status, 200);
    assert.equal((await call(rig, task.token)).status, 200);
    for (let i = 0; i < 2; i++) {
      const refused = await call(rig, task.token);
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error?.type, 'permission_error');
      assert.match(refused.json.error?.message ?? '', /limit of 2 model calls/);
    }
    assert.equal(up.messages().length - before, 3);
    assert.equal(task.limits.length, 1);
    assert.equal(task.limits[0]!.code, 'MAX_TURNS_REACHED');
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.equal(meter.modelCalls, 2);
  });
});

describe('gateway: requests that would reach the network from Anthropic\'s side', () => {
  let up: Upstream;
  let rig: Rig;
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up);
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  const base = { model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
  const refused: Array<[string, object, RegExp]> = [
    ['web search', { ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, /web_search_20250305/],
    ['web fetch', { ...base, tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] }, /web_fetch_20250910/],
    ['code execution', { ...base, tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }, /code_execution_20250825/],
    ['MCP servers', { ...base, mcp_servers: [{ type: 'url', url: 'https://mcp.example/sse', name: 'x' }] }, /mcp_servers/],
    ['container', { ...base, container: 'container_123' }, /container/],
    ['an image by URL', { ...base, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://exfil.example/?q=secret' } }] }] }, /image blocks with a URL source/],
    ['a document by URL in a tool result', { ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'document', source: { type: 'url', url: 'https://exfil.example/a.pdf' } }] }] }] }, /document blocks with a URL source/],
  ];

  for (const mode of ['none', 'allowlist'] as const) {
    test(`${mode}: server tools, MCP servers, containers and URL sources get a 400 and are never forwarded`, async () => {
      const task = await openTask(rig, { network: { mode, allow: ['example.com'] } });
      const before = up.seen.length;
      for (const [label, body, reason] of refused) {
        const answer = await call(rig, task.token, { body });
        assert.equal(answer.status, 400, label);
        assert.equal(answer.json.type, 'error', label);
        assert.equal(answer.json.error?.type, 'invalid_request_error', label);
        assert.match(answer.json.error?.message ?? '', reason, label);
        assert.match(answer.json.error?.message ?? '', new RegExp(`network policy \\(${mode}\\)`), label);
      }
      assert.equal(up.seen.length, before, 'a refused request reached the upstream');
      // Claude Code's own tools (no type) and Anthropic's client tools, which run in the sandbox, pass.
      const clientTools = [{ name: 'Bash', input_schema: { type: 'object' } }, { type: 'custom', name: 'X', input_schema: { type: 'object' } }, { type: 'bash_20250124', name: 'bash' }, { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' }];
      assert.equal((await call(rig, task.token, { body: { ...base, tools: clientTools } })).status, 200);
      // What is forwarded is what was checked: a duplicate key cannot show the upstream another value.
      const duplicate = `{"model":"${MODEL}","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}],"tools":[]}`;
      assert.equal((await call(rig, task.token, { body: duplicate })).status, 200);
      assert.ok(!up.seen.at(-1)!.raw.includes('web_search'), up.seen.at(-1)!.raw);
      assert.equal((await call(rig, task.token, { body: 'not json' })).status, 400);
      await rig.gateway.closeTask(task.taskId);
    });
  }

  test('open: server tools are forwarded', async () => {
    const task = await openTask(rig, { network: { mode: 'open', allow: [] } });
    assert.equal((await call(rig, task.token, { body: refused[0]![1] })).status, 200);
    assert.ok(up.seen.at(-1)!.raw.includes('web_search_20250305'));
    await rig.gateway.closeTask(task.taskId);
  });
});

describe('gateway: a failed openTask leaves no live token', () => {
  let up: Upstream;
  let rig: Rig;
  const minted: string[] = [];
  class SpyRedactor extends Redactor {
    override add(scope: string, ...values: Array<string | undefined>): void {
      for (const value of values) if (value?.startsWith('crt_')) minted.push(value);
      super.add(scope, ...values);
    }
  }
  before(async () => {
    up = await startUpstream();
    rig = await startGateway(up, { redactor: new SpyRedactor() });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
  });

  test('the token file cannot be written: openTask fails, and the token it minted is refused', async () => {
    // A non-empty directory where the token file goes: the rename into place fails.
    mkdirSync(join(rig.dir, 'token', 'blocker'), { recursive: true });
    writeFileSync(join(rig.dir, 'token', 'blocker', 'x'), 'x');
    await assert.rejects(openTask(rig));
    assert.equal(minted.length, 1);
    assert.ok(!existsSync(join(rig.dir, 'token.next')), 'the half-written token file was left behind');
    const before = up.seen.length;
    const answer = await call(rig, minted[0]!);
    assert.equal(answer.status, 401);
    assert.equal(up.seen.length, before);
    rmSync(join(rig.dir, 'token'), { recursive: true, force: true });
    const task = await openTask(rig);
    assert.equal((await call(rig, task.token)).status, 200);
    await rig.gateway.closeTask(task.taskId);
  });
});
