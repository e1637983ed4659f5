/**
 * What every remote command shares: the client built from --url / --api-key
 * (or CLAUDE_RUNNER_URL / CLAUDE_RUNNER_API_KEY), the exit codes, and an
 * AbortSignal that Ctrl-C fires.
 */
import { Command, InvalidArgumentError } from 'commander';
import { ClaudeRunnerClient, DEFAULT_BASE_URL } from '../client/index.ts';

export const EXIT = {
  ok: 0,
  /** The server answered an error, or the task did not succeed. */
  failed: 1,
  /** Bad usage (commander's errors). */
  usage: 2,
  /** Ctrl-C. */
  interrupted: 130,
} as const;

/** Thrown to end a command with an exit code, after it printed what it had to. */
export class ExitCode extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`exit ${code}`);
    this.code = code;
  }
}

export interface GlobalOptions {
  url: string;
  apiKey?: string;
}

export function clientOf(command: Command): ClaudeRunnerClient {
  const options = command.optsWithGlobals<GlobalOptions>();
  return new ClaudeRunnerClient({ baseUrl: options.url, ...(options.apiKey ? { apiKey: options.apiKey } : {}) });
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--url <url>', 'the runner\'s address (env CLAUDE_RUNNER_URL)', process.env.CLAUDE_RUNNER_URL || DEFAULT_BASE_URL)
    .option('--api-key <key>', 'API key, when the runner has API_KEYS (env CLAUDE_RUNNER_API_KEY)', process.env.CLAUDE_RUNNER_API_KEY || undefined);
}

/** An AbortSignal fired by Ctrl-C (SIGINT) or SIGTERM, for commands that wait. */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
}

export function parseInteger(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number (0 or more).');
  return Number(value);
}

export function parsePositiveNumber(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new InvalidArgumentError('must be a number above 0.');
  return number;
}

export function parseBoolean(value: string): boolean {
  if (/^(true|yes|1|on)$/i.test(value)) return true;
  if (/^(false|no|0|off)$/i.test(value)) return false;
  throw new InvalidArgumentError('must be true or false.');
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
