/**
 * The cgroup counters of a sandbox: OOM kills (memory.oom_control or
 * memory.events `oom_kill`) and pids-limit hits (pids.events `max`), since the
 * container started.
 *
 * Read on the host when this process sees the Docker host's /proc: the
 * container's cgroup paths are found once per container start (inspect →
 * State.Pid → /proc/<pid>/cgroup; cgroup v1 and v2, cgroupfs and systemd
 * drivers) and kept, so later reads are two file reads, no Docker call. Else
 * from inside the sandbox: an exec as the agent user of one `head` over its
 * own read-only cgroup files (no shell, no fork; when a fork bomb holds every
 * pid, the engine may fail to start it: it is tried again).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';
import type { ResourceCounters, SandboxHandle } from '../../core/ports/sandbox.ts';
import type { Capture } from './capture.ts';

/**
 * The cgroup counter files the sandbox may see (v1 layout, then v2), printed by
 * one `head` (with "==> file <==" headers).
 */
export const COUNTER_FILES = [
  '/sys/fs/cgroup/memory/memory.oom_control',
  '/sys/fs/cgroup/pids/pids.events',
  '/sys/fs/cgroup/memory.events',
  '/sys/fs/cgroup/pids.events',
];

/** Tries of an in-sandbox read the engine could not start (a full pids limit). */
const INSIDE_ATTEMPTS = 5;
/** Containers whose cgroup paths are kept at most (the oldest are forgotten first). */
const MAX_KNOWN = 1000;

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

/**
 * The /proc/<pid>/cgroup of the container's process as the Docker host shows
 * it; null when `pid` is not that (this process in a container of its own
 * sees another process under that pid, or none).
 */
export async function hostCgroupOf(containerId: string, pid: number): Promise<string | null> {
  if (!pid || pid <= 0) return null;
  const cgroups = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  return cgroups.includes(containerId) ? cgroups : null;
}

/** The host paths of the container's memory and pids counter files; null when this process cannot see them. */
export async function hostCounterFiles(containerId: string, pid: number): Promise<string[] | null> {
  const cgroups = await hostCgroupOf(containerId, pid);
  if (cgroups === null) return null;
  const paths = new Map<string, string>();
  for (const line of cgroups.trim().split('\n')) {
    const [, controllers, cgroupPath] = line.match(/^\d+:([^:]*):(.*)$/) ?? [];
    if (cgroupPath === undefined || controllers === undefined) continue;
    for (const controller of controllers.split(',')) paths.set(controller, cgroupPath);
  }
  const v1Memory = paths.get('memory');
  const v1Pids = paths.get('pids');
  if (v1Memory !== undefined && v1Pids !== undefined) {
    return [`/sys/fs/cgroup/memory${v1Memory}/memory.oom_control`, `/sys/fs/cgroup/pids${v1Pids}/pids.events`];
  }
  const unified = paths.get('');
  return unified === undefined ? null : [`/sys/fs/cgroup${unified}/memory.events`, `/sys/fs/cgroup${unified}/pids.events`];
}

/** The files' content with "==> file <==" headers, as `head` prints it. */
async function readFiles(files: string[]): Promise<string> {
  let text = '';
  for (const file of files) text += `==> ${file} <==\n${await readFile(file, 'utf8')}\n`;
  return text;
}

export interface CgroupCountersOptions {
  docker: Docker;
  capture: Capture;
  /** "uid:gid" the in-sandbox read runs as. */
  agentUser: string;
  /** 'auto': the host's files when visible, else from inside; 'sandbox': always from inside. */
  countersFrom: 'auto' | 'sandbox';
  toError(error: unknown, action: string, sessionKey: string): RunnerError;
}

/** Where a container's counters are read: its host files, or from inside (the host's are not visible). */
type Source = { sessionKey: string; files: string[] | 'sandbox' };

export class CgroupCounters {
  #options: CgroupCountersOptions;
  /** Per container id: found once while it runs, forgotten when a read fails (stopped, removed). */
  #sources = new Map<string, Source>();

  constructor(options: CgroupCountersOptions) {
    this.#options = options;
  }

  /**
   * OOM kills and pids-limit hits since the container started: from its known
   * host files (no Docker call), else after an inspect (which finds them).
   */
  async read(handle: SandboxHandle): Promise<ResourceCounters> {
    const known = this.#sources.get(handle.id);
    if (known && known.files !== 'sandbox') {
      const counters = await this.#readHost(handle.id, known.files);
      if (counters) return counters;
    }
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.#options.docker.getContainer(handle.id).inspect();
    } catch (error) {
      throw this.#options.toError(error, 'inspect the container', handle.sessionKey);
    }
    const oomFlag = info.State.OOMKilled ? 1 : 0;
    if (!info.State.Running) return { oomKills: oomFlag, pidsLimitHits: 0 };
    const fromHost = await this.#findHost(handle, info).catch(() => null);
    if (fromHost) return { oomKills: Math.max(fromHost.oomKills, oomFlag), pidsLimitHits: fromHost.pidsLimitHits };
    const counters = await this.#readInside(handle);
    return { oomKills: Math.max(counters.oomKills, oomFlag), pidsLimitHits: counters.pidsLimitHits };
  }

  /**
   * The counters as cheaply as they can be read, for polling: the known host
   * files; else from inside when the host's are not visible (no inspect);
   * else read() once, which finds out. Throws when the container does not run.
   */
  async poll(handle: SandboxHandle): Promise<{ counters: ResourceCounters; inside: boolean }> {
    const known = this.#sources.get(handle.id);
    if (this.#options.countersFrom === 'sandbox' || known?.files === 'sandbox') {
      return { counters: await this.#readInside(handle), inside: true };
    }
    if (known) {
      const counters = await this.#readHost(handle.id, known.files);
      if (counters) return { counters, inside: false };
    }
    const info = await this.#options.docker.getContainer(handle.id).inspect().catch((error: unknown) => {
      throw this.#options.toError(error, 'inspect the container', handle.sessionKey);
    });
    if (!info.State.Running) throw new Error('the container is not running');
    const fromHost = await this.#findHost(handle, info).catch(() => null);
    if (fromHost) return { counters: fromHost, inside: false };
    return { counters: await this.#readInside(handle), inside: true };
  }

  /** Forgets what is known of a session's containers (stopped or removed). */
  forgetSession(sessionKey: string): void {
    for (const [id, source] of this.#sources) if (source.sessionKey === sessionKey) this.#sources.delete(id);
  }

  /** Finds (and keeps) the running container's host files and reads them; null when they are not visible. */
  async #findHost(handle: SandboxHandle, info: Docker.ContainerInspectInfo): Promise<ResourceCounters | null> {
    if (this.#options.countersFrom !== 'auto') return null;
    const files = await hostCounterFiles(info.Id, info.State.Pid).catch(() => null);
    if (!files) {
      this.#remember(handle.id, { sessionKey: handle.sessionKey, files: 'sandbox' });
      return null;
    }
    const text = await readFiles(files);
    // Kept only when they count OOM kills (old kernels do not): else the inspect's OOMKilled flag is needed.
    if (/^oom_kill /m.test(text)) this.#remember(handle.id, { sessionKey: handle.sessionKey, files });
    return parseCounterFiles(text);
  }

  /** Reads known host files; null (and forgotten) when they are gone: the container stopped or restarts. */
  async #readHost(id: string, files: string[]): Promise<ResourceCounters | null> {
    try {
      return parseCounterFiles(await readFiles(files));
    } catch {
      this.#sources.delete(id);
      return null;
    }
  }

  /**
   * Reads from inside. Under a full pids limit the engine may fail to start the
   * exec at all (runc's error, exit 126, on stdout): that is tried again a few
   * times, then an error, never counters of zero.
   */
  async #readInside(handle: SandboxHandle): Promise<ResourceCounters> {
    const command = ['head', '-n', '20', ...COUNTER_FILES];
    let output = '';
    try {
      for (let attempt = 1; attempt <= INSIDE_ATTEMPTS; attempt++) {
        if (attempt > 1) await sleep(100 * attempt);
        const result = await this.#options.capture({ containerId: handle.id, sessionKey: handle.sessionKey, command, user: this.#options.agentUser, timeoutMs: 10_000 });
        if (/^==> .*pids\.events <==$/m.test(result.stdout)) return parseCounterFiles(result.stdout);
        output = `exit code ${result.exitCode}: ${(result.stdout + result.stderr).trim().slice(0, 300)}`;
      }
    } catch (error) {
      throw this.#options.toError(error, 'read the resource counters', handle.sessionKey);
    }
    throw new RunnerError('SANDBOX_UNAVAILABLE', `The resource counters of session ${handle.sessionKey} could not be read in the sandbox (${output}).`);
  }

  #remember(id: string, source: Source): void {
    this.#sources.delete(id);
    this.#sources.set(id, source);
    if (this.#sources.size > MAX_KNOWN) this.#sources.delete(this.#sources.keys().next().value!);
  }
}
