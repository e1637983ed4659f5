/**
 * The cluster bus port: how runner nodes sharing one store ring each other's
 * doorbell. It carries notices, never state: the store stays the truth, so a
 * notice lost (a connection cut) costs latency, not data; every receiver
 * re-reads what it needs. SQLite runs one node: its bus has nobody to tell.
 * PostgreSQL: LISTEN/NOTIFY (src/cluster/pg-bus.ts).
 */
import type { ErrorBody } from '../errors.ts';
import type { InputAnswer } from '../model.ts';

export type ClusterNotice =
  /** Events of the session up to lastSeq are stored: nodes with subscribers read what they have not delivered. */
  | { kind: 'events'; sessionKey: string; lastSeq: number }
  /** A task was stored: schedulers look for work. */
  | { kind: 'queued' }
  /** A task ended: callers waiting for it elsewhere read it. */
  | { kind: 'ended'; taskId: string }
  /** The session was deleted: its streams end everywhere. */
  | { kind: 'session_deleted'; sessionKey: string };

/** Asked of one node (the one running the task, or owning the session); it replies once done. */
export type ClusterRequest =
  | { kind: 'stop_task'; taskId: string; error: ErrorBody }
  | { kind: 'answer_input'; taskId: string; requestId: string; answer: InputAnswer }
  /** The session is reset or deleted: its owner closes the live agent and removes the sandbox. */
  | { kind: 'teardown'; sessionKey: string };

export interface ClusterBus {
  /** This node's id. */
  readonly nodeId: string;
  /** Tells every other node; resolves once sent. */
  notify(notice: ClusterNotice): Promise<void>;
  /**
   * Asks one node and waits for its reply: rejects with the RunnerError it
   * answered, or with NODE_UNREACHABLE when no reply came within timeoutMs.
   */
  request(nodeId: string, request: ClusterRequest, timeoutMs: number): Promise<void>;
  /** Sets what this node does with what others send (one handler each). */
  listen(handlers: {
    notice(notice: ClusterNotice, from: string): void;
    request(request: ClusterRequest, from: string): Promise<void>;
    /** The bus was cut and is back: notices may have been missed, re-read what matters. */
    reconnected(): void;
  }): void;
  /** Whether this node runs the cluster's once-only work now (retention, webhooks). */
  isLeader(): boolean;
  /** Called whenever leadership changes. */
  onLeadership(listener: (leader: boolean) => void): void;
  start(): Promise<void>;
  close(): Promise<void>;
}
