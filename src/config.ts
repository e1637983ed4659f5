/**
 * Configuration from environment variables, parsed once at start-up. Every
 * variable has a documented default (README "Configuration"), so `npm start`
 * works on a fresh machine with nothing set.
 */
import { availableParallelism, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { NetworkMode } from './core/ports/sandbox.ts';
import { DEFAULT_RETRY_SCHEDULE_MS, webhookSecretProblem } from './webhooks/secret.ts';

const MiB = 1024 * 1024;

/**
 * READY_POOL_SIZE's default: 1 ready session per template, 2 from 8 cores, and
 * none where live agents or memory are scarce (each holds ~250 MB of a live
 * `claude` and a container).
 */
export function readyPoolDefault(maxLiveAgents: number, cores = availableParallelism(), memoryBytes = totalmem()): number {
  const byCores = cores >= 8 ? 2 : 1;
  return Math.max(0, Math.min(byCores, Math.floor(maxLiveAgents / 4), Math.floor(memoryBytes / (2048 * MiB))));
}

const int = (fallback: number) => z.coerce.number().int().nonnegative().default(fallback);
const num = (fallback: number) => z.coerce.number().nonnegative().default(fallback);
const optionalNum = z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().positive().optional());
const optionalText = z.preprocess((v) => (v === '' ? undefined : v), z.string().optional());
const bool = (fallback: boolean) =>
  z.preprocess((v) => (v === undefined || v === '' ? fallback : /^(1|true|yes|on)$/i.test(String(v))), z.boolean());

export const SIZE = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i;

/** "512m", "2g", "1048576" → bytes (checked against SIZE first). */
export function parseBytes(text: string): number {
  const match = SIZE.exec(text.trim())!;
  const unit = { '': 1, k: 1024, m: MiB, g: 1024 * MiB }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(match[1]) * unit);
}
const bytes = (fallback: string) =>
  z.string().default(fallback).refine((v) => SIZE.test(v.trim()), 'expected a size such as 512m, 2g or 1048576').transform(parseBytes);

const schema = z.object({
  PORT: int(3456),
  HOST: optionalText,
  DATA_DIR: z.string().default('./data'),
  AGENT_DIR: z.string().default('./agent'),
  DEFAULT_AGENT: optionalText,
  MODEL: optionalText,
  MAX_TURNS: int(50),
  MODEL_MAX_RETRIES: int(3),
  SANDBOX_IMAGE: z.string().default('claude-runner-sandbox:latest'),
  SANDBOX_MEMORY: bytes('1g'),
  SANDBOX_CPUS: num(1),
  SANDBOX_PIDS: int(256),
  SANDBOX_TMP_SIZE: bytes('256m'),
  SANDBOX_DISK: bytes('2g'),
  SANDBOX_DISK_MODE: z.enum(['measure', 'loop']).default('measure'),
  SANDBOX_RUNTIME: optionalText,
  DOCKER_SOCKET: z.string().default('/var/run/docker.sock'),
  NETWORK_POLICY: z.enum(['none', 'allowlist', 'open']).default('allowlist'),
  ANTHROPIC_API_KEY: optionalText,
  CLAUDE_CODE_OAUTH_TOKEN: optionalText,
  ANTHROPIC_BASE_URL: z.string().url().default('https://api.anthropic.com'),
  API_KEYS: optionalText,
  ALLOW_UNAUTHENTICATED_REMOTE: bool(false),
  ALLOWED_HOSTS: optionalText,
  CORS_ORIGINS: optionalText,
  MAX_CONCURRENT_TASKS: int(4),
  MAX_QUEUED_PER_SESSION: int(20),
  MAX_SESSIONS: int(10_000),
  MAX_LIVE_AGENTS: int(8),
  MAX_RUNNING_SANDBOXES: int(32),
  /** Ready sessions per agent template; empty: sized to the machine (readyPoolDefault). */
  READY_POOL_SIZE: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).max(16).optional()),
  IDLE_TIMEOUT_MS: int(10 * 60_000),
  /** How often idle sessions are looked for; 0: half of IDLE_TIMEOUT_MS, between 1 s and 60 s. */
  IDLE_SWEEP_MS: int(0),
  AGENT_IDLE_MS: int(5 * 60_000),
  TASK_TIMEOUT_MS: int(15 * 60_000),
  INPUT_TIMEOUT_MS: int(10 * 60_000),
  MAX_BUDGET_USD: optionalNum,
  SESSION_BUDGET_USD: optionalNum,
  SHUTDOWN_GRACE_MS: int(30_000),
  BODY_LIMIT_BYTES: bytes('1m'),
  FILE_UPLOAD_LIMIT_BYTES: bytes('50m'),
  RATE_LIMIT_PER_MINUTE: int(600),
  EVENTS_MAX_PER_SESSION: int(20_000),
  EVENTS_MAX_AGE_MS: int(7 * 24 * 3_600_000),
  EVENTS_TRIM_INTERVAL_MS: int(60_000),
  STREAM_BUFFER_BYTES: bytes('4m'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  RUNNER_ID: optionalText,
  DATABASE_URL: optionalText.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), 'expected a postgres:// URL (unset: SQLite in DATA_DIR)'),
  NODE_LEASE_MS: int(15_000).refine((v) => v >= 200, 'expected at least 200 ms'),
  CLAUDE_EXECUTABLE: optionalText,
  RUNNER_SECRET_KEY: optionalText,
  WEBHOOK_SECRET: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()
    .superRefine((v, ctx) => {
      const problem = v === undefined ? null : webhookSecretProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (generate one with: echo whsec_$(openssl rand -base64 32))` });
    })),
  WEBHOOK_TIMEOUT_MS: int(10_000),
  WEBHOOK_RETRY_SCHEDULE: z.string().default(DEFAULT_RETRY_SCHEDULE_MS.join(','))
    .refine((v) => /^\s*\d+(\s*,\s*\d+)*\s*$/.test(v), 'expected waits in ms separated by commas, such as 5000,300000')
    .transform((v) => v.split(',').map((entry) => Number(entry.trim()))),
  WEBHOOK_ALLOW_PRIVATE: bool(false),
});

/** Every variable the runner reads (README "Configuration" documents each; a test checks it). */
export const configVariables: readonly string[] = Object.keys(schema.shape);

export interface Config {
  port: number;
  /** Where the HTTP API listens; loopback unless API keys are configured. */
  host: string;
  dataDir: string;
  agentDir: string;
  defaultAgent: string | undefined;
  model: string | undefined;
  maxTurns: number;
  /** How often the agent retries a failed model call (Claude Code's CLAUDE_CODE_MAX_RETRIES). */
  modelMaxRetries: number;
  sandbox: {
    image: string;
    memoryBytes: number;
    nanoCpus: number;
    pidsLimit: number;
    tmpSizeBytes: number;
    /** Per-session workspace quota (0: none). */
    diskBytes: number;
    /** measure: the workspace is measured now and then; loop: it is a filesystem of that size. */
    diskMode: 'measure' | 'loop';
    runtime: string | undefined;
    /** The Docker engine's unix socket. */
    dockerSocket: string;
    defaultNetwork: NetworkMode;
  };
  upstream: {
    baseUrl: string;
    apiKey: string | undefined;
    oauthToken: string | undefined;
  };
  /** "key" or "tenant:key" entries; empty means no authentication. */
  apiKeys: Array<{ tenantId: string; key: string }>;
  /** Host names (besides loopback ones) a request may name when no API key is configured. */
  allowedHosts: string[];
  /** Origins (besides the runner's own) that may open streams and send state-changing requests. */
  corsOrigins: string[];
  limits: {
    maxConcurrentTasks: number;
    maxQueuedPerSession: number;
    maxSessions: number;
    maxLiveAgents: number;
    /** Running containers at most (0: no cap); also caps the tasks run at once. */
    maxRunningSandboxes: number;
    /** Ready sessions (a sandbox and a live agent, started before anyone asks) kept per agent template. */
    readyPoolSize: number;
    taskTimeoutMs: number;
    taskBudgetUsd: number | undefined;
    sessionBudgetUsd: number | undefined;
    bodyLimitBytes: number;
    fileUploadLimitBytes: number;
    rateLimitPerMinute: number;
  };
  idleTimeoutMs: number;
  /** Interval of the idle sweep (stops the sandboxes of sessions idle for idleTimeoutMs). */
  idleSweepMs: number;
  agentIdleMs: number;
  /** How long a question of an agent to a person waits for an answer; the task's own clock is paused meanwhile. */
  inputTimeoutMs: number;
  shutdownGraceMs: number;
  /** Retention (count, age) is applied every trimIntervalMs. */
  events: { maxPerSession: number; maxAgeMs: number; trimIntervalMs: number; streamBufferBytes: number };
  logLevel: string;
  runnerId: string | undefined;
  /** PostgreSQL shared by several runner nodes; undefined: SQLite in DATA_DIR, one node. */
  databaseUrl: string | undefined;
  /** A node that has not renewed its lease for this long is taken over by the others. */
  nodeLeaseMs: number;
  claudeExecutable: string | undefined;
  /** base64 32-byte key sealing task env at rest; generated in DATA_DIR when absent. */
  secretKey: string | undefined;
  webhooks: {
    /** whsec_… key signing deliveries; without it no task may ask for a webhook. */
    secret: string | undefined;
    timeoutMs: number;
    /** Waits (ms) before each retry; its length is the number of retries. */
    retryScheduleMs: number[];
    /** Lets webhooks reach loopback and private addresses (tests, trusted networks). */
    allowPrivate: boolean;
  };
  /** Warnings to log once the logger exists (e.g. a remote bind refused). */
  warnings: string[];
}

function parseApiKeys(text: string | undefined): Config['apiKeys'] {
  if (!text) return [];
  return text.split(',').map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const colon = entry.indexOf(':');
    return colon > 0 ? { tenantId: entry.slice(0, colon), key: entry.slice(colon + 1) } : { tenantId: 'default', key: entry };
  });
}

function list(text: string | undefined): string[] {
  return (text ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.DATABASE_URL && e.SANDBOX_DISK_MODE === 'loop') {
    // Every node would mount the shared workspace images: one filesystem image mounted on two machines is corrupted.
    throw new Error('Invalid configuration:\n  SANDBOX_DISK_MODE: loop is for one node; with DATABASE_URL use measure (see docs/scaling.md)');
  }
  const apiKeys = parseApiKeys(e.API_KEYS);
  const warnings: string[] = [];
  // Short keys can be guessed, and keys under 6 characters are not redacted from logs.
  for (const { tenantId, key } of apiKeys) if (key.length < 16) warnings.push(`An API key of tenant "${tenantId}" has only ${key.length} characters: use 16 or more random ones.`);
  let host = e.HOST ?? (apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1');
  if (apiKeys.length === 0 && !LOOPBACK.has(host) && !e.ALLOW_UNAUTHENTICATED_REMOTE) {
    warnings.push(`No API_KEYS are configured: listening on 127.0.0.1 instead of ${host}. Set API_KEYS to accept remote callers.`);
    host = '127.0.0.1';
  } else if (apiKeys.length === 0) {
    warnings.push(LOOPBACK.has(host)
      ? `No API_KEYS are configured: listening on ${host} only, where every local caller is accepted. Set API_KEYS to accept remote callers.`
      : `No API_KEYS are configured and ALLOW_UNAUTHENTICATED_REMOTE is set: ${host} accepts every caller.`);
  }
  return {
    port: e.PORT,
    host,
    dataDir: resolve(e.DATA_DIR),
    agentDir: resolve(e.AGENT_DIR),
    defaultAgent: e.DEFAULT_AGENT,
    model: e.MODEL,
    maxTurns: e.MAX_TURNS,
    modelMaxRetries: e.MODEL_MAX_RETRIES,
    sandbox: {
      image: e.SANDBOX_IMAGE,
      memoryBytes: e.SANDBOX_MEMORY,
      nanoCpus: Math.round(e.SANDBOX_CPUS * 1e9),
      pidsLimit: e.SANDBOX_PIDS,
      tmpSizeBytes: e.SANDBOX_TMP_SIZE,
      diskBytes: e.SANDBOX_DISK,
      diskMode: e.SANDBOX_DISK_MODE,
      runtime: e.SANDBOX_RUNTIME,
      dockerSocket: e.DOCKER_SOCKET,
      defaultNetwork: e.NETWORK_POLICY,
    },
    upstream: { baseUrl: e.ANTHROPIC_BASE_URL, apiKey: e.ANTHROPIC_API_KEY, oauthToken: e.CLAUDE_CODE_OAUTH_TOKEN },
    apiKeys,
    allowedHosts: list(e.ALLOWED_HOSTS).map((h) => h.toLowerCase()),
    corsOrigins: list(e.CORS_ORIGINS).map((o) => o.replace(/\/+$/, '').toLowerCase()),
    limits: {
      maxConcurrentTasks: Math.max(1, e.MAX_CONCURRENT_TASKS),
      maxQueuedPerSession: e.MAX_QUEUED_PER_SESSION,
      maxSessions: e.MAX_SESSIONS,
      maxLiveAgents: e.MAX_LIVE_AGENTS,
      maxRunningSandboxes: e.MAX_RUNNING_SANDBOXES,
      readyPoolSize: e.READY_POOL_SIZE ?? readyPoolDefault(e.MAX_LIVE_AGENTS),
      taskTimeoutMs: e.TASK_TIMEOUT_MS,
      taskBudgetUsd: e.MAX_BUDGET_USD,
      sessionBudgetUsd: e.SESSION_BUDGET_USD,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      fileUploadLimitBytes: e.FILE_UPLOAD_LIMIT_BYTES,
      rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    },
    idleTimeoutMs: e.IDLE_TIMEOUT_MS,
    idleSweepMs: e.IDLE_SWEEP_MS > 0 ? Math.max(10, e.IDLE_SWEEP_MS) : Math.max(1000, Math.min(e.IDLE_TIMEOUT_MS / 2, 60_000)),
    agentIdleMs: e.AGENT_IDLE_MS,
    inputTimeoutMs: Math.max(1, e.INPUT_TIMEOUT_MS),
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    events: {
      maxPerSession: e.EVENTS_MAX_PER_SESSION, maxAgeMs: e.EVENTS_MAX_AGE_MS,
      trimIntervalMs: Math.max(10, e.EVENTS_TRIM_INTERVAL_MS), streamBufferBytes: e.STREAM_BUFFER_BYTES,
    },
    logLevel: e.LOG_LEVEL,
    runnerId: e.RUNNER_ID,
    databaseUrl: e.DATABASE_URL,
    nodeLeaseMs: e.NODE_LEASE_MS,
    claudeExecutable: e.CLAUDE_EXECUTABLE,
    secretKey: e.RUNNER_SECRET_KEY,
    webhooks: {
      secret: e.WEBHOOK_SECRET, timeoutMs: Math.max(1, e.WEBHOOK_TIMEOUT_MS),
      retryScheduleMs: e.WEBHOOK_RETRY_SCHEDULE, allowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    },
    warnings,
  };
}
