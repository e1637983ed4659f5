/**
 * Where a session's files live on the host, and their creation, reset and
 * removal. Folders are named by the session's internal key (never by a
 * caller's id), so no caller input ever becomes a path here.
 *
 *   DATA_DIR/sessions/<key>/workspace   → /workspace in the sandbox (a copy of the template)
 *   DATA_DIR/sessions/<key>/home        → the agent user's home (~/.claude: conversation memory)
 *   DATA_DIR/sockets/<key>/             → the gateway's unix socket for this session
 *
 * DATA_DIR, sessions/ and sockets/ are the server user's alone (0700, see
 * prepare()): the socket and the task token in a session's gateway folder are
 * open to any uid (the sandbox's users must reach them), so only these parent
 * folders keep other local users away from them and from tenants' files.
 * Sandboxes are unaffected: a bind mount needs no access to the folders above it.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { newId } from '../core/ids.ts';
import type { LoopVolumes } from './loop-volumes.ts';

export interface SessionDirs {
  root: string;
  workspace: string;
  home: string;
  socketDir: string;
}

/** Session keys as newId('s') makes them. */
const SESSION_KEY = /^s_[0-9a-z]+$/;

/** Unix socket paths are limited to 107 bytes; keep ours well inside. */
const MAX_SOCKET_PATH = 100;
/** Every key newId('s') makes has this length (a fixed-width time, then random hex). */
const SESSION_KEY_LENGTH = newId('s').length;

/** DATA_DIR and its sessions and sockets folders: the server's user only. */
export const PRIVATE_DIR_MODE = 0o700;

export class SessionDirectories {
  private readonly dataDir: string;
  /** With SANDBOX_DISK_MODE=loop, each workspace is a volume of its own (loop-volumes.ts). */
  private readonly volumes: LoopVolumes | undefined;

  constructor(dataDir: string, volumes?: LoopVolumes) {
    this.dataDir = dataDir;
    this.volumes = volumes;
    const longest = join(dataDir, 'sockets', 'x'.repeat(SESSION_KEY_LENGTH), 'gateway.sock');
    if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
      throw new Error(`DATA_DIR ${dataDir} is too long for unix socket paths (limit ${MAX_SOCKET_PATH} bytes): choose a shorter path`);
    }
  }

  /**
   * Creates DATA_DIR, DATA_DIR/sessions and DATA_DIR/sockets with mode 0700,
   * and tightens them to 0700 if they exist with another mode. Synchronous:
   * call it before anything is written to DATA_DIR. Throws when a folder
   * cannot be made private (another owner, or a shared folder like /tmp).
   */
  prepare(): void {
    mkdirSync(dirname(this.dataDir), { recursive: true });
    for (const dir of [this.dataDir, join(this.dataDir, 'sessions'), join(this.dataDir, 'sockets')]) {
      mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      const info = statSync(dir);
      if (!info.isDirectory()) throw new Error(`${dir} (in DATA_DIR) is not a folder`);
      if ((info.mode & 0o7777) === PRIVATE_DIR_MODE) continue;
      // Never chmod a shared folder (DATA_DIR=/tmp would lock every other user out of it).
      if (info.mode & 0o1000) throw new Error(`DATA_DIR ${dir} is a shared folder (sticky bit, like /tmp): choose a folder of its own`);
      try {
        chmodSync(dir, PRIVATE_DIR_MODE);
      } catch (error) {
        throw new Error(`${dir} (in DATA_DIR) could not be made private to this user (chmod 0700: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
      }
    }
  }

  of(key: string): SessionDirs {
    const root = join(this.dataDir, 'sessions', key);
    return { root, workspace: join(root, 'workspace'), home: join(root, 'home'), socketDir: join(this.dataDir, 'sockets', key) };
  }

  /** Fresh folders: the workspace a copy of the template (modes kept, so tools stay executable). */
  async create(key: string, templateDir: string): Promise<SessionDirs> {
    const dirs = this.of(key);
    // Made private when missing, should prepare() not have run (it also tightens existing ones).
    await mkdir(join(this.dataDir, 'sessions'), { recursive: true, mode: PRIVATE_DIR_MODE });
    await mkdir(join(this.dataDir, 'sockets'), { recursive: true, mode: PRIVATE_DIR_MODE });
    await mkdir(dirs.home, { recursive: true });
    await mkdir(dirs.socketDir, { recursive: true });
    if (this.volumes) {
      await mkdir(dirs.workspace, { recursive: true });
      await this.volumes.attach(dirs.root, dirs.workspace, true);
    }
    await cp(templateDir, dirs.workspace, { recursive: true, preserveTimestamps: true, force: false, errorOnExist: false });
    return dirs;
  }

  /** Back to a fresh copy of the template, with an empty home (memory forgotten). */
  async reset(key: string, templateDir: string): Promise<SessionDirs> {
    const dirs = this.of(key);
    await this.volumes?.destroy(dirs.root, dirs.workspace);
    await rm(dirs.workspace, { recursive: true, force: true });
    await rm(dirs.home, { recursive: true, force: true });
    return this.create(key, templateDir);
  }

  /** Keys of every session that has folders here. */
  async listKeys(): Promise<string[]> {
    const keys = new Set<string>();
    for (const parent of [join(this.dataDir, 'sessions'), join(this.dataDir, 'sockets')]) {
      try {
        // Only names this class makes (session keys): anything else put there is left alone.
        for (const name of await readdir(parent)) if (SESSION_KEY.test(name)) keys.add(name);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    return [...keys].sort();
  }

  /** Mounts the session's workspace volume again (after a reboot), when workspaces are volumes. */
  async mount(key: string): Promise<void> {
    const dirs = this.of(key);
    await this.volumes?.attach(dirs.root, dirs.workspace, false);
  }

  async remove(key: string): Promise<void> {
    const dirs = this.of(key);
    await this.volumes?.destroy(dirs.root, dirs.workspace);
    await rm(dirs.root, { recursive: true, force: true });
    await rm(dirs.socketDir, { recursive: true, force: true });
  }
}
