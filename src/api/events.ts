/**
 * The frames of the live streams (WS /stream/:sessionId, SSE), as zod
 * schemas: one per stored event type of src/core/events.ts (the `satisfies`
 * below fails to compile when one is missing) and the transport frames.
 * docs/events.md explains them for people.
 */
import { z } from 'zod';
import type { EventType } from '../core/events.ts';
import { ErrorBodySchema, InputQuestionSchema, TaskStatusSchema } from './responses.ts';

const stored = <T extends EventType, S extends z.ZodRawShape>(type: T, fields: S, description: string) =>
  z.object({
    type: z.literal(type),
    seq: z.number().int().positive().describe('Per-session sequence number: resume after it.'),
    taskId: z.string().nullable(),
    ts: z.string().describe('When it was stored (ISO 8601)'),
    ...fields,
  }).describe(description).meta({ id: `Event_${type}` });

export const storedEventSchemas = {
  task_queued: stored('task_queued', { sessionId: z.string(), position: z.number().int() }, 'The task was accepted; `position`: queued tasks of the session before it.'),
  task_start: stored('task_start', { sessionId: z.string(), resumed: z.boolean() }, 'The task left the queue and starts.'),
  init: stored('init', { sessionId: z.string(), model: z.string(), tools: z.array(z.string()), agentSessionId: z.string().nullable() }, 'The agent took the task.'),
  thinking: stored('thinking', { text: z.string() }, 'Partial thinking, as it streams.'),
  text: stored('text', { text: z.string() }, 'Partial output text, as it streams: the frames of a turn concatenate to its text.'),
  tool_start: stored('tool_start', { tool: z.string(), input: z.unknown(), toolUseId: z.string() }, 'The agent calls a tool.'),
  tool_end: stored('tool_end', { tool: z.string(), result: z.string(), toolUseId: z.string(), isError: z.boolean(), truncated: z.literal(true).optional() }, 'A tool\'s result (cut at 64 KiB: truncated).'),
  usage: stored('usage', { model: z.string(), inputTokens: z.number(), outputTokens: z.number(), costUsd: z.number() }, 'One model call, metered.'),
  egress_refused: stored('egress_refused', { host: z.string(), port: z.number().int(), reason: z.string() }, 'The network policy refused a connection of the sandbox.'),
  input_required: stored('input_required', {
    requestId: z.string(), kind: z.enum(['question', 'permission']),
    questions: z.array(InputQuestionSchema).optional().describe('kind question: what the agent asks (AskUserQuestion).'),
    tool: z.string().optional().describe('kind permission: the tool the agent wants to call.'),
    input: z.unknown().describe('The tool call\'s input.'),
    expiresAt: z.string().describe('When the task ends unanswered (INPUT_TIMEOUT_MS), ISO 8601.'),
  }, 'The agent waits for a person: answer with POST /tasks/:taskId/input. The task is awaiting_input until then.'),
  input_received: stored('input_received', {
    requestId: z.string(), kind: z.enum(['question', 'permission']),
    answers: z.record(z.string(), z.string()).optional(), decision: z.enum(['allow', 'deny']).optional(),
  }, 'A person answered; the agent goes on.'),
  task_complete: stored('task_complete', { output: z.unknown(), cost: z.number(), duration: z.number(), tools: z.array(z.string()), resumed: z.boolean() }, 'The task succeeded: its last event.'),
  task_error: stored('task_error', { status: TaskStatusSchema, error: ErrorBodySchema, cost: z.number(), duration: z.number() }, 'The task ended otherwise: its last event.'),
  abort: stored('abort', {}, 'The task was aborted; a task_error follows.'),
  session_reset: stored('session_reset', {}, 'The session was reset to a clean state.'),
} satisfies Record<EventType, z.ZodObject>;

export const ConnectedFrameSchema = z.object({
  type: z.literal('connected'),
  sessionId: z.string(),
  busy: z.boolean().optional().describe('Session streams: a task is running (the seed\'s field).'),
  turns: z.number().int().optional().describe('Session streams: the seed\'s field.'),
  lastSeq: z.number().int().optional().describe('Session streams: the last seq stored.'),
  taskId: z.string().optional().describe('Task streams.'),
  status: TaskStatusSchema.optional().describe('Task streams.'),
  after: z.number().int().describe('The stream goes on with the events after this seq.'),
}).describe('The first frame of a stream; not stored, no seq.').meta({ id: 'Frame_connected' });

export const GapFrameSchema = z.object({
  type: z.literal('gap'),
  fromSeq: z.number().int(),
  toSeq: z.number().int(),
}).describe('Events fromSeq..toSeq were dropped by retention before this client read them.').meta({ id: 'Frame_gap' });

export const ErrorFrameSchema = z.object({
  type: z.literal('error'),
  error: ErrorBodySchema,
}).describe('SSE only: the stream failed on the server; it then ends.').meta({ id: 'Frame_error' });

const storedList = Object.values(storedEventSchemas) as unknown as [z.ZodObject, ...z.ZodObject[]];
export const EventFrameSchema = z.discriminatedUnion('type', storedList).meta({ id: 'Event' });
export const StreamFrameSchema = z.discriminatedUnion('type', [...storedList, ConnectedFrameSchema, GapFrameSchema, ErrorFrameSchema]).meta({ id: 'StreamFrame' });

export type EventFrame = { [T in EventType]: z.infer<(typeof storedEventSchemas)[T]> }[EventType];
export type EventFrameOf<T extends EventType> = z.infer<(typeof storedEventSchemas)[T]>;
export type ConnectedFrame = z.infer<typeof ConnectedFrameSchema>;
export type GapFrame = z.infer<typeof GapFrameSchema>;
export type ErrorFrame = z.infer<typeof ErrorFrameSchema>;
export type StreamFrame = EventFrame | ConnectedFrame | GapFrame | ErrorFrame;
