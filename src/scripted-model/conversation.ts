// Reads a Messages API request the way a script needs it: which prompt is being
// answered and how far into it we are. Everything is derived from the request
// alone, so the server keeps no per-session state.
import type { MessageParam, MessagesRequest, ToolResultInfo } from './types.ts';

const REMINDER = /<system-reminder>[\s\S]*?<\/system-reminder>/g;

export interface Conversation {
  prompt: string;
  /** Index of the prompt message in `messages`, -1 if there is none. */
  promptIndex: number;
  turnIndex: number;
  toolResults: ToolResultInfo[];
  lastToolResult: string | undefined;
}

/** The CLI wraps user text with `<system-reminder>` blocks; they are not the user's words. */
export function stripReminders(text: string): string {
  return text.replace(REMINDER, '').trim();
}

function blocks(m: MessageParam): Array<{ type: string; [k: string]: unknown }> {
  return typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : Array.isArray(m.content) ? m.content : [];
}

function userText(m: MessageParam): string {
  return blocks(m)
    .filter((b) => b.type === 'text' && typeof b.text === 'string')
    .map((b) => stripReminders(b.text as string))
    .filter((t) => t !== '')
    .join('\n');
}

export function toolResultText(block: { [k: string]: unknown }): string {
  const c = block.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c
      .filter((x): x is { type: 'text'; text: string } => x?.type === 'text' && typeof x.text === 'string')
      .map((x) => x.text)
      .join('\n');
  }
  return '';
}

export function readConversation(body: MessagesRequest): Conversation {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  // The prompt is the last user message with real text; tool_result-only
  // messages (possibly carrying reminders) continue the same prompt.
  let promptIndex = -1;
  let prompt = '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role !== 'user') continue;
    const t = userText(m);
    if (t !== '') {
      promptIndex = i;
      prompt = t;
      break;
    }
  }

  // Count assistant turns, not messages: a turn split into consecutive
  // assistant messages (or interleaved `system` ones) still counts once.
  let turnIndex = 0;
  let inAssistantRun = false;
  const toolResults: ToolResultInfo[] = [];
  for (let i = promptIndex + 1; i < messages.length; i++) {
    const m = messages[i]!;
    if (m.role === 'assistant') {
      if (!inAssistantRun) turnIndex++;
      inAssistantRun = true;
    } else if (m.role === 'user') {
      inAssistantRun = false;
      for (const b of blocks(m)) {
        if (b.type === 'tool_result') {
          toolResults.push({ toolUseId: String(b.tool_use_id ?? ''), text: toolResultText(b), isError: b.is_error === true });
        }
      }
    }
  }

  let lastToolResult: string | undefined;
  for (let i = messages.length - 1; i >= 0 && lastToolResult === undefined; i--) {
    const m = messages[i]!;
    if (m.role !== 'user') continue;
    const results = blocks(m).filter((b) => b.type === 'tool_result');
    if (results.length > 0) lastToolResult = toolResultText(results[results.length - 1]!);
  }

  return { prompt, promptIndex, turnIndex, toolResults, lastToolResult };
}

/**
 * Prompts that Claude Code itself writes when it forks the conversation for
 * its own purposes. These forks carry the same tools and history as the agent
 * loop, so only the prompt tells them apart. Seen with CLI 2.1.332.
 */
export const SIDE_PROMPT_MARKERS: ReadonlyArray<{ kind: string; prefix: string }> = [
  { kind: 'prompt_suggestion', prefix: '[SUGGESTION MODE:' }, // SDK option promptSuggestions
  { kind: 'compact', prefix: 'CRITICAL: Respond with TEXT ONLY' }, // /compact and auto-compaction
];

/** Returns the kind of CLI side request (`compact`, `prompt_suggestion`), or undefined for the agent loop. */
export function detectSideCall(_body: MessagesRequest, prompt: string): string | undefined {
  return SIDE_PROMPT_MARKERS.find((m) => prompt.startsWith(m.prefix))?.kind;
}
