/**
 * The model gateway port: the only way an agent reaches the model. Each
 * session's sandbox talks to the gateway over its own unix socket; each task
 * gets a token that is valid only while a task of that session runs (its own
 * task, and the session's next one, since a live agent still holds it for
 * its first call), and only through that session's socket. The gateway swaps the token for the real credential,
 * meters every call's tokens for the task, enforces its budget, and (for the
 * allowlist network policy) is the sandbox's egress proxy.
 */
import { SANDBOX_GATEWAY_DIR, type NetworkMode } from './sandbox.ts';
import type { TokenUsage } from '../model.ts';

export interface ModelCall {
  model: string;
  usage: TokenUsage;
  costUsd: number;
}

export interface TaskGrant {
  taskId: string;
  sessionKey: string;
  network: { mode: NetworkMode; allow: string[] };
  /** The task may spend at most this much (USD); undefined means no limit. */
  budgetUsd: number | undefined;
  onModelCall(call: ModelCall): void;
  /** Called once, when a call brings the spend to the budget or past it. */
  onBudgetExceeded(spentUsd: number): void;
}

export interface TaskMeter {
  usage: TokenUsage;
  costUsd: number;
  modelCalls: number;
}

export interface ModelGateway {
  /** Throws MODEL_CREDENTIALS_MISSING when no credential is configured. */
  checkConfigured(): void;
  /** Starts serving a session's sandbox on `socketDir/gateway.sock`. Idempotent. */
  attachSession(sessionKey: string, socketDir: string): Promise<void>;
  detachSession(sessionKey: string): Promise<void>;
  /** Grants the task access; the token is also written where the sandbox's key helper reads it. */
  openTask(grant: TaskGrant): Promise<{ token: string }>;
  /** Revokes the task's token and returns what it spent. */
  closeTask(taskId: string): Promise<TaskMeter>;
  close(): Promise<void>;
}

/** Inside the sandbox: where the gateway is reached, and how the agent reads its task token. */
export const SANDBOX_GATEWAY_URL = 'http://127.0.0.1:4100';
export const SANDBOX_TOKEN_FILE = `${SANDBOX_GATEWAY_DIR}/token`;
export const SANDBOX_KEY_HELPER = `cat ${SANDBOX_TOKEN_FILE}`;
