/**
 * The sandbox port: one isolated, long-lived machine per session, where the
 * agent process and its tools run. Adapters live in src/sandbox/<backend>/.
 * The domain never sees containers, images or Docker errors: adapters throw
 * RunnerError (SANDBOX_UNAVAILABLE, SANDBOX_IMAGE_MISSING, ...).
 */
import type { Readable, Writable } from 'node:stream';

export type NetworkMode = 'none' | 'allowlist' | 'open';

// The sandbox's layout, the same for every backend: the runtime and the
// composition root use these, and adapters build their sandboxes from them.
/** The session's workspace (a copy of the agent template). */
export const SANDBOX_WORKSPACE = '/workspace';
/** The agent user's home: its conversation memory (~/.claude) lives here. */
export const SANDBOX_HOME = '/home/agent';
/** The `claude` executable, mounted read-only. */
export const SANDBOX_CLAUDE_PATH = '/opt/claude/claude';
/** The session's gateway folder (its unix socket and the task token), mounted read-only. */
export const SANDBOX_GATEWAY_DIR = '/run/claude-runner';
/** The unprivileged user the agent and its tools run as; it owns the workspace and home. */
export const AGENT_USER = 'agent';
export const AGENT_UID = 1000;
export const AGENT_GID = 1000;

export interface SandboxSpec {
  sessionKey: string;
  tenantId: string;
  sessionId: string;
  /** Host folder mounted read-write at SANDBOX_WORKSPACE. */
  workspaceDir: string;
  /** Host folder mounted read-write at SANDBOX_HOME (conversation memory lives here). */
  homeDir: string;
  /**
   * Host folder holding the gateway's unix socket for this session, mounted
   * read-only at /run/claude-runner; the sandbox forwards 127.0.0.1:4100 to it.
   */
  gatewaySocketDir: string;
  /** none and allowlist: no network interface but loopback; open: a normal bridge network. */
  network: NetworkMode;
  /** The template's limits, each at most the operator's (checked at start); absent: the operator's. */
  limits?: { memoryBytes?: number; nanoCpus?: number; pidsLimit?: number };
}

export interface SandboxHandle {
  sessionKey: string;
  /** Backend id (the container id). */
  id: string;
}

export interface ExecOptions {
  cwd: string;
  env: Record<string, string>;
  /** Receives the process's stderr as it comes (the runtime keeps a tail for error messages). */
  onStderr?(text: string): void;
}

/** The shape of a child process the Agent SDK can drive (its SpawnedProcess). */
export interface SandboxProcess {
  stdin: Writable;
  stdout: Readable;
  readonly killed: boolean;
  readonly exitCode: number | null;
  kill(signal: NodeJS.Signals): boolean;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  on(event: 'error', listener: (error: Error) => void): void;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  once(event: 'error', listener: (error: Error) => void): void;
  off(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  off(event: 'error', listener: (error: Error) => void): void;
}

export interface SandboxInfo {
  sessionKey: string;
  id: string;
  running: boolean;
}

/** Counters that only grow while the sandbox lives; compare before and after a task. */
export interface ResourceCounters {
  oomKills: number;
  pidsLimitHits: number;
}

/** What the engine reports of a watched sandbox: a limit hit, or its end. */
export type SandboxEvent = { type: 'oom' } | { type: 'pids_limit' } | { type: 'died'; exitCode: number | null };

export interface SandboxDriver {
  /** Throws SANDBOX_UNAVAILABLE or SANDBOX_IMAGE_MISSING with what to do. */
  check(): Promise<void>;
  /** Creates or starts the session's sandbox; safe to call concurrently. */
  ensure(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle>;
  /** Runs a command as the agent user with stdin/stdout attached; returns at once, the exec starts behind it. */
  exec(handle: SandboxHandle, command: string[], options: ExecOptions): SandboxProcess;
  /** Kills every process of the agent user in the sandbox, at once (abort). */
  killAgentProcesses(handle: SandboxHandle): Promise<void>;
  resourceCounters(handle: SandboxHandle): Promise<ResourceCounters>;
  /**
   * Calls `listener` when the sandbox hits a limit or dies, as the engine
   * reports it, from now on (a limit hit before the call is not reported:
   * compare resourceCounters for that); returns the unsubscribe.
   */
  watch(handle: SandboxHandle, listener: (event: SandboxEvent) => void): () => void;
  /** Stops the sandbox but keeps it, to start again on the next task. */
  stop(sessionKey: string): Promise<void>;
  /** Stops and removes the sandbox (not the host folders). */
  remove(sessionKey: string): Promise<void>;
  /** Sandboxes that belong to this runner instance. */
  list(): Promise<SandboxInfo[]>;
  /** True when the driver knows, without asking its engine, that the session's sandbox runs (optional). */
  knownRunning?(sessionKey: string): boolean;
}
