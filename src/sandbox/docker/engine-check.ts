/**
 * What the driver needs before it can start a sandbox (DockerSandboxDriver.check):
 * an engine that answers, the sandbox image, the configured OCI runtime
 * registered in the engine, and the `claude` executable to mount. Each
 * failure says what to do.
 */
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';
import { imageMissingMessage, isNotFound, unavailableMessage } from './errors.ts';

export interface EngineRequirements {
  docker: Docker;
  image: string;
  /** OCI runtime name; the engine's default when absent. */
  runtime?: string;
  claudeExecutablePath: string;
  /** The engine's socket, for messages. */
  socketPath?: string;
  toError(error: unknown, action: string): RunnerError;
}

/** Throws SANDBOX_UNAVAILABLE or SANDBOX_IMAGE_MISSING with what to do. */
export async function checkEngine(req: EngineRequirements): Promise<void> {
  const { docker, image, runtime, claudeExecutablePath } = req;
  try {
    const ping = docker.ping as unknown as (options: { abortSignal: AbortSignal }) => Promise<unknown>;
    await ping.call(docker, { abortSignal: AbortSignal.timeout(5000) });
  } catch (error) {
    const detail = (error as { code?: string }).code ?? (error as Error).message;
    throw new RunnerError('SANDBOX_UNAVAILABLE', unavailableMessage(detail, req.socketPath));
  }
  try {
    await docker.getImage(image).inspect();
  } catch (error) {
    if (isNotFound(error)) throw new RunnerError('SANDBOX_IMAGE_MISSING', imageMissingMessage(image));
    throw req.toError(error, 'inspect the sandbox image');
  }
  if (runtime) {
    const info = (await docker.info().catch((error: unknown) => { throw req.toError(error, 'read the engine info'); })) as { Runtimes?: Record<string, unknown> };
    if (!info.Runtimes || !(runtime in info.Runtimes)) {
      throw new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `The container runtime "${runtime}" is not configured in the Docker engine (has: ${Object.keys(info.Runtimes ?? {}).join(', ')}). Install it and register it in /etc/docker/daemon.json, or unset the runtime.` +
          // gVisor refuses connections to host unix sockets by default, and the relay must reach the gateway's.
          (runtime === 'runsc' ? ' For gVisor: `runsc install -- --host-uds=open` (add --network=none where runsc refuses Docker\'s network namespace: sandboxes under the none and allowlist policies need no network), then reload dockerd (the sandbox reaches the model gateway through a host unix socket). Use runsc release 20240729 or later: older ones (Debian bookworm\'s 20221219) fail `stat` and `ls -l` in the sandbox with "Invalid argument"; on bookworm, take runsc from bookworm-backports.' : ''),
      );
    }
  }
  try {
    await access(claudeExecutablePath, fsConstants.R_OK);
  } catch {
    throw new RunnerError(
      'SANDBOX_UNAVAILABLE',
      `The claude executable ${claudeExecutablePath} is missing: run \`npm install\` (it comes with @anthropic-ai/claude-agent-sdk).`,
    );
  }
}
