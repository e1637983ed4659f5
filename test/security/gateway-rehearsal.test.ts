/**
 * A ready session's rehearsal (src/gateway/rehearsal.ts): while it lasts, the
 * session's standby token is answered by the gateway itself, with a scripted
 * Bash call then a text, and nothing reaches the upstream or is metered;
 * before and after it, and for any other token or socket, the token opens
 * nothing. An open task's calls are never the rehearsal's.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call, openTask, startGateway, startUpstream, MODEL, type Rig, type Upstream } from './gateway-rig.ts';

const BASH = { name: 'Bash', description: 'run a command', input_schema: { type: 'object' } };
const first = { model: MODEL, max_tokens: 10, stream: true, tools: [BASH], messages: [{ role: 'user', content: 'rehearse' }] };
const afterTool = {
  ...first,
  messages: [
    { role: 'user', content: 'rehearse' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'true' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '' }] },
  ],
};

/** The SSE events of an answer, parsed. */
function events(body: string): Array<Record<string, unknown>> {
  return body.split('\n').filter((line) => line.startsWith('data: ')).map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
}

describe('the gateway rehearses a ready session', () => {
  let upstream: Upstream;
  let rig: Rig;
  let token: string;
  before(async () => {
    upstream = await startUpstream();
    rig = await startGateway(upstream);
    await rig.gateway.standbyToken('s1');
    token = readFileSync(join(rig.dir, 'token'), 'utf8');
  });
  after(async () => {
    await rig?.close();
    await upstream?.close();
  });

  test('outside a rehearsal the standby token opens nothing', async () => {
    assert.equal((await call(rig, token, { body: first })).status, 401);
    assert.equal(upstream.seen.length, 0);
  });

  test('during it: a Bash call, then the end of the turn, answered by the gateway alone', async () => {
    const end = rig.gateway.rehearse('s1');
    try {
      const bash = await call(rig, token, { body: first });
      assert.equal(bash.status, 200);
      const blocks = events(bash.body);
      const block = blocks.find((e) => e.type === 'content_block_start')!.content_block as { type: string; name: string };
      assert.deepEqual([block.type, block.name], ['tool_use', 'Bash']);
      const input = blocks.filter((e) => e.type === 'content_block_delta').map((e) => (e.delta as { partial_json: string }).partial_json).join('');
      assert.equal(JSON.parse(input).command, 'true');
      assert.equal((blocks.find((e) => e.type === 'message_delta')!.delta as { stop_reason: string }).stop_reason, 'tool_use');
      const usage = blocks.find((e) => e.type === 'message_delta')!.usage as Record<string, number>;
      assert.deepEqual(Object.values(usage).filter((n) => n !== 0), [], 'no tokens');

      const done = events((await call(rig, token, { body: afterTool })).body);
      assert.equal((done.find((e) => e.type === 'message_delta')!.delta as { stop_reason: string }).stop_reason, 'end_turn');
      assert.match(JSON.stringify(done), /Ready\./);

      // No Bash offered: the turn ends at once. Not streamed: one JSON message. Token counting: zero.
      const plain = await call(rig, token, { body: { ...first, tools: [], stream: false } });
      assert.equal((plain.json as { stop_reason?: string }).stop_reason, 'end_turn');
      assert.deepEqual(JSON.parse((await call(rig, token, { path: '/v1/messages/count_tokens', body: first })).body), { input_tokens: 0 });

      // Only the session's own token: another is refused.
      assert.equal((await call(rig, 'crt_not-the-session-token', { body: first })).status, 401);
      assert.equal(upstream.seen.length, 0, 'nothing reached the upstream');
    } finally {
      end();
    }
    assert.equal((await call(rig, token, { body: first })).status, 401, 'refused again once the rehearsal ended');
  });

  test('a malformed call gets a clear 400 and the gateway goes on; a reminder after an answer gets text, not another Bash call', async () => {
    const end = rig.gateway.rehearse('s1');
    try {
      for (const body of ['null', '5', '{"messages":5}', 'not json', ...[{ ...first, tools: 'x' }, { ...first, tools: [null] }, { ...first, messages: [null] }].map((b) => JSON.stringify(b))]) {
        const answer = await call(rig, token, { body });
        assert.equal(answer.status, 400, body);
        assert.equal((answer.json as { error: { type: string } }).error.type, 'invalid_request_error');
      }
      const reminder = { ...afterTool, messages: [...afterTool.messages, { role: 'assistant', content: 'Ready.' }, { role: 'user', content: 'Call StructuredOutput.' }] };
      const done = events((await call(rig, token, { body: reminder })).body);
      assert.equal((done.find((e) => e.type === 'message_delta')!.delta as { stop_reason: string }).stop_reason, 'end_turn');
      assert.equal((await call(rig, token, { body: first })).status, 200, 'still answering');
      assert.equal(upstream.seen.length, 0);
    } finally {
      end();
    }
  });

  test('an open task\'s calls go upstream and are metered, rehearsal or not', async () => {
    const end = rig.gateway.rehearse('s1');
    try {
      const task = await openTask(rig);
      assert.equal(task.token, token, 'the task reaches the same sandbox token');
      assert.equal((await call(rig, task.token)).status, 200);
      assert.equal(upstream.messages().length, 1);
      assert.equal(task.calls.length, 1);
      const meter = await rig.gateway.closeTask(task.taskId);
      assert.equal(meter.modelCalls, 1);
    } finally {
      end();
    }
  });

  test('a session whose sandbox went stops rehearsing with it', async () => {
    const end = rig.gateway.rehearse('s1');
    try {
      await rig.gateway.detachSession('s1');
      await rig.gateway.attachSession('s1', rig.dir);
      await rig.gateway.standbyToken('s1');
      const fresh = readFileSync(join(rig.dir, 'token'), 'utf8');
      assert.notEqual(fresh, token);
      assert.equal((await call(rig, fresh, { body: first })).status, 401);
    } finally {
      end();
    }
  });
});
