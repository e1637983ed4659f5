/**
 * Row shapes of the store's tables (as kysely sees them), the same in every
 * dialect, and the mapping between rows and domain records. Times are integer
 * epoch ms (SQLite integer, PostgreSQL bigint read back as a number), money is
 * a double (REAL, double precision), nested values are JSON text, booleans
 * are 0/1.
 */
import type { Generated, Insertable, Kysely, Selectable } from 'kysely';
import type { ErrorBody } from '../core/errors.ts';
import type { EventType, StoredEvent } from '../core/events.ts';
import type { PendingInput, Session, SessionSummary, Task, TaskOptions, TokenUsage } from '../core/model.ts';
import type { NodeRecord } from '../core/ports/store.ts';
import type { TaskStatus } from '../core/task-status.ts';

export interface SessionsTable {
  key: string;
  tenant_id: string;
  id: string;
  agent: string;
  agent_session_id: string | null;
  turns: number;
  total_cost_usd: number;
  created_at: number;
  last_activity_at: number;
  /** When a task of the session was last claimed (0 = never): the fairness key. */
  last_served_at: Generated<number>;
  /** Highest event seq ever assigned; survives trimming and reset so seqs are never reused. */
  last_event_seq: Generated<number>;
  /** The node that runs the session's tasks and holds its sandbox (null: none, any node may claim it). */
  owner_node: string | null;
}

export interface TasksTable {
  /** Insertion order (rowid alias): breaks ties between tasks created in the same ms. */
  seq: Generated<number>;
  id: string;
  session_key: string;
  tenant_id: string;
  session_id: string;
  status: TaskStatus;
  message: string;
  context: string | null;
  sealed_env: string | null;
  options: string;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  runner_id: string | null;
  cost_usd: number | null;
  duration_ms: number | null;
  tools: string;
  output: string | null;
  error: string | null;
  resumed: number | null;
  usage: string | null;
  /** JSON PendingInput[] while the task waits for a person (it is `awaiting_input` then, `running` in this column's row). */
  pending_input: string | null;
}

export interface EventsTable {
  session_key: string;
  seq: number;
  task_id: string | null;
  type: EventType;
  data: string;
  ts: number;
}

export interface WebhookDeliveriesTable {
  task_id: string;
  url: string;
  webhook_id: string | null;
  type: string | null;
  body: string | null;
  status: Generated<'pending' | 'delivered' | 'failed'>;
  attempts: Generated<number>;
  next_attempt_at: Generated<number>;
}

export interface WebhookAttemptsTable {
  task_id: string;
  n: number;
  at: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface NodesTable {
  id: string;
  address: string;
  started_at: number;
  lease_expires_at: number;
  data_dir_mark: string;
}

export interface Database {
  nodes: NodesTable;
  sessions: SessionsTable;
  tasks: TasksTable;
  events: EventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}

export type Db = Kysely<Database>;
export type SessionRow = Selectable<SessionsTable>;
export type TaskRow = Selectable<TasksTable>;
export type EventRow = Selectable<EventsTable>;
export type NodeRow = Selectable<NodesTable>;

function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** JSON text, or NULL for null/undefined (so `output: undefined` reads back as null). */
export function toJson(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

export function toSession(row: SessionRow): Session {
  return {
    key: row.key,
    tenantId: row.tenant_id,
    id: row.id,
    agent: row.agent,
    agentSessionId: row.agent_session_id,
    turns: row.turns,
    totalCostUsd: row.total_cost_usd,
    createdAt: row.created_at,
    lastActivityAt: row.last_activity_at,
  };
}

export function toSummary(row: SessionRow & { queued: number | string | bigint; running: number | string | bigint }): SessionSummary {
  return { ...toSession(row), queued: Number(row.queued), running: Number(row.running) };
}

export function sessionToRow(s: Session): Insertable<SessionsTable> {
  return {
    key: s.key,
    tenant_id: s.tenantId,
    id: s.id,
    agent: s.agent,
    agent_session_id: s.agentSessionId,
    turns: s.turns,
    total_cost_usd: s.totalCostUsd,
    created_at: s.createdAt,
    last_activity_at: s.lastActivityAt,
  };
}

export function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    sessionKey: row.session_key,
    tenantId: row.tenant_id,
    sessionId: row.session_id,
    status: row.status === 'running' && row.pending_input !== null ? 'awaiting_input' : row.status,
    message: row.message,
    context: row.context,
    sealedEnv: row.sealed_env,
    options: parseJson<TaskOptions>(row.options) ?? {},
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    runnerId: row.runner_id,
    costUsd: row.cost_usd,
    durationMs: row.duration_ms,
    tools: parseJson<string[]>(row.tools) ?? [],
    output: parseJson<unknown>(row.output),
    error: parseJson<ErrorBody>(row.error),
    resumed: row.resumed === null ? null : row.resumed !== 0,
    usage: parseJson<TokenUsage>(row.usage),
    pendingInput: parseJson<PendingInput[]>(row.pending_input) ?? [],
  };
}

export function taskToRow(t: Task): Insertable<TasksTable> {
  return {
    id: t.id,
    session_key: t.sessionKey,
    tenant_id: t.tenantId,
    session_id: t.sessionId,
    // awaiting_input is stored as running with its pending input (migration 004).
    status: t.status === 'awaiting_input' ? 'running' : t.status,
    message: t.message,
    context: t.context,
    sealed_env: t.sealedEnv,
    options: JSON.stringify(t.options ?? {}),
    idempotency_key: t.idempotencyKey,
    request_hash: t.requestHash,
    created_at: t.createdAt,
    started_at: t.startedAt,
    finished_at: t.finishedAt,
    runner_id: t.runnerId,
    cost_usd: t.costUsd,
    duration_ms: t.durationMs,
    tools: JSON.stringify(t.tools ?? []),
    output: toJson(t.output),
    error: toJson(t.error),
    resumed: t.resumed === null ? null : t.resumed ? 1 : 0,
    usage: toJson(t.usage),
    pending_input: t.pendingInput?.length ? JSON.stringify(t.pendingInput) : null,
  };
}

export function toEvent(row: EventRow): StoredEvent {
  return {
    sessionKey: row.session_key,
    seq: row.seq,
    taskId: row.task_id,
    type: row.type,
    data: JSON.parse(row.data) as StoredEvent['data'],
    ts: row.ts,
  };
}

export function toNode(row: NodeRow): NodeRecord {
  return {
    id: row.id,
    address: row.address,
    startedAt: row.started_at,
    leaseExpiresAt: row.lease_expires_at,
    dataDirMark: row.data_dir_mark,
  };
}

export function nodeToRow(node: NodeRecord): NodeRow {
  return {
    id: node.id,
    address: node.address,
    started_at: node.startedAt,
    lease_expires_at: node.leaseExpiresAt,
    data_dir_mark: node.dataDirMark,
  };
}
