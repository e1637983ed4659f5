/**
 * What the agent is told about its output, and what we make of what it
 * returns: the system prompt (AGENTS.md, plus OUTPUT.md when present), JSON
 * taken from its final text (fenced or bare), and JSON Schema checks with ajv.
 */
import { setFlagsFromString } from 'node:v8';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { RunnerError } from '../core/errors.ts';

const MAX_SCHEMA_BYTES = 64 * 1024;
const MAX_SCHEMA_DEPTH = 32;

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

const ajv = new Ajv({ allErrors: true, strict: false, code: { regExp: linearRegExp } });
const compiled = new WeakMap<object, ValidateFunction>();

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
    compiled.set(schema, ajv.compile(schema));
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
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
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
