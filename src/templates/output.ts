/**
 * What the agent is told about its output, and what we make of what it
 * returns: the system prompt (AGENTS.md, plus OUTPUT.md when present), JSON
 * taken from its final text (fenced or bare), and JSON Schema checks with ajv.
 */
import { setFlagsFromString } from 'node:v8';
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { LRUCache } from 'lru-cache';
import { RunnerError } from '../core/errors.ts';

const MAX_SCHEMA_BYTES = 64 * 1024;
const MAX_SCHEMA_DEPTH = 32;
/** Compiled validators kept; a caller may send a new schema with every task. */
export const MAX_CACHED_VALIDATORS = 100;
const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';

// A caller's `pattern` runs on the runner's event loop: a backtracking one
// ("^(a+)+$") could freeze every tenant. V8's linear-time engine (flag `l`)
// cannot backtrack; patterns it cannot run (backreferences, lookarounds) are
// refused when the schema compiles.
setFlagsFromString('--enable-experimental-regexp-engine');

function linearRegExp(pattern: string): RegExp {
  // Without the `u` flag (the linear engine does not take it) \p{...} would silently mean something else.
  if (/\\[pP]\{/.test(pattern)) throw new Error(`pattern ${pattern}: Unicode property escapes (\\p{...}) are not supported`);
  return new RegExp(pattern, 'l');
}
linearRegExp.code = 'linearRegExp';

const AJV_OPTIONS: Options = { allErrors: true, strict: false, code: { regExp: linearRegExp } };
/**
 * Instances shared by many callers' schemas never register a schema under its
 * $id: the same schema compiled again (after a restart or an eviction), or
 * another caller's schema with the same $id, would then throw "already exists".
 */
const SHARED_OPTIONS: Options = { ...AJV_OPTIONS, addUsedSchema: false };

function newAjv(draft2020: boolean, options: Options): Ajv | Ajv2020 {
  return draft2020 ? new Ajv2020(options) : new Ajv(options);
}

/** Draft 2020-12 when the schema says so, draft-07 (Ajv's default) otherwise. */
function isDraft2020(schema: Record<string, unknown>): boolean {
  return typeof schema.$schema === 'string' && schema.$schema.replace(/#$/, '') === DRAFT_2020_12;
}

/**
 * Shared Ajv instances of one generation. An instance keeps every schema it
 * ever compiled (its code scope holds them; removeSchema does not free that),
 * so a generation compiles at most MAX_CACHED_VALIDATORS schemas, then a new
 * one starts: an old generation is freed once its validators leave the cache.
 */
class AjvGeneration {
  compiles = 0;
  private draft07: Ajv | Ajv2020 | undefined;
  private draft2020: Ajv | Ajv2020 | undefined;

  instanceFor(draft2020: boolean): Ajv | Ajv2020 {
    this.compiles += 1;
    if (draft2020) return (this.draft2020 ??= newAjv(true, SHARED_OPTIONS));
    return (this.draft07 ??= newAjv(false, SHARED_OPTIONS));
  }
}

interface CachedValidator {
  validate: ValidateFunction;
  ajv: Ajv | Ajv2020;
}

/**
 * Least recently used first out; keyed by the schema's JSON text, so a copy
 * read back from the store hits. An evicted validator's schema leaves its
 * Ajv instance with it.
 */
const validators = new LRUCache<string, CachedValidator>({
  max: MAX_CACHED_VALIDATORS,
  dispose: (entry, _key, reason) => {
    if (reason === 'evict') entry.ajv.removeSchema(entry.validate.schema);
  },
});
let generation = new AjvGeneration();

function compile(schema: Record<string, unknown>): CachedValidator {
  const draft2020 = isDraft2020(schema);
  // A $ref to the schema's own $id resolves only when the $id is registered:
  // such a schema gets an instance of its own (a few ms), freed with its validator.
  if (typeof schema.$id === 'string') {
    const ajv = newAjv(draft2020, AJV_OPTIONS);
    return { validate: ajv.compile(schema), ajv };
  }
  if (generation.compiles >= MAX_CACHED_VALIDATORS) generation = new AjvGeneration();
  const ajv = generation.instanceFor(draft2020);
  try {
    return { validate: ajv.compile(schema), ajv };
  } catch (error) {
    // Ajv caches a schema before compiling it: drop what a failed compile left.
    ajv.removeSchema(schema);
    throw error;
  }
}

function validatorFor(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  const hit = validators.get(key);
  if (hit) return hit.validate;
  const entry = compile(schema);
  validators.set(key, entry);
  return entry.validate;
}

/** How many compiled validators are cached (bounded by MAX_CACHED_VALIDATORS). */
export function cachedValidatorCount(): number {
  return validators.size;
}

function depthOf(value: unknown, limit: number, depth = 0): number {
  if (depth > limit || value === null || typeof value !== 'object') return depth;
  let max = depth;
  for (const item of Object.values(value)) max = Math.max(max, depthOf(item, limit, depth + 1));
  return max;
}

/** Accepts a JSON Schema from a template or a caller only if it is small, shallow and compiles. */
export function checkUserSchema(schema: unknown): Record<string, unknown> {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new RunnerError('INVALID_SCHEMA', 'The output schema must be a JSON object.');
  }
  const size = Buffer.byteLength(JSON.stringify(schema));
  if (size > MAX_SCHEMA_BYTES) throw new RunnerError('INVALID_SCHEMA', `The output schema is ${size} bytes; the limit is ${MAX_SCHEMA_BYTES}.`);
  if (depthOf(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH) {
    throw new RunnerError('INVALID_SCHEMA', `The output schema nests deeper than ${MAX_SCHEMA_DEPTH} levels.`);
  }
  try {
    validatorFor(schema as Record<string, unknown>);
  } catch (error) {
    throw new RunnerError('INVALID_SCHEMA', `The output schema does not compile: ${(error as Error).message}`);
  }
  return schema as Record<string, unknown>;
}

function formatErrors(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
}

/** Throws OUTPUT_INVALID with ajv's messages when the value does not match. */
export function validateOutput(schema: Record<string, unknown>, value: unknown): void {
  const validate = validatorFor(schema);
  if (!validate(value)) {
    const messages = formatErrors(validate.errors);
    throw new RunnerError('OUTPUT_INVALID', `The agent output does not match the output schema: ${messages.join('; ')}`, { errors: messages });
  }
}

export function buildSystemPrompt(agentsMd: string, outputMd: string | null): string {
  if (outputMd === null) return agentsMd.trim();
  return [
    agentsMd.trim(),
    '# Output format',
    'Your final message must be a single JSON object, as described below, and nothing else.',
    outputMd.trim(),
  ].join('\n\n');
}

/** The JSON object in an agent's final text: the whole text, a fenced block, or the outermost braces. */
export function extractJson(text: string): unknown {
  const trimmed = text.trim();
  const attempts = [trimmed];
  for (const match of trimmed.matchAll(/```(?:json|JSON)?\s*\n([\s\S]*?)```/g)) attempts.push(match[1]!.trim());
  const first = trimmed.indexOf('{');
  const last = trimmed.lastIndexOf('}');
  if (first !== -1 && last > first) attempts.push(trimmed.slice(first, last + 1));
  for (const candidate of attempts) {
    try {
      return JSON.parse(candidate);
    } catch {
      // try the next shape
    }
  }
  return undefined;
}

/**
 * The task's `output`, by the seed's rules: with OUTPUT.md, the JSON object
 * the agent returned; without, `{ response: text }`. With a schema, the
 * structured output the SDK collected, validated.
 */
export function shapeOutput(
  text: string,
  structured: unknown,
  template: { outputMd: string | null },
  schema: Record<string, unknown> | null,
): unknown {
  if (schema !== null) {
    const value = structured !== undefined ? structured : extractJson(text);
    if (value === undefined) {
      throw new RunnerError('OUTPUT_INVALID', 'The agent returned no structured output.', { text });
    }
    validateOutput(schema, value);
    return value;
  }
  if (template.outputMd !== null) {
    const value = extractJson(text);
    if (value === undefined || value === null || typeof value !== 'object') {
      throw new RunnerError('OUTPUT_INVALID', 'The agent did not answer with a JSON object, as OUTPUT.md asks.', { text });
    }
    return value;
  }
  return { response: text };
}
