/**
 * The per-session workspace quota (SANDBOX_DISK). With SANDBOX_DISK_MODE=loop
 * each workspace is a filesystem of that size (loop-volumes.ts): the kernel
 * refuses writes past it, and a full volume stops the task and refuses
 * uploads as below. Otherwise (the default) it is measured: what a workspace
 * takes on disk is the blocks of everything in it (each inode once, symlinks
 * never followed). A running task is measured every few seconds and stopped
 * once past the quota; an upload may take only what is left; a session past
 * its quota runs no task until files are deleted. So the quota can be passed
 * by at most what the agent writes between two measures, and never for long.
 *
 * Owns: measuring workspaces against the quota. Must not touch: the files
 * themselves (files.ts), tasks or sandboxes (it only answers).
 */
import { RunnerError } from '../core/errors.ts';
import { diskUsage, prestartDiskUsage } from './disk-usage.ts';
import { isMountPoint, type LoopVolumes } from './loop-volumes.ts';

/** A walk stops counting past this many entries: so many files count as past the quota. */
const MAX_ENTRIES = 2_000_000;

/** The folders of a session the quota counts. */
export interface QuotaDirs {
  workspace: string;
  home: string;
}

export class WorkspaceQuota {
  /** 0: no quota. */
  readonly limitBytes: number;
  /** When workspaces are volumes of their own, the kernel enforces the quota and their filesystem counts. */
  private readonly volumes: LoopVolumes | undefined;

  constructor(limitBytes: number, volumes?: LoopVolumes) {
    this.limitBytes = limitBytes;
    this.volumes = volumes;
    if (limitBytes > 0) prestartDiskUsage();
  }

  /**
   * Bytes the folder takes on disk, counted in 512-byte blocks as the
   * filesystem allocated them, each inode once: walked by open descriptors
   * in a worker thread (disk-usage.ts), so a folder the agent swaps for a
   * symlink meanwhile is never followed out. A tree past MAX_ENTRIES counts
   * as past any quota (files nobody counted).
   */
  usage(dir: string): Promise<number> {
    return diskUsage(dir, MAX_ENTRIES);
  }

  /**
   * What the session's files take: its workspace and its home (the agent's
   * own folder, transcripts included), so no folder of the agent's is a way
   * around the quota. `full`: a workspace volume with no room left.
   */
  private async measure(dirs: QuotaDirs): Promise<{ used: number; free: number; full: boolean }> {
    const home = await this.usage(dirs.home);
    // A session from before loop mode has a plain folder: measured like any other.
    if (this.volumes && (await isMountPoint(dirs.workspace))) {
      const volume = await this.volumes.usage(dirs.workspace);
      return { used: volume.usedBytes + home, free: volume.freeBytes, full: this.volumes.isFull(volume.freeBytes) };
    }
    return { used: (await this.usage(dirs.workspace)) + home, free: Infinity, full: false };
  }

  /** The error a session past its quota gets, or undefined when it is within it (or there is none). */
  async overLimit(dirs: QuotaDirs): Promise<RunnerError | undefined> {
    if (this.limitBytes <= 0) return undefined;
    const { used, full } = await this.measure(dirs);
    return full || used > this.limitBytes ? exceeded(used, this.limitBytes) : undefined;
  }

  /** What an upload may still take (Infinity without a quota); DISK_QUOTA_EXCEEDED when nothing is left. */
  async remaining(dirs: QuotaDirs): Promise<number> {
    if (this.limitBytes <= 0) return Infinity;
    const { used, free, full } = await this.measure(dirs);
    if (full || used >= this.limitBytes) throw exceeded(used, this.limitBytes);
    return Math.min(free, this.limitBytes - used);
  }
}

function exceeded(used: number, limit: number): RunnerError {
  const mib = (n: number): string => (n / 1024 / 1024).toFixed(1);
  return new RunnerError(
    'DISK_QUOTA_EXCEEDED',
    `The session's files take ${mib(used)} MiB of its ${mib(limit)} MiB quota (SANDBOX_DISK): delete files to go on.`,
    { usedBytes: used, limitBytes: limit },
  );
}
