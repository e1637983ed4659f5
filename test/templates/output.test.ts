/** Output schemas: compiled once per schema text, bounded, draft-07 or 2020-12. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { RunnerError } from '../../src/core/errors.ts';
import { cachedValidatorCount, checkUserSchema, MAX_CACHED_VALIDATORS, validateOutput } from '../../src/templates/output.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const isCode = (code: string) => (error: RunnerError) => error.code === code;

/** A fresh object each call, as the store hands a task's options back. */
const withId = () => ({
  $id: 'https://example.com/schemas/answer.json',
  type: 'object',
  properties: { answer: { type: 'number' }, next: { $ref: 'https://example.com/schemas/answer.json' } },
  required: ['answer'],
});

test('a schema with $id is checked at submit and validated again from another object', () => {
  checkUserSchema(withId());
  validateOutput(withId(), { answer: 1, next: { answer: 2 } });
  assert.throws(() => validateOutput(withId(), { answer: 'one' }), isCode('OUTPUT_INVALID'));
  assert.throws(() => validateOutput(withId(), { answer: 1, next: { answer: 'two' } }), isCode('OUTPUT_INVALID'), 'the $ref to its own $id resolves');
  // The next submit of the same schema is accepted too.
  assert.deepEqual(checkUserSchema(withId()), withId());
});

test('schemas that share an $id but differ are each compiled and used as written', () => {
  const a = { $id: 'https://example.com/schemas/shared.json', type: 'number' };
  const b = { $id: 'https://example.com/schemas/shared.json', type: 'string' };
  checkUserSchema(a);
  checkUserSchema(b);
  validateOutput({ ...a }, 1);
  validateOutput({ ...b }, 'x');
  assert.throws(() => validateOutput({ ...a }, 'x'), isCode('OUTPUT_INVALID'));
  assert.throws(() => validateOutput({ ...b }, 1), isCode('OUTPUT_INVALID'));
});

test('10 000 distinct schemas: the cache stays bounded and compiled schemas are freed', async () => {
  const firstWithId = () => ({ $id: 'https://example.com/schemas/first.json', type: 'object', properties: { first: { type: 'string' } } });
  let first: object[] | undefined = [firstWithId(), { type: 'object', properties: { firstWithoutId: { type: 'string' } } }];
  const refs = first.map((schema) => new WeakRef(schema));
  for (const schema of first) checkUserSchema(schema);
  first = undefined;
  for (let i = 0; i < 10_000; i++) {
    const schema = { type: 'object', properties: { [`p${i}`]: { type: 'integer', minimum: i } }, required: [`p${i}`] };
    checkUserSchema(schema);
    validateOutput({ ...schema }, { [`p${i}`]: i });
  }
  assert.equal(cachedValidatorCount(), MAX_CACHED_VALIDATORS);
  assert.ok(MAX_CACHED_VALIDATORS <= 1000, `MAX_CACHED_VALIDATORS is ${MAX_CACHED_VALIDATORS}`);
  // Nothing (the cache, Ajv's own caches and code scope) holds the first schemas any more.
  await new Promise(setImmediate);
  gc();
  assert.deepEqual(refs.map((ref) => ref.deref()), [undefined, undefined], 'the first schemas compiled are still held');
  // A schema pushed out of the cache compiles again (with its $id) when it comes back.
  checkUserSchema(firstWithId());
  assert.throws(() => validateOutput(firstWithId(), { first: 1 }), isCode('OUTPUT_INVALID'));
});

test('a draft 2020-12 schema validates by 2020-12 rules; other schemas keep draft-07', () => {
  const tuple = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'array',
    prefixItems: [{ type: 'number' }, { type: 'string' }],
    items: false,
  };
  checkUserSchema(tuple);
  validateOutput(tuple, [1, 'one']);
  validateOutput(tuple, [1]);
  assert.throws(() => validateOutput(tuple, ['one', 1]), isCode('OUTPUT_INVALID'));
  assert.throws(() => validateOutput(tuple, [1, 'one', 'extra']), isCode('OUTPUT_INVALID'));
  // With the trailing '#' of the usual spelling too.
  validateOutput({ ...tuple, $schema: 'https://json-schema.org/draft/2020-12/schema#' }, [2, 'two']);

  // Draft-07 (no $schema, or draft-07's): array `items` is the tuple form, prefixItems means nothing.
  const draft07 = { type: 'array', items: [{ type: 'number' }], additionalItems: false };
  checkUserSchema(draft07);
  validateOutput(draft07, [1]);
  assert.throws(() => validateOutput(draft07, [1, 2]), isCode('OUTPUT_INVALID'));
  validateOutput({ $schema: 'http://json-schema.org/draft-07/schema#', prefixItems: [{ type: 'number' }] }, ['not checked']);
  // The 2020-12 instance refuses draft-07's array form of `items`.
  assert.throws(() => checkUserSchema({ ...draft07, $schema: 'https://json-schema.org/draft/2020-12/schema' }), isCode('INVALID_SCHEMA'));
});

test('2020-12 schemas run patterns on the linear-time engine too', () => {
  const schema = checkUserSchema({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'string', pattern: '^(a+)+$' });
  const started = performance.now();
  assert.throws(() => validateOutput(schema, `${'a'.repeat(100_000)}!`), isCode('OUTPUT_INVALID'));
  assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`);
  validateOutput(schema, 'aaaa');
  for (const pattern of ['(a)\\1', '(?=a)a', '^\\p{L}+$']) {
    assert.throws(() => checkUserSchema({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'string', pattern }), isCode('INVALID_SCHEMA'), pattern);
  }
});
