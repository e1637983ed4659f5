// The scripted model driving the real Claude Code CLI through the Agent SDK.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { query } from '@anthropic-ai/claude-agent-sdk';
import type { Options, SDKMessage, SDKResultMessage, SDKUserMessage } from '@anthropic-ai/claude-agent-sdk';
import { DEFAULT_MODEL, MODEL_PRICES, priceFor, priceUsage } from '../../src/pricing/prices.ts';
import {
  DEFAULT_USAGE,
  bash,
  errorTurn,
  malformedTurn,
  rule,
  startScriptedModel,
  text,
  withThinking,
} from '../../src/scripted-model/index.ts';
import type { MessagesRequest, RecordedRequest, ScriptedModel } from '../../src/scripted-model/index.ts';

const CLAUDE = fileURLToPath(
  new URL('../../node_modules/@anthropic-ai/claude-agent-sdk-linux-x64/claude', import.meta.url),
);

interface Run {
  messages: SDKMessage[];
  results: SDKResultMessage[];
  result: SDKResultMessage | undefined;
  error: Error | undefined;
  ms: number;
}

/** Runs the real CLI against `model`, with an explicit environment (never the host's). */
async function runAgent(
  model: ScriptedModel,
  prompt: string | AsyncIterable<SDKUserMessage>,
  extra: Partial<Options> = {},
  onMessage: (m: SDKMessage) => void = () => {},
): Promise<Run> {
  const home = await mkdtemp(join(tmpdir(), 'scripted-home-'));
  const cwd = await mkdtemp(join(tmpdir(), 'scripted-cwd-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    ANTHROPIC_BASE_URL: model.url,
    ANTHROPIC_API_KEY: 'test-key',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    CLAUDE_CODE_MAX_RETRIES: '0',
  };
  if (process.getuid?.() === 0) env.IS_SANDBOX = '1';
  const messages: SDKMessage[] = [];
  let error: Error | undefined;
  const started = Date.now();
  try {
    const q = query({
      prompt,
      options: {
        pathToClaudeCodeExecutable: CLAUDE,
        cwd,
        env,
        permissionMode: 'bypassPermissions',
        allowDangerouslySkipPermissions: true,
        ...extra,
      },
    });
    for await (const m of q) {
      messages.push(m);
      onMessage(m);
    }
  } catch (err) {
    error = err as Error; // the SDK throws after an error result
  } finally {
    await rm(home, { recursive: true, force: true });
    await rm(cwd, { recursive: true, force: true });
  }
  const results = messages.filter((m): m is SDKResultMessage => m.type === 'result');
  return { messages, results, result: results.at(-1), error, ms: Date.now() - started };
}

/** Lets a prompt generator wait for the n-th result (streaming-input mode). */
function resultGate() {
  let seen = 0;
  const waiting: Array<{ n: number; go: () => void }> = [];
  return {
    onMessage(m: SDKMessage) {
      if (m.type !== 'result') return;
      seen++;
      for (const w of waiting) if (seen >= w.n) w.go();
    },
    until(n: number): Promise<void> {
      return new Promise((go) => (seen >= n ? go() : waiting.push({ n, go })));
    },
  };
}

function userMessage(content: string): SDKUserMessage {
  return { type: 'user', message: { role: 'user', content }, parent_tool_use_id: null };
}

const bodyOf = (r: RecordedRequest) => r.body as MessagesRequest;

function toolResults(r: RecordedRequest): string[] {
  const out: string[] = [];
  for (const m of bodyOf(r).messages ?? []) {
    if (m.role !== 'user' || typeof m.content === 'string') continue;
    for (const b of m.content) if (b.type === 'tool_result') out.push(JSON.stringify(b.content));
  }
  return out;
}

describe('scripted model with the real claude CLI', () => {
  test('Bash tool round trip: result text, tool_result in the log, cost from the price table', async () => {
    const finalUsage = { input_tokens: 1200, output_tokens: 345, cache_creation_input_tokens: 2000, cache_read_input_tokens: 5000 };
    const model = await startScriptedModel({
      requireApiKey: 'test-key',
      rules: [
        {
          name: 'echo-tool',
          match: 'run the echo tool',
          turns: [withThinking('I will run echo.', bash('echo hello-from-tool')), text('The tool said hello.', { usage: finalUsage })],
        },
      ],
    });
    try {
      const run = await runAgent(model, 'Please run the echo tool.', { includePartialMessages: true });
      assert.equal(run.error, undefined);
      assert.ok(run.result && run.result.subtype === 'success');
      assert.equal(run.result.result, 'The tool said hello.');
      assert.equal(run.result.is_error, false);

      const main = model.findRequests({ kind: 'main' });
      assert.equal(main.length, 2);
      assert.deepEqual(main.map((r) => [r.rule, r.turnIndex]), [['echo-tool', 0], ['echo-tool', 1]]);
      assert.equal(main[0]!.headers['x-api-key'], 'test-key');
      assert.equal(main[0]!.path, '/v1/messages?beta=true');
      assert.equal(bodyOf(main[0]!).stream, true);
      assert.deepEqual(toolResults(main[0]!), []);
      assert.ok(toolResults(main[1]!).some((t) => t.includes('hello-from-tool')), 'tool output reached the model');

      // The CLI's own default model, priced with our table, must give the CLI's figure.
      const modelName = main[0]!.model!;
      assert.equal(modelName, DEFAULT_MODEL);
      assert.deepEqual(MODEL_PRICES[modelName], { input: 4, output: 20, cacheWrite: 5, cacheWrite1h: 8, cacheRead: 0.2 });
      const expected = priceUsage(modelName, DEFAULT_USAGE) + priceUsage(modelName, finalUsage);
      assert.ok(run.result.total_cost_usd > 0);
      assert.ok(Math.abs(run.result.total_cost_usd - expected) < 1e-9, `${run.result.total_cost_usd} vs ${expected}`);
      assert.ok(Math.abs(run.result.modelUsage[modelName]!.costUSD - expected) < 1e-9);
      assert.equal(run.result.usage.output_tokens, DEFAULT_USAGE.output_tokens + finalUsage.output_tokens);

      // Thinking and tokens were streamed, in several deltas.
      const assistantBlocks = run.messages.flatMap((m) => (m.type === 'assistant' ? m.message.content : []));
      assert.ok(assistantBlocks.some((b) => b.type === 'thinking' && b.thinking === 'I will run echo.'));
      const deltas = run.messages.flatMap((m) =>
        m.type === 'stream_event' && m.event.type === 'content_block_delta' && m.event.delta.type === 'text_delta' ? [m.event.delta.text] : [],
      );
      assert.ok(deltas.length >= 3, `text arrived in ${deltas.length} deltas`);
      assert.equal(deltas.join(''), 'The tool said hello.');
    } finally {
      await model.close();
    }
  });

  test('streaming input: one live process, the second task sees the first exchange', async () => {
    const model = await startScriptedModel({
      rules: [rule('first task', bash('echo first-output'), text('First answer.')), rule('second task', text('Second answer.'))],
    });
    try {
      const gate = resultGate();
      async function* prompts(): AsyncGenerator<SDKUserMessage> {
        yield userMessage('This is the first task.');
        await gate.until(1);
        yield userMessage('Now the second task.');
        await gate.until(2);
      }
      const run = await runAgent(model, prompts(), {}, gate.onMessage);
      assert.equal(run.error, undefined);
      assert.deepEqual(run.results.map((r) => (r.subtype === 'success' ? r.result : r.subtype)), ['First answer.', 'Second answer.']);
      assert.equal(run.results[0]!.session_id, run.results[1]!.session_id);

      const second = model.findRequests({ prompt: 'second task' });
      assert.equal(second.length, 1);
      assert.equal(second[0]!.turnIndex, 0);
      const history = JSON.stringify(bodyOf(second[0]!).messages);
      assert.ok(history.includes('This is the first task.'));
      assert.ok(history.includes('first-output'));
      assert.ok(history.includes('First answer.'));
      // Streaming input: each result carries the running total of the process.
      assert.ok(run.results[1]!.total_cost_usd > run.results[0]!.total_cost_usd);
    } finally {
      await model.close();
    }
  });

  test('a 500 turn ends the query quickly with CLAUDE_CODE_MAX_RETRIES=0; a malformed stream is an error', async () => {
    const model = await startScriptedModel({
      rules: [rule('explode', errorTurn(500, 'scripted failure')), rule('garble', malformedTurn())],
    });
    try {
      const [boom, broken] = await Promise.all([runAgent(model, 'explode now'), runAgent(model, 'garble now')]);
      assert.ok(boom.result?.subtype === 'success' && boom.result.is_error);
      assert.equal(boom.result.api_error_status, 500);
      assert.match(boom.result.result, /500 scripted failure/);
      assert.ok(boom.ms < 15_000, `took ${boom.ms} ms`);
      assert.equal(model.findRequests({ rule: 'rule#0' }).length, 1, 'no retries');
      assert.equal(model.findRequests({ rule: 'rule#0' })[0]!.status, 500);

      assert.ok(broken.result?.is_error);
      assert.ok(broken.ms < 15_000, `took ${broken.ms} ms`);
      assert.equal(broken.result.total_cost_usd, 0);
    } finally {
      await model.close();
    }
  });

  test('concurrent sessions each follow their own script', async () => {
    const model = await startScriptedModel({
      rules: [
        rule('alpha job', bash('echo alpha-out'), text('alpha finished', { chunkDelayMs: 5 })),
        rule('beta job', bash('echo beta-out', { chunkDelayMs: 5 }), text('beta finished')),
      ],
    });
    try {
      const [a, b] = await Promise.all([runAgent(model, 'Do the alpha job.'), runAgent(model, 'Do the beta job.')]);
      assert.equal(a.result?.subtype === 'success' && a.result.result, 'alpha finished');
      assert.equal(b.result?.subtype === 'success' && b.result.result, 'beta finished');
      const alpha = model.findRequests({ prompt: 'alpha job' });
      const beta = model.findRequests({ prompt: 'beta job' });
      assert.deepEqual(alpha.map((r) => r.turnIndex), [0, 1]);
      assert.deepEqual(beta.map((r) => r.turnIndex), [0, 1]);
      assert.ok(toolResults(alpha[1]!).join().includes('alpha-out') && !toolResults(alpha[1]!).join().includes('beta-out'));
      assert.ok(toolResults(beta[1]!).join().includes('beta-out') && !toolResults(beta[1]!).join().includes('alpha-out'));
    } finally {
      await model.close();
    }
  });

  test('/compact is a side request: a catch-all rule does not answer it', async () => {
    const model = await startScriptedModel({ rules: [{ name: 'catch-all', match: /[\s\S]*/, turns: [text('main answer')] }] });
    try {
      const gate = resultGate();
      async function* prompts(): AsyncGenerator<SDKUserMessage> {
        yield userMessage('hello there');
        await gate.until(1);
        yield userMessage('/compact');
        await gate.until(2);
      }
      const run = await runAgent(model, prompts(), {}, gate.onMessage);
      assert.equal(run.error, undefined);
      const side = model.findRequests({ kind: 'side' });
      assert.equal(side.length, 1);
      assert.equal(side[0]!.side, 'compact');
      assert.equal(side[0]!.rule, 'side:compact');
      assert.deepEqual(model.findRequests({ kind: 'main' }).map((r) => r.rule), ['catch-all']);
      assert.ok(run.messages.some((m) => m.type === 'system' && m.subtype === 'compact_boundary'));
    } finally {
      await model.close();
    }
  });
});

describe('scripted model over HTTP', () => {
  let model: ScriptedModel;
  before(async () => {
    model = await startScriptedModel({ requireApiKey: 'test-key' });
  });
  after(() => model.close());

  const post = (path: string, body: unknown, key = 'test-key') =>
    fetch(`${model.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(body),
    });
  const user = (t: string) => ({ role: 'user', content: [{ type: 'text', text: `<system-reminder>ctx</system-reminder>` }, { type: 'text', text: t }] });

  test('PUT /_scripted/script drives the real CLI; the request log can be read and cleared', async () => {
    const script = {
      rules: [
        {
          name: 'http-rule',
          match: { regex: 'WEATHER\\s+in (\\w+)', flags: 'i' },
          turns: [
            { content: [{ type: 'tool_use', name: 'Bash', input: { command: 'echo sunny', description: 'look outside' } }] },
            { content: [{ type: 'text', text: 'It is sunny.' }], usage: { input_tokens: 10, output_tokens: 5 } },
          ],
        },
      ],
    };
    const put = await fetch(`${model.url}/_scripted/script`, { method: 'PUT', body: JSON.stringify(script) });
    assert.equal(put.status, 200);
    assert.deepEqual(await put.json(), { rules: 1 });

    await fetch(`${model.url}/_scripted/requests`, { method: 'DELETE' });
    const run = await runAgent(model, 'What is the weather in Paris?');
    assert.equal(run.result?.subtype === 'success' && run.result.result, 'It is sunny.');
    const expected = priceUsage(DEFAULT_MODEL, DEFAULT_USAGE) + priceUsage(DEFAULT_MODEL, { input_tokens: 10, output_tokens: 5 });
    assert.ok(Math.abs(run.result!.total_cost_usd - expected) < 1e-9);

    const log = (await (await fetch(`${model.url}/_scripted/requests?kind=main`)).json()) as RecordedRequest[];
    assert.deepEqual(log.map((r) => [r.rule, r.turnIndex, r.status]), [['http-rule', 0, 200], ['http-rule', 1, 200]]);
    assert.equal(log[0]!.headers['x-api-key'], 'test-key');
    assert.equal(log[0]!.prompt, 'What is the weather in Paris?');

    const bad = await fetch(`${model.url}/_scripted/script`, { method: 'PUT', body: JSON.stringify({ rules: [{ match: 1 }] }) });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { type: string }).type, 'error');

    const del = await fetch(`${model.url}/_scripted/requests`, { method: 'DELETE' });
    assert.deepEqual(await del.json(), { cleared: 2 });
    assert.deepEqual(await (await fetch(`${model.url}/_scripted/requests`)).json(), []);
  });

  test('non-streaming JSON, count_tokens, API key check, turn functions', async () => {
    model.setRules([
      {
        name: 'fn',
        match: 'repeat',
        turns: [bash('echo x'), (ctx) => text(`you said ${ctx.lastToolResult} at turn ${ctx.turnIndex} for ${ctx.model}`)],
      },
    ]);
    const messages = [
      user('please repeat'),
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'echo x' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'x-output' }] },
      { role: 'system', content: 'environment details' },
    ];
    const res = await post('/v1/messages', { model: 'claude-sonnet-4-5', max_tokens: 100, messages });
    assert.equal(res.status, 200);
    const msg = (await res.json()) as { model: string; content: unknown; stop_reason: string; usage: unknown };
    assert.equal(msg.model, 'claude-sonnet-4-5');
    assert.deepEqual(msg.content, [{ type: 'text', text: 'you said x-output at turn 1 for claude-sonnet-4-5' }]);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.deepEqual(msg.usage, DEFAULT_USAGE);

    const first = (await (await post('/v1/messages', { model: 'm', messages: [user('repeat')] })).json()) as {
      content: Array<{ type: string; id: string; input: unknown }>;
      stop_reason: string;
    };
    assert.equal(first.stop_reason, 'tool_use');
    assert.match(first.content[0]!.id, /^toolu_/);
    assert.deepEqual(first.content[0]!.input, { command: 'echo x', description: 'echo x' });

    const echo = (await (await post('/v1/messages', { model: 'm', messages: [user('something else')] })).json()) as { content: unknown };
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: something else' }]);

    // A prompt-suggestion fork of the conversation is a side request: no script turn, no cost.
    const fork = [...messages.slice(0, 3), { role: 'assistant', content: [{ type: 'text', text: 'done' }] }, { role: 'user', content: '[SUGGESTION MODE: Suggest what the user might type.]' }];
    const suggestion = (await (await post('/v1/messages', { model: 'm', messages: fork, tools: [{ name: 'Bash' }] })).json()) as { content: unknown; usage: unknown };
    assert.deepEqual(suggestion.content, [{ type: 'text', text: '' }]);
    assert.deepEqual(suggestion.usage, { ...DEFAULT_USAGE, input_tokens: 0, output_tokens: 0 });
    assert.equal(model.requests.at(-1)!.rule, 'side:prompt_suggestion');

    const count = await post('/v1/messages/count_tokens', { model: 'm', messages: [user('hello')] });
    const n = ((await count.json()) as { input_tokens: number }).input_tokens;
    assert.ok(Number.isInteger(n) && n > 0);

    const denied = await post('/v1/messages', { model: 'm', messages: [user('repeat')] }, 'wrong-key');
    assert.equal(denied.status, 401);
    assert.deepEqual(await denied.json(), { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    assert.equal(model.findRequests({ path: '/v1/messages/count_tokens' }).length, 1);
  });

  test('SSE: event order, small deltas, model echoed, thinking signature', async () => {
    model.setRules([rule('sse', withThinking('pondering deeply', bash('echo a fairly long command line')))]);
    const res = await post('/v1/messages', { model: 'claude-haiku-4-5', stream: true, messages: [user('sse please')] });
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((chunk) => JSON.parse(chunk.split('\n').find((l) => l.startsWith('data: '))!.slice(6)) as Record<string, any>);
    const types = events.map((e) => e.type);
    assert.equal(types[0], 'message_start');
    assert.equal(events[0]!.message.model, 'claude-haiku-4-5');
    assert.equal(events[0]!.message.usage.input_tokens, DEFAULT_USAGE.input_tokens);
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
    assert.equal(events.at(-2)!.delta.stop_reason, 'tool_use');
    assert.equal(events.at(-2)!.usage.output_tokens, DEFAULT_USAGE.output_tokens);
    const deltas = (kind: string) => events.filter((e) => e.type === 'content_block_delta' && e.delta.type === kind);
    assert.ok(deltas('thinking_delta').length >= 2);
    assert.equal(deltas('signature_delta').length, 1);
    assert.ok(deltas('input_json_delta').length >= 3);
    assert.deepEqual(JSON.parse(deltas('input_json_delta').map((e) => e.delta.partial_json).join('')), {
      command: 'echo a fairly long command line',
      description: 'echo a fairly long command line',
    });
  });

  test('prices: dated ids, 1h cache writes, long prompts, unknown models (figures seen from the CLI)', () => {
    assert.equal(priceFor('claude-sonnet-4-5-20250929'), MODEL_PRICES['claude-sonnet-4-5']);
    assert.ok(Math.abs(priceUsage('claude-sonnet-4-5-20250929', { input_tokens: 1_000_000 }) - 3) < 1e-9);
    const oneHour = { cache_creation_input_tokens: 1_000_000, cache_creation: { ephemeral_5m_input_tokens: 600_000, ephemeral_1h_input_tokens: 400_000 } };
    assert.ok(Math.abs(priceUsage('claude-opus-5-5', oneHour) - 6.2) < 1e-9);
    assert.ok(Math.abs(priceUsage('claude-haiku-5-5', { input_tokens: 150_000, output_tokens: 1000 }) - 0.0775) < 1e-9);
    assert.ok(Math.abs(priceUsage('claude-haiku-5-5', { input_tokens: 50_000, output_tokens: 1000, cache_read_input_tokens: 60_000 }) - 0.0305) < 1e-9);
    assert.equal(priceFor('my-gateway-model'), undefined);
    assert.ok(Math.abs(priceUsage('my-gateway-model', { inputTokens: 1_000_000, outputTokens: 1_000_000 }) - 24) < 1e-9);
  });
});
