/**
 * The agent runtime port: runs one task as a message to a session's agent.
 * The adapter (src/runtime/) decides whether the agent process is already
 * live or must be started (and then resumes the conversation). It reports
 * what the agent does through onEvent as it happens.
 */
import type { EventPayloads } from '../events.ts';
import type { InputAnswer, InputQuestion } from '../model.ts';
import type { NetworkMode, SandboxHandle } from './sandbox.ts';

export type AgentEvent =
  | { type: 'init'; data: EventPayloads['init'] }
  | { type: 'thinking'; data: EventPayloads['thinking'] }
  | { type: 'text'; data: EventPayloads['text'] }
  | { type: 'tool_start'; data: EventPayloads['tool_start'] }
  | { type: 'tool_end'; data: EventPayloads['tool_end'] };

/** An MCP server in Claude Code's own format. */
export type AgentMcpServer =
  | { type?: 'stdio'; command: string; args?: string[]; env?: Record<string, string> }
  | { type: 'http' | 'sse'; url: string; headers?: Record<string, string> };

/**
 * What an agent process is started with and keeps for its life: a task whose
 * set-up differs gets a new process. A ready session's agent is started with
 * its template's set-up before any task (AgentRuntime.prestart).
 */
export interface AgentSetup {
  sessionKey: string;
  sandbox: SandboxHandle;
  /** The template's prompt, added to Claude Code's own ("append") or used alone ("replace"). */
  systemPrompt: { mode: 'append' | 'replace'; text: string };
  /** JSON Schema for structured output (the SDK's outputFormat), when the template has one. */
  outputSchema?: Record<string, unknown>;
  model?: string;
  /**
   * The sandbox's network policy. Tools that reach the network from outside
   * the sandbox (a web search run by the model's provider) bypass it: the
   * runtime offers them only under `open`.
   */
  network: NetworkMode;
  /**
   * The template's tools: `offered`, the built-in tools the agent gets (all when empty);
   * `denied`, rules for calls that are always refused (`Bash(git push:*)`, `mcp__srv__tool`).
   */
  toolRules?: { offered: string[]; denied: string[] };
  /** The template's MCP servers, in Claude Code's format; stdio ones run inside the sandbox as the agent user. */
  mcpServers?: Record<string, AgentMcpServer>;
  /** The task's env, for the agent's tools (none for a ready session's agent). */
  env: Record<string, string>;
  /**
   * Where the agent reaches the model, and a command that prints the
   * sandbox's token (Claude Code's apiKeyHelper; the gateway accepts it only
   * while one of the session's tasks is open, and counts each call to it).
   */
  modelEndpoint: { baseUrl: string; keyHelper: string };
  /** Extra environment for the agent process (the gateway's egress proxy settings, for one). */
  processEnv: Record<string, string>;
  /**
   * The template's permission rules: calls matching `ask` wait for a person's
   * decision (through askHuman), calls matching `deny` are refused.
   */
  permissions?: { ask: string[]; deny: string[] };
}

export interface AgentRunRequest extends AgentSetup {
  taskId: string;
  sessionId: string;
  /** The user message, with the task's context already prepended. */
  prompt: string;
  /**
   * Asks a person and resolves with the answer (a question of the agent, or a
   * tool call to approve). Rejects when the task ends first (abort, timeout).
   */
  askHuman(request: HumanInputRequest): Promise<InputAnswer>;
  /** Conversation to continue, if the session had one. */
  resumeId: string | null;
  signal: AbortSignal;
  onEvent(event: AgentEvent): void;
}

export type HumanInputRequest =
  | { kind: 'question'; questions: InputQuestion[]; input: unknown }
  | { kind: 'permission'; tool: string; input: unknown };

export interface AgentRunResult {
  /** Claude Code's conversation id after this task. */
  agentSessionId: string;
  /** Final text of the agent. */
  text: string;
  /** The validated-by-SDK structured output, when an outputSchema was given. */
  structuredOutput?: unknown;
  /** Distinct tools used in this task, in first-use order. */
  tools: string[];
  /** Model calls the agent made for this task (cost is metered by the model gateway, not here). */
  modelCalls: number;
  model: string;
  /** True when the conversation continued an earlier one. */
  resumed: boolean;
  /** Set when the earlier conversation could not be found and a fresh one was started. */
  resumeLost?: boolean;
}

export interface AgentRuntime {
  /** Throws RunnerError (MODEL_ERROR, MAX_TURNS_REACHED, AGENT_CRASHED, TASK_ABORTED, ...). */
  run(request: AgentRunRequest): Promise<AgentRunResult>;
  /**
   * Starts the session's agent process before its first task (a ready
   * session) and resolves once it is up and waiting. It first rehearses a
   * turn, which the caller has the gateway answer (ModelGateway.rehearse), in
   * a conversation the task never sees. Until a task reaches it, it is a
   * spare: never closed for being idle, the first closed for room.
   */
  prestart(setup: AgentSetup): Promise<void>;
  /** Ends the session's live agent process, if any (idle, reset, delete, abort). */
  release(sessionKey: string): Promise<void>;
  /** Sessions with a live agent process. */
  liveSessions(): string[];
  closeAll(): Promise<void>;
}
