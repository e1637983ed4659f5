/**
 * The Claude Code agent runtime: a pool of live agents, one per session at
 * most. A task goes to the session's live agent when there is one with the
 * same set-up (prompt, schema, model, environment); otherwise a new process is
 * started that resumes the session's conversation from its transcript.
 * Idle agents are closed after a while, and the least recently used idle ones
 * when more than `maxLiveAgents` are alive (each holds ~235 MB).
 *
 * Owns: agent processes. Must not touch: the store, events, HTTP, Docker
 * directly (it goes through the sandbox port).
 */
import { createHash } from 'node:crypto';
import { RunnerError } from '../../core/errors.ts';
import type { AgentRunRequest, AgentRunResult, AgentRuntime, AgentSetup } from '../../core/ports/agent-runtime.ts';
import { AGENT_USER, SANDBOX_HOME, SANDBOX_WORKSPACE, type SandboxDriver } from '../../core/ports/sandbox.ts';
import { LiveAgent, ResumeLostError, type LiveAgentOptions } from './live-agent.ts';

export interface ClaudeRuntimeOptions {
  sandbox: SandboxDriver;
  /** Where the `claude` executable is inside the sandbox (SANDBOX_CLAUDE_PATH). */
  executablePath: string;
  maxLiveAgents: number;
  /** A live agent with no task for this long is closed. */
  idleMs: number;
  /** How long a prestarted agent may take to be up (default 60 s). */
  startTimeoutMs?: number;
  /** How often Claude Code retries a failed model call (its CLAUDE_CODE_MAX_RETRIES). */
  modelMaxRetries: number;
  logger: LiveAgentOptions['logger'] & { info(obj: object, msg?: string): void };
}

/** WebSearch runs on Anthropic's side, beyond the sandbox's network policy: only for `open` agents. */
export function disallowedTools(request: AgentSetup): string[] {
  const own = request.toolRules?.denied ?? [];
  return request.network === 'open' || own.includes('WebSearch') ? own : ['WebSearch', ...own];
}

/** The environment every agent process gets; nothing comes from the server's own environment. */
export function agentProcessEnv(request: AgentSetup, modelMaxRetries: number): Record<string, string> {
  return {
    ...request.env,
    HOME: SANDBOX_HOME,
    USER: AGENT_USER,
    SHELL: '/bin/bash',
    PATH: '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    ...request.processEnv,
    CLAUDE_CODE_MAX_RETRIES: String(modelMaxRetries),
    ANTHROPIC_BASE_URL: request.modelEndpoint.baseUrl,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
  };
}

export class ClaudeAgentRuntime implements AgentRuntime {
  private readonly agents = new Map<string, LiveAgent>();
  private readonly options: ClaudeRuntimeOptions;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: ClaudeRuntimeOptions) {
    this.options = options;
    this.sweeper = setInterval(() => this.closeIdle(), Math.max(1000, Math.min(options.idleMs, 30_000)));
    this.sweeper.unref();
  }

  async run(request: AgentRunRequest): Promise<AgentRunResult> {
    const fingerprint = this.fingerprint(request);
    let agent = this.agents.get(request.sessionKey);
    if (agent && (!agent.alive || agent.fingerprint !== fingerprint || agent.busy)) {
      this.options.logger.debug({ alive: agent.alive, same: agent.fingerprint === fingerprint, busy: agent.busy }, "live agent not reusable");
      await this.release(request.sessionKey);
      agent = undefined;
    }
    this.options.logger.debug({ sessionKey: request.sessionKey, live: Boolean(agent) }, agent ? "task to live agent" : "starting agent process");
    if (agent) return this.send(agent, request, agent.completedTurns > 0 || request.resumeId !== null);
    try {
      return await this.send(this.start(request, fingerprint, request.resumeId), request, request.resumeId !== null);
    } catch (error) {
      if (!(error instanceof ResumeLostError)) throw error;
      this.options.logger.warn({ sessionKey: request.sessionKey }, 'conversation transcript not found: starting a fresh conversation');
      await this.release(request.sessionKey);
      const result = await this.send(this.start(request, fingerprint, null), request, false);
      return { ...result, resumeLost: true };
    }
  }

  async prestart(setup: AgentSetup): Promise<void> {
    if (this.agents.has(setup.sessionKey)) throw new Error(`The session ${setup.sessionKey} has an agent process already.`);
    // A spare never makes room for itself: it takes a free place or none.
    if (this.agents.size >= this.options.maxLiveAgents) throw new RunnerError('SANDBOX_BUSY', 'No room for another live agent (MAX_LIVE_AGENTS).');
    const agent = this.start(setup, this.fingerprint(setup), null);
    agent.spare = true;
    // One deadline for the start, the rehearsal and its clean-up: the pool fills one entry at a time.
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 60_000);
    const left = (): number => Math.max(0, deadline - Date.now());
    try {
      await agent.ready(left());
      const rehearsal = await agent.rehearse(left());
      await this.removeTranscript(setup.sandbox, rehearsal, left());
    } catch (error) {
      if (this.agents.get(setup.sessionKey) === agent) await this.release(setup.sessionKey);
      throw error;
    }
  }

  /** Removes a conversation's transcript (Claude Code keeps them under ~/.claude/projects/<cwd, / as ->/). */
  private async removeTranscript(sandbox: AgentSetup['sandbox'], conversationId: string, timeoutMs: number): Promise<void> {
    if (!/^[0-9a-f-]{36}$/.test(conversationId)) throw new RunnerError('AGENT_CRASHED', `Unexpected conversation id ${JSON.stringify(conversationId)}.`);
    const file = `${SANDBOX_HOME}/.claude/projects/${SANDBOX_WORKSPACE.replaceAll('/', '-')}/${conversationId}.jsonl`;
    const rm = this.options.sandbox.exec(sandbox, ['rm', '-f', file], { cwd: SANDBOX_WORKSPACE, env: { HOME: SANDBOX_HOME } });
    rm.stdin.end();
    rm.stdout.resume();
    const timer = setTimeout(() => rm.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((resolve, reject) => {
      rm.once('exit', (exitCode) => resolve(exitCode));
      rm.once('error', reject);
    }).finally(() => clearTimeout(timer));
    if (code !== 0) throw new RunnerError('AGENT_CRASHED', `Could not remove the rehearsal's transcript (rm exited with ${code}).`);
  }

  async release(sessionKey: string): Promise<void> {
    const agent = this.agents.get(sessionKey);
    if (!agent) return;
    this.agents.delete(sessionKey);
    agent.close();
  }

  liveSessions(): string[] {
    return [...this.agents.keys()];
  }

  async closeAll(): Promise<void> {
    clearInterval(this.sweeper);
    for (const key of [...this.agents.keys()]) await this.release(key);
  }

  private async send(agent: LiveAgent, request: AgentRunRequest, resumed: boolean): Promise<AgentRunResult> {
    try {
      const result = await agent.send(request);
      return { ...result, resumed };
    } catch (error) {
      // A process that failed mid-task is not trusted with the next one.
      if (!agent.alive || (error instanceof RunnerError && error.code !== 'OUTPUT_INVALID')) {
        if (this.agents.get(request.sessionKey) === agent) await this.release(request.sessionKey);
      }
      throw error;
    }
  }

  private start(request: AgentSetup, fingerprint: string, resumeId: string | null): LiveAgent {
    this.evictForRoom();
    const agent = new LiveAgent({
      sessionKey: request.sessionKey,
      fingerprint,
      sandbox: this.options.sandbox,
      handle: request.sandbox,
      executablePath: this.options.executablePath,
      env: agentProcessEnv(request, this.options.modelMaxRetries),
      keyHelper: request.modelEndpoint.keyHelper,
      systemPrompt: request.systemPrompt,
      ...(request.outputSchema ? { outputSchema: request.outputSchema } : {}),
      ...(request.model ? { model: request.model } : {}),
      resumeId,
      disallowedTools: disallowedTools(request),
      offeredTools: request.toolRules?.offered ?? [],
      permissions: request.permissions,
      mcpServers: request.mcpServers ?? {},
      logger: this.options.logger,
    });
    this.agents.set(request.sessionKey, agent);
    return agent;
  }

  /** Everything that is fixed for the life of a process: a change means a new process. */
  private fingerprint(request: AgentSetup): string {
    return createHash('sha256').update(JSON.stringify([
      request.sandbox.id, request.systemPrompt, request.outputSchema ?? null, request.model ?? null, disallowedTools(request),
      request.toolRules?.offered ?? [], request.mcpServers ?? {}, request.permissions ?? null,
      request.modelEndpoint.keyHelper, agentProcessEnv(request, this.options.modelMaxRetries),
    ])).digest('hex');
  }

  private closeIdle(): void {
    const cutoff = Date.now() - this.options.idleMs;
    for (const [key, agent] of this.agents) {
      if (!agent.busy && !agent.spare && agent.lastUsedAt < cutoff) {
        this.options.logger.info({ sessionKey: key }, 'closing idle agent process');
        void this.release(key);
      }
    }
  }

  private evictForRoom(): void {
    if (this.agents.size < this.options.maxLiveAgents) return;
    // Spares (ready sessions nobody has claimed) go first: a real session's agent is worth more.
    const idle = [...this.agents.values()].filter((a) => !a.busy)
      .sort((a, b) => Number(b.spare) - Number(a.spare) || a.lastUsedAt - b.lastUsedAt);
    for (const agent of idle) {
      if (this.agents.size < this.options.maxLiveAgents) break;
      void this.release(agent.sessionKey);
    }
  }
}
