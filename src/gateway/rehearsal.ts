/**
 * The rehearsal of a ready session's agent. A `claude` answers its first
 * message about 150 ms slower than the next ones (its first turn loads and
 * compiles what a turn runs, its first Bash call makes the shell snapshot).
 * So a ready session's agent, before anyone claims it, runs one turn whose
 * model calls the gateway answers itself, with a scripted answer: a Bash call
 * of `true`, then a short text. Nothing is forwarded, metered or counted: no
 * task is open, nobody pays, nothing leaves the machine. The runtime then
 * clears that conversation (src/runtime/claude/live-agent.ts).
 *
 * Owns: the scripted answer. Must not touch: tokens (the ledger says whether
 * a session rehearses), upstream calls.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, sendTurn } from '../scripted-model/respond.ts';
import { bash, text } from '../scripted-model/script.ts';
import type { MessagesRequest, Turn } from '../scripted-model/types.ts';
import { apiError, readBody, type ModelApiRoute } from './upstream.ts';

const NO_USAGE = { input_tokens: 0, output_tokens: 0 };

/** The answer to one call of the rehearsal: Bash first when the agent has it, then the end of the turn. */
export function rehearsalTurn(body: MessagesRequest): Turn {
  const last = body.messages?.at(-1);
  const afterTool = Array.isArray(last?.content) && last.content.some((block) => (block as { type?: string }).type === 'tool_result');
  const hasBash = body.tools?.some((tool) => (tool as { name?: string }).name === 'Bash') ?? false;
  return !afterTool && hasBash ? bash('true', { description: 'rehearsal', usage: NO_USAGE }) : text('Ready.', { usage: NO_USAGE });
}

/** Answers one model call of a rehearsing session, in the gateway. */
export async function answerRehearsal(req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, maxBody: number): Promise<void> {
  const raw = await readBody(req, maxBody, AbortSignal.timeout(30_000));
  if (raw === null) return;
  if (raw === 'too large') return apiError(res, 413, 'request_too_large', 'request body too large');
  let body: MessagesRequest;
  try {
    body = JSON.parse(raw.toString('utf8')) as MessagesRequest;
  } catch {
    return apiError(res, 400, 'invalid_request_error', 'claude-runner gateway: the body is not JSON');
  }
  if (!route.metered) return sendJson(res, 200, { input_tokens: 0 });
  await sendTurn(res, rehearsalTurn(body), typeof body.model === 'string' ? body.model : 'rehearsal', body.stream === true);
}
