/**
 * The host folders a sandbox mounts, made usable by the users inside it.
 * When the server runs as root, the workspace and home folders are handed to
 * the agent's uid/gid (recursively only when the folder itself is not theirs
 * yet), and the gateway folder is made traversable for the relay and agent.
 * Symbolic links are never followed (lchown): the agent controls those folders.
 */
import { chmod, lchown, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

export interface Owner {
  uid: number;
  gid: number;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Chowns a tree (not following links) to owner; counts the entries changed. */
export async function chownTree(root: string, owner: Owner): Promise<number> {
  let changed = 0;
  const visit = async (target: string): Promise<void> => {
    const info = await lstat(target);
    if (info.uid !== owner.uid || info.gid !== owner.gid) {
      await lchown(target, owner.uid, owner.gid);
      changed++;
    }
    if (info.isDirectory()) {
      const entries = await readdir(target);
      for (const entry of entries) await visit(path.join(target, entry));
    }
  };
  await visit(root);
  return changed;
}

/** Creates a folder and makes it the agent's; returns how many entries were chowned. */
export async function prepareAgentDir(dir: string, owner: Owner): Promise<number> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (!isRoot()) return 0;
  const info = await stat(dir);
  if (info.uid === owner.uid && info.gid === owner.gid) return 0;
  return chownTree(dir, owner);
}

/**
 * The gateway folder is mounted read-only; the relay (connects to gateway.sock)
 * and the agent (reads the task token) must be able to traverse it.
 */
export async function prepareGatewayDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const info = await stat(dir);
  if ((info.mode & 0o005) !== 0o005) {
    // best effort: a folder of another owner stays as it is (the relay may then fail to connect)
    await chmod(dir, (info.mode & 0o7777) | 0o755).catch(() => {});
  }
}

/** True when the server cannot hand folders to the agent (not root). */
export function canChown(): boolean {
  return isRoot();
}

export interface HostDirsLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/**
 * Prepares a sandbox's workspace, home and gateway folders (sessionKey for the
 * log); warns once per `state` when they cannot be handed to the agent (not root).
 */
export async function prepareHostDirs(
  dirs: { sessionKey: string; workspaceDir: string; homeDir: string; gatewaySocketDir: string },
  owner: Owner & { user: string },
  logger: HostDirsLogger,
  state: { warnedNoChown: boolean },
): Promise<void> {
  for (const dir of [dirs.workspaceDir, dirs.homeDir]) {
    const changed = await prepareAgentDir(dir, owner);
    if (changed > 0) logger.info({ sessionKey: dirs.sessionKey, dir, changed }, 'sandbox: handed folder to the agent user');
  }
  await prepareGatewayDir(dirs.gatewaySocketDir);
  if (!canChown() && !state.warnedNoChown) {
    state.warnedNoChown = true;
    logger.warn(
      { uid: process.getuid?.(), agentUser: owner.user },
      'sandbox: not running as root, host folders keep their owner; the agent user must be able to write them',
    );
  }
}
