/**
 * runner.json: a template's own settings (model, limits, tools, MCP servers,
 * network, webhook, permission rules), checked against the operator's caps.
 *
 * Owns: the schema and the checks that make start fail fast, naming the field.
 * Must not touch: process.env (the operator's caps are passed in by src/app.ts).
 */
import { z } from 'zod';
import { parseBytes, SIZE } from '../config.ts';

/** The operator's ceilings a template may lower but never raise. */
export interface OperatorCaps {
  memoryBytes: number;
  cpus: number;
  pidsLimit: number;
  taskTimeoutMs: number;
  budgetUsd: number | undefined;
}

const size = z.string().refine((v) => SIZE.test(v.trim()), 'expected a size such as 512m, 2g or 1048576').transform(parseBytes);

/** What an allowlisted sandbox may reach: "host", "host:port", "*.domain" or "*.domain:port". */
const ALLOW_ENTRY = /^(\*\.)?[A-Za-z0-9.-]+(?::(\d{1,5}))?$/;
const allowEntry = z.string().refine((entry) => {
  const match = ALLOW_ENTRY.exec(entry);
  return match !== null && (match[2] === undefined || (Number(match[2]) >= 1 && Number(match[2]) <= 65535));
}, 'expected host, host:port, *.domain or *.domain:port (port 1-65535)');

/** Claude Code permission rules: `Tool` or `Tool(specifier)`, e.g. `Bash(git push:*)`, `mcp__srv__tool`. */
const PERMISSION_RULE = /^[A-Za-z_][A-Za-z0-9_-]*(\(.+\))?$/s;
const permissionRule = z.string().regex(PERMISSION_RULE, 'expected a permission rule such as Write, Bash(git:*) or mcp__server__tool');

function isHttpUrl(text: string): boolean {
  try {
    return /^https?:$/.test(new URL(text).protocol);
  } catch {
    return false;
  }
}
const httpUrl = z.string().refine(isHttpUrl, 'expected an absolute http(s) URL');

const stdioServer = z.object({
  type: z.literal('stdio').optional(),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
}).strict();
const remoteServer = z.object({
  type: z.enum(['http', 'sse']),
  url: httpUrl,
  headers: z.record(z.string(), z.string()).optional(),
}).strict();
const mcpServer = z.union([stdioServer, remoteServer]);
export type McpServerConfig = z.infer<typeof mcpServer>;

const positiveInt = z.number({ message: 'expected a positive integer' }).int('expected a positive integer').positive('expected a positive integer');
const positiveNum = z.number({ message: 'expected a positive number' }).positive('expected a positive number');

export const runnerJsonSchema = z.object({
  network: z.object({
    mode: z.enum(['none', 'allowlist', 'open']).optional(),
    allow: z.array(allowEntry).max(256).default([]),
  }).strict().default({ allow: [] }),
  /** "append" keeps Claude Code's own system prompt and adds AGENTS.md; "replace" uses AGENTS.md alone. */
  systemPrompt: z.enum(['append', 'replace']).default('append'),
  model: z.string().min(1).optional(),
  models: z.array(z.string().min(1)).min(1).optional(),
  maxTurns: positiveInt.optional(),
  timeoutMs: positiveInt.optional(),
  budgetUsd: positiveNum.optional(),
  /** The built-in tools the agent is offered (names; all when empty). MCP tools come with their servers. */
  allowedTools: z.array(z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'expected a built-in tool name such as Read or Bash')).default([]),
  disallowedTools: z.array(permissionRule).default([]),
  mcpServers: z.record(z.string(), mcpServer).superRefine((servers, ctx) => {
    for (const name of Object.keys(servers)) {
      if (!/^[A-Za-z0-9_-]+$/.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: 'expected a name of letters, digits, _ or -' });
    }
  }).default({}),
  limits: z.object({
    memory: size.optional(),
    cpus: positiveNum.optional(),
    pids: positiveInt.optional(),
  }).strict().default({}),
  webhook: httpUrl.optional(),
  /** Ready sessions kept for this template (READY_POOL_SIZE by default; 0: none). */
  readyPool: z.number().int().min(0).max(16).optional(),
  permissions: z.object({
    ask: z.array(permissionRule).default([]),
    deny: z.array(permissionRule).default([]),
  }).strict().default({ ask: [], deny: [] }),
}).strict();
export type RunnerJson = z.infer<typeof runnerJsonSchema>;

/** Whether an allowlist entry ("host", "host:port", "*.domain[:port]") admits host:port. */
function allows(entry: string, host: string, port: number): boolean {
  const [pattern, entryPort] = entry.split(':') as [string, string | undefined];
  if (entryPort !== undefined && Number(entryPort) !== port) return false;
  const h = host.toLowerCase();
  const p = pattern.toLowerCase();
  return p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p;
}

/** Parses runner.json text and checks it against the caps: returns the settings or the first "field: reason". */
export function parseRunnerJson(text: string | null, caps: OperatorCaps | undefined): RunnerJson {
  let raw: unknown = {};
  if (text !== null) {
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new Error(`invalid JSON: ${(error as Error).message}`);
    }
  }
  const parsed = runnerJsonSchema.safeParse(raw);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const config = parsed.data;
  if (config.model !== undefined && config.models !== undefined && !config.models.includes(config.model)) {
    throw new Error(`model: "${config.model}" is not one of models (${config.models.join(', ')})`);
  }
  for (const [name, server] of Object.entries(config.mcpServers)) {
    if (server.type !== 'http' && server.type !== 'sse') continue;
    const mode = config.network.mode;
    if (mode === 'open') continue;
    const url = new URL(server.url);
    if (mode !== 'allowlist') throw new Error(`mcpServers.${name}.url: a ${server.type} server needs network mode "allowlist" (with its host allowed) or "open"; the mode is "${mode ?? 'none'}"`);
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (!config.network.allow.some((entry) => allows(entry, host, port))) {
      throw new Error(`mcpServers.${name}.url: host ${host}:${port} is not in network.allow`);
    }
  }
  if (caps !== undefined) checkCaps(config, caps);
  return config;
}

function checkCaps(config: RunnerJson, caps: OperatorCaps): void {
  const over = (field: string, value: string | number, cap: string, capValue: string | number) =>
    new Error(`${field}: ${value} is above the operator's ${cap} (${capValue})`);
  if (config.timeoutMs !== undefined && config.timeoutMs > caps.taskTimeoutMs) throw over('timeoutMs', config.timeoutMs, 'TASK_TIMEOUT_MS', caps.taskTimeoutMs);
  if (config.budgetUsd !== undefined && caps.budgetUsd !== undefined && config.budgetUsd > caps.budgetUsd) throw over('budgetUsd', config.budgetUsd, 'MAX_BUDGET_USD', caps.budgetUsd);
  const { memory, cpus, pids } = config.limits;
  if (memory !== undefined && memory > caps.memoryBytes) throw over('limits.memory', memory, 'SANDBOX_MEMORY', caps.memoryBytes);
  if (cpus !== undefined && cpus > caps.cpus) throw over('limits.cpus', cpus, 'SANDBOX_CPUS', caps.cpus);
  if (pids !== undefined && pids > caps.pidsLimit) throw over('limits.pids', pids, 'SANDBOX_PIDS', caps.pidsLimit);
}
