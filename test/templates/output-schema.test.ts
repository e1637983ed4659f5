/**
 * Per-task output schemas end to end: checked at submit, read back from the
 * store as a new object at run time, validated against the agent's answer.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { filterRequests, rule, toolUse } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';

const withId = {
  $id: 'https://example.com/schemas/forecast.json',
  type: 'object',
  properties: { celsius: { type: 'number' }, sky: { type: 'string' } },
  required: ['celsius', 'sky'],
  additionalProperties: false,
};

const draft2020 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  properties: { pair: { type: 'array', prefixItems: [{ type: 'number' }, { type: 'string' }], items: false } },
  required: ['pair'],
};

describe('per-task outputSchema', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      rules: [
        rule('zq-forecast-with-id', toolUse('StructuredOutput', { celsius: 21.5, sky: 'clear' })),
        rule('zq-pair-2020', toolUse('StructuredOutput', { pair: [7, 'seven'] })),
        // The first answer breaks the tuple: Claude Code's own check must refuse it, and the model tries again.
        rule('zq-retry-2020', toolUse('StructuredOutput', { pair: ['seven', 7] }), toolUse('StructuredOutput', { pair: [8, 'eight'] })),
      ],
    });
  });
  after(async () => h?.close());

  test('a schema with an $id works task after task', async () => {
    for (const round of [1, 2]) {
      const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema-id', message: 'zq-forecast-with-id', outputSchema: withId } });
      assert.equal(res.status, 200, `task ${round}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.status, 'succeeded');
      assert.deepEqual(res.body.output, { celsius: 21.5, sky: 'clear' });
    }
    // A new session (a new agent process) with the same schema too.
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema-id-2', message: 'zq-forecast-with-id', outputSchema: withId } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, { celsius: 21.5, sky: 'clear' });
  });

  test('a draft 2020-12 schema is accepted and its answer validated', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'schema-2020', message: 'zq-pair-2020', outputSchema: draft2020 } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'succeeded');
    assert.deepEqual(res.body.output, { pair: [7, 'seven'] });

    const retried = await h.api('/task', { method: 'POST', json: { sessionId: 'schema-2020', message: 'zq-retry-2020', outputSchema: draft2020 } });
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.deepEqual(retried.body.output, { pair: [8, 'eight'] });
    // Two model calls: the refused tuple came back to the model as an error.
    const calls = filterRequests(h.model.requests, { kind: 'main', prompt: 'zq-retry-2020' });
    assert.equal(calls.length, 2);
    const results = (calls[1]!.body as { messages: Array<{ content: unknown }> }).messages
      .flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((b: { type?: string }) => b.type === 'tool_result');
    const last = results.at(-1);
    assert.equal(last.is_error, true, JSON.stringify(results));
    assert.match(String(last.content), /\/pair\/0: must be number/);
  });
});
