/**
 * The records the domain works with. Plain data: no behaviour, no storage or
 * transport concerns. Times are epoch milliseconds.
 *
 * src/core owns the domain's vocabulary (records, errors, statuses, events)
 * and the ports adapters implement. It must import nothing outside itself.
 */
import type { ErrorBody } from './errors.ts';
import type { TaskStatus } from './task-status.ts';

export interface Session {
  /** Internal key, unique forever: names the sandbox, the data folders and the event log. */
  key: string;
  tenantId: string;
  /** The id callers use; unique within a tenant. */
  id: string;
  /** Name of the agent template the session was created from. */
  agent: string;
  /** Claude Code's conversation id, used to resume the conversation. */
  agentSessionId: string | null;
  /** Tasks that reached the model and ended (the seed's `turns`). */
  turns: number;
  totalCostUsd: number;
  createdAt: number;
  lastActivityAt: number;
}

export interface SessionSummary extends Session {
  queued: number;
  running: number;
}

export interface TaskOptions {
  maxTurns?: number;
  budgetUsd?: number;
  timeoutMs?: number;
  /** The model for this task: one of its template's `models` (checked at submit). */
  model?: string;
  /** A JSON Schema for this task's output, in place of the template's. */
  outputSchema?: Record<string, unknown>;
  /** Where the task's end is POSTed (its own webhookUrl or its template's webhook), fixed at submit. */
  webhookUrl?: string;
}

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheCreationInputTokens: number;
  cacheReadInputTokens: number;
}

export function emptyUsage(): TokenUsage {
  return { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
}

export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
    cacheReadInputTokens: a.cacheReadInputTokens + b.cacheReadInputTokens,
  };
}

export interface Task {
  id: string;
  sessionKey: string;
  tenantId: string;
  sessionId: string;
  status: TaskStatus;
  message: string;
  context: string | null;
  /** The task's `env`, sealed (encrypted) so that it never rests in clear; erased when the task ends. */
  sealedEnv: string | null;
  options: TaskOptions;
  idempotencyKey: string | null;
  /** Fingerprint of the request body, to tell a retry from a different request under the same key. */
  requestHash: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** Runner instance that holds the task while it runs. */
  runnerId: string | null;
  costUsd: number | null;
  durationMs: number | null;
  tools: string[];
  output: unknown;
  error: ErrorBody | null;
  resumed: boolean | null;
  usage: TokenUsage | null;
  /** What the agent waits for a person to answer (status awaiting_input); empty otherwise. */
  pendingInput: PendingInput[];
}

export interface InputQuestion {
  question: string;
  header: string;
  options: Array<{ label: string; description: string }>;
  multiSelect: boolean;
}

/** A question the agent asked, or a tool call waiting for a person's approval. */
export interface PendingInput {
  requestId: string;
  kind: 'question' | 'permission';
  /** kind question: what the agent asks, with its choices. */
  questions?: InputQuestion[];
  /** kind permission: the tool the agent wants to call. */
  tool?: string;
  /** The tool call's input, as the agent gave it. */
  input: unknown;
  askedAt: number;
  expiresAt: number;
}

/** A person's answer: the chosen label(s) or free text per question, or a decision on a tool call. */
export type InputAnswer =
  | { kind: 'question'; answers: Record<string, string> }
  | { kind: 'permission'; decision: 'allow' | 'deny'; message?: string };

/** What a new task is made of; everything else starts empty. */
export type NewTask = Pick<Task, 'id' | 'sessionKey' | 'tenantId' | 'sessionId' | 'message' | 'context' | 'sealedEnv' | 'options' | 'idempotencyKey' | 'requestHash' | 'createdAt'>;

/** A task as it is submitted: queued, not started, nothing spent. */
export function queuedTask(init: NewTask): Task {
  return {
    ...init,
    status: 'queued',
    startedAt: null,
    finishedAt: null,
    runnerId: null,
    costUsd: null,
    durationMs: null,
    tools: [],
    output: null,
    error: null,
    resumed: null,
    usage: null,
    pendingInput: [],
  };
}

export interface Page<T> {
  items: T[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export const DEFAULT_TENANT = 'default';

/**
 * Public ids (sessions, tenants): URL path segments and container labels,
 * never file names (folders are named by internal keys). "@", ":", "+" and "="
 * let products use an email or a "tenant:user" id as is.
 */
export const PUBLIC_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@:+=-]{0,127}$/;

export function isValidPublicId(value: unknown): value is string {
  return typeof value === 'string' && PUBLIC_ID_PATTERN.test(value);
}
