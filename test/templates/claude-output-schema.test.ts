/**
 * The output schema Claude Code is given (src/runtime/claude/output-schema.ts):
 * its strict draft-07 Ajv must compile it, and it must never refuse an answer
 * the runner's own check (the caller's schema) accepts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { claudeCodeOutputSchema } from '../../src/runtime/claude/output-schema.ts';
import { checkUserSchema, validateOutput } from '../../src/templates/output.ts';

const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';

/** Like Claude Code's: draft-07, strict about keywords, with the formats of ajv-formats. */
function strictDraft07(): Ajv {
  return new Ajv({ strict: true, strictTypes: false, strictTuples: false, strictRequired: false, logger: false, formats: { email: true } });
}

function runnerAccepts(schema: Record<string, unknown>, value: unknown): boolean {
  try {
    validateOutput(schema, value);
    return true;
  } catch {
    return false;
  }
}

test('a draft 2020-12 schema becomes its draft-07 equivalent', () => {
  const schema = {
    $schema: DRAFT_2020_12,
    type: 'object',
    properties: {
      pair: { type: 'array', prefixItems: [{ type: 'number' }, { $ref: '#/$defs/word' }], items: false },
      list: { type: 'array', items: { type: 'string' } },
      tag: { $ref: '#tag' },
    },
    dependentRequired: { pair: ['list'] },
    dependentSchemas: { list: { required: ['tag'] } },
    $defs: { word: { type: 'string', minLength: 1 }, tag: { $anchor: 'tag', enum: ['a', 'b'] } },
    unevaluatedProperties: false,
  };
  assert.deepEqual(claudeCodeOutputSchema(schema), {
    type: 'object',
    properties: {
      pair: { type: 'array', items: [{ type: 'number' }, { $ref: '#/$defs/word' }], additionalItems: false },
      list: { type: 'array', items: { type: 'string' } },
      tag: { $ref: '#tag' },
    },
    dependencies: { pair: ['list'], list: { required: ['tag'] } },
    $defs: { word: { type: 'string', minLength: 1 }, tag: { $id: '#tag', enum: ['a', 'b'] } },
  });
  const validate = strictDraft07().compile(claudeCodeOutputSchema(schema));
  checkUserSchema(schema);
  const answers = [
    { pair: [1, 'one'], list: ['x'], tag: 'a' },
    { pair: [1], list: [], tag: 'b' },
    { pair: ['one', 1], list: ['x'], tag: 'a' },
    { pair: [1, 'one', 'extra'], list: ['x'], tag: 'a' },
    { pair: [1, ''], list: ['x'], tag: 'a' },
    { pair: [1, 'one'] },
    { list: ['x'] },
    { list: [], tag: 'c' },
    { extra: true },
  ];
  // Same verdicts, but for what draft-07 cannot say (unevaluatedProperties): there Claude Code is looser.
  assert.deepEqual(answers.map((a) => runnerAccepts(schema, a)), [true, true, false, false, false, false, false, false, false]);
  assert.deepEqual(answers.map((a) => validate(a)), [true, true, false, false, false, false, false, false, true]);
});

test('keywords and formats Claude Code does not know are left out; data is left alone', () => {
  const schema = {
    type: 'object',
    'x-internal': true,
    example: { a: 1 },
    properties: {
      a: { type: 'string', format: 'email', examples: ['x@example.com'] },
      b: { type: 'string', format: 'phone' },
      c: { const: { prefixItems: 1, 'x-data': 2 }, default: { example: 3 } },
    },
    required: ['a'],
  };
  assert.deepEqual(claudeCodeOutputSchema(schema), {
    type: 'object',
    properties: {
      a: { type: 'string', format: 'email', examples: ['x@example.com'] },
      b: { type: 'string' },
      c: { const: { prefixItems: 1, 'x-data': 2 }, default: { example: 3 } },
    },
    required: ['a'],
  });
  strictDraft07().compile(claudeCodeOutputSchema(schema));
  // A draft-07 schema that draft-07 fully knows is passed as it is.
  const plain = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'array', items: [{ type: 'number' }], additionalItems: false, contains: { const: 1 } };
  assert.deepEqual(claudeCodeOutputSchema(plain), plain);
});

test('2020-12 contains with minContains 0 asks for nothing, so Claude Code does not check it', () => {
  const schema = { $schema: DRAFT_2020_12, type: 'array', contains: { type: 'number' }, minContains: 0, maxContains: 2 };
  assert.deepEqual(claudeCodeOutputSchema(schema), { type: 'array' });
  assert.deepEqual(claudeCodeOutputSchema({ ...schema, minContains: 1 }), { type: 'array', contains: { type: 'number' } });
});
