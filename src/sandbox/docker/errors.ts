/**
 * The one place where Docker errors become RunnerError codes. Nothing above
 * the driver sees a Docker error, status code or message format.
 */
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';

interface DockerLikeError {
  statusCode?: number;
  code?: string;
  message?: string;
  reason?: string;
  json?: { message?: string } | null;
  address?: string;
}

export interface ErrorContext {
  /** What the driver was doing, e.g. "create the container". */
  action: string;
  sessionKey?: string;
  image?: string;
  socketPath?: string;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'EPERM', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

function dockerMessage(error: DockerLikeError): string {
  const raw = error.json?.message ?? error.message ?? String(error);
  return raw.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim();
}

export function unavailableMessage(detail: string, socketPath?: string): string {
  return (
    `The Docker engine is not reachable${socketPath ? ` at ${socketPath}` : ''} (${detail}). ` +
    'Start it (`systemctl start docker`, or `dockerd &` as root) and make sure this user may use its socket (root or the docker group).'
  );
}

export function imageMissingMessage(image: string): string {
  return `The sandbox image ${image} is missing: run \`npm run image\` (add \`-- --offline\` without a registry).`;
}

/** Maps any error thrown while talking to Docker to a RunnerError. */
export function toRunnerError(error: unknown, context: ErrorContext): RunnerError {
  if (error instanceof RunnerError) return error;
  const e = (error ?? {}) as DockerLikeError;
  const message = dockerMessage(e);
  const where = context.sessionKey ? ` (session ${context.sessionKey})` : '';
  const details = { action: context.action, statusCode: e.statusCode, docker: message };

  if (e.statusCode === undefined && e.code && CONNECTION_CODES.has(e.code)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', unavailableMessage(e.code, context.socketPath), details);
  }
  if (e.statusCode === 404 && /no such image|pull access denied|repository does not exist/i.test(message)) {
    return new RunnerError('SANDBOX_IMAGE_MISSING', imageMissingMessage(context.image ?? 'claude-runner-sandbox:latest'), details);
  }
  if (e.statusCode === 404 && /no such container|no such exec/i.test(message)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', `The sandbox${where} does not exist (it was removed).`, details);
  }
  if (e.statusCode === 409 && /not running|is paused|is restarting|marked for removal|removal .* in progress/i.test(message)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', `The sandbox${where} is not running.`, details);
  }
  if (/unknown runtime|runtime .*not found|runtime .*not (installed|configured)/i.test(message)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', `The configured container runtime is not installed in the Docker engine: ${message}`, details);
  }
  if (/bind source path does not exist|invalid mount config/i.test(message)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', `A folder or file to mount into the sandbox${where} is missing: ${message}`, details);
  }
  if (/resource temporarily unavailable|cannot allocate memory|out of memory/i.test(message)) {
    return new RunnerError('SANDBOX_LIMIT', 'The sandbox hit a resource limit (memory or processes) before it could run the command.', details);
  }
  if (e.statusCode !== undefined && e.statusCode >= 500 && /cannot connect|is the docker daemon running/i.test(message)) {
    return new RunnerError('SANDBOX_UNAVAILABLE', unavailableMessage(message, context.socketPath), details);
  }
  return new RunnerError('INTERNAL', `Docker could not ${context.action}${where}: ${message}`, details);
}

/** True for "this object does not exist" answers (404). */
export function isNotFound(error: unknown): boolean {
  return (error as DockerLikeError | null)?.statusCode === 404;
}

/** True for 304 "already in that state" answers (start/stop). */
export function isNotModified(error: unknown): boolean {
  return (error as DockerLikeError | null)?.statusCode === 304;
}

export function isConflict(error: unknown): boolean {
  return (error as DockerLikeError | null)?.statusCode === 409;
}

/** True when a container cannot be created or started because its network is gone. */
export function isMissingNetwork(error: unknown): boolean {
  const e = (error ?? {}) as DockerLikeError;
  return e.statusCode === 404 && /network .*not found/i.test(dockerMessage(e));
}

/** The engine's unix socket, as a message names it (undefined over TCP). */
export function engineSocketPath(docker: Docker): string | undefined {
  const value = (docker.modem as unknown as { socketPath?: unknown }).socketPath;
  return typeof value === 'string' ? value : typeof value === 'function' ? '/var/run/docker.sock' : undefined;
}
