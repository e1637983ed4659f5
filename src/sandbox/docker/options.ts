/**
 * The Docker sandbox driver's options, and their defaults.
 */
import type Docker from 'dockerode';
import type { SandboxLimits } from './container-spec.ts';
import type { SandboxLogger } from './exec-process.ts';

export interface DockerSandboxDriverOptions {
  /** A dockerode instance, or options to create one (default: the local socket / DOCKER_HOST). */
  docker?: Docker | Docker.DockerOptions;
  /** This runner instance: its containers carry the label dev.claude-runner.instance=<runnerId>. Keep it stable across restarts. */
  runnerId: string;
  /** Sandbox image (default claude-runner-sandbox:latest). */
  image?: string;
  /** Host path of the `claude` executable; mounted read-only at SANDBOX_CLAUDE_PATH. */
  claudeExecutablePath: string;
  limits: SandboxLimits;
  /** OCI runtime name (e.g. 'runsc' for gVisor); the engine's default when absent. */
  runtime?: string;
  /** "uid:gid" that exec'd processes run as (default AGENT_UID:AGENT_GID). */
  agentUser?: string;
  /** "uid:gid" of the relay, the container's main process (default RELAY_UID:RELAY_GID). */
  relayUser?: string;
  /** The Docker network of `open` sandboxes, created when missing (default OPEN_NETWORK). */
  openNetwork?: string;
  /**
   * Where the driver writes the /etc/hosts of none and allowlist sandboxes under runc (container-spec.ts,
   * ContainerConfig.hostsFile): a path the engine sees as this process does, like the session folders
   * (default: claude-runner-etc-hosts in the OS's temp folder).
   */
  hostsFile?: string;
  logger?: SandboxLogger;
  /** How long ensure() waits for the relay to listen (default 10 s). */
  readyTimeoutMs?: number;
  /**
   * Where resourceCounters() reads the cgroup counters: 'auto' (default) reads
   * the host's /sys/fs/cgroup when this process sees the Docker host's /proc,
   * else from inside the sandbox; 'sandbox' always reads from inside.
   */
  countersFrom?: 'auto' | 'sandbox';
  /**
   * Several runner nodes on one engine: whether the runner that labelled a
   * container is gone (its sessions taken over). Such a container in the way
   * of a session's is removed; without this, never.
   */
  ownerGone?: (runnerId: string) => Promise<boolean>;
}

export const DEFAULT_IMAGE = 'claude-runner-sandbox:latest';

export const silentLogger: SandboxLogger = { debug() {}, info() {}, warn() {}, error() {} };
