/**
 * runner.json end to end: a stdio MCP server shipped in the template (bash + jq)
 * runs inside the session's sandbox as the agent user and its tool is called by
 * the agent; per-task overrides are checked at submit; template limits reach
 * the container.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { rule, text, toolUse } from '../../src/scripted-model/index.ts';
import { containersOf, ROOT, startHarness, type Harness } from '../support/harness.ts';

const docker = new Docker();
const example = (file: string) => readFileSync(`${ROOT}/examples/mcp-calc/agent/${file}`, 'utf8');

/** The frames of a finished task's SSE stream. */
async function taskEvents(url: string, taskId: string): Promise<Array<{ type: string; data: any }>> {
  const body = await (await fetch(`${url}/tasks/${taskId}/events`)).text();
  return body.split('\n\n').flatMap((frame) => {
    const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    if (!data) return [];
    const parsed = JSON.parse(data);
    return [{ type: parsed.type, data: parsed.data ?? parsed }];
  });
}

describe('runner.json: MCP servers, overrides and limits, end to end', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      template: {
        'AGENTS.md': example('AGENTS.md'),
        'mcp/calc.sh': example('mcp/calc.sh'),
        'runner.json': {
          ...JSON.parse(example('runner.json')),
          model: 'claude-sonnet-4-5',
          models: ['claude-sonnet-4-5', 'claude-haiku-4-5'],
          maxTurns: 5,
          limits: { memory: '512m', pids: 128 },
        },
      },
      rules: [
        rule('add-two-three', toolUse('mcp__calc__add', { a: 2, b: 3 }), (ctx) => text(`The calculator said: ${ctx.lastToolResult}`)),
        rule('two-turns', toolUse('mcp__calc__add', { a: 1, b: 1 }), text('done')),
      ],
    });
  });
  after(async () => {
    await h?.close();
  });

  test('the agent calls the stdio MCP tool; it runs in the sandbox as uid 1000 and its result reaches events, tools and output', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'calc', message: 'add-two-three' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.tools, ['mcp__calc__add']);
    assert.match(JSON.stringify(res.body.output), /sum=5 uid=1000/);
    const events = await taskEvents(h.url, res.body.taskId);
    const init = events.find((e) => e.type === 'init');
    assert.ok(init?.data.tools.includes('mcp__calc__add'), JSON.stringify(init?.data.tools));
    const start = events.find((e) => e.type === 'tool_start');
    assert.equal(start?.data.tool, 'mcp__calc__add');
    assert.deepEqual(start?.data.input, { a: 2, b: 3 });
    const end = events.find((e) => e.type === 'tool_end');
    assert.equal(end?.data.tool, 'mcp__calc__add');
    assert.match(String(end?.data.result), /sum=5 uid=1000/);
    // The server wrote its uid inside the session's container, not on the host.
    const [info] = (await containersOf(h.runnerId)).filter((c) => c.State === 'running');
    assert.ok(info, 'no running sandbox');
    const container = docker.getContainer(info.Id);
    const exec = await container.exec({ Cmd: ['cat', '/tmp/mcp-calc.uid'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => { stream.on('data', (c: Buffer) => chunks.push(c)); stream.on('end', () => resolve()); });
    assert.match(Buffer.concat(chunks).toString('latin1'), /1000/);
    // The template's limits made the container.
    const inspected = await container.inspect();
    assert.equal(inspected.HostConfig.Memory, 512 * 1024 * 1024);
    assert.equal(inspected.HostConfig.PidsLimit, 128);
  });

  test('forbidden overrides are 400 OVERRIDE_NOT_ALLOWED naming the field; unknown fields stay INVALID_REQUEST', async () => {
    const model = await h.api('/task', { method: 'POST', json: { sessionId: 'o1', message: 'x', model: 'claude-opus-4-1' } });
    assert.equal(model.status, 400, JSON.stringify(model.body));
    assert.equal(model.body.error.code, 'OVERRIDE_NOT_ALLOWED');
    assert.match(model.body.error.message, /^model: "claude-opus-4-1" is not allowed/);
    const turns = await h.api('/task', { method: 'POST', json: { sessionId: 'o1', message: 'x', maxTurns: 6 } });
    assert.equal(turns.status, 400, JSON.stringify(turns.body));
    assert.equal(turns.body.error.code, 'OVERRIDE_NOT_ALLOWED');
    assert.match(turns.body.error.message, /^maxTurns: 6 is above the limit of 5/);
    const unknown = await h.api('/task', { method: 'POST', json: { sessionId: 'o1', message: 'x', mcpServers: {} } });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.code, 'INVALID_REQUEST');
    assert.match(JSON.stringify(unknown.body.error), /mcpServers/);
  });

  test('an allowed model and a lowered maxTurns apply: maxTurns 1 stops a two-turn script', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'low', message: 'two-turns', maxTurns: 1, model: 'claude-haiku-4-5' } });
    assert.equal(res.body.error?.code, 'MAX_TURNS_REACHED', JSON.stringify(res.body));
    const calls = h.model.findRequests({ prompt: 'two-turns', kind: 'main' });
    assert.ok(calls.length >= 1);
    assert.equal((calls[0]!.body as { model: string }).model, 'claude-haiku-4-5');
  });
});
