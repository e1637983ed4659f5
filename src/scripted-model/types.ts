// Types of the scripted model: scripts (rules and turns) and the request log.

export type StopReason = 'end_turn' | 'tool_use' | 'max_tokens' | 'stop_sequence' | 'pause_turn' | 'refusal';

export type TextBlock = { type: 'text'; text: string };
/** `signature` defaults to a fixed fake value; the CLI sends it back verbatim. */
export type ThinkingBlock = { type: 'thinking'; thinking: string; signature?: string };
/** `id` defaults to a fresh `toolu_...` id (ids must be unique in a conversation). */
export type ToolUseBlock = { type: 'tool_use'; name: string; input: unknown; id?: string };
export type ScriptBlock = TextBlock | ThinkingBlock | ToolUseBlock;

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
  /** Split of cache writes by TTL; the CLI prices 1h writes higher. */
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
}

export interface TurnError {
  /** HTTP status, e.g. 500, 529, 429, 400. */
  status: number;
  /** Anthropic error type; defaults from the status (500 → api_error, 529 → overloaded_error, ...). */
  type?: string;
  message?: string;
}

/** One model response. */
export interface Turn {
  content: ScriptBlock[];
  /** Defaults to `tool_use` when content has a tool_use block, else `end_turn`. */
  stopReason?: StopReason;
  /** Defaults to DEFAULT_USAGE (see usage.ts). */
  usage?: Usage;
  /** Wait this long before answering (headers included). */
  delayMs?: number;
  /** Wait this long between SSE events, so streaming is observable and tasks can be aborted mid-turn. */
  chunkDelayMs?: number;
  /** Answer with this HTTP error and an Anthropic-style JSON error body instead of a message. */
  error?: TurnError;
  /** Send a broken response: a message_start, then garbage, then cut the connection. */
  malformed?: boolean;
}

export interface ToolResultInfo {
  toolUseId: string;
  text: string;
  isError: boolean;
}

/** What a function turn gets to build its answer from. */
export interface TurnContext {
  /** The parsed request body. */
  body: MessagesRequest;
  /** The request's `model`. */
  model: string;
  /** Text of the prompt message, `<system-reminder>` blocks removed. */
  prompt: string;
  /** 0 for the first answer to the prompt, 1 after the first tool round trip, ... */
  turnIndex: number;
  /** Text of the last tool_result in the conversation, if any. */
  lastToolResult: string | undefined;
  /** All tool results after the prompt, oldest first. */
  toolResults: ToolResultInfo[];
  /** Lower-cased request headers. */
  headers: Record<string, string | string[] | undefined>;
  /** Kind of CLI side request (`compact`, `prompt_suggestion`), undefined for the agent loop. */
  side: string | undefined;
}

export type TurnFn = (ctx: TurnContext) => Turn | Promise<Turn>;
export type TurnSpec = Turn | TurnFn;

/** Which requests a rule may answer; see README ("Main and side requests"). */
export type CallKind = 'main' | 'side' | 'any';

export interface Rule {
  /** Shown in the request log; defaults to `rule#<index>`. */
  name?: string;
  /** Substring (case-sensitive) or regex tested against the prompt text. */
  match: string | RegExp;
  turns: TurnSpec[];
  /** Default `main`: CLI side requests (compaction, prompt suggestions) skip the rule. */
  calls?: CallKind;
}

export interface MessageParam {
  role: string;
  content: string | Array<{ type: string; [k: string]: unknown }>;
}

export interface MessagesRequest {
  model?: string;
  messages?: MessageParam[];
  system?: unknown;
  tools?: unknown[];
  stream?: boolean;
  max_tokens?: number;
  [k: string]: unknown;
}

export type RequestKind = 'main' | 'side' | 'count_tokens' | 'control' | 'other';

export interface RecordedRequest {
  /** 1, 2, 3... in arrival order. */
  seq: number;
  time: string;
  method: string;
  /** Path with query string, e.g. `/v1/messages?beta=true`. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, or the raw text if it was not JSON. */
  body: unknown;
  kind: RequestKind;
  /** For kind `side`: `compact`, `prompt_suggestion`, ... */
  side?: string;
  model?: string;
  prompt?: string;
  /** Name of the rule that answered, or `default` / `side:<kind>` for the fallback replies. */
  rule?: string;
  turnIndex?: number;
  /** The rule had no turn at `turnIndex`; the exhausted reply was sent. */
  exhausted?: boolean;
  status?: number;
  stream?: boolean;
}

export interface RequestFilter {
  kind?: RequestKind;
  rule?: string;
  path?: string;
  /** Substring or regex of the prompt. */
  prompt?: string | RegExp;
}
