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
import { z } from 'zod';
import { sendJson, sendTurn } from '../scripted-model/respond.ts';
import { bash, text } from '../scripted-model/script.ts';
import type { Turn } from '../scripted-model/types.ts';
import { apiError, readBody, type ModelApiRoute } from './upstream.ts';

const NO_USAGE = { input_tokens: 0, output_tokens: 0 };

/** What the rehearsal reads of a call; anything else in the body is ignored. */
const RehearsalCall = z.object({
  model: z.string().optional(),
  stream: z.boolean().optional(),
  messages: z.array(z.object({ role: z.string() })).optional(),
  tools: z.array(z.object({ name: z.string().optional() })).optional(),
});
type RehearsalCall = z.infer<typeof RehearsalCall>;

/** The answer to one call of the rehearsal: Bash first when the agent has it, then the end of the turn. */
function rehearsalTurn(call: RehearsalCall): Turn {
  // Once the model has answered, the turn ends: a reminder Claude Code adds (an output schema's) gets text, not another Bash call.
  const answered = call.messages?.some((message) => message.role === 'assistant') ?? false;
  const hasBash = call.tools?.some((tool) => tool.name === 'Bash') ?? false;
  return !answered && hasBash ? bash('true', { description: 'rehearsal', usage: NO_USAGE }) : text('Ready.', { usage: NO_USAGE });
}

/** Answers one model call of a rehearsing session, in the gateway. Never rejects. */
export async function answerRehearsal(req: IncomingMessage, res: ServerResponse, route: ModelApiRoute, maxBody: number): Promise<void> {
  try {
    const raw = await readBody(req, maxBody, AbortSignal.timeout(30_000));
    if (raw === null) return;
    if (raw === 'too large') return apiError(res, 413, 'request_too_large', 'request body too large');
    let call: RehearsalCall;
    try {
      call = RehearsalCall.parse(JSON.parse(raw.toString('utf8')));
    } catch {
      return apiError(res, 400, 'invalid_request_error', 'claude-runner gateway: not a Messages API request');
    }
    if (!route.metered) return sendJson(res, 200, { input_tokens: 0 });
    await sendTurn(res, rehearsalTurn(call), call.model ?? 'rehearsal', call.stream === true);
  } catch {
    apiError(res, 500, 'api_error', 'claude-runner gateway: the rehearsal could not answer');
  }
}
