// Model prices, as Claude Code 2.1.332 (Agent SDK 0.3.332) prices usage for
// `total_cost_usd` / `modelUsage[m].costUSD`. Read from the CLI's own model
// catalog and checked against its figures (test/scripted-model): keep them in
// step when the SDK is upgraded, or metered cost and the CLI's cost diverge.
// Owns: prices and the cost of a usage. Must not touch: metering (the gateway's).

/** USD per million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
  /** 5-minute cache writes; also used when usage does not split cache writes. */
  cacheWrite: number;
  cacheWrite1h: number;
  cacheRead: number;
  /** Higher rates for a request whose prompt (input + cache write + cache read) is above `aboveTokens`. */
  longPrompt?: { aboveTokens: number } & Omit<ModelPrice, 'longPrompt'>;
}

/** USD per web search request (server tool). */
export const WEB_SEARCH_USD = 0.01;

/** The model Claude Code 2.1.332 uses when none is given (`opus` alias). */
export const DEFAULT_MODEL = 'claude-opus-5-5';

export const MODEL_PRICES: Readonly<Record<string, ModelPrice>> = Object.freeze({
  'claude-opus-5-5': { input: 4, output: 20, cacheWrite: 5, cacheWrite1h: 8, cacheRead: 0.2 },
  'claude-opus-5': { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 },
  'claude-opus-4-8': { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 },
  'claude-opus-4-7': { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 },
  'claude-opus-4-6': { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 },
  'claude-opus-4-5': { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 },
  'claude-opus-4-1': { input: 15, output: 75, cacheWrite: 18.75, cacheWrite1h: 30, cacheRead: 1.5 },
  'claude-opus-4-0': { input: 15, output: 75, cacheWrite: 18.75, cacheWrite1h: 30, cacheRead: 1.5 },
  'claude-sonnet-5-5': { input: 2, output: 10, cacheWrite: 2.5, cacheWrite1h: 4, cacheRead: 0.1 },
  'claude-sonnet-5': { input: 2, output: 10, cacheWrite: 2.5, cacheWrite1h: 4, cacheRead: 0.2 },
  'claude-sonnet-4-6': { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
  'claude-sonnet-4-5': { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
  'claude-sonnet-4-0': { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
  'claude-3-7-sonnet': { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
  'claude-3-5-sonnet': { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
  'claude-haiku-5-5': {
    input: 0.1, output: 0.5, cacheWrite: 0.125, cacheWrite1h: 0.2, cacheRead: 0.01,
    longPrompt: { aboveTokens: 100_000, input: 0.5, output: 2.5, cacheWrite: 0.625, cacheWrite1h: 1, cacheRead: 0.05 },
  },
  'claude-haiku-4-5': { input: 1, output: 5, cacheWrite: 1.25, cacheWrite1h: 2, cacheRead: 0.1 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cacheWrite: 1, cacheWrite1h: 1.6, cacheRead: 0.08 },
  'claude-fable-5-2': { input: 8, output: 40, cacheWrite: 10, cacheWrite1h: 16, cacheRead: 0.2 },
  'claude-fable-5-1': { input: 10, output: 50, cacheWrite: 12.5, cacheWrite1h: 20, cacheRead: 0.25 },
  'claude-fable-5': { input: 10, output: 50, cacheWrite: 12.5, cacheWrite1h: 20, cacheRead: 1 },
  'claude-mythos-5-2': { input: 8, output: 40, cacheWrite: 10, cacheWrite1h: 16, cacheRead: 0.2 },
  'claude-mythos-5-1': { input: 10, output: 50, cacheWrite: 12.5, cacheWrite1h: 20, cacheRead: 0.25 },
  'claude-mythos-5': { input: 10, output: 50, cacheWrite: 12.5, cacheWrite1h: 20, cacheRead: 1 },
});

/** Usage as the Messages API reports it (extra fields are ignored). */
export interface ApiUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation?: { ephemeral_5m_input_tokens?: number | null; ephemeral_1h_input_tokens?: number | null } | null;
  server_tool_use?: { web_search_requests?: number | null } | null;
}

/** Usage as the SDK's `modelUsage` and the project's TokenUsage spell it. */
export interface CamelUsage {
  inputTokens?: number | null;
  outputTokens?: number | null;
  cacheCreationInputTokens?: number | null;
  cacheReadInputTokens?: number | null;
  cacheCreationEphemeral1hInputTokens?: number | null;
  webSearchRequests?: number | null;
}

export type UsageLike = ApiUsage | CamelUsage;

function counts(u: UsageLike) {
  if ('inputTokens' in u || 'outputTokens' in u || 'cacheReadInputTokens' in u || 'cacheCreationInputTokens' in u) {
    const c = u as CamelUsage;
    return {
      input: c.inputTokens ?? 0,
      output: c.outputTokens ?? 0,
      cacheWrite: c.cacheCreationInputTokens ?? 0,
      cacheWrite1h: c.cacheCreationEphemeral1hInputTokens ?? 0,
      cacheRead: c.cacheReadInputTokens ?? 0,
      searches: c.webSearchRequests ?? 0,
    };
  }
  const a = u as ApiUsage;
  return {
    input: a.input_tokens ?? 0,
    output: a.output_tokens ?? 0,
    cacheWrite: a.cache_creation_input_tokens ?? 0,
    cacheWrite1h: a.cache_creation?.ephemeral_1h_input_tokens ?? 0,
    cacheRead: a.cache_read_input_tokens ?? 0,
    searches: a.server_tool_use?.web_search_requests ?? 0,
  };
}

/**
 * Canonical id of a model name: drops `[1m]`, provider prefixes
 * (`us.anthropic.`), Vertex `@date`, Bedrock `-v1:0` and `-YYYYMMDD` dates.
 */
export function canonicalModel(model: string): string {
  return model
    .trim()
    .toLowerCase()
    .replace(/\[1m\]$/, '')
    .replace(/^(?:[a-z]{2,4}\.)?anthropic\./, '')
    .replace(/-v\d+(?::\d+)?$/, '')
    .replace(/@\d{8}$/, '')
    .replace(/-\d{8}$/, '');
}

/** The price of a model, or undefined if it is not a known Claude model. */
export function priceFor(model: string): ModelPrice | undefined {
  return MODEL_PRICES[model] ?? MODEL_PRICES[canonicalModel(model)];
}

/**
 * Cost in USD of one request's usage (API snake_case or camelCase counts).
 * Like the CLI, an unknown model is priced at DEFAULT_MODEL's rates (check
 * `priceFor` first to tell). The long-prompt rate applies per request, so
 * price each request's usage, not a sum over requests.
 */
export function priceUsage(model: string, usage: UsageLike): number {
  const base = priceFor(model) ?? MODEL_PRICES[DEFAULT_MODEL]!;
  const { input, output, cacheWrite, cacheWrite1h, cacheRead, searches } = counts(usage);
  const write1h = Math.min(cacheWrite, cacheWrite1h);
  const prompt = input + cacheWrite + cacheRead;
  const p = base.longPrompt && prompt > base.longPrompt.aboveTokens ? base.longPrompt : base;
  return (
    (input * p.input + output * p.output + (cacheWrite - write1h) * p.cacheWrite + write1h * p.cacheWrite1h + cacheRead * p.cacheRead) /
      1_000_000 +
    searches * WEB_SEARCH_USD
  );
}
