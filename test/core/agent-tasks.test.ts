/**
 * The core, end to end: real Docker sandboxes, the real Agent SDK and `claude`,
 * the scripted model as upstream, HTTP in and out.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { startMockAcmeApi, type MockAcmeApi } from '../../examples/support-bot/mock-api.ts';
import { priceUsage } from '../../src/pricing/prices.ts';
import { bash, errorTurn, malformedTurn, rule, text, toolUse } from '../../src/scripted-model/index.ts';
import type { RecordedRequest } from '../../src/scripted-model/types.ts';
import { containersOf, ROOT, startHarness, type Harness } from '../support/harness.ts';

const docker = new Docker();
const ACME_TOKEN = 'acme-secret-token-42';
const ALICE = { action: 'resolve', response: 'Hi Alice! You have 188 calls left.', user: { name: 'Alice Chen', email: 'alice@startup.io', plan: 'growth' }, confidence: 1 };
const template = (file: string) => readFileSync(`${ROOT}/examples/support-bot/agent/${file}`, 'utf8');

/** Text of every tool_result block in a recorded request's conversation. */
function toolResults(request: RecordedRequest | undefined): string {
  const body = request?.body as { messages?: Array<{ content: unknown }> } | undefined;
  return JSON.stringify((body?.messages ?? []).flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((b: any) => b.type === 'tool_result'));
}

describe('tasks run end to end in Docker sandboxes', () => {
  let api: MockAcmeApi;
  let h: Harness;

  before(async () => {
    api = await startMockAcmeApi({ token: ACME_TOKEN });
    h = await startHarness({
      template: {
        'AGENTS.md': template('AGENTS.md'),
        'OUTPUT.md': template('OUTPUT.md'),
        'tools/acme-cli.sh': template('tools/acme-cli.sh'),
        'runner.json': { network: { mode: 'allowlist', allow: [`host.docker.internal:${api.port}`] } },
      },
      rules: [
        rule('alice@startup.io',
          bash('echo started-in-$(pwd) && id -u'),
          bash('./tools/acme-cli.sh user alice@startup.io'),
          text(`\`\`\`json\n${JSON.stringify(ALICE)}\n\`\`\``)),
        rule('write-secret-file', bash('echo only-for-A > notes.txt && ls'), text('{"action":"resolve","response":"written","user":null,"confidence":1}')),
        rule('read-secret-file', bash('cat notes.txt 2>&1; ls'), text('{"action":"resolve","response":"read","user":null,"confidence":1}')),
        rule('remember-me', text('{"action":"resolve","response":"I will remember the word zebra.","user":null,"confidence":1}')),
        rule('what-did-i-say', text('{"action":"resolve","response":"You said zebra.","user":null,"confidence":1}')),
        rule('upstream-500', errorTurn(500, 'scripted overload')),
        rule('upstream-garbage', malformedTurn()),
        rule('not-json', text('Sorry, plain words only.')),
      ],
    });
  });
  after(async () => {
    await h?.close();
    await api?.close();
  });

  test('a Bash command and a tool from tools/ that calls the API with the env token; output is the JSON the agent returned', async () => {
    const res = await h.api('/task', {
      method: 'POST',
      json: { sessionId: 'alice', message: 'My email is alice@startup.io', context: 'Channel: web-chat', env: { ACME_API_URL: api.url, ACME_API_TOKEN: ACME_TOKEN } },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, ALICE);
    assert.deepEqual(res.body.tools, ['Bash']);
    assert.equal(res.body.resumed, false);
    assert.equal(res.body.sessionId, 'alice');
    assert.match(res.body.taskId, /^task_/);
    assert.ok(res.body.duration > 0);
    // The mock API saw the token from env, sent by the tool inside the sandbox.
    const users = api.requests.filter((r) => r.path === '/users');
    assert.equal(users.length, 1);
    assert.equal(users[0]!.headers.authorization, `Bearer ${ACME_TOKEN}`);
    assert.equal(users[0]!.query.email, 'alice@startup.io');
    // The tool outputs reached the model: the Bash output (uid 1000, /workspace) and the API's JSON.
    const calls = h.model.findRequests({ prompt: 'alice@startup.io', kind: 'main' });
    assert.equal(calls.length, 3);
    assert.match(toolResults(calls[1]), /started-in-\/workspace/);
    assert.match(toolResults(calls[1]), /\\n1000/);
    assert.match(toolResults(calls[2]), /Alice Chen/);
    assert.match(toolResults(calls[2]), /callsRemaining\\+":188/);
    // context is prepended to the message.
    assert.match(calls[0]!.prompt ?? '', /^Channel: web-chat\n\nMy email is alice@startup.io/);
    // The upstream saw the real key; the sandbox only ever had a task token.
    assert.equal(calls[0]!.headers['x-api-key'], h.env.ANTHROPIC_API_KEY);
    // An allowlist agent is not offered WebSearch (it would fetch from Anthropic's side, past the policy).
    const key = (await h.runner.store.findSession('default', 'alice'))!.key;
    const init = (await h.runner.store.readEvents(key, 0, 1000)).find((e) => e.type === 'init')!.data as { tools: string[] };
    assert.ok(init.tools.includes('Bash'));
    assert.ok(!init.tools.includes('WebSearch'), init.tools.join(','));
  });

  test('two sessions have their own containers and workspaces', async () => {
    const a = await h.api('/task', { method: 'POST', json: { sessionId: 'iso-a', message: 'write-secret-file' } });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const b = await h.api('/task', { method: 'POST', json: { sessionId: 'iso-b', message: 'read-secret-file' } });
    assert.equal(b.status, 200, JSON.stringify(b.body));
    const readBack = toolResults(h.model.findRequests({ prompt: 'read-secret-file' })[1]);
    assert.match(readBack, /No such file/);
    assert.doesNotMatch(readBack, /only-for-A/);
    const containers = (await containersOf(h.runnerId)).filter((c) => ['iso-a', 'iso-b'].includes(c.Labels['dev.claude-runner.session-id']!));
    assert.equal(containers.length, 2);
    const mounts = await Promise.all(containers.map(async (c) => (await docker.getContainer(c.Id).inspect()).Mounts.find((m) => m.Destination === '/workspace')!.Source));
    assert.notEqual(mounts[0], mounts[1]);
    const listA = await h.api('/session/iso-a/files');
    assert.ok(listA.body.files.some((f: { path: string }) => f.path === 'notes.txt'));
    const listB = await h.api('/session/iso-b/files');
    assert.ok(!listB.body.files.some((f: { path: string }) => f.path === 'notes.txt'));
  });

  test('the second task reuses the container, is resumed, and the model sees the first exchange', async () => {
    const first = await h.api('/task', { method: 'POST', json: { sessionId: 'memory', message: 'remember-me: the word is zebra' } });
    assert.equal(first.status, 200);
    const containerBefore = (await containersOf(h.runnerId)).find((c) => c.Labels['dev.claude-runner.session-id'] === 'memory')!.Id;
    const second = await h.api('/task', { method: 'POST', json: { sessionId: 'memory', message: 'what-did-i-say?' } });
    assert.equal(second.status, 200);
    assert.equal(second.body.resumed, true);
    const containerAfter = (await containersOf(h.runnerId)).find((c) => c.Labels['dev.claude-runner.session-id'] === 'memory')!.Id;
    assert.equal(containerAfter, containerBefore);
    const history = JSON.stringify((h.model.findRequests({ prompt: 'what-did-i-say' })[0]!.body as { messages: unknown[] }).messages);
    assert.match(history, /remember-me: the word is zebra/);
    assert.match(history, /I will remember the word zebra/);
  });

  test('cost is the scripted usage at the model price, per task (not cumulative)', async () => {
    const one = await h.api('/task', { method: 'POST', json: { sessionId: 'costs', message: 'remember-me once' } });
    const two = await h.api('/task', { method: 'POST', json: { sessionId: 'costs', message: 'remember-me twice' } });
    const model = h.model.findRequests({ prompt: 'remember-me once' })[0]!.model!;
    // Each task made one call of the default usage (100 in, 20 out).
    const expected = priceUsage(model, { input_tokens: 100, output_tokens: 20 });
    assert.ok(expected > 0);
    assert.ok(Math.abs(one.body.cost - expected) < 1e-12, `${one.body.cost} vs ${expected}`);
    assert.ok(Math.abs(two.body.cost - expected) < 1e-12, `second task ${two.body.cost} vs ${expected}`);
    const session = await h.api('/session/costs');
    assert.ok(Math.abs(session.body.totalCost - 2 * expected) < 1e-12);
    // The task record carries the metered usage.
    const task = await h.api(`/tasks/${two.body.taskId}`);
    assert.deepEqual(task.body.usage, { inputTokens: 100, outputTokens: 20, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 });
  });

  test('an upstream 500 or a broken stream fails the task with MODEL_ERROR; the server keeps serving', async () => {
    const failed = await h.api('/task', { method: 'POST', json: { sessionId: 'upstream', message: 'upstream-500 please' } });
    assert.equal(failed.status, 502, JSON.stringify(failed.body));
    assert.equal(failed.body.error.code, 'MODEL_ERROR');
    assert.equal(failed.body.status, 'failed');
    const broken = await h.api('/task', { method: 'POST', json: { sessionId: 'upstream', message: 'upstream-garbage please' } });
    assert.equal(broken.status, 502, JSON.stringify(broken.body));
    assert.equal(broken.body.error.code, 'MODEL_ERROR');
    const fine = await h.api('/task', { method: 'POST', json: { sessionId: 'upstream', message: 'remember-me after errors' } });
    assert.equal(fine.status, 200, JSON.stringify(fine.body));
    assert.equal((await h.api('/health')).body.status, 'ok');
  });

  test('with OUTPUT.md, a final text that is not JSON is OUTPUT_INVALID and keeps the text', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'words', message: 'not-json' } });
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, 'OUTPUT_INVALID');
    assert.equal(res.body.error.details.text, 'Sorry, plain words only.');
  });

  test('bad input is refused with a code before it touches anything', async () => {
    const badId = await h.api('/task', { method: 'POST', json: { sessionId: '../etc', message: 'x' } });
    assert.equal(badId.status, 400);
    assert.equal(badId.body.error.code, 'INVALID_SESSION_ID');
    const noMessage = await h.api('/task', { method: 'POST', json: { sessionId: 'ok' } });
    assert.equal(noMessage.status, 400);
    assert.equal(noMessage.body.error.code, 'INVALID_REQUEST');
    const notJson = await h.api('/task', { method: 'POST', body: '{nope', headers: { 'content-type': 'application/json' } });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.error.code, 'INVALID_REQUEST');
    const unknown = await h.api('/session/never-seen');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'SESSION_NOT_FOUND');
    const route = await h.api('/nope');
    assert.equal(route.status, 404);
    assert.equal(route.body.error.code, 'ROUTE_NOT_FOUND');
    // None of these created a session.
    const sessions = await h.api('/sessions');
    assert.ok(!sessions.body.some((s: { sessionId: string }) => s.sessionId === 'ok' || s.sessionId === '../etc'));
  });
});

describe('output.schema.json', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      template: {
        'output.schema.json': { type: 'object', properties: { answer: { type: 'number' }, unit: { type: 'string' } }, required: ['answer'], additionalProperties: false },
      },
      rules: [
        rule('valid-output', toolUse('StructuredOutput', { answer: 42, unit: 'm' })),
        rule('schema-breaking-output', ...Array.from({ length: 6 }, () => toolUse('StructuredOutput', { answer: 'forty-two' }))),
      ],
    });
  });
  after(async () => h?.close());

  test('a valid structured result is the output', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema', message: 'valid-output' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, { answer: 42, unit: 'm' });
    assert.deepEqual(res.body.tools, ['StructuredOutput']);
  });

  test('an invalid result is OUTPUT_INVALID with the validation error', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema', message: 'schema-breaking-output' } });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'OUTPUT_INVALID');
    assert.match(res.body.error.message, /answer: must be number/);
  });

  test('a per-task schema that is too deep is refused', async () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'object', properties: { x: deep } };
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema', message: 'valid-output', outputSchema: deep } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'INVALID_SCHEMA');
  });
});

describe('without a model credential', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ env: { ANTHROPIC_API_KEY: '' } }); });
  after(async () => h?.close());

  test('a task fails with MODEL_CREDENTIALS_MISSING and the server stays up', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'nokey', message: 'hello' } });
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'MODEL_CREDENTIALS_MISSING');
    assert.equal((await h.api('/health')).status, 200);
  });
});
