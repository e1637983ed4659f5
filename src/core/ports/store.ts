/**
 * The store port: everything the domain keeps durably. Adapters live in
 * src/store/<dialect>/; only src/app.ts picks one. Every method that changes
 * more than one row is atomic. Methods never throw HTTP errors: they throw
 * RunnerError with a domain code (QUEUE_FULL, IDEMPOTENCY_CONFLICT, ...).
 */
import type { ErrorBody } from '../errors.ts';
import type { NewEvent, StoredEvent } from '../events.ts';
import type { Page, PendingInput, Session, SessionSummary, Task, TokenUsage } from '../model.ts';
import type { FinalTaskStatus } from '../task-status.ts';

export interface PageRequest {
  limit: number;
  cursor?: string | null;
}

export interface TaskOutcome {
  status: FinalTaskStatus;
  finishedAt: number;
  costUsd: number;
  durationMs: number;
  tools: string[];
  output: unknown;
  error: ErrorBody | null;
  resumed: boolean;
  usage: TokenUsage | null;
}

/** What a task's end changes on its session (its cost is counted call by call, see recordTaskSpend). */
export interface SessionActivity {
  /** A model call was made: one more turn of the conversation. */
  turn: boolean;
  /** The conversation to resume next; kept when undefined, cleared when null. */
  agentSessionId?: string | null;
}

export interface EventBounds {
  /** Lowest sequence number still stored (0 when none is). */
  firstSeq: number;
  /** Highest sequence number ever assigned in this session (0 when none was). */
  lastSeq: number;
}

/** A runner process sharing the database (several nodes: src/cluster). */
export interface NodeRecord {
  id: string;
  /** Its host name and configured API port (for operators; nodes never call each other). */
  address: string;
  startedAt: number;
  /** The node is alive until then; it renews the lease with heartbeats. */
  leaseExpiresAt: number;
  /** A random value the node also wrote to DATA_DIR/nodes/<id>: other nodes check they see it (a shared DATA_DIR). */
  dataDirMark: string;
}

/** What taking over a node whose lease expired changed. */
export interface NodeTakeover {
  nodeId: string;
  /** Its tasks that were running, as they were; they are `interrupted` now. */
  interrupted: Task[];
  /** The sessions it owned; they have no owner now. */
  releasedSessions: string[];
}

export interface RetentionPolicy {
  maxEventsPerSession: number;
  maxEventAgeMs: number;
}

export interface Store {
  close(): Promise<void>;

  // ── sessions ──────────────────────────────────────────────────────────
  findSession(tenantId: string, id: string): Promise<Session | undefined>;
  getSessionByKey(key: string): Promise<Session | undefined>;
  /**
   * Inserts the session unless (tenantId, id) exists, in which case the stored
   * one is returned with created=false. Throws SESSION_LIMIT_REACHED when a new
   * session would pass maxSessions (counted over all tenants).
   */
  createSession(session: Session, limits: { maxSessions: number }): Promise<{ session: Session; created: boolean }>;
  /** Sessions of one tenant (all tenants when null), newest first (a stable order, for paging). */
  listSessions(tenantId: string | null, page: PageRequest): Promise<Page<SessionSummary>>;
  summarizeSession(key: string): Promise<SessionSummary | undefined>;
  /** Back to a fresh start: no conversation, no turns. Tasks, events and the cost spent stay. */
  resetSession(key: string, at: number): Promise<void>;
  /** Removes the session with its tasks and events. */
  deleteSession(key: string): Promise<void>;
  /** Sessions with no task queued or running whose last activity is older than `before`. */
  listIdleSessions(before: number): Promise<Session[]>;
  listAllSessionKeys(): Promise<string[]>;

  // ── tasks ─────────────────────────────────────────────────────────────
  /**
   * Adds a queued task. With an idempotency key already used in the same
   * session, returns that task with created=false (IDEMPOTENCY_CONFLICT when
   * its requestHash differs). Throws QUEUE_FULL when the session already has
   * maxQueued queued tasks.
   */
  enqueueTask(task: Task, limits: { maxQueued: number }): Promise<{ task: Task; created: boolean }>;
  getTask(id: string): Promise<Task | undefined>;
  /** A session's tasks, newest first. */
  listTasks(sessionKey: string, page: PageRequest): Promise<Page<Task>>;
  /** Number of queued tasks of the session created before this one (0 = next to run). */
  queuePosition(task: Task): Promise<number>;
  countRunningTasks(): Promise<number>;
  /** Tasks queued, of every session (metrics: queue depth). */
  countQueuedTasks(): Promise<number>;
  /** The session's oldest task still queued or running, if any. */
  oldestUnfinishedTask(sessionKey: string): Promise<Task | undefined>;
  /**
   * Claims up to `limit` tasks to run, atomically: for each session with no
   * running task, its oldest queued task; sessions served least recently go
   * first (ties: oldest queued task first; "oldest" is createdAt, then submit
   * order). Claimed tasks become running, owned by runnerId, with startedAt=now.
   * Sessions are sticky: only sessions owned by runnerId or by no node are
   * claimed, and a claimed session becomes runnerId's. Safe when several
   * nodes claim at once: never two running tasks in one session.
   */
  claimTasks(runnerId: string, limit: number, now: number): Promise<Task[]>;
  /**
   * Adds one model call's spend to a running task and to its session's total,
   * atomically, as the call ends: a task cut short by a crash still shows what
   * it spent; a call metered after its end still counts. Does nothing for a
   * task that never started.
   */
  recordTaskSpend(taskId: string, spend: { costUsd: number; usage: TokenUsage }): Promise<void>;
  /**
   * What a running task waits for a person to answer: while not empty the task
   * reads as `awaiting_input`; empty, `running` again. Nothing for a task that ended.
   */
  setPendingInput(taskId: string, pending: PendingInput[]): Promise<void>;
  /** Adds a tool to a running task's list of tools used (kept once, in first-use order). */
  recordTaskTool(taskId: string, tool: string): Promise<void>;
  /**
   * Ends a running task owned by runnerId and records its end on the session,
   * in one transaction: the session gets the activity, and whatever of the
   * outcome's cost the recorded spend lacks. Returns false when the task is
   * not running here; when it was ended elsewhere meanwhile (interrupted,
   * aborted), the session still gets the activity and the task its whole
   * cost. Erases sealedEnv.
   */
  finishTask(taskId: string, runnerId: string, outcome: TaskOutcome, session: SessionActivity): Promise<boolean>;
  /** Ends queued tasks as aborted: one task, or all of a session. Returns the ids ended. */
  abortQueuedTasks(target: { sessionKey: string } | { taskId: string }, error: ErrorBody, now: number): Promise<string[]>;
  /** Running tasks (of one runner, or of any when null) become interrupted. Returns them as they were. */
  interruptRunningTasks(runnerId: string | null, error: ErrorBody, now: number): Promise<Task[]>;

  // ── nodes (runner processes sharing this store) ───────────────────────
  /** Adds the node, or replaces its row (a restart under the same id). */
  registerNode(node: NodeRecord): Promise<void>;
  /** Extends the node's lease; false when its row is gone (taken over meanwhile: the node must stop what it runs). */
  renewNodeLease(nodeId: string, leaseExpiresAt: number): Promise<boolean>;
  /** Nodes whose lease has not expired at `now`, oldest first (startedAt, then id). */
  listNodes(now: number): Promise<NodeRecord[]>;
  /**
   * Takes over every node (other than `byNodeId`) whose lease expired before
   * `now`: for each, in one transaction, its running tasks become interrupted
   * with `error`, its sessions lose their owner and its row is removed. Two
   * nodes reaping at once take each dead node once.
   */
  reapExpiredNodes(byNodeId: string, error: ErrorBody, now: number): Promise<NodeTakeover[]>;
  /** The node leaves (shutdown): its sessions lose their owner and its row is removed. */
  removeNode(nodeId: string): Promise<void>;
  /** Sessions owned by the node (or by any node when null) lose their owner, so any node may run their next task. */
  releaseSessions(nodeId: string | null): Promise<void>;
  /** The node that owns the session (runs its tasks, holds its sandbox), or null. */
  sessionOwner(sessionKey: string): Promise<string | null>;

  // ── events ────────────────────────────────────────────────────────────
  /** Appends in order, assigning each session's next sequence numbers, in one transaction. Throws SESSION_NOT_FOUND (and appends nothing) for an unknown session. */
  appendEvents(events: NewEvent[], now: number): Promise<StoredEvent[]>;
  /** Events with seq > afterSeq, oldest first. */
  readEvents(sessionKey: string, afterSeq: number, limit: number): Promise<StoredEvent[]>;
  eventBounds(sessionKey: string): Promise<EventBounds>;
  /** Sequence number of a task's first stored event, or null when none is stored. */
  taskFirstEventSeq(sessionKey: string, taskId: string): Promise<number | null>;
  /** Drops events past the policy, in every session. Returns how many were dropped. */
  trimEvents(policy: RetentionPolicy, now: number): Promise<number>;
}
