// Scripts as JSON, for `PUT /_scripted/script` and `cli.ts --script`.
import { z } from 'zod';
import type { Rule, Turn } from './types.ts';

const usage = z.object({
  input_tokens: z.number().int().nonnegative(),
  output_tokens: z.number().int().nonnegative(),
  cache_creation_input_tokens: z.number().int().nonnegative().optional(),
  cache_read_input_tokens: z.number().int().nonnegative().optional(),
  cache_creation: z
    .object({ ephemeral_5m_input_tokens: z.number().int().nonnegative(), ephemeral_1h_input_tokens: z.number().int().nonnegative() })
    .optional(),
});

const block = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.string() }),
  z.object({ type: z.literal('thinking'), thinking: z.string(), signature: z.string().optional() }),
  z.object({ type: z.literal('tool_use'), name: z.string().min(1), input: z.unknown(), id: z.string().optional() }),
]);

const turnSchema = z.object({
  content: z.array(block).default([]),
  stopReason: z.enum(['end_turn', 'tool_use', 'max_tokens', 'stop_sequence', 'pause_turn', 'refusal']).optional(),
  usage: usage.optional(),
  delayMs: z.number().nonnegative().optional(),
  chunkDelayMs: z.number().nonnegative().optional(),
  error: z
    .object({ status: z.number().int().min(400).max(599), type: z.string().optional(), message: z.string().optional() })
    .optional(),
  malformed: z.boolean().optional(),
});

const match = z.union([z.string(), z.object({ regex: z.string(), flags: z.string().optional() })]);

const ruleSchema = z.object({
  name: z.string().optional(),
  match,
  turns: z.array(turnSchema).min(1),
  calls: z.enum(['main', 'side', 'any']).optional(),
});

const scriptSchema = z.object({
  rules: z.array(ruleSchema),
  defaultReply: turnSchema.optional(),
  sideReply: turnSchema.optional(),
});

export interface JsonScript {
  rules: Rule[];
  defaultReply?: Turn;
  sideReply?: Turn;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function toTurn(t: z.infer<typeof turnSchema>): Turn {
  return stripUndefined({ ...t, content: t.content.map((b) => stripUndefined(b)) }) as Turn;
}

/** Parses a JSON script (already JSON.parse'd); throws an Error with a readable message if invalid. */
export function parseJsonScript(value: unknown): JsonScript {
  // A bare array is the rules alone; parsing one object schema gives errors with paths.
  const parsed = scriptSchema.safeParse(Array.isArray(value) ? { rules: value } : value);
  if (!parsed.success) throw new Error(`invalid script: ${z.prettifyError(parsed.error)}`);
  const data = parsed.data;
  const rules: Rule[] = data.rules.map((r) => {
    const rule: Rule = {
      match: typeof r.match === 'string' ? r.match : new RegExp(r.match.regex, r.match.flags),
      turns: r.turns.map(toTurn),
    };
    if (r.name !== undefined) rule.name = r.name;
    if (r.calls !== undefined) rule.calls = r.calls;
    return rule;
  });
  const out: JsonScript = { rules };
  if (data.defaultReply) out.defaultReply = toTurn(data.defaultReply);
  if (data.sideReply) out.sideReply = toTurn(data.sideReply);
  return out;
}
