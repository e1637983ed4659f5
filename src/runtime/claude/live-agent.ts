/**
 * One live `claude` process for one session, started inside the session's
 * sandbox and kept between tasks: each task is a user message sent to it
 * (streaming input), and its answer ends with a `result` message. This saves
 * the CLI's start-up (about 1 s) on every task but the first.
 *
 * The process is started by the Agent SDK in this server, through
 * `spawnClaudeCodeProcess`, as an exec in the sandbox: its Bash tool and the
 * tools of the template run there, never on the host.
 */
import { query, type Query, type SDKMessage, type SDKResultMessage, type SDKUserMessage } from '@anthropic-ai/claude-agent-sdk';
import { RunnerError } from '../../core/errors.ts';
import type { AgentEvent, AgentRunRequest, AgentRunResult } from '../../core/ports/agent-runtime.ts';
import { SANDBOX_WORKSPACE, type SandboxDriver, type SandboxHandle } from '../../core/ports/sandbox.ts';
import { humanCanUseTool, permissionSettings } from './human-input.ts';
import { MessageQueue } from './message-queue.ts';
import { claudeCodeOutputSchema } from './output-schema.ts';

export interface LiveAgentOptions {
  sessionKey: string;
  fingerprint: string;
  sandbox: SandboxDriver;
  handle: SandboxHandle;
  /** Path of the `claude` executable inside the sandbox. */
  executablePath: string;
  /** The whole environment of the agent process (nothing is inherited). */
  env: Record<string, string>;
  /** Command that prints the current task's model token. */
  keyHelper: string;
  systemPrompt: AgentRunRequest['systemPrompt'];
  outputSchema?: Record<string, unknown>;
  model?: string;
  disallowedTools: string[];
  /** The built-in tools offered (Claude Code's `tools`); all when empty. */
  offeredTools: string[];
  /** The template's permission rules (ask: a person decides; deny: refused). */
  permissions: AgentRunRequest['permissions'];
  mcpServers: NonNullable<AgentRunRequest['mcpServers']>;
  resumeId: string | null;
  logger: { debug(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

/** The earlier conversation is gone (its transcript was removed); the caller starts afresh. */
export class ResumeLostError extends Error {}

const TOOL_RESULT_LIMIT = 64 * 1024;
/** The rehearsal's message: what the gateway answers does not depend on it (src/gateway/rehearsal.ts). */
const REHEARSAL_PROMPT = 'Rehearsal: run `true` with Bash, then say Ready.';
const STDERR_TAIL = 4000;

interface Turn {
  request: AgentRunRequest;
  tools: string[];
  toolNames: Map<string, string>;
  modelCalls: number;
  initSent: boolean;
  apiError: string | null;
  settle(outcome: { result?: AgentRunResult; error?: Error }): void;
}

/** The tool's result as text, cut at TOOL_RESULT_LIMIT (`truncated` says so; the text carries no marker). */
function toolResult(content: unknown): { result: string; truncated?: true } {
  const text = typeof content === 'string'
    ? content
    : Array.isArray(content)
      ? content.map((block) => (block && typeof block === 'object' && 'text' in block ? String(block.text) : '')).join('')
      : JSON.stringify(content ?? '');
  return text.length > TOOL_RESULT_LIMIT ? { result: text.slice(0, TOOL_RESULT_LIMIT), truncated: true } : { result: text };
}

export class LiveAgent {
  readonly sessionKey: string;
  readonly fingerprint: string;
  lastUsedAt = Date.now();
  agentSessionId: string | null;
  /** Tasks this process has answered; a later one continues the same conversation. */
  completedTurns = 0;
  /** Started ahead of any task (a ready session's), until the first task reaches it. */
  spare = false;
  private readonly options: LiveAgentOptions;
  private readonly input = new MessageQueue<SDKUserMessage>();
  private readonly query: Query;
  private turn: Turn | null = null;
  /** A message of the rehearsal waiting for its result (no task's: nothing is emitted). */
  private rehearsal: { done(message: SDKResultMessage): void; failed(error: Error): void } | null = null;
  private init: { model: string; tools: string[] } | null = null;
  private ended = false;
  private stderrTail = '';

  constructor(options: LiveAgentOptions) {
    this.options = options;
    this.sessionKey = options.sessionKey;
    this.fingerprint = options.fingerprint;
    this.agentSessionId = options.resumeId;
    this.query = query({
      prompt: this.input,
      options: {
        cwd: SANDBOX_WORKSPACE,
        pathToClaudeCodeExecutable: options.executablePath,
        spawnClaudeCodeProcess: (spawn) => {
          const env: Record<string, string> = {};
          for (const [key, value] of Object.entries(spawn.env)) if (value !== undefined) env[key] = value;
          return options.sandbox.exec(options.handle, [spawn.command, ...spawn.args], {
            cwd: SANDBOX_WORKSPACE,
            env,
            onStderr: (text) => { this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL); },
          });
        },
        env: options.env,
        systemPrompt: options.systemPrompt.mode === 'append'
          ? { type: 'preset', preset: 'claude_code', append: options.systemPrompt.text }
          : options.systemPrompt.text,
        ...(options.outputSchema ? { outputFormat: { type: 'json_schema' as const, schema: claudeCodeOutputSchema(options.outputSchema) } } : {}),
        ...(options.model ? { model: options.model } : {}),
        ...(options.resumeId ? { resume: options.resumeId } : {}),
        includePartialMessages: true,
        permissionMode: 'bypassPermissions',
        allowDangerouslySkipPermissions: true,
        settingSources: [],
        disallowedTools: options.disallowedTools,
        ...(options.offeredTools.length > 0 ? { tools: options.offeredTools } : {}),
        // Over stdin, not argv: headers and env of MCP servers stay off the sandbox's process list.
        ...(Object.keys(options.mcpServers).length > 0 ? { mcpServers: options.mcpServers, mcpServersDelivery: 'initialize' as const } : {}),
        // Questions (AskUserQuestion) and calls under an `ask` rule go to the person behind the running task.
        canUseTool: humanCanUseTool(() => this.turn?.request),
        settings: { apiKeyHelper: options.keyHelper, ...permissionSettings(options.permissions) },
      },
    });
    void this.pump();
  }

  get alive(): boolean {
    return !this.ended;
  }

  get busy(): boolean {
    return this.turn !== null;
  }

  /** Resolves once the process has started and answered the SDK's initialize request. */
  async ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RunnerError('AGENT_CRASHED', `The agent process was not up within ${timeoutMs} ms.`)), timeoutMs);
    });
    try {
      await Promise.race([this.query.initializationResult(), timeout]);
    } catch (error) {
      throw error instanceof RunnerError ? error : new RunnerError('AGENT_CRASHED', `The agent process did not start: ${(error as Error).message} ${this.stderrTail.trim()}`.trim());
    } finally {
      clearTimeout(timer);
    }
    if (this.ended) throw new RunnerError('AGENT_CRASHED', 'The agent process ended as it started.');
  }

  /**
   * A ready session's rehearsal, before any task: one turn whose model calls
   * the gateway answers itself (src/gateway/rehearsal.ts), then Claude Code's
   * `/clear`. The first task then finds a process that has run a turn (about
   * 150 ms less on its first message) in a conversation of its own, which
   * starts with Claude Code's record that `/clear` ran. Returns the id of the
   * rehearsal's conversation, whose transcript the caller removes.
   */
  async rehearse(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const rehearsed = await this.internalMessage(REHEARSAL_PROMPT, deadline);
    // An output schema's template cannot end this turn well (the rehearsal gives no structured output): that one failure is expected.
    const warmedUp = rehearsed.subtype === 'success' ? !rehearsed.is_error : rehearsed.subtype === 'error_max_structured_output_retries';
    if (!warmedUp) {
      throw new RunnerError('AGENT_CRASHED', `The agent's rehearsal failed: ${this.failureDetail(rehearsed)}`);
    }
    const cleared = await this.internalMessage('/clear', deadline);
    if (cleared.session_id === rehearsed.session_id) {
      throw new RunnerError('AGENT_CRASHED', 'The agent process did not start a new conversation after its rehearsal.');
    }
    this.agentSessionId = cleared.session_id;
    return rehearsed.session_id;
  }

  /** A message of the runner's own (no task's: nothing is emitted), answered by its `result`. */
  private internalMessage(prompt: string, deadline: number): Promise<SDKResultMessage> {
    if (this.ended) return Promise.reject(new RunnerError('AGENT_CRASHED', 'The agent process has ended.'));
    if (this.turn || this.rehearsal) return Promise.reject(new Error('LiveAgent: an internal message while another message is under way'));
    return new Promise<SDKResultMessage>((resolve, reject) => {
      const timer = setTimeout(() => rehearsal.failed(new RunnerError('AGENT_CRASHED', "The agent's rehearsal did not end in time.")), Math.max(0, deadline - Date.now()));
      const settle = (): void => {
        clearTimeout(timer);
        if (this.rehearsal === rehearsal) this.rehearsal = null;
      };
      const rehearsal = {
        done: (message: SDKResultMessage) => { settle(); resolve(message); },
        failed: (error: Error) => { settle(); reject(error); },
      };
      this.rehearsal = rehearsal;
      this.input.push({ type: 'user', message: { role: 'user', content: prompt }, parent_tool_use_id: null, session_id: this.agentSessionId ?? '' });
    });
  }

  /** Sends one task to the agent and waits for its answer. One at a time. */
  send(request: AgentRunRequest): Promise<AgentRunResult> {
    if (this.ended) return Promise.reject(new RunnerError('AGENT_CRASHED', 'The agent process has ended.'));
    if (this.turn || this.rehearsal) return Promise.reject(new Error('LiveAgent.send while a message is under way'));
    if (request.signal.aborted) return Promise.reject(request.signal.reason);
    this.lastUsedAt = Date.now();
    this.spare = false;
    return new Promise<AgentRunResult>((resolve, reject) => {
      const onAbort = (): void => {
        turn.settle({ error: request.signal.reason instanceof Error ? request.signal.reason : new RunnerError('TASK_ABORTED') });
        this.close();
      };
      const turn: Turn = {
        request,
        tools: [],
        toolNames: new Map(),
        modelCalls: 0,
        initSent: false,
        apiError: null,
        settle: ({ result, error }) => {
          if (this.turn !== turn) return;
          this.turn = null;
          this.lastUsedAt = Date.now();
          request.signal.removeEventListener('abort', onAbort);
          if (result) resolve(result);
          else reject(error);
        },
      };
      this.turn = turn;
      request.signal.addEventListener('abort', onAbort, { once: true });
      if (this.init) this.emitInit(turn);
      this.input.push({
        type: 'user',
        message: { role: 'user', content: request.prompt },
        parent_tool_use_id: null,
        session_id: this.agentSessionId ?? '',
      });
    });
  }

  /** Ends the process (the SDK closes its stdin, then kills it). The caller also kills what it left in the sandbox. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.input.close();
    this.query.close();
    this.turn?.settle({ error: new RunnerError('AGENT_CRASHED', 'The agent process was closed.') });
    this.rehearsal?.failed(new RunnerError('AGENT_CRASHED', 'The agent process was closed.'));
  }

  private emit(turn: Turn, event: AgentEvent): void {
    try {
      turn.request.onEvent(event);
    } catch (error) {
      this.options.logger.warn({ err: error }, 'event handler failed');
    }
  }

  private emitInit(turn: Turn): void {
    if (turn.initSent || !this.init) return;
    turn.initSent = true;
    this.emit(turn, {
      type: 'init',
      data: { sessionId: turn.request.sessionId, model: this.init.model, tools: this.init.tools, agentSessionId: this.agentSessionId },
    });
  }

  private async pump(): Promise<void> {
    let failure: Error | null = null;
    try {
      for await (const message of this.query) this.handle(message);
    } catch (error) {
      failure = error as Error;
    }
    const wasEnded = this.ended;
    this.ended = true;
    this.input.close();
    this.rehearsal?.failed(new RunnerError('AGENT_CRASHED', `The agent process ended during its rehearsal. ${this.stderrTail.trim()}`.trim()));
    if (!this.turn) return;
    const text = `${failure?.message ?? ''}\n${this.stderrTail}`;
    if (/No conversation found/i.test(text)) {
      this.turn.settle({ error: new ResumeLostError(text.trim()) });
    } else if (!wasEnded) {
      this.options.logger.warn({ sessionKey: this.sessionKey, stderr: this.stderrTail, err: failure }, 'agent process ended during a task');
      this.turn.settle({
        error: new RunnerError('AGENT_CRASHED', `The agent process ended during the task${failure ? `: ${failure.message}` : ''}.`),
      });
    }
  }

  private handle(message: SDKMessage): void {
    const turn = this.turn;
    switch (message.type) {
      case 'system':
        if (message.subtype === 'init') {
          this.agentSessionId = message.session_id;
          this.init = { model: message.model, tools: message.tools };
          if (turn) this.emitInit(turn);
        }
        return;
      case 'stream_event': {
        if (!turn || message.parent_tool_use_id !== null) return;
        const event = message.event;
        // The cap on model calls is the gateway's (it sees every call, sub-agents' too); here they are only counted.
        if (event.type === 'message_start') {
          turn.modelCalls += 1;
        } else if (event.type === 'content_block_delta') {
          if (event.delta.type === 'text_delta') this.emit(turn, { type: 'text', data: { text: event.delta.text } });
          else if (event.delta.type === 'thinking_delta') this.emit(turn, { type: 'thinking', data: { text: event.delta.thinking } });
        }
        return;
      }
      case 'assistant': {
        if (!turn || message.parent_tool_use_id !== null) return;
        if (message.error) turn.apiError = message.error;
        for (const block of message.message.content) {
          if (block.type !== 'tool_use') continue;
          turn.toolNames.set(block.id, block.name);
          if (!turn.tools.includes(block.name)) turn.tools.push(block.name);
          this.emit(turn, { type: 'tool_start', data: { tool: block.name, input: block.input, toolUseId: block.id } });
        }
        return;
      }
      case 'user': {
        if (!turn || message.parent_tool_use_id !== null || !Array.isArray(message.message.content)) return;
        for (const block of message.message.content) {
          if (block.type !== 'tool_result') continue;
          this.emit(turn, {
            type: 'tool_end',
            data: {
              tool: turn.toolNames.get(block.tool_use_id) ?? 'unknown',
              ...toolResult(block.content),
              toolUseId: block.tool_use_id,
              isError: block.is_error === true,
            },
          });
        }
        return;
      }
      case 'result': {
        if (!turn) return void this.rehearsal?.done(message);
        this.agentSessionId = message.session_id;
        this.completedTurns += 1;
        turn.settle(this.outcome(turn, message));
        return;
      }
      default:
        return;
    }
  }

  /** What a failed result says went wrong: the model API's error, Claude Code's errors, or its last stderr line. */
  private failureDetail(message: SDKResultMessage): string {
    if (message.subtype === 'success') return message.result || 'the model API failed';
    return message.errors?.join('; ') || this.stderrTail.trim().split('\n').at(-1) || message.subtype;
  }

  private outcome(turn: Turn, message: Extract<SDKMessage, { type: 'result' }>): { result?: AgentRunResult; error?: Error } {
    if (message.subtype === 'error_max_turns') return { error: new RunnerError('MAX_TURNS_REACHED') };
    if (message.subtype === 'error_max_budget_usd') return { error: new RunnerError('BUDGET_EXCEEDED') };
    if (message.subtype === 'error_max_structured_output_retries') {
      const errors = message.errors ?? [];
      return { error: new RunnerError('OUTPUT_INVALID', `The agent output does not match the output schema: ${errors.join('; ')}`, { errors }) };
    }
    if (message.subtype !== 'success') {
      return { error: new RunnerError(turn.apiError ? 'MODEL_ERROR' : 'AGENT_CRASHED', `The agent failed: ${this.failureDetail(message)}`) };
    }
    if (message.is_error || turn.apiError) {
      return { error: new RunnerError('MODEL_ERROR', `The model API failed: ${message.result || turn.apiError}`) };
    }
    return {
      result: {
        agentSessionId: message.session_id,
        text: message.result,
        ...(message.structured_output !== undefined ? { structuredOutput: message.structured_output } : {}),
        tools: turn.tools,
        modelCalls: turn.modelCalls,
        model: this.init?.model ?? this.options.model ?? 'unknown',
        resumed: false,
      },
    };
  }
}
