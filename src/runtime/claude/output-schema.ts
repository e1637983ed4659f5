/**
 * The output schema as Claude Code is given it. Claude Code compiles it with
 * a strict draft-07 Ajv, and exits at start on anything that Ajv does not know:
 * a draft 2020-12 `$schema` or keyword (prefixItems, unevaluatedProperties,
 * ...), an annotation such as `example` or `x-*`, a format it lacks. So it
 * gets a draft-07 rendering: 2020-12 keywords translated where draft-07 has an
 * equivalent, the rest dropped. Dropping only loosens Claude Code's own check:
 * the runner validates the answer against the caller's schema afterwards.
 */

const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';

/** Keywords Claude Code's draft-07 Ajv knows; any other makes it exit. */
const DRAFT07_KEYWORDS = new Set([
  '$id', '$schema', '$ref', '$comment', '$defs', 'definitions',
  'title', 'description', 'default', 'examples', 'readOnly', 'writeOnly', 'deprecated',
  'contentMediaType', 'contentEncoding', 'nullable',
  'type', 'enum', 'const', 'multipleOf', 'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum',
  'maxLength', 'minLength', 'pattern', 'format',
  'items', 'additionalItems', 'maxItems', 'minItems', 'uniqueItems', 'contains',
  'maxProperties', 'minProperties', 'required', 'properties', 'patternProperties', 'additionalProperties',
  'dependencies', 'propertyNames', 'if', 'then', 'else', 'allOf', 'anyOf', 'oneOf', 'not',
]);

/** The formats of ajv-formats, which Claude Code has; with another name its strict Ajv exits. */
const KNOWN_FORMATS = new Set([
  'date', 'time', 'date-time', 'iso-time', 'iso-date-time', 'duration', 'uri', 'uri-reference', 'uri-template',
  'url', 'email', 'hostname', 'ipv4', 'ipv6', 'regex', 'uuid', 'json-pointer', 'json-pointer-uri-fragment',
  'relative-json-pointer', 'byte', 'int32', 'int64', 'float', 'double', 'password', 'binary',
]);

/** Where a keyword's value holds subschemas (only these are walked: `const`, `enum`, `default` are data). */
const ONE_SCHEMA = new Set(['additionalProperties', 'propertyNames', 'contains', 'not', 'if', 'then', 'else', 'additionalItems']);
const SCHEMA_LIST = new Set(['allOf', 'anyOf', 'oneOf']);
const SCHEMA_MAP = new Set(['properties', 'patternProperties', '$defs', 'definitions']);

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function mapValues(value: unknown, draft2020: boolean): unknown {
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, render(v, draft2020)]));
}

function render(schema: unknown, draft2020: boolean): unknown {
  if (!isObject(schema)) return schema;
  const out: Record<string, unknown> = {};
  const dependencies: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$schema') {
      if (!draft2020) out[key] = value;
    } else if (draft2020 && key === 'prefixItems') {
      // 2020-12 prefixItems/items are draft-07's items (array form)/additionalItems.
      if (Array.isArray(value)) out.items = value.map((s) => render(s, draft2020));
      if ('items' in schema) out.additionalItems = render(schema.items, draft2020);
    } else if (draft2020 && key === 'items') {
      if (!('prefixItems' in schema)) out.items = render(value, draft2020);
    } else if (key === '$anchor') {
      // A plain-name fragment (Ajv resolves it in any draft), in draft-07 spelling.
      if (typeof value === 'string' && !('$id' in schema)) out.$id = `#${value}`;
    } else if (draft2020 && key === 'dependentRequired' && isObject(value)) {
      Object.assign(dependencies, value);
    } else if (draft2020 && key === 'dependentSchemas' && isObject(value)) {
      Object.assign(dependencies, mapValues(value, draft2020) as Record<string, unknown>);
    } else if (draft2020 && key === 'contains' && schema.minContains === 0) {
      // With minContains 0 it asks for nothing; draft-07's contains asks for one match.
    } else if (!DRAFT07_KEYWORDS.has(key)) {
      // Unknown to draft-07: an annotation, or a check Claude Code cannot make (the runner makes it).
    } else if (key === 'format') {
      if (typeof value === 'string' && KNOWN_FORMATS.has(value)) out[key] = value;
    } else if (key === 'items') {
      out[key] = Array.isArray(value) ? value.map((s) => render(s, draft2020)) : render(value, draft2020);
    } else if (key === 'dependencies' && isObject(value)) {
      for (const [name, dep] of Object.entries(value)) dependencies[name] = Array.isArray(dep) ? dep : render(dep, draft2020);
    } else if (ONE_SCHEMA.has(key)) {
      out[key] = render(value, draft2020);
    } else if (SCHEMA_LIST.has(key)) {
      out[key] = Array.isArray(value) ? value.map((s) => render(s, draft2020)) : value;
    } else if (SCHEMA_MAP.has(key)) {
      out[key] = mapValues(value, draft2020);
    } else {
      out[key] = value;
    }
  }
  if (Object.keys(dependencies).length > 0) out.dependencies = dependencies;
  return out;
}

/** The caller's schema in a form Claude Code accepts, no stricter than the original. */
export function claudeCodeOutputSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const declared = typeof schema.$schema === 'string' ? schema.$schema.replace(/#$/, '') : undefined;
  return render(schema, declared === DRAFT_2020_12) as Record<string, unknown>;
}
