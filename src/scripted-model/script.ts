// Rules, turn builders and the choice of the turn that answers a request.
import { readConversation } from './conversation.ts';
import type { Conversation } from './conversation.ts';
import type {
  MessagesRequest,
  Rule,
  ScriptBlock,
  StopReason,
  Turn,
  TurnContext,
  TurnError,
  TurnSpec,
  Usage,
} from './types.ts';

export type FullUsage = Required<Omit<Usage, 'cache_creation'>> & Pick<Usage, 'cache_creation'>;

/** Usage reported for a turn that sets none: fixed, so cost is predictable. */
export const DEFAULT_USAGE: Readonly<FullUsage> = Object.freeze({
  input_tokens: 100,
  output_tokens: 20,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
});

export type TurnOptions = Omit<Turn, 'content'>;

export function turn(content: ScriptBlock[], opts: TurnOptions = {}): Turn {
  return { ...opts, content };
}

export function text(t: string, opts: TurnOptions = {}): Turn {
  return turn([{ type: 'text', text: t }], opts);
}

export function toolUse(name: string, input: unknown, opts: TurnOptions & { id?: string; text?: string } = {}): Turn {
  const { id, text: preface, ...rest } = opts;
  const block: ScriptBlock = id === undefined ? { type: 'tool_use', name, input } : { type: 'tool_use', name, input, id };
  return turn(preface === undefined ? [block] : [{ type: 'text', text: preface }, block], rest);
}

/** A call of Claude Code's `Bash` tool. */
export function bash(command: string, opts: TurnOptions & { id?: string; text?: string; description?: string } = {}): Turn {
  const { description, ...rest } = opts;
  return toolUse('Bash', { command, description: description ?? command }, rest);
}

/** Prepends a thinking block to a turn. */
export function withThinking(thinking: string, t: Turn): Turn {
  return { ...t, content: [{ type: 'thinking', thinking }, ...t.content] };
}

export function errorTurn(status: number, message?: string, type?: string): Turn {
  const error: TurnError = { status };
  if (message !== undefined) error.message = message;
  if (type !== undefined) error.type = type;
  return { content: [], error };
}

export function malformedTurn(): Turn {
  return { content: [], malformed: true };
}

export function rule(match: string | RegExp, ...turns: TurnSpec[]): Rule {
  return { match, turns };
}

export function stopReasonOf(t: Turn): StopReason {
  return t.stopReason ?? (t.content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn');
}

/** A turn's usage; fields it leaves out come from DEFAULT_USAGE. */
export function usageOf(t: Turn): FullUsage {
  return { ...DEFAULT_USAGE, ...t.usage };
}

/** The reply when no rule matches a main request: echoes the prompt. */
export const echoReply: TurnSpec = (ctx) => text(`Echo: ${ctx.prompt}`);

/** Usage of the default side reply: zero, so side calls never change a scripted task's cost. */
export const SIDE_USAGE: Readonly<Usage> = Object.freeze({ input_tokens: 0, output_tokens: 0 });

/**
 * The reply to a CLI side request that no rule claims: a `<summary>` for
 * compaction (the CLI keeps what is inside the tags), an empty suggestion
 * (the CLI then shows none), a fixed text otherwise; all with SIDE_USAGE.
 */
export const sideReply: TurnSpec = (ctx) => {
  const usage = { ...SIDE_USAGE };
  if (ctx.side === 'compact') return text('<summary>Scripted summary of the conversation so far.</summary>', { usage });
  if (ctx.side === 'prompt_suggestion') return text('', { usage });
  return text('Scripted side reply.', { usage });
};

/** Tells CLI side requests from the agent loop: a side kind, or undefined for main. */
export type Classifier = (body: MessagesRequest, prompt: string) => string | undefined;

export interface Script {
  rules: Rule[];
  defaultReply: TurnSpec;
  sideReply: TurnSpec;
  classify: Classifier;
}

export interface Resolution {
  turn: Turn;
  /** Rule name, `default`, or `side:<kind>`. */
  rule: string;
  exhausted: boolean;
  /** Side kind (`compact`, `prompt_suggestion`...), undefined for the agent loop. */
  side: string | undefined;
  conversation: Conversation;
}

export function ruleName(r: Rule, index: number): string {
  return r.name ?? `rule#${index}`;
}

function matches(r: Rule, prompt: string): boolean {
  if (typeof r.match === 'string') return prompt.includes(r.match);
  r.match.lastIndex = 0; // a /g or /y regex is stateful; test synchronously from 0
  return r.match.test(prompt);
}

async function materialize(spec: TurnSpec, ctx: TurnContext): Promise<Turn> {
  return typeof spec === 'function' ? await spec(ctx) : spec;
}

export async function resolveTurn(
  script: Script,
  body: MessagesRequest,
  headers: TurnContext['headers'],
): Promise<Resolution> {
  const conversation = readConversation(body);
  const side = script.classify(body, conversation.prompt);
  const ctx: TurnContext = {
    body,
    model: String(body.model ?? ''),
    prompt: conversation.prompt,
    turnIndex: conversation.turnIndex,
    lastToolResult: conversation.lastToolResult,
    toolResults: conversation.toolResults,
    headers,
    side,
  };
  const wanted = side !== undefined ? 'side' : 'main';
  for (let i = 0; i < script.rules.length; i++) {
    const r = script.rules[i]!;
    const calls = r.calls ?? 'main';
    if (calls !== 'any' && calls !== wanted) continue;
    if (!matches(r, conversation.prompt)) continue;
    const name = ruleName(r, i);
    const spec = r.turns[conversation.turnIndex];
    if (spec === undefined) {
      // Past the end of a script: finish the task visibly instead of looping.
      const t = text(`[scripted-model] rule "${name}" has no turn ${conversation.turnIndex}.`);
      return { turn: t, rule: name, exhausted: true, side, conversation };
    }
    return { turn: await materialize(spec, ctx), rule: name, exhausted: false, side, conversation };
  }
  const fallback = side !== undefined ? script.sideReply : script.defaultReply;
  const fallbackName = side !== undefined ? `side:${side}` : 'default';
  return { turn: await materialize(fallback, ctx), rule: fallbackName, exhausted: false, side, conversation };
}
