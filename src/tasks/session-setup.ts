/**
 * What a session's sandbox and agent process start with, from its template
 * and the operator's defaults. A task's run and a ready session (prepared
 * before anyone asked: src/sessions/ready-pool.ts) build them here alike, so
 * that a claimed ready session's sandbox and live agent are exactly the ones
 * its first task would have started: nothing is recreated.
 */
import type { AgentSetup } from '../core/ports/agent-runtime.ts';
import { SANDBOX_GATEWAY_URL, SANDBOX_KEY_HELPER } from '../core/ports/model-gateway.ts';
import type { NetworkMode, SandboxHandle, SandboxSpec } from '../core/ports/sandbox.ts';
import type { AgentTemplate } from '../templates/catalog.ts';
import { buildSystemPrompt } from '../templates/output.ts';
import type { SessionDirs } from '../workspace/session-dirs.ts';

/** The template's network policy, or the operator's default. */
export function networkOf(template: AgentTemplate, defaultNetwork: NetworkMode): { mode: NetworkMode; allow: string[] } {
  return { mode: template.network.mode ?? defaultNetwork, allow: template.network.allow };
}

/** The session's sandbox: its folders, its template's network and limits (each at most the operator's, checked at start). */
export function sandboxSpecFor(
  session: { key: string; tenantId: string; id: string },
  template: AgentTemplate,
  dirs: SessionDirs,
  defaultNetwork: NetworkMode,
): SandboxSpec {
  const { memoryBytes, cpus, pidsLimit } = template.limits;
  const limits = memoryBytes === undefined && cpus === undefined && pidsLimit === undefined ? {} : {
    limits: { ...(memoryBytes !== undefined && { memoryBytes }), ...(cpus !== undefined && { nanoCpus: Math.round(cpus * 1e9) }), ...(pidsLimit !== undefined && { pidsLimit }) },
  };
  return {
    sessionKey: session.key, tenantId: session.tenantId, sessionId: session.id,
    workspaceDir: dirs.workspace, homeDir: dirs.home, gatewaySocketDir: dirs.socketDir,
    network: networkOf(template, defaultNetwork).mode,
    ...limits,
  };
}

/** The agent process's set-up for a task of this template (a task may pick its model and schema; a ready session takes the template's). */
export function agentSetupFor(
  template: AgentTemplate,
  target: { sessionKey: string; sandbox: SandboxHandle },
  options: {
    model: string | undefined;
    outputSchema: Record<string, unknown> | null;
    network: NetworkMode;
    env: Record<string, string>;
    /** The gateway's sandboxEnv under `network`. */
    processEnv: Record<string, string>;
  },
): AgentSetup {
  const { model, outputSchema } = options;
  return {
    sessionKey: target.sessionKey,
    sandbox: target.sandbox,
    systemPrompt: { mode: template.systemPromptMode, text: buildSystemPrompt(template.agentsMd, outputSchema ? null : template.outputMd) },
    ...(outputSchema ? { outputSchema } : {}),
    ...(model ? { model } : {}),
    network: options.network,
    toolRules: template.toolRules,
    permissions: template.permissions,
    mcpServers: template.mcpServers,
    env: options.env,
    modelEndpoint: { baseUrl: SANDBOX_GATEWAY_URL, keyHelper: SANDBOX_KEY_HELPER },
    processEnv: options.processEnv,
  };
}
