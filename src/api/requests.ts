/**
 * What callers send: bodies, query strings and headers of the API, as zod
 * schemas. The routes validate with them, the OpenAPI document is generated
 * from them and the client's types are inferred from them: one source.
 */
import { z } from 'zod';

export const SessionId = z.string().min(1).max(128)
  .describe('Your id for the end user: a letter or digit, then letters, digits and `_ . @ : + = -`, at most 128 in all (else 400 INVALID_SESSION_ID).');

export const SubmitTaskBody = z.object({
  sessionId: SessionId,
  message: z.string().min(1).max(200_000).describe('What the agent is asked to do.'),
  context: z.string().max(200_000).optional().describe('Extra context given with the message (the seed\'s field).'),
  env: z.record(z.string(), z.unknown()).optional()
    .describe('Variables for the agent\'s tools for this task only: sealed at rest, redacted from events and logs.'),
  agent: z.string().min(1).max(128).optional().describe('The agent template; the session\'s own (or "default") when absent.'),
  wait: z.boolean().default(true).describe('true (the seed\'s behaviour): answer when the task ends; false: answer 202 at once.'),
  model: z.string().min(1).max(200).optional()
    .describe('The model for this task: one of the template\'s `models` in runner.json (400 OVERRIDE_NOT_ALLOWED otherwise).'),
  maxTurns: z.number().int().positive().max(1000).optional()
    .describe('Lowers the template\'s (or the operator\'s) limit; a value above it is 400 OVERRIDE_NOT_ALLOWED.'),
  budgetUsd: z.number().positive().max(10_000).optional(),
  timeoutMs: z.number().int().positive().max(24 * 3_600_000).optional(),
  outputSchema: z.record(z.string(), z.unknown()).optional().describe('A JSON Schema the output must match (structured output).'),
  webhookUrl: z.string().max(2048).optional()
    .describe('An absolute http(s) URL POSTed a signed Standard Webhooks message when the task ends (docs/webhooks.md); the template\'s default when absent. Needs WEBHOOK_SECRET; private addresses are refused (400 WEBHOOK_TARGET_NOT_ALLOWED).'),
}).strict().meta({ id: 'SubmitTaskBody' });

export const StreamTokenBody = z.object({
  sessionId: SessionId.optional().describe('Limit the token to this session\'s streams.'),
  ttlSeconds: z.number().int().min(10).max(3600).default(300),
}).strict().meta({ id: 'StreamTokenBody' });

/** ?limit=&cursor= of a paginated list. */
export function pageQuery(defaultLimit: number, maxLimit: number) {
  return z.object({
    limit: z.coerce.number().int().min(1).max(maxLimit).default(defaultLimit).describe(`Items per page, at most ${maxLimit}.`),
    cursor: z.string().max(500).optional().describe('The `nextCursor` (or `x-next-cursor` header) of the previous page.'),
  });
}

export const SessionsPageQuery = pageQuery(100, 500);
export const TasksPageQuery = pageQuery(50, 200);

export const IdempotencyKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
  .describe('A retried POST /task with the same key and body answers the first task instead of queueing another.');

/** Where a stream resumes: the last `seq` the client saw (digits; empty means "not given"). */
export const AfterSeq = z.string().regex(/^(\d{1,15})?$/, 'a sequence number (0 or more)')
  .describe('Resume after this seq: the stream sends the events after it (and a `gap` frame for any dropped by retention).');

/** The headers a POST /task may carry (others pass through untouched). */
export const SubmitTaskHeaders = z.looseObject({
  'idempotency-key': IdempotencyKey.optional(),
});

/** The headers of an SSE request: an EventSource resends the last id it saw when it reconnects. */
export const SseHeaders = z.looseObject({
  'last-event-id': AfterSeq.optional().describe('Sent by EventSource on reconnect: the same as ?after= (the header wins).'),
});

/** A stream's query; its `token` (a stream token, for browsers) is a security scheme of the document. */
export const StreamQuery = z.object({ after: AfterSeq.optional() });

export const FileListQuery = z.object({
  path: z.string().optional().describe('A folder of the workspace to list (default: its root).'),
});

export type SubmitTaskInput = z.input<typeof SubmitTaskBody>;
export type StreamTokenInput = z.input<typeof StreamTokenBody>;

/** POST /tasks/:taskId/input: a person's answer to what the task's agent waits for. */
export const TaskInputBody = z.object({
  requestId: z.string().min(1).max(100).describe('The `requestId` of the `input_required` event (or of the task\'s `pendingInput`).'),
  answers: z.record(z.string(), z.string().max(10_000)).optional()
    .describe('For a question: `{questionText: answer}`, one per question asked; the answer is an option\'s label, several labels joined by ", " (multiSelect), or free text.'),
  decision: z.enum(['allow', 'deny']).optional().describe('For a tool call waiting for approval.'),
  message: z.string().max(2_000).optional().describe('With `decision: "deny"`: why, told to the agent.'),
}).strict().refine((body) => (body.answers === undefined) !== (body.decision === undefined), {
  message: 'give either `answers` (a question) or `decision` (a tool call), not both',
  path: ['answers'],
}).meta({ id: 'TaskInputBody' });

export type TaskInputInput = z.input<typeof TaskInputBody>;
