/**
 * Agent templates: the folders a session's workspace is copied from, in the
 * seed's layout (AGENTS.md, OUTPUT.md, tools/*.sh) plus two optional files of
 * ours, output.schema.json and runner.json. AGENT_DIR is either one template
 * (it holds AGENTS.md; its name is "default") or a folder of templates (one
 * sub-folder each).
 *
 * Owns (with output.ts): what an agent is told and what its answer must be.
 * Must not touch: the template folders (it reads them, never writes) or a
 * session's copy of them (the workspace's).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RunnerError } from '../core/errors.ts';
import type { NetworkMode } from '../core/ports/sandbox.ts';
import { checkUserSchema } from './output.ts';
import { type McpServerConfig, type OperatorCaps, parseRunnerJson } from './runner-json.ts';

export type { McpServerConfig, OperatorCaps } from './runner-json.ts';

export interface AgentTemplate {
  name: string;
  dir: string;
  agentsMd: string;
  outputMd: string | null;
  outputSchema: Record<string, unknown> | null;
  network: { mode: NetworkMode | undefined; allow: string[] };
  systemPromptMode: 'append' | 'replace';
  /** The default model, and the models a task may pick (default: just `model`, or any when neither is set). */
  model: string | undefined;
  models: string[] | undefined;
  maxTurns: number | undefined;
  timeoutMs: number | undefined;
  budgetUsd: number | undefined;
  /** runner.json's allowedTools (the built-in tools offered; all when empty) and disallowedTools (rules always refused). */
  toolRules: { offered: string[]; denied: string[] };
  mcpServers: Record<string, McpServerConfig>;
  /** Per-sandbox limits below the operator's (bytes, cpus, pids, bytes). */
  limits: { memoryBytes?: number; cpus?: number; pidsLimit?: number };
  webhook: string | undefined;
  permissions: { ask: string[]; deny: string[] };
  /** runner.json's readyPool: how many ready sessions to keep (undefined: the operator's READY_POOL_SIZE). */
  readyPool: number | undefined;
}

function readOptional(path: string): string | null {
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

export function loadTemplate(name: string, dir: string, caps?: OperatorCaps): AgentTemplate {
  const agentsMd = readOptional(join(dir, 'AGENTS.md'));
  if (agentsMd === null) throw new Error(`agent template ${name}: ${dir}/AGENTS.md is missing`);
  const schemaText = readOptional(join(dir, 'output.schema.json'));
  let outputSchema: Record<string, unknown> | null = null;
  if (schemaText !== null) {
    try {
      outputSchema = checkUserSchema(JSON.parse(schemaText));
    } catch (error) {
      throw new Error(`agent template ${name}: output.schema.json: ${(error as Error).message}`);
    }
  }
  const configText = readOptional(join(dir, 'runner.json'));
  let config;
  try {
    config = parseRunnerJson(configText, caps);
  } catch (error) {
    throw new Error(`agent template ${name}: runner.json: ${(error as Error).message}`);
  }
  return {
    name,
    dir,
    agentsMd,
    outputMd: readOptional(join(dir, 'OUTPUT.md')),
    outputSchema,
    network: { mode: config.network.mode, allow: config.network.allow },
    systemPromptMode: config.systemPrompt,
    model: config.model,
    models: config.models ?? (config.model !== undefined ? [config.model] : undefined),
    maxTurns: config.maxTurns,
    timeoutMs: config.timeoutMs,
    budgetUsd: config.budgetUsd,
    toolRules: { offered: config.allowedTools, denied: config.disallowedTools },
    mcpServers: config.mcpServers,
    limits: {
      ...(config.limits.memory !== undefined && { memoryBytes: config.limits.memory }),
      ...(config.limits.cpus !== undefined && { cpus: config.limits.cpus }),
      ...(config.limits.pids !== undefined && { pidsLimit: config.limits.pids }),
    },
    webhook: config.webhook,
    permissions: config.permissions,
    readyPool: config.readyPool,
  };
}

/** The repository's own templates, shipped with the runner. */
export const BUILTIN_TEMPLATES_DIR = resolve(import.meta.dirname, '../../templates');

function loadTemplateFolder(parent: string, caps: OperatorCaps | undefined): Map<string, AgentTemplate> {
  const found = new Map<string, AgentTemplate>();
  if (!existsSync(parent)) return found;
  for (const entry of readdirSync(parent).sort()) {
    const dir = join(parent, entry);
    if (statSync(dir).isDirectory() && existsSync(join(dir, 'AGENTS.md'))) found.set(entry, loadTemplate(entry, dir, caps));
  }
  return found;
}

export class TemplateCatalog {
  private readonly templates = new Map<string, AgentTemplate>();
  private readonly builtins: Map<string, AgentTemplate>;
  private readonly defaultName: string | undefined;

  constructor(agentDir: string, defaultAgent?: string, builtinDir: string = BUILTIN_TEMPLATES_DIR, caps?: OperatorCaps) {
    if (!existsSync(agentDir)) throw new Error(`AGENT_DIR ${agentDir} does not exist`);
    if (existsSync(join(agentDir, 'AGENTS.md'))) {
      this.templates.set('default', loadTemplate('default', agentDir, caps));
    } else {
      for (const [name, template] of loadTemplateFolder(agentDir, caps)) this.templates.set(name, template);
    }
    if (this.templates.size === 0) throw new Error(`AGENT_DIR ${agentDir} holds no AGENTS.md, nor folders that do`);
    if (defaultAgent !== undefined && !this.templates.has(defaultAgent)) {
      throw new Error(`DEFAULT_AGENT ${defaultAgent} is not a template in ${agentDir}`);
    }
    this.defaultName = defaultAgent ?? (this.templates.size === 1 ? [...this.templates.keys()][0] : undefined);
    // After the default is settled: built-ins only fill names the operator left free.
    this.builtins = loadTemplateFolder(builtinDir, caps);
    for (const name of this.templates.keys()) this.builtins.delete(name);
  }

  /** The operator's templates, then the built-ins they did not override. */
  names(): string[] {
    return [...this.templates.keys(), ...this.builtins.keys()];
  }

  /** How many ready sessions a template keeps: its runner.json's readyPool, else `operatorSize` (built-ins: none unless they ask). */
  readyPoolSize(name: string, operatorSize: number): number {
    const template = this.get(name);
    return template.readyPool ?? (this.templates.has(name) ? operatorSize : 0);
  }

  get(name: string): AgentTemplate {
    const template = this.templates.get(name) ?? this.builtins.get(name);
    if (!template) throw new RunnerError('AGENT_NOT_FOUND', `No agent template named "${name}". Known: ${this.names().join(', ')}.`);
    return template;
  }

  /** The template a new session is bound to. */
  pick(requested: string | undefined): AgentTemplate {
    if (requested !== undefined) return this.get(requested);
    if (this.defaultName === undefined) {
      throw new RunnerError('AGENT_REQUIRED', `Several agent templates exist (${this.names().join(', ')}): name one in the "agent" field.`);
    }
    return this.get(this.defaultName);
  }
}
