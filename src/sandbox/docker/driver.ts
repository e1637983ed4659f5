/**
 * Docker sandbox driver: implements the SandboxDriver port with dockerode.
 *
 * This folder owns: the session containers of one runner instance (named
 * claude-runner-<sessionKey>, labelled dev.claude-runner.instance=<runnerId>)
 * and the network of `open` ones. This file holds their lifecycle: check,
 * ensure (create / start / recreate when stale), stop, remove, list, exec,
 * killAgentProcesses, resourceCounters, watch. The rest, by file:
 *  - options.ts: the driver's options and defaults;
 *  - engine-check.ts: check()'s engine, image, runtime and `claude` checks;
 *  - container-spec.ts: the one canonical hardened spec;
 *  - open-network.ts: the network of `open` sandboxes, and isSandboxAddress,
 *    the API's firewall against their subnets;
 *  - readiness.ts: the probe that a started sandbox's relay listens;
 *  - capture.ts: exec-and-capture, for the driver's own short commands;
 *  - exec-process.ts: the agent's processes, shaped like child processes;
 *    agent-signals.ts: signals to them, and killAgentProcesses;
 *  - known-running.ts: the sandboxes seen running, trusted until they die
 *    (a warm session's ensure() asks the engine for its image only);
 *    namespaces.ts: whose network namespace none/allowlist sandboxes get;
 *  - cgroup-counters.ts: the OOM-kill and pids-limit counters;
 *  - engine-events.ts, watch.ts: watch(), from the engine's `oom` and `die`
 *    events (one stream per driver) and a cheap poll of the pids counter;
 *  - errors.ts: Docker errors mapped to RunnerError; host-dirs.ts: the
 *    ownership of the host folders it mounts; image.ts (image/Dockerfile):
 *    building the sandbox image; index.ts: what the rest of the runner imports.
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
 *  - SandboxProcess.kill(signal) signals the exec'd command's process group;
 *    killAgentProcesses() kills every process of the agent's uid (each
 *    session runs one agent, so this is the agent and its tools): agent-signals.ts.
 *  - An exec can start when the pids limit is reached (joining a cgroup is
 *    not a fork), but it cannot fork: everything the driver runs inside
 *    (kill, readiness and counter reads) is one process, or shell builtins.
 *    (runc may still fail to start one then, exit 126: counter reads try
 *    again, killAgentProcesses ends by restarting the container.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { KeyedLock } from '../../core/keyed-lock.ts';
import { RunnerError } from '../../core/errors.ts';
import type {
  ExecOptions, ResourceCounters, SandboxDriver, SandboxEvent, SandboxHandle, SandboxInfo, SandboxProcess, SandboxSpec,
} from '../../core/ports/sandbox.ts';
import { killAll, signalGroup, type AgentSignalsDeps } from './agent-signals.ts';
import { capture, type CaptureRequest, type CaptureResult } from './capture.ts';
import { CgroupCounters } from './cgroup-counters.ts';
import {
  AGENT_GID, AGENT_UID, LABELS, OPEN_NETWORK, RELAY_GID, RELAY_UID, SANDBOX_WORKSPACE,
  buildContainerSpec, containerName, isValidSessionKey, type ContainerConfig,
} from './container-spec.ts';
import { checkEngine } from './engine-check.ts';
import { EngineEvents } from './engine-events.ts';
import { engineSocketPath, imageMissingMessage, isConflict, isMissingNetwork, isNotFound, isNotModified, toRunnerError } from './errors.ts';
import { DockerExecProcess, SessionProcesses, type SandboxLogger } from './exec-process.ts';
import { prepareHostDirs } from './host-dirs.ts';
import { KnownRunning } from './known-running.ts';
import { SandboxNamespaces } from './namespaces.ts';
import { OpenNetwork } from './open-network.ts';
import { DEFAULT_IMAGE, silentLogger, type DockerSandboxDriverOptions } from './options.ts';
import { waitReady } from './readiness.ts';
import { SandboxWatchers } from './watch.ts';

export type { SandboxLogger } from './exec-process.ts';
export type { SandboxLimits } from './container-spec.ts';
export { parseCounterFiles } from './cgroup-counters.ts';
export { DEFAULT_IMAGE, type DockerSandboxDriverOptions } from './options.ts';

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
  #ownerGone: DockerSandboxDriverOptions['ownerGone'];
  #agentOwner: { uid: number; gid: number };
  /** Per-session queue: ensure/stop/remove of one session never overlap. */
  #queues = new KeyedLock();
  /** In-flight ensure per session, shared by concurrent callers. */
  #ensures = new Map<string, Promise<SandboxHandle>>();
  #hostDirs = { warnedNoChown: false };
  #network: OpenNetwork;
  #counters: CgroupCounters;
  #watchers: SandboxWatchers;
  #known: KnownRunning;
  #namespaces: SandboxNamespaces;
  #processes = new SessionProcesses();
  /** Runs one of the driver's own short commands in a container (capture.ts). */
  #capture = (request: CaptureRequest): Promise<CaptureResult> => capture(this.docker, request);
  #signals: AgentSignalsDeps;

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
    this.#ownerGone = options.ownerGone;
    const [uid, gid] = this.agentUser.split(':').map(Number);
    this.#agentOwner = { uid: uid ?? AGENT_UID, gid: gid ?? uid ?? AGENT_GID };
    const { claudeExecutablePath, limits, runtime } = options;
    this.#config = { runnerId: this.runnerId, image: this.image, claudeExecutablePath, limits, runtime, relayUser: this.relayUser, openNetwork: this.openNetwork };
    const toError = (error: unknown, action: string, sessionKey?: string) => this.#error(error, action, sessionKey);
    this.#network = new OpenNetwork({ docker: this.docker, name: this.openNetwork, runnerId: this.runnerId, logger: this.#logger, toError });
    this.#counters = new CgroupCounters({
      docker: this.docker, capture: this.#capture, agentUser: this.agentUser, countersFrom: options.countersFrom ?? 'auto', toError,
    });
    const events = new EngineEvents(this.docker, this.runnerId, this.#logger);
    this.#watchers = new SandboxWatchers({ events, counters: this.#counters, logger: this.#logger });
    this.#known = new KnownRunning(events);
    this.#namespaces = new SandboxNamespaces({ docker: this.docker, runtime, hostsFile: options.hostsFile, toError });
    this.#signals = {
      capture: this.#capture, agentUser: this.agentUser, logger: this.#logger, toError,
      restart: async (handle) => {
        this.#known.forget(handle.sessionKey);
        await this.docker.getContainer(handle.id).restart({ t: 0 });
        await this.#waitReady(handle.id, handle.sessionKey);
      },
    };
  }

  /** True for an address on the network of `open` sandboxes: the API refuses it (open-network.ts). */
  isSandboxAddress(address: string | undefined): boolean {
    return this.#network.isSandboxAddress(address);
  }

  /** The create options ensure() would use for this spec (for tests and readers). */
  containerSpec(spec: SandboxSpec): Docker.ContainerCreateOptions {
    return buildContainerSpec({ ...this.#config, hostsFile: this.#namespaces.current }, spec);
  }

  #error(error: unknown, action: string, sessionKey?: string): RunnerError {
    return toRunnerError(error, { action, sessionKey, image: this.image, socketPath: engineSocketPath(this.docker) });
  }

  async check(): Promise<void> {
    await checkEngine({
      docker: this.docker, image: this.image, runtime: this.#config.runtime, claudeExecutablePath: this.#config.claudeExecutablePath,
      socketPath: engineSocketPath(this.docker), toError: (error, action) => this.#error(error, action),
    });
    // Open sandboxes of an earlier run, or of another runner on this engine, may be there
    // already: refuse their connections from the start (ensure() fails closed on a bad network).
    if (!this.#network.loaded) {
      await this.#network.load(undefined, false).catch((error: unknown) => {
        this.#logger.warn({ network: this.openNetwork, err: (error as Error).message }, 'sandbox: the network of open sandboxes is not usable');
      });
    }
  }

  /** Runs fn after every earlier operation of the same session. */
  #serialize<T>(sessionKey: string, fn: () => Promise<T>): Promise<T> {
    return this.#queues.run(sessionKey, fn);
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

  async #ensure(spec: SandboxSpec): Promise<SandboxHandle> {
    const log = { sessionKey: spec.sessionKey };
    const open = spec.network === 'open';
    if (open) await this.#network.ready(spec.sessionKey);
    const hostsFile = open ? undefined : await this.#namespaces.resolve();
    const options = buildContainerSpec({ ...this.#config, hostsFile }, spec);
    const wantedHash = options.Labels![LABELS.specHash]!;
    const name = containerName(spec.sessionKey);
    // A warm session's sandbox (known-running.ts): only a rebuilt image is asked about.
    const known = this.#known.trusted(spec.sessionKey, wantedHash);
    if (known && (await this.#imageId()) === known.imageId) return { sessionKey: spec.sessionKey, id: known.id };
    const lookedAt = performance.now();
    const inspect = async (): Promise<Docker.ContainerInspectInfo | null> => {
      try {
        return await this.docker.getContainer(name).inspect();
      } catch (error) {
        if (!isNotFound(error)) throw this.#error(error, 'inspect the container', spec.sessionKey);
        return null;
      }
    };
    // Together: on a warm session's task these are the whole of ensure(), on its hot path.
    const [, imageId, firstInfo] = await Promise.all([
      prepareHostDirs(spec, { ...this.#agentOwner, user: this.agentUser }, this.#logger, this.#hostDirs),
      this.#imageId(),
      inspect(),
    ]);

    for (let attempt = 0; ; attempt++) {
      let info = attempt === 0 ? firstInfo : await inspect();

      if (info) {
        const owner = info.Config.Labels?.[LABELS.instance];
        // Another runner node's, on a shared engine: taken only once that node is gone (the session is ours now).
        const left = owner !== this.runnerId && owner !== undefined && (await this.#ownerGone?.(owner)) === true;
        if (owner !== this.runnerId && !left) {
          const by = owner ? `runner "${owner}"` : 'another program';
          throw new RunnerError('SANDBOX_UNAVAILABLE', `A container named ${name} exists but belongs to ${by}; it is left alone.`);
        }
        const stale = info.Config.Labels?.[LABELS.specHash] !== wantedHash || info.Image !== imageId;
        const broken = info.State.Dead || info.State.Status === 'removing';
        if (stale || broken || left) {
          const reason = left ? `left by runner "${owner}"` : stale ? 'spec or image changed' : 'dead';
          this.#logger.info({ ...log, reason }, 'sandbox: recreating the container');
          await this.#forceRemove(name, spec.sessionKey);
          info = null;
        }
      }

      if (info?.State.Running && !info.State.Paused) {
        this.#known.saw(spec.sessionKey, info.Id, wantedHash, imageId, attempt === 0 ? lookedAt : null);
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
            await this.#network.ready(spec.sessionKey, true); // removed since we looked: make it again
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
          await this.#network.ready(spec.sessionKey, true);
          continue;
        }
        if (!isNotModified(error)) throw this.#error(error, 'start the container', spec.sessionKey);
      }
      await this.#waitReady(id, spec.sessionKey);
      this.#known.saw(spec.sessionKey, id, wantedHash, imageId, null);
      this.#logger.debug({ ...log, id: id.slice(0, 12) }, 'sandbox: container running');
      return { sessionKey: spec.sessionKey, id };
    }
  }

  #waitReady(id: string, sessionKey: string): Promise<void> {
    const toError = (error: unknown, action: string, key: string) => this.#error(error, action, key);
    return waitReady({ docker: this.docker, capture: this.#capture, relayUser: this.relayUser, timeoutMs: this.#readyTimeoutMs, toError }, id, sessionKey);
  }

  async #forceRemove(name: string, sessionKey: string): Promise<void> {
    this.#known.forget(sessionKey);
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
    return this.#processes.track(handle.sessionKey, new DockerExecProcess({
      docker: this.docker,
      containerId: handle.id,
      sessionKey: handle.sessionKey,
      command,
      user: this.agentUser,
      cwd: options.cwd || SANDBOX_WORKSPACE,
      env: options.env,
      onStderr: options.onStderr,
      logger: this.#logger,
      signalGroup: (pid, signal) => signalGroup(this.#signals, handle, pid, signal),
      toError: (error, action) => this.#error(error, action, handle.sessionKey),
    }));
  }

  killAgentProcesses(handle: SandboxHandle): Promise<void> {
    return killAll(this.#signals, handle);
  }

  /** OOM kills and pids-limit hits since the container started, from its cgroup (cgroup-counters.ts). */
  resourceCounters(handle: SandboxHandle): Promise<ResourceCounters> {
    return this.#counters.read(handle);
  }

  /**
   * Calls `listener` when the sandbox hits a limit or dies, as the engine
   * reports it (`oom`, `die`; `pids_limit` from its cgroup counter); returns
   * the unsubscribe. One engine event stream per driver (watch.ts).
   */
  watch(handle: SandboxHandle, listener: (event: SandboxEvent) => void): () => void {
    return this.#watchers.watch(handle, listener);
  }

  /** Ends every watch and closes the engine event stream (a later watch opens it again). */
  close(): void {
    this.#known.clear();
    this.#watchers.close();
  }

  /** True when the session's sandbox is known to run without asking the engine (known-running.ts). */
  knownRunning(sessionKey: string): boolean {
    return this.#known.runs(sessionKey);
  }

  stop(sessionKey: string): Promise<void> {
    this.#ensures.delete(sessionKey);
    this.#known.forget(sessionKey);
    this.#counters.forgetSession(sessionKey);
    return this.#serialize(sessionKey, async () => {
      try {
        // t=0: SIGKILL right away, no grace period (the agent keeps no state in memory that matters)
        await this.docker.getContainer(containerName(sessionKey)).stop({ t: 0 });
        this.#logger.debug({ sessionKey }, 'sandbox: stopped');
      } catch (error) {
        if (!isNotFound(error) && !isNotModified(error)) throw this.#error(error, 'stop the container', sessionKey);
      } finally {
        this.#known.forget(sessionKey); // again once stopped: an ensure queued before may have seen it running
      }
      this.#processes.containerStopped(sessionKey);
    });
  }

  remove(sessionKey: string): Promise<void> {
    this.#ensures.delete(sessionKey);
    this.#known.forget(sessionKey);
    this.#counters.forgetSession(sessionKey);
    return this.#serialize(sessionKey, async () => {
      await this.#forceRemove(containerName(sessionKey), sessionKey);
      this.#processes.containerStopped(sessionKey);
      this.#logger.debug({ sessionKey }, 'sandbox: removed');
    });
  }

  async list(): Promise<SandboxInfo[]> {
    try {
      const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${this.runnerId}`] } });
      return containers
        .filter((c) => c.Labels?.[LABELS.instance] === this.runnerId)
        .map((c) => ({ sessionKey: c.Labels[LABELS.sessionKey] ?? '', id: c.Id, running: c.State === 'running' }));
    } catch (error) {
      throw this.#error(error, 'list the containers');
    }
  }
}
