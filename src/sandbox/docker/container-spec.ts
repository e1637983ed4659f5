/**
 * The canonical, hardened container of a session, in one function
 * (buildContainerSpec) so that a reader and a test see all of it.
 *
 * What it does not bound:
 *  - Disk: /workspace and the home are bind mounts of host folders (the
 *    image's overlay root is read-only) with no quota, so a sandbox can fill
 *    the host filesystem that holds DATA_DIR. Only /tmp and /dev/shm (tmpfs,
 *    counted as memory) are capped.
 *  - Cloud metadata: `open` sandboxes reach every address the host routes to,
 *    including link-local metadata services (169.254.169.254 and the like),
 *    unless the host blocks them (e.g. an iptables rule in the DOCKER-USER chain).
 */
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { SANDBOX_CLAUDE_PATH, SANDBOX_GATEWAY_DIR, SANDBOX_HOME, SANDBOX_WORKSPACE, type SandboxSpec } from '../../core/ports/sandbox.ts';

/** Paths inside the sandbox; those the runtime needs too are defined by the port. */
export { AGENT_GID, AGENT_UID, SANDBOX_CLAUDE_PATH, SANDBOX_GATEWAY_DIR, SANDBOX_HOME, SANDBOX_WORKSPACE } from '../../core/ports/sandbox.ts';
export const SANDBOX_GATEWAY_SOCKET = `${SANDBOX_GATEWAY_DIR}/gateway.sock`;
/**
 * The Docker network of `open` sandboxes, created by the driver when missing:
 * its own bridge (not Docker's default one, so other containers of the host
 * are out of reach) with inter-container traffic off, so no sandbox reaches
 * another session's (or tenant's). The runner's own servers refuse
 * connections from its addresses (DockerSandboxDriver.isSandboxAddress):
 * from there, the host's interfaces are one hop away. (Docker's embedded DNS
 * still resolves the other sandboxes' container names there; connecting to
 * them fails.)
 */
export const OPEN_NETWORK = 'claude-runner-open';
/** The bridge option that drops traffic between containers of the network. */
export const ICC_OPTION = 'com.docker.network.bridge.enable_icc';
/** The relay listens here (loopback of the sandbox) and forwards to SANDBOX_GATEWAY_SOCKET. */
export const RELAY_PORT = 4100;
/**
 * The /etc/hosts of sandboxes whose network namespace the OCI runtime makes (ContainerConfig.hostsFile):
 * Docker writes one only for the namespaces it makes. The names of Docker's own for `none`.
 */
export const SANDBOX_ETC_HOSTS = [
  '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters', '',
].join('\n');

/** The relay user (the container's main process): not the agent, so the agent cannot signal it. */
export const RELAY_UID = 1001;
export const RELAY_GID = 1001;

export const LABEL_PREFIX = 'dev.claude-runner';
export const LABELS = {
  instance: `${LABEL_PREFIX}.instance`,
  sessionKey: `${LABEL_PREFIX}.session-key`,
  sessionId: `${LABEL_PREFIX}.session-id`,
  tenant: `${LABEL_PREFIX}.tenant`,
  specHash: `${LABEL_PREFIX}.spec-hash`,
} as const;

export interface SandboxLimits {
  /** Memory limit; swap is disabled (MemorySwap = Memory). */
  memoryBytes: number;
  /** CPU limit in units of 1e-9 CPUs (1 CPU = 1_000_000_000). */
  nanoCpus: number;
  /** Maximum number of processes/threads in the sandbox (relay included). */
  pidsLimit: number;
  /** Size of the /tmp tmpfs (counts towards memory). */
  tmpSizeBytes: number;
}

export interface ContainerConfig {
  runnerId: string;
  image: string;
  /** Host path of the `claude` executable, mounted read-only at SANDBOX_CLAUDE_PATH. */
  claudeExecutablePath: string;
  limits: SandboxLimits;
  /** OCI runtime (e.g. 'runsc' for gVisor); the engine default when absent. */
  runtime?: string;
  /** "uid:gid" of the relay (the container's main process). */
  relayUser: string;
  /** The Docker network of `open` sandboxes (default OPEN_NETWORK). */
  openNetwork?: string;
  /**
   * Host path of a file holding SANDBOX_ETC_HOSTS. When set, none and allowlist sandboxes get their
   * network namespace from the OCI runtime (runc: a loopback, up, and nothing else, as with Docker's
   * `none` network) and this file as their /etc/hosts; when not, Docker's `none` network.
   */
  hostsFile?: string;
}

const SESSION_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/;

export function isValidSessionKey(sessionKey: string): boolean {
  return SESSION_KEY_PATTERN.test(sessionKey);
}

export function containerName(sessionKey: string): string {
  return `claude-runner-${sessionKey}`;
}

/**
 * The relay: the container's main process, run as the relay user under docker-init.
 * `nodelay` (TCP_NODELAY) on the agent's side: with Nagle's algorithm, the last
 * small write of a streamed answer (its chunked end) waited for the agent's
 * delayed ACK, so every task's final answer reached `claude` about 40 ms late.
 */
export function relayCommand(): string[] {
  return [
    'socat',
    `TCP-LISTEN:${RELAY_PORT},bind=127.0.0.1,fork,reuseaddr,nodelay`,
    `UNIX-CONNECT:${SANDBOX_GATEWAY_SOCKET}`,
  ];
}

/**
 * Everything Docker is told about a session's container. The spec-hash label
 * is a hash of all the rest: ensure() recreates a container whose label differs.
 */
export function buildContainerSpec(config: ContainerConfig, spec: SandboxSpec): Docker.ContainerCreateOptions {
  const open = spec.network === 'open';
  const ownNamespace = !open && config.hostsFile !== undefined;
  const [entrypoint, ...args] = relayCommand();
  const memoryBytes = spec.limits?.memoryBytes ?? config.limits.memoryBytes;
  const hostConfig: Docker.HostConfig = {
    // Only these mounts: never the Docker socket, nothing else of the host.
    Mounts: [
      { Type: 'bind', Source: spec.workspaceDir, Target: SANDBOX_WORKSPACE, ReadOnly: false },
      { Type: 'bind', Source: spec.homeDir, Target: SANDBOX_HOME, ReadOnly: false },
      { Type: 'bind', Source: spec.gatewaySocketDir, Target: SANDBOX_GATEWAY_DIR, ReadOnly: true },
      { Type: 'bind', Source: config.claudeExecutablePath, Target: SANDBOX_CLAUDE_PATH, ReadOnly: true },
      ...(ownNamespace ? [{ Type: 'bind' as const, Source: config.hostsFile!, Target: '/etc/hosts', ReadOnly: true }] : []),
    ],
    // The image is read-only. Writable: the two binds above, this /tmp (Claude Code
    // keeps its per-user tmp dir and sockets here; exec allowed: tools build and run
    // things there, as in /workspace) and Docker's default /dev/shm (64 MiB tmpfs).
    // Nothing else needs writing (checked: bash, git, curl and a Claude Code task with a Bash tool call).
    ReadonlyRootfs: true,
    Tmpfs: { '/tmp': `rw,exec,nosuid,nodev,size=${config.limits.tmpSizeBytes},mode=1777` },
    // docker-init is PID 1: it reaps orphans (killed tools do not stay zombies).
    Init: true,
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges'],
    Privileged: false,
    Memory: memoryBytes,
    MemorySwap: memoryBytes,
    NanoCpus: spec.limits?.nanoCpus ?? config.limits.nanoCpus,
    PidsLimit: spec.limits?.pidsLimit ?? config.limits.pidsLimit,
    // none/allowlist: loopback only (the relay is the way out); open: the open network (see OPEN_NETWORK).
    NetworkMode: open ? (config.openNetwork ?? OPEN_NETWORK) : 'none',
    ...(open ? { ExtraHosts: ['host.docker.internal:host-gateway'] } : {}),
    ...(config.runtime ? { Runtime: config.runtime } : {}),
    RestartPolicy: { Name: 'no' },
    // The relay logs only its errors (e.g. gateway socket missing): keep them bounded.
    LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
  };
  const options: Docker.ContainerCreateOptions = {
    name: containerName(spec.sessionKey),
    Image: config.image,
    Hostname: 'sandbox',
    User: config.relayUser,
    Entrypoint: [entrypoint!],
    Cmd: args,
    WorkingDir: SANDBOX_WORKSPACE,
    // The only variable set by the runner; nothing from the host's environment.
    Env: [`HOME=${SANDBOX_HOME}`],
    // The OCI runtime makes the sandbox's network namespace, with its loopback up and nothing else, as
    // Docker's `none` network does; but Docker's way runs its libnetwork hook (a re-exec of dockerd) in
    // every start: half of a start's 0.2 s here. Docker writes no /etc/hosts then: hostsFile is it.
    ...(ownNamespace ? { NetworkDisabled: true } : {}),
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    OpenStdin: false,
    Tty: false,
    Labels: {
      [LABELS.instance]: config.runnerId,
      [LABELS.sessionKey]: spec.sessionKey,
      // Who the session belongs to, when known: a ready session's sandbox is made before anyone claims it.
      ...(spec.sessionId ? { [LABELS.sessionId]: spec.sessionId } : {}),
      ...(spec.tenantId ? { [LABELS.tenant]: spec.tenantId } : {}),
    },
    HostConfig: hostConfig,
  };
  options.Labels![LABELS.specHash] = specHash(options);
  return options;
}

/** How the driver creates the network of `open` sandboxes. */
export function openNetworkCreateOptions(name: string, runnerId: string): Docker.NetworkCreateOptions {
  return {
    Name: name,
    Driver: 'bridge',
    // Two runners creating it at once: the second gets a conflict instead of a twin of the same name.
    CheckDuplicate: true,
    Internal: false,
    Attachable: false,
    Options: { [ICC_OPTION]: 'false' },
    Labels: { [`${LABEL_PREFIX}.network`]: 'open', [`${LABEL_PREFIX}.created-by`]: runnerId },
  };
}

/**
 * A short hash of the create options, without the hash label itself and the
 * owner's labels (a ready session's sandbox, made before it had an owner, is
 * the one its owner's first task would have made: it is not recreated).
 */
export function specHash(options: Docker.ContainerCreateOptions): string {
  const labels = { ...options.Labels };
  for (const label of [LABELS.specHash, LABELS.sessionId, LABELS.tenant]) delete labels[label];
  return createHash('sha256')
    .update(JSON.stringify({ ...options, Labels: labels }))
    .digest('hex')
    .slice(0, 16);
}
