/**
 * The readiness probe: a started sandbox is ready when its relay listens on
 * 127.0.0.1:RELAY_PORT, as its network namespace's TCP table shows. Read on
 * the host when the container runs under runc (as the engine reports it,
 * whatever its default runtime) and this process sees the Docker host's /proc
 * (the container's /proc/<pid>/net/tcp: a file read, where an exec costs tens
 * of milliseconds on every sandbox start; gVisor and other runtimes keep their
 * sockets out of it), else from inside by one `cat` as the relay user (no
 * shell, no fork: it works under a full pids limit); again until it shows
 * the listening socket or the deadline passes. A container that stopped right
 * after starting fails at once, with the tail of its logs.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';
import type { Capture } from './capture.ts';
import { hostCgroupOf } from './cgroup-counters.ts';
import { RELAY_PORT } from './container-spec.ts';

export interface ReadinessProbe {
  docker: Docker;
  capture: Capture;
  /** "uid:gid" of the relay: the probe reads /proc/net/tcp as that user. */
  relayUser: string;
  timeoutMs: number;
  /** Maps a Docker error to a RunnerError. */
  toError(error: unknown, action: string, sessionKey: string): RunnerError;
}

/** Waits until the relay listens on 127.0.0.1:4100 inside the container. */
export async function waitReady(probe: ReadinessProbe, id: string, sessionKey: string): Promise<void> {
  const deadline = Date.now() + probe.timeoutMs;
  const wanted = `0100007F:${RELAY_PORT.toString(16).toUpperCase().padStart(4, '0')}`;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const info = await probe.docker.getContainer(id).inspect().catch((error: unknown) => {
      throw probe.toError(error, 'inspect the container', sessionKey);
    });
    if (!info.State.Running) {
      const logs = await logsTail(probe.docker, id);
      throw new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `The sandbox of session ${sessionKey} stopped right after starting (exit code ${info.State.ExitCode}${info.State.Error ? `, ${info.State.Error}` : ''})${logs ? `: ${logs}` : ''}`,
      );
    }
    // The engine names the runtime it used (its default one too): only runc's sockets show on the host.
    const runc = (info.HostConfig?.Runtime ?? 'runc') === 'runc';
    const table = (runc ? await hostTcpTable(id, info.State.Pid) : null)
      ?? (await probe.capture({ containerId: id, sessionKey, command: ['cat', '/proc/net/tcp'], user: probe.relayUser, timeoutMs: 5000 }).catch(() => null))?.stdout;
    if (table?.split('\n').some((line) => line.includes(` ${wanted} `) && / 0A /.test(line))) return;
    if (Date.now() > deadline) {
      throw new RunnerError('SANDBOX_UNAVAILABLE', `The relay of session ${sessionKey} did not start listening on 127.0.0.1:${RELAY_PORT} within ${probe.timeoutMs} ms.`);
    }
    await sleep(delay);
  }
}

/** The container's TCP table read on the host; null when this process does not see the Docker host's /proc. */
async function hostTcpTable(containerId: string, pid: number): Promise<string | null> {
  try {
    if ((await hostCgroupOf(containerId, pid)) === null) return null;
    const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8');
    // Still the container's process after the read: its pid was not reused by another meanwhile.
    return (await hostCgroupOf(containerId, pid)) === null ? null : table;
  } catch {
    return null;
  }
}

/** The last lines of the container's output (for an error message); '' when they cannot be read. */
export async function logsTail(docker: Docker, id: string): Promise<string> {
  try {
    const buffer = (await docker.getContainer(id).logs({ stdout: true, stderr: true, tail: 5, follow: false })) as unknown as Buffer;
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
