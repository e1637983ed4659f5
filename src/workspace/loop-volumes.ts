/**
 * Workspaces as filesystems of their own (SANDBOX_DISK_MODE=loop): each
 * session's workspace is an ext4 image of SANDBOX_DISK bytes (sparse: it
 * takes on the host only what is written), loop-mounted at the workspace
 * folder. The kernel refuses a write past the size (ENOSPC), whoever makes
 * it, so the quota cannot be passed at all. Needs root and loop devices.
 *
 *   DATA_DIR/sessions/<key>/workspace.img  → mounted (nodev, nosuid) at
 *   DATA_DIR/sessions/<key>/workspace
 *
 * Mounts outlive the runner (a restart finds them mounted, or mounts them
 * again): a running sandbox holds its bind of the mount, so it is unmounted
 * only once the sandbox is gone (reset, delete).
 *
 * Owns: the images and their mounts. Must not touch: what is inside them.
 */
import { execFile } from 'node:child_process';
import { access, readFile, realpath, rm, rmdir, statfs, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Free space under which a full volume counts as past its quota. */
const FULL_MARGIN_BYTES = 256 * 1024;

export class LoopVolumes {
  readonly sizeBytes: number;

  constructor(sizeBytes: number) {
    this.sizeBytes = sizeBytes;
  }

  /** Checks this machine can make and mount loop volumes; throws what is missing. */
  static async check(): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('SANDBOX_DISK_MODE=loop needs the runner to run as root (it mounts loop devices)');
    for (const tool of ['mkfs.ext4', 'mount', 'umount']) {
      await run('which', [tool]).catch(() => { throw new Error(`SANDBOX_DISK_MODE=loop needs ${tool} (e2fsprogs, mount)`); });
    }
    await access('/dev/loop-control').catch(() => { throw new Error('SANDBOX_DISK_MODE=loop needs loop devices (/dev/loop-control is missing)'); });
  }

  static imageOf(root: string): string {
    return join(root, 'workspace.img');
  }

  /**
   * Makes `workspace` the mount of the session's image. A new session's image
   * is made (`create`); a session from before loop mode has none and keeps
   * its plain folder (mounting over it would hide its files).
   */
  async attach(root: string, workspace: string, create: boolean): Promise<void> {
    if (await isMountPoint(workspace)) return;
    const image = LoopVolumes.imageOf(root);
    const fresh = !(await exists(image));
    if (fresh && !create) return;
    if (fresh) {
      await writeFile(image, '', { mode: 0o600 });
      await truncate(image, this.sizeBytes);
      // No reserved blocks; a small journal (none on small volumes, where it would take a good part).
      // Its root stays root's until the sandbox driver hands the whole tree, template copy included, to the agent.
      const journal = this.sizeBytes >= 256 * 1024 * 1024 ? ['-J', 'size=4'] : ['-O', '^has_journal'];
      await run('mkfs.ext4', ['-q', '-F', '-m', '0', ...journal, '-E', 'nodiscard', image]);
    }
    await run('mount', ['-o', 'loop,nodev,nosuid,noatime', image, workspace]);
    if (fresh) await rmdir(join(workspace, 'lost+found')).catch(() => undefined);
  }

  /** Unmounts and deletes the session's image (its sandbox must be gone). */
  async destroy(root: string, workspace: string): Promise<void> {
    if (await isMountPoint(workspace)) {
      // Lazy: a process of the runner that still reads a file there cannot keep the image.
      await run('umount', ['-l', workspace]);
    }
    await rm(LoopVolumes.imageOf(root), { force: true });
  }

  /** Bytes in use and the size, as the volume's own filesystem counts them. */
  async usage(workspace: string): Promise<{ usedBytes: number; freeBytes: number }> {
    const info = await statfs(workspace);
    return { usedBytes: (info.blocks - info.bfree) * info.bsize, freeBytes: info.bavail * info.bsize };
  }

  /** A volume this full is past its quota: writes fail there now. */
  isFull(free: number): boolean {
    return free < FULL_MARGIN_BYTES;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** Mount points as /proc/self/mountinfo names them (octal escapes for spaces and the like). */
export async function isMountPoint(path: string): Promise<boolean> {
  // Mountinfo names the real path: DATA_DIR may be reached through a symlink.
  const real = await realpath(path).catch(() => path);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (field: string): string => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return info.split('\n').some((line) => unescape(line.split(' ')[4] ?? '') === real);
}
