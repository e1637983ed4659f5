/**
 * The events a session streams, as one typed map. Names and fields of the seed
 * (connected, task_start, init, thinking, text, tool_start, tool_end,
 * task_complete, abort) are a contract and keep their shape; the rest are ours.
 * Every event but `connected` is stored in the session's log with a sequence
 * number that only increases, before anyone is sent it.
 */
import type { ErrorBody } from './errors.ts';
import type { InputQuestion } from './model.ts';
import type { TaskStatus } from './task-status.ts';

export interface EventPayloads {
  task_queued: { taskId: string; sessionId: string; position: number };
  task_start: { taskId: string; sessionId: string; resumed: boolean };
  /** The agent took the task: its model, the tools it may use, and Claude Code's conversation id. */
  init: { sessionId: string; model: string; tools: string[]; agentSessionId: string | null };
  /** Partial thinking, as it streams. */
  thinking: { text: string };
  /** Partial output text, as it streams. */
  text: { text: string };
  tool_start: { tool: string; input: unknown; toolUseId: string };
  /** `truncated`: the result was cut short (at 64 KiB). */
  tool_end: { tool: string; result: string; toolUseId: string; isError: boolean; truncated?: true };
  /** Tokens and cost of one model call, as metered. */
  usage: { model: string; inputTokens: number; outputTokens: number; costUsd: number };
  /** The network policy refused a connection of the sandbox (a tool's): where it wanted to go and why. `port` 0: unreadable. */
  egress_refused: { host: string; port: number; reason: string };
  /** The agent waits for a person: a question (AskUserQuestion) or a tool call to approve. POST /tasks/:taskId/input answers. */
  input_required: {
    taskId: string; requestId: string; kind: 'question' | 'permission';
    questions?: InputQuestion[]; tool?: string; input: unknown; expiresAt: string;
  };
  /** A person answered; the agent goes on. */
  input_received: {
    taskId: string; requestId: string; kind: 'question' | 'permission';
    answers?: Record<string, string>; decision?: 'allow' | 'deny';
  };
  task_complete: {
    taskId: string; output: unknown; cost: number; duration: number; tools: string[]; resumed: boolean;
  };
  task_error: { taskId: string; status: TaskStatus; error: ErrorBody; cost: number; duration: number };
  abort: { taskId: string };
  session_reset: Record<string, never>;
}

export type EventType = keyof EventPayloads;

export const storedEventTypes = [
  'task_queued', 'task_start', 'init', 'thinking', 'text', 'tool_start', 'tool_end', 'usage',
  'egress_refused', 'input_required', 'input_received', 'task_complete', 'task_error', 'abort', 'session_reset',
] as const satisfies readonly EventType[];

export interface NewEvent<T extends EventType = EventType> {
  sessionKey: string;
  taskId: string | null;
  type: T;
  data: EventPayloads[T];
}

export interface StoredEvent<T extends EventType = EventType> extends NewEvent<T> {
  seq: number;
  ts: number;
}
