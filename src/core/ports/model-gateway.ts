/**
 * The model gateway port: the only way an agent reaches the model. Each
 * session's sandbox talks to the gateway over its own unix socket; each task
 * gets a token that is valid only while a task of that session runs (its own
 * task, and the session's next one, since a live agent still holds it for
 * its first call), and only through that session's socket. The gateway swaps
 * the token for the real credential, meters every call's tokens for the task,
 * enforces its budget and its number of model calls, and (for the none and
 * allowlist network policies) is the sandbox's egress proxy: under none it
 * refuses every connection, so that the refusal is seen (GatewayObserver).
 */
import { SANDBOX_GATEWAY_DIR, type NetworkMode } from './sandbox.ts';
import type { RunnerError } from '../errors.ts';
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
  /**
   * The task may spend at most this much (USD); undefined means no limit. A
   * call is refused once the spend reaches it. Calls run at most a few at once
   * per task (the gateway's `concurrentCalls`, 4): the spend can pass the
   * budget by the call that crosses it plus the (at most 3) calls already
   * under way then.
   */
  budgetUsd: number | undefined;
  /**
   * The task may make at most this many model calls (POST /v1/messages, by
   * the agent, its sub-agents or anything else holding the token; count_tokens
   * is not one; a call the upstream refused or failed is not counted). The
   * next one is refused, never forwarded.
   */
  maxModelCalls: number;
  onModelCall(call: ModelCall): void;
  /**
   * Called once, with the first limit the task reaches: BUDGET_EXCEEDED when
   * a call brings the spend to the budget or past it, MAX_TURNS_REACHED when
   * a call past maxModelCalls is refused. The runner ends the task with it.
   */
  onLimitReached(error: RunnerError): void;
}

export interface TaskMeter {
  usage: TokenUsage;
  costUsd: number;
  modelCalls: number;
}

/**
 * A connection of a sandbox that the network policy refused (the egress
 * proxy): where it wanted to go and why, in a few words. Never a credential.
 */
export interface EgressRefusal {
  sessionKey: string;
  /** The session's running task, or null when none runs. */
  taskId: string | null;
  /** This refusal is the task's nth (1, 2, …; 1 without a task): a sandbox that retries in a loop can be told fewer times. */
  nth: number;
  host: string;
  /** 0 when the destination could not be read. */
  port: number;
  reason: string;
}

/** How a model call forwarded upstream ended: answered (2xx), answered with an error, never answered, or cut by the task's end. */
export type ModelCallOutcome = 'ok' | 'upstream_error' | 'unreachable' | 'cut';

/**
 * Requests the gateway did not carry through: the upstream failed or was out
 * of reach, a limit refused the call (budget or call cap), the token was not
 * valid, the request itself was refused (not the Messages API, too large, a
 * server-side tool under the policy), or the gateway failed.
 */
export type GatewayErrorKind = 'upstream_error' | 'unreachable' | 'over_limit' | 'bad_token' | 'refused_request' | 'internal';

/** What the gateway tells as it works (events, metrics). A callback that throws is ignored. */
export interface GatewayObserver {
  egressRefused?(refusal: EgressRefusal): void;
  /** A model call (POST /v1/messages) forwarded upstream has ended; `model` is the one the request asked for. */
  modelCall?(model: string, outcome: ModelCallOutcome): void;
  gatewayError?(kind: GatewayErrorKind): void;
}

export interface ModelGateway {
  /** Throws MODEL_CREDENTIALS_MISSING when no credential is configured. */
  checkConfigured(): void;
  /** Starts serving a session's sandbox on `socketDir/gateway.sock`. Idempotent. */
  attachSession(sessionKey: string, socketDir: string): Promise<void>;
  /** Stops serving the session's sandbox (it stopped): its socket and connections are closed. */
  detachSession(sessionKey: string): Promise<void>;
  /**
   * Grants the task access; the token is also written where the sandbox's key
   * helper reads it. `sandboxEnv` is what the agent's processes need to reach
   * out under the task's network policy (the egress proxy, for none and
   * allowlist: under none it refuses everything, and says so).
   */
  openTask(grant: TaskGrant): Promise<{ token: string; sandboxEnv: Record<string, string> }>;
  /**
   * Writes a token for an agent started before its session has a task (a
   * ready session): it grants nothing until the session's first task opens,
   * whose first call may present it (Claude Code reads its key once at start).
   */
  standbyToken(sessionKey: string): Promise<void>;
  /**
   * Until the returned function is called, the model calls a ready session's
   * agent makes with its standby token, while no task is open, are answered
   * by the gateway itself with a scripted rehearsal: nothing goes upstream,
   * nothing is metered (AgentRuntime.prestart).
   */
  rehearse(sessionKey: string): () => void;
  /** The `sandboxEnv` openTask gives under this network policy (the same for every task: a live agent keeps it). */
  sandboxEnv(mode: NetworkMode): Record<string, string>;
  /**
   * Revokes the task's token, cuts its calls still under way, and returns what
   * it spent once each of them has recorded what it was billed.
   */
  closeTask(taskId: string): Promise<TaskMeter>;
  close(): Promise<void>;
}

/** Inside the sandbox: where the gateway is reached, and how the agent reads its task token. */
export const SANDBOX_GATEWAY_URL = 'http://127.0.0.1:4100';
export const SANDBOX_TOKEN_FILE = `${SANDBOX_GATEWAY_DIR}/token`;
export const SANDBOX_KEY_HELPER = `cat ${SANDBOX_TOKEN_FILE}`;
