/**
 * Scripted model: a local HTTP server that speaks enough of the Anthropic
 * Messages API to drive the real Claude Code CLI (and the Agent SDK) with no
 * API key and no network, deterministically. For offline demos and for
 * deterministic tests of agents. See README.md in this folder.
 * Owns: a Messages API stand-in. Must not touch: the runner (it is an
 * upstream like any other; the runner does not know it is scripted).
 *
 *   const model = await startScriptedModel({
 *     rules: [rule('list files', bash('ls'), text('Here they are.'))],
 *   });
 *   // run claude with ANTHROPIC_BASE_URL=model.url ANTHROPIC_API_KEY=anything
 *   //   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 CLAUDE_CODE_MAX_RETRIES=0
 *
 * How a request is answered (stateless: safe for many sessions at once):
 * - prompt = text of the last `user` message that has text of its own
 *   (`<system-reminder>` blocks removed; tool_result-only messages skipped);
 * - turn index = number of assistant turns after that message;
 * - the first rule whose `match` (substring or RegExp) hits the prompt answers
 *   with `turns[index]`; past the end it answers a fixed end_turn text that
 *   names the rule, so a script that runs out is visible and never loops;
 * - no rule: `defaultReply` (default `Echo: <prompt>`);
 * - CLI side requests (forks for compaction or prompt suggestions, told
 *   apart by their CLI-written prompt) only match rules with
 *   `calls: 'side' | 'any'`, else get `sideReply`.
 * Default usage per turn: DEFAULT_USAGE (100 input, 20 output tokens); the
 * default side reply reports SIDE_USAGE (zero), so side calls cost nothing.
 *
 * HTTP: POST /v1/messages (SSE or JSON), POST /v1/messages/count_tokens,
 * GET|DELETE /_scripted/requests, PUT /_scripted/script, GET /_scripted/health.
 */
export { startScriptedModel, filterRequests, countTokens } from './server.ts';
export type { ScriptedModel, ScriptedModelOptions, SetRulesOptions } from './server.ts';
export {
  DEFAULT_USAGE,
  SIDE_USAGE,
  bash,
  echoReply,
  errorTurn,
  malformedTurn,
  rule,
  sideReply,
  text,
  toolUse,
  turn,
  usageOf,
  withThinking,
} from './script.ts';
export type { Classifier, FullUsage, TurnOptions } from './script.ts';
export { parseJsonScript } from './script-json.ts';
export type { JsonScript } from './script-json.ts';
export { SIDE_PROMPT_MARKERS, detectSideCall, readConversation, stripReminders } from './conversation.ts';
export type * from './types.ts';
