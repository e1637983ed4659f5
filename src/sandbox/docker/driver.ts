/**
 * Docker sandbox driver: implements the SandboxDriver port with dockerode.
 *
 * This folder owns: the session containers of one runner instance (named
 * claude-runner-<sessionKey>, labelled dev.claude-runner.instance=<runnerId>),
 * their one canonical hardened spec (container-spec.ts), processes run in them
 * (exec-process.ts), the mapping of Docker errors to RunnerError (errors.ts),
 * the ownership of the host folders it mounts (host-dirs.ts), and building the
 * sandbox image (image.ts, image/Dockerfile).
 *
 * It must not touch: containers or images it did not create (other runner
 * ids, other programs), the Docker socket inside a sandbox (never mounted),
 * the host's environment (never passed to a sandbox), the content of the
 * workspace/home folders (only their owner), or the gateway socket itself
 * (the model gateway creates it). It never shells out: no docker CLI, no
 * shell strings on the host.
 *
 * Processes inside a sandbox:
 *  - PID 1 docker-init, and the relay (socat, relay user 1001): forwards
 *    127.0.0.1:4100 to /run/claude-runner/gateway.sock.
 *  - Everything exec'd runs as the agent user (1000), which cannot signal the
 *    relay (other uid, no capabilities).
 *  - SandboxProcess.kill(signal) signals the exec'd command's process group
 *    (see exec-process.ts); killAgentProcesses() runs the shell builtin
 *    `kill -s KILL -- -1` as the agent user: every process of that uid dies
 *    (each session runs one agent, so this is the agent and its tools),
 *    repeated until nothing is left, so a fork bomb cannot outrun it.
 *  - An exec still starts when the pids limit is reached (joining a cgroup is
 *    not a fork), but it cannot fork: everything the driver runs inside
 *    (kill, readiness and counter reads) is one process, or shell builtins.
 *  - resourceCounters() reads the cgroup's `oom_kill` and pids `max` counters
 *    (host /sys/fs/cgroup when visible, else from inside; see below).
 */
import { constants as fsConstants } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';
import { access, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Writable, type Duplex } from 'node:stream';
import Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';
import type {
  ExecOptions,
  ResourceCounters,
  SandboxDriver,
  SandboxHandle,
  SandboxInfo,
  SandboxProcess,
  SandboxSpec,
} from '../../core/ports/sandbox.ts';
import {
  AGENT_GID,
  AGENT_UID,
  ICC_OPTION,
  LABELS,
  OPEN_NETWORK,
  RELAY_GID,
  RELAY_PORT,
  RELAY_UID,
  SANDBOX_WORKSPACE,
  buildContainerSpec,
  containerName,
  isValidSessionKey,
  openNetworkCreateOptions,
  type ContainerConfig,
  type SandboxLimits,
} from './container-spec.ts';
import { imageMissingMessage, isConflict, isMissingNetwork, isNotFound, isNotModified, toRunnerError, unavailableMessage } from './errors.ts';
import { DockerExecProcess, type SandboxLogger } from './exec-process.ts';
import { canChown, prepareAgentDir, prepareGatewayDir } from './host-dirs.ts';

export type { SandboxLogger } from './exec-process.ts';
export type { SandboxLimits } from './container-spec.ts';

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
  logger?: SandboxLogger;
  /** How long ensure() waits for the relay to listen (default 10 s). */
  readyTimeoutMs?: number;
  /**
   * Where resourceCounters() reads the cgroup counters: 'auto' (default) reads
   * the host's /sys/fs/cgroup when this process sees the Docker host's /proc,
   * else from inside the sandbox; 'sandbox' always reads from inside.
   */
  countersFrom?: 'auto' | 'sandbox';
}

export const DEFAULT_IMAGE = 'claude-runner-sandbox:latest';

const silentLogger: SandboxLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Kills every process of the calling uid (the shell's builtin kill is not killed by kill -1). */
const KILL_ALL_SCRIPT = 'n=0; while kill -s KILL -- -1 2>/dev/null && [ "$n" -lt 50 ]; do n=$((n+1)); done; exit 0';
/** Signals a process group and its leader ($1 = signal name without SIG, $2 = pid). */
const SIGNAL_GROUP_SCRIPT = 'kill -s "$1" -- "-$2" "$2" 2>/dev/null; exit 0';
/**
 * The cgroup counter files the sandbox may see (v1 layout, then v2), printed by
 * one `head` (with "==> file <==" headers): no shell, no fork, so it works
 * even when a fork bomb holds every pid of the sandbox.
 */
const COUNTER_FILES = [
  '/sys/fs/cgroup/memory/memory.oom_control',
  '/sys/fs/cgroup/pids/pids.events',
  '/sys/fs/cgroup/memory.events',
  '/sys/fs/cgroup/pids.events',
];

interface CaptureResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export class DockerSandboxDriver implements SandboxDriver {
  readonly docker: Docker;
  readonly image: string;
  readonly runnerId: string;
  readonly agentUser: string;
  readonly relayUser: string;
  readonly openNetwork: string;
  #config: ContainerConfig;
  #logger: SandboxLogger;
  #readyTimeoutMs: number;
  #agentOwner: { uid: number; gid: number };
  /** Per-session queue: ensure/stop/remove of one session never overlap. */
  #queues = new Map<string, Promise<unknown>>();
  /** In-flight ensure per session, shared by concurrent callers. */
  #ensures = new Map<string, Promise<SandboxHandle>>();
  #warnedNoChown = false;
  #countersFrom: 'auto' | 'sandbox';
  /** Subnets of the open network, known before any `open` sandbox starts (kept if it is made again with others). */
  #openNetworks = new BlockList();
  /** The host's own addresses on that network (its gateways): the host itself may connect from them. */
  #openGateways = new Set<string>();
  #openNetworksLoaded = false;
  /** The one load of the open network in flight (concurrent ensures share it). */
  #openNetworkLoading: Promise<void> | null = null;

  constructor(options: DockerSandboxDriverOptions) {
    if (!options.runnerId || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(options.runnerId)) {
      throw new TypeError('runnerId must be letters, digits, "_", "-", "."');
    }
    this.docker = options.docker instanceof Docker ? options.docker : new Docker(options.docker);
    this.image = options.image ?? DEFAULT_IMAGE;
    this.runnerId = options.runnerId;
    this.agentUser = options.agentUser ?? `${AGENT_UID}:${AGENT_GID}`;
    this.relayUser = options.relayUser ?? `${RELAY_UID}:${RELAY_GID}`;
    this.openNetwork = options.openNetwork ?? OPEN_NETWORK;
    this.#logger = options.logger ?? silentLogger;
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
    this.#countersFrom = options.countersFrom ?? 'auto';
    const [uid, gid] = this.agentUser.split(':').map(Number);
    this.#agentOwner = { uid: uid ?? AGENT_UID, gid: gid ?? uid ?? AGENT_GID };
    this.#config = {
      runnerId: options.runnerId,
      image: this.image,
      claudeExecutablePath: options.claudeExecutablePath,
      limits: options.limits,
      runtime: options.runtime,
      relayUser: this.relayUser,
      openNetwork: this.openNetwork,
    };
  }

  /**
   * True for an address on the Docker network of `open` sandboxes. The runner
   * refuses connections from there to its API: an `open` sandbox reaches every
   * address of the host (its gateway, 172.17.0.1, ...), so a listen on 0.0.0.0
   * would otherwise be one hop away. Known from check() when the network
   * exists, else from the first `open` sandbox on (none runs before).
   */
  isSandboxAddress(address: string | undefined): boolean {
    if (!address || !this.#openNetworksLoaded) return false;
    const plain = address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
    // Sandboxes cannot forge the gateway's address: they have no CAP_NET_RAW.
    if (this.#openGateways.has(plain)) return false;
    return this.#openNetworks.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
  }

  /** Makes sure the open network exists and its subnets are known; again (reload) after it went missing. */
  #openNetworkReady(sessionKey: string, reload = false): Promise<void> {
    if (this.#openNetworksLoaded && !reload) return Promise.resolve();
    this.#openNetworkLoading ??= this.#loadOpenNetwork(sessionKey, true).finally(() => {
      this.#openNetworkLoading = null;
    });
    return this.#openNetworkLoading;
  }

  /** Inspects (and with `create`, creates when missing) the open network, and learns its subnets. */
  async #loadOpenNetwork(sessionKey: string | undefined, create: boolean): Promise<void> {
    const name = this.openNetwork;
    const inspect = () => this.docker.getNetwork(name).inspect() as Promise<Docker.NetworkInspectInfo>;
    let info: Docker.NetworkInspectInfo;
    try {
      info = await inspect();
    } catch (error) {
      if (!isNotFound(error)) throw this.#error(error, `inspect the Docker network "${name}"`, sessionKey);
      if (!create) return;
      try {
        await this.docker.createNetwork(openNetworkCreateOptions(name, this.runnerId));
        this.#logger.info({ network: name }, 'sandbox: created the Docker network of open sandboxes');
      } catch (createError) {
        // a conflict: another runner created it meanwhile, use theirs
        if (!isConflict(createError)) throw this.#error(createError, `create the Docker network "${name}"`, sessionKey);
      }
      try {
        info = await inspect();
      } catch (inspectError) {
        throw this.#error(inspectError, `inspect the Docker network "${name}"`, sessionKey);
      }
    }
    // Fail closed: a network of that name made otherwise could let sandboxes of different sessions talk.
    if (info.Driver !== 'bridge' || info.Options?.[ICC_OPTION] !== 'false') {
      throw new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `The Docker network "${name}" exists but is not a bridge with ${ICC_OPTION}=false, so open sandboxes could reach each other: remove it (docker network rm ${name}) and the runner creates it.`,
      );
    }
    const configs = info.IPAM?.Config ?? [];
    const subnets = configs.map((c) => c.Subnet).filter((s): s is string => Boolean(s));
    // Fail closed: an open sandbox whose addresses the runner cannot tell apart could reach its API.
    if (subnets.length === 0) throw new RunnerError('SANDBOX_UNAVAILABLE', `The Docker network "${name}" has no subnet: open sandboxes cannot be told apart.`);
    this.#openGateways = new Set(configs.map((c) => c.Gateway).filter((g): g is string => Boolean(g)));
    for (const subnet of subnets) {
      const [network, prefix] = subnet.split('/');
      this.#openNetworks.addSubnet(network!, Number(prefix), isIPv6(network!) ? 'ipv6' : 'ipv4');
    }
    this.#openNetworksLoaded = true;
    this.#logger.info({ network: name, subnets }, 'sandbox: connections from open sandboxes to the runner are refused');
  }

  /** The create options ensure() would use for this spec (for tests and readers). */
  containerSpec(spec: SandboxSpec): Docker.ContainerCreateOptions {
    return buildContainerSpec(this.#config, spec);
  }

  #error(error: unknown, action: string, sessionKey?: string): RunnerError {
    return toRunnerError(error, { action, sessionKey, image: this.image, socketPath: this.#socketPath() });
  }

  #socketPath(): string | undefined {
    const value = (this.docker.modem as unknown as { socketPath?: unknown }).socketPath;
    return typeof value === 'string' ? value : typeof value === 'function' ? '/var/run/docker.sock' : undefined;
  }

  async check(): Promise<void> {
    try {
      const ping = this.docker.ping as unknown as (options: { abortSignal: AbortSignal }) => Promise<unknown>;
      await ping.call(this.docker, { abortSignal: AbortSignal.timeout(5000) });
    } catch (error) {
      const detail = (error as { code?: string }).code ?? (error as Error).message;
      throw new RunnerError('SANDBOX_UNAVAILABLE', unavailableMessage(detail, this.#socketPath()));
    }
    try {
      await this.docker.getImage(this.image).inspect();
    } catch (error) {
      if (isNotFound(error)) throw new RunnerError('SANDBOX_IMAGE_MISSING', imageMissingMessage(this.image));
      throw this.#error(error, 'inspect the sandbox image');
    }
    if (this.#config.runtime) {
      const info = (await this.docker.info().catch((error: unknown) => { throw this.#error(error, 'read the engine info'); })) as { Runtimes?: Record<string, unknown> };
      if (!info.Runtimes || !(this.#config.runtime in info.Runtimes)) {
        throw new RunnerError(
          'SANDBOX_UNAVAILABLE',
          `The container runtime "${this.#config.runtime}" is not configured in the Docker engine (has: ${Object.keys(info.Runtimes ?? {}).join(', ')}). Install it and register it in /etc/docker/daemon.json, or unset the runtime.` +
            // gVisor refuses connections to host unix sockets by default, and the relay must reach the gateway's.
            (this.#config.runtime === 'runsc' ? ' For gVisor: `runsc install -- --host-uds=open` (add --network=none where runsc refuses Docker\'s network namespace: sandboxes under the none and allowlist policies need no network), then reload dockerd (the sandbox reaches the model gateway through a host unix socket).' : ''),
        );
      }
    }
    try {
      await access(this.#config.claudeExecutablePath, fsConstants.R_OK);
    } catch {
      throw new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `The claude executable ${this.#config.claudeExecutablePath} is missing: run \`npm install\` (it comes with @anthropic-ai/claude-agent-sdk).`,
      );
    }
    // Open sandboxes of an earlier run, or of another runner on this engine, may be there
    // already: refuse their connections from the start (ensure() fails closed on a bad network).
    if (!this.#openNetworksLoaded) {
      await this.#loadOpenNetwork(undefined, false).catch((error: unknown) => {
        this.#logger.warn({ network: this.openNetwork, err: (error as Error).message }, 'sandbox: the network of open sandboxes is not usable');
      });
    }
  }

  /** Runs fn after every earlier operation of the same session. */
  #serialize<T>(sessionKey: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(sessionKey) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const tail = result.then(() => {}, () => {});
    this.#queues.set(sessionKey, tail);
    void tail.then(() => {
      if (this.#queues.get(sessionKey) === tail) this.#queues.delete(sessionKey);
    });
    return result;
  }

  ensure(spec: SandboxSpec): Promise<SandboxHandle> {
    if (!isValidSessionKey(spec.sessionKey)) {
      return Promise.reject(new RunnerError('INVALID_REQUEST', `Not a valid session key for a sandbox: ${JSON.stringify(spec.sessionKey)}`));
    }
    const key = spec.sessionKey;
    const inFlight = this.#ensures.get(key);
    if (inFlight) return inFlight;
    const operation: Promise<SandboxHandle> = this.#serialize(key, () => this.#ensure(spec)).finally(() => {
      if (this.#ensures.get(key) === operation) this.#ensures.delete(key);
    });
    this.#ensures.set(key, operation);
    return operation;
  }

  async #imageId(): Promise<string> {
    try {
      return (await this.docker.getImage(this.image).inspect()).Id;
    } catch (error) {
      if (isNotFound(error)) throw new RunnerError('SANDBOX_IMAGE_MISSING', imageMissingMessage(this.image));
      throw this.#error(error, 'inspect the sandbox image');
    }
  }

  async #prepareHostDirs(spec: SandboxSpec): Promise<void> {
    for (const dir of [spec.workspaceDir, spec.homeDir]) {
      const changed = await prepareAgentDir(dir, this.#agentOwner);
      if (changed > 0) this.#logger.info({ sessionKey: spec.sessionKey, dir, changed }, 'sandbox: handed folder to the agent user');
    }
    await prepareGatewayDir(spec.gatewaySocketDir);
    if (!canChown() && !this.#warnedNoChown) {
      this.#warnedNoChown = true;
      this.#logger.warn(
        { uid: process.getuid?.(), agentUser: this.agentUser },
        'sandbox: not running as root, host folders keep their owner; the agent user must be able to write them',
      );
    }
  }

  async #ensure(spec: SandboxSpec): Promise<SandboxHandle> {
    const log = { sessionKey: spec.sessionKey };
    const open = spec.network === 'open';
    if (open) await this.#openNetworkReady(spec.sessionKey);
    await this.#prepareHostDirs(spec);
    const imageId = await this.#imageId();
    const options = buildContainerSpec(this.#config, spec);
    const wantedHash = options.Labels![LABELS.specHash];
    const name = containerName(spec.sessionKey);

    for (let attempt = 0; ; attempt++) {
      let info: Docker.ContainerInspectInfo | null = null;
      try {
        info = await this.docker.getContainer(name).inspect();
      } catch (error) {
        if (!isNotFound(error)) throw this.#error(error, 'inspect the container', spec.sessionKey);
      }

      if (info) {
        const owner = info.Config.Labels?.[LABELS.instance];
        if (owner !== this.runnerId) {
          throw new RunnerError(
            'SANDBOX_UNAVAILABLE',
            `A container named ${name} exists but belongs to ${owner ? `runner "${owner}"` : 'another program'}; it is left alone.`,
          );
        }
        const stale = info.Config.Labels?.[LABELS.specHash] !== wantedHash || info.Image !== imageId;
        const broken = info.State.Dead || info.State.Status === 'removing';
        if (stale || broken) {
          this.#logger.info({ ...log, reason: stale ? 'spec or image changed' : 'dead' }, 'sandbox: recreating the container');
          await this.#forceRemove(name, spec.sessionKey);
          info = null;
        }
      }

      if (info?.State.Running && !info.State.Paused) {
        return { sessionKey: spec.sessionKey, id: info.Id };
      }

      let id: string;
      if (info) {
        id = info.Id;
        if (info.State.Paused) await this.docker.getContainer(id).unpause().catch(() => {});
      } else {
        try {
          id = (await this.docker.createContainer(options)).id;
          this.#logger.info({ ...log, id: id.slice(0, 12) }, 'sandbox: container created');
        } catch (error) {
          if (isConflict(error) && attempt < 3) continue; // created meanwhile by someone else: look again
          if (open && isMissingNetwork(error) && attempt < 3) {
            await this.#openNetworkReady(spec.sessionKey, true); // removed since we looked: make it again
            continue;
          }
          throw this.#error(error, 'create the container', spec.sessionKey);
        }
      }
      try {
        await this.docker.getContainer(id).start();
      } catch (error) {
        if (open && isMissingNetwork(error) && attempt < 3) {
          // its network was removed: a new container joins the network as it is now
          this.#logger.info(log, 'sandbox: its network is gone, recreating the container');
          await this.#forceRemove(id, spec.sessionKey);
          await this.#openNetworkReady(spec.sessionKey, true);
          continue;
        }
        if (!isNotModified(error)) throw this.#error(error, 'start the container', spec.sessionKey);
      }
      await this.#waitReady(id, spec.sessionKey);
      this.#logger.debug({ ...log, id: id.slice(0, 12) }, 'sandbox: container running');
      return { sessionKey: spec.sessionKey, id };
    }
  }

  /** Waits until the relay listens on 127.0.0.1:4100 inside the container. */
  async #waitReady(id: string, sessionKey: string): Promise<void> {
    const deadline = Date.now() + this.#readyTimeoutMs;
    const wanted = `0100007F:${RELAY_PORT.toString(16).toUpperCase().padStart(4, '0')}`;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      const info = await this.docker.getContainer(id).inspect().catch((error: unknown) => {
        throw this.#error(error, 'inspect the container', sessionKey);
      });
      if (!info.State.Running) {
        const logs = await this.#logsTail(id);
        throw new RunnerError(
          'SANDBOX_UNAVAILABLE',
          `The sandbox of session ${sessionKey} stopped right after starting (exit code ${info.State.ExitCode}${info.State.Error ? `, ${info.State.Error}` : ''})${logs ? `: ${logs}` : ''}`,
        );
      }
      const result = await this.#capture(id, sessionKey, ['cat', '/proc/net/tcp'], this.relayUser, 5000).catch(() => null);
      if (result?.stdout.split('\n').some((line) => line.includes(` ${wanted} `) && / 0A /.test(line))) return;
      if (Date.now() > deadline) {
        throw new RunnerError('SANDBOX_UNAVAILABLE', `The relay of session ${sessionKey} did not start listening on 127.0.0.1:${RELAY_PORT} within ${this.#readyTimeoutMs} ms.`);
      }
      await sleep(delay);
    }
  }

  async #logsTail(id: string): Promise<string> {
    try {
      const buffer = (await this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail: 5, follow: false })) as unknown as Buffer;
      // multiplexed frames: drop the 8-byte headers
      const parts: string[] = [];
      for (let offset = 0; offset + 8 <= buffer.length; ) {
        const size = buffer.readUInt32BE(offset + 4);
        parts.push(buffer.subarray(offset + 8, offset + 8 + size).toString());
        offset += 8 + size;
      }
      return parts.join('').trim().slice(-1000);
    } catch {
      return '';
    }
  }

  async #forceRemove(name: string, sessionKey: string): Promise<void> {
    try {
      await this.docker.getContainer(name).remove({ force: true });
    } catch (error) {
      if (isNotFound(error)) return;
      if (isConflict(error) && /already in progress/i.test((error as Error).message)) {
        // someone else removes it: wait until it is gone
        for (let i = 0; i < 100; i++) {
          await sleep(50);
          try {
            await this.docker.getContainer(name).inspect();
          } catch (inspectError) {
            if (isNotFound(inspectError)) return;
          }
        }
      }
      throw this.#error(error, 'remove the container', sessionKey);
    }
  }

  exec(handle: SandboxHandle, command: string[], options: ExecOptions): SandboxProcess {
    return new DockerExecProcess({
      docker: this.docker,
      containerId: handle.id,
      sessionKey: handle.sessionKey,
      command,
      user: this.agentUser,
      cwd: options.cwd || SANDBOX_WORKSPACE,
      env: options.env,
      onStderr: options.onStderr,
      logger: this.#logger,
      signalGroup: async (pid, signal) => {
        const result = await this.#capture(handle.id, handle.sessionKey, ['/bin/sh', '-c', SIGNAL_GROUP_SCRIPT, 'sh', signal.replace(/^SIG/, ''), String(pid)], this.agentUser, 10_000);
        if (result.exitCode !== 0) throw new Error(`kill exited with ${result.exitCode}: ${result.stderr.trim()}`);
      },
      toError: (error, action) => this.#error(error, action, handle.sessionKey),
    });
  }

  async killAgentProcesses(handle: SandboxHandle): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.#capture(handle.id, handle.sessionKey, ['/bin/sh', '-c', KILL_ALL_SCRIPT], this.agentUser, 15_000);
        if (result.exitCode === 0) return;
        throw new Error(`exit code ${result.exitCode}: ${result.stderr.trim()}`);
      } catch (error) {
        const runnerError = this.#error(error, 'kill the agent processes', handle.sessionKey);
        // not running or gone: there is nothing left to kill
        if (runnerError.code === 'SANDBOX_UNAVAILABLE' && (isConflict(error) || isNotFound(error))) return;
        if (attempt < 3) {
          await sleep(100 * attempt);
          continue;
        }
        // Last resort: restarting the container kills everything in it (files are kept;
        // the resource counters restart from zero).
        this.#logger.warn({ sessionKey: handle.sessionKey, err: runnerError.message }, 'sandbox: kill failed, restarting the container');
        try {
          await this.docker.getContainer(handle.id).restart({ t: 0 });
          await this.#waitReady(handle.id, handle.sessionKey);
        } catch (restartError) {
          throw this.#error(restartError, 'restart the container', handle.sessionKey);
        }
        return;
      }
    }
  }

  /**
   * OOM kills and pids-limit hits since the container started. Read from the
   * container's cgroup: on the host (/proc/<pid>/cgroup of its init, then
   * /sys/fs/cgroup; works for cgroup v1 and v2, cgroupfs and systemd drivers)
   * when this process sees the Docker host's /proc, else from inside the
   * sandbox (an exec as the agent user reading its own read-only cgroup files).
   */
  async resourceCounters(handle: SandboxHandle): Promise<ResourceCounters> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(handle.id).inspect();
    } catch (error) {
      throw this.#error(error, 'inspect the container', handle.sessionKey);
    }
    const oomFlag = info.State.OOMKilled ? 1 : 0;
    if (!info.State.Running) return { oomKills: oomFlag, pidsLimitHits: 0 };
    const fromHost = this.#countersFrom === 'auto' ? await readHostCounters(info.Id, info.State.Pid).catch(() => null) : null;
    if (fromHost) return { oomKills: Math.max(fromHost.oomKills, oomFlag), pidsLimitHits: fromHost.pidsLimitHits };
    try {
      const result = await this.#capture(handle.id, handle.sessionKey, ['head', '-n', '20', ...COUNTER_FILES], this.agentUser, 10_000);
      const counters = parseCounterFiles(result.stdout);
      return { oomKills: Math.max(counters.oomKills, oomFlag), pidsLimitHits: counters.pidsLimitHits };
    } catch (error) {
      throw this.#error(error, 'read the resource counters', handle.sessionKey);
    }
  }

  stop(sessionKey: string): Promise<void> {
    this.#ensures.delete(sessionKey);
    return this.#serialize(sessionKey, async () => {
      try {
        // t=0: SIGKILL right away, no grace period (the agent keeps no state in memory that matters)
        await this.docker.getContainer(containerName(sessionKey)).stop({ t: 0 });
        this.#logger.debug({ sessionKey }, 'sandbox: stopped');
      } catch (error) {
        if (isNotFound(error) || isNotModified(error)) return;
        throw this.#error(error, 'stop the container', sessionKey);
      }
    });
  }

  remove(sessionKey: string): Promise<void> {
    this.#ensures.delete(sessionKey);
    return this.#serialize(sessionKey, async () => {
      await this.#forceRemove(containerName(sessionKey), sessionKey);
      this.#logger.debug({ sessionKey }, 'sandbox: removed');
    });
  }

  async list(): Promise<SandboxInfo[]> {
    try {
      const containers = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABELS.instance}=${this.runnerId}`] },
      });
      return containers
        .filter((c) => c.Labels?.[LABELS.instance] === this.runnerId)
        .map((c) => ({ sessionKey: c.Labels[LABELS.sessionKey] ?? '', id: c.Id, running: c.State === 'running' }));
    } catch (error) {
      throw this.#error(error, 'list the containers');
    }
  }

  /**
   * Runs a short command in the container and collects its output. Every
   * Docker call of it (exec create, start, the stream, inspect) shares one
   * deadline: a stuck engine makes it fail with SANDBOX_UNAVAILABLE, not hang.
   */
  #capture(id: string, sessionKey: string, command: string[], user: string, timeoutMs: number): Promise<CaptureResult> {
    const abort = new AbortController();
    const abortSignal = abort.signal;
    let socket: Duplex | null = null;
    const work = async (): Promise<CaptureResult> => {
      const exec = await this.docker.getContainer(id).exec({ Cmd: command, User: user, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false, abortSignal });
      const stream = (await exec.start({ hijack: true, stdin: false, abortSignal })) as Duplex;
      socket = stream;
      if (abortSignal.aborted) stream.destroy();
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const sink = (target: Buffer[]) => new Writable({ write(chunk: Buffer, _e, cb) { target.push(chunk); cb(); } });
      this.docker.modem.demuxStream(stream, sink(out), sink(err));
      await new Promise<void>((resolve) => {
        stream.once('end', resolve);
        stream.once('close', resolve);
        stream.once('error', () => resolve());
      });
      let exitCode: number | null = null;
      for (let delay = 2; delay < 1000 && !abortSignal.aborted; delay *= 2) {
        const info = await exec.inspect({ abortSignal });
        if (!info.Running) {
          exitCode = info.ExitCode ?? null;
          break;
        }
        await sleep(delay);
      }
      return { exitCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
    };
    return new Promise<CaptureResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        abort.abort();
        (socket as Duplex | null)?.destroy();
        reject(new RunnerError(
          'SANDBOX_UNAVAILABLE',
          `Docker did not run \`${command[0]}\` in the sandbox of session ${sessionKey} within ${timeoutMs} ms: the engine is stuck or overloaded.`,
          { action: `run ${command[0]} in the sandbox`, timeoutMs },
        ));
      }, timeoutMs);
      work().then(
        (result) => { clearTimeout(timer); resolve(result); },
        (error: unknown) => { clearTimeout(timer); reject(error); },
      );
    });
  }
}

/** Parses `oom_kill N` (memory.oom_control or memory.events) and `max N` (pids.events). */
export function parseCounterFiles(text: string): ResourceCounters {
  let oomKills = 0;
  let pidsLimitHits = 0;
  let file = '';
  for (const line of text.split('\n')) {
    const header = line.match(/^==> (.*) <==$/);
    if (header) {
      file = header[1]!;
      continue;
    }
    const [key, value] = line.trim().split(/\s+/);
    const n = Number(value);
    if (!Number.isFinite(n)) continue;
    if (key === 'oom_kill' && /memory\.(oom_control|events)$/.test(file)) oomKills = Math.max(oomKills, n);
    if (key === 'max' && file.endsWith('pids.events')) pidsLimitHits = Math.max(pidsLimitHits, n);
  }
  return { oomKills, pidsLimitHits };
}

/** Reads the counters from the host's cgroup files; null when this process cannot see them. */
async function readHostCounters(containerId: string, pid: number): Promise<ResourceCounters | null> {
  if (!pid || pid <= 0) return null;
  const cgroups = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  // Guard: this must be the container's process as seen from the Docker host.
  if (!cgroups.includes(containerId)) return null;
  const paths = new Map<string, string>();
  for (const line of cgroups.trim().split('\n')) {
    const [, controllers, cgroupPath] = line.match(/^\d+:([^:]*):(.*)$/) ?? [];
    if (cgroupPath === undefined || controllers === undefined) continue;
    for (const controller of controllers.split(',')) paths.set(controller, cgroupPath);
  }
  const files: string[] = [];
  const v1Memory = paths.get('memory');
  const v1Pids = paths.get('pids');
  if (v1Memory !== undefined && v1Pids !== undefined) {
    files.push(`/sys/fs/cgroup/memory${v1Memory}/memory.oom_control`, `/sys/fs/cgroup/pids${v1Pids}/pids.events`);
  } else if (paths.has('')) {
    const unified = paths.get('')!;
    files.push(`/sys/fs/cgroup${unified}/memory.events`, `/sys/fs/cgroup${unified}/pids.events`);
  } else {
    return null;
  }
  let text = '';
  for (const file of files) text += `==> ${file} <==\n${await readFile(file, 'utf8')}\n`;
  return parseCounterFiles(text);
}
