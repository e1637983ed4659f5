/**
 * Walking a workspace by open folder descriptors, for src/workspace/files.ts.
 *
 * Node has no openat(2), but Linux gives the same through /proc: the path
 * `/proc/self/fd/<fd>/<name>` is `<name>` looked up inside the very folder
 * that descriptor <fd> holds open (the magic link is not a path to re-resolve),
 * whatever was renamed or swapped on the way to that folder since it was
 * opened. So every name here is looked up in a folder already open, and a
 * folder is entered only by opening it with O_NOFOLLOW|O_DIRECTORY: a symlink
 * there (made before or swapped in a moment ago) fails the open, and there is
 * no check apart from the use for an agent to race. Creating, renaming,
 * unlinking and lstat never follow a final symlink, so they are safe the same way.
 *
 * Owns: opening, making, walking and removing entries relative to open
 * folders. Must not: follow a symlink, look a path up from anywhere but an open
 * folder (the workspace root is the one path opened as such: the runner's own,
 * which the agent cannot change), leave a descriptor open (each is closed in a
 * finally), or hold more than a bounded number at once: a path walk holds two,
 * a listing at most WINDOW + 2, a removal at most MAX_HELD + 1.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;

/** Open folders a listing keeps at most (deeper ones are opened again, name by name, from the deepest still open). */
const WINDOW = 32;
/** Levels a removal holds open; folders deeper are moved up into the folder being removed, for another round. */
const MAX_HELD = 32;
/** Rounds of a removal (each takes MAX_HELD levels off the deepest chains): a bound against an agent that keeps adding. */
const MAX_ROUNDS = 1_000;

export interface Owner { uid: number; gid: number }

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

function codeOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** A short random name (for temporary entries next to real ones). */
export function tempName(prefix: string): string {
  return `${prefix}${randomBytes(8).toString('hex')}`;
}

/** The path of `name` inside the folder `dir` holds open, or of that folder itself. */
export function at(dir: FileHandle, name?: string): string {
  if (dir.fd < 0) throw new Error('a closed folder descriptor was used');
  return name === undefined ? `/proc/self/fd/${dir.fd}` : `/proc/self/fd/${dir.fd}/${name}`;
}

let procWorks = false;

/** Opens the workspace root (the runner's own path); checks once that /proc/self/fd leads back to it. */
async function openRoot(root: string): Promise<FileHandle> {
  const handle = await open(root, O_RDONLY | O_DIRECTORY);
  if (procWorks) return handle;
  try {
    const [viaProc, direct] = await Promise.all([stat(at(handle)).catch(() => undefined), handle.stat()]);
    if (viaProc?.ino !== direct.ino || viaProc.dev !== direct.dev) {
      throw new Error('the workspace file API needs Linux /proc (/proc/self/fd/<fd> must lead to the open folder)');
    }
    procWorks = true;
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Opens the folder `name` of `dir`, never following a symlink. A symlink
 * there is ELOOP (O_NOFOLLOW|O_DIRECTORY reports it as ENOTDIR, like a file:
 * told apart here so the caller can say which).
 */
export async function openDirAt(dir: FileHandle, name: string): Promise<FileHandle> {
  try {
    return await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (error) {
    if (codeOf(error) === 'ENOTDIR' && (await lstat(at(dir, name)).catch(() => undefined))?.isSymbolicLink()) {
      throw errno('ELOOP', `${name} is a symlink`);
    }
    throw error;
  }
}

/** Opens the folder `name` of `dir`, making it first when missing (owned by `owner` when given). */
async function openOrMakeDirAt(dir: FileHandle, name: string, owner: Owner | undefined): Promise<FileHandle> {
  try {
    return await openDirAt(dir, name);
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') throw error;
  }
  let made = false;
  try {
    await mkdir(at(dir, name));
    made = true;
  } catch (error) {
    if (codeOf(error) !== 'EEXIST') throw error; // made meanwhile by someone else: open what is there
  }
  const handle = await openDirAt(dir, name);
  if (made && owner) {
    try {
      await handle.chown(owner.uid, owner.gid);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }
  return handle;
}

/**
 * Opens the folder `parts` below `root`, one name at a time, each relative to
 * the folder before; with `make`, missing folders are made (and given to its
 * owner). Holds at most two descriptors; the caller closes the one returned.
 */
export async function openPath(root: string, parts: readonly string[], make?: { owner: Owner | undefined }): Promise<FileHandle> {
  let current: FileHandle | undefined = await openRoot(root);
  try {
    for (const part of parts) {
      const next: FileHandle = make ? await openOrMakeDirAt(current, part, make.owner) : await openDirAt(current, part);
      const previous: FileHandle = current;
      current = next;
      await previous.close();
    }
    const result = current;
    current = undefined;
    return result;
  } finally {
    await current?.close();
  }
}

/**
 * The folders from a start folder down to where a walk is, each opened from
 * the one above it. At most WINDOW stay open: when the walk goes deeper the
 * shallowest is closed, and opened again (name by name, from the deepest
 * still open, never following a symlink) when the walk comes back to it.
 */
class OpenFolders {
  private readonly names: string[] = [];
  private readonly handles: Array<FileHandle | undefined> = [];
  private readonly start: FileHandle;

  constructor(start: FileHandle) {
    this.start = start;
  }

  /** The folder the walk is in, opened again if it was closed for room. */
  async current(): Promise<FileHandle> {
    const last = this.handles.length - 1;
    if (last < 0) return this.start;
    const held = this.handles[last];
    if (held) return held;
    let from = last;
    while (from >= 0 && !this.handles[from]) from--;
    let dir = from >= 0 ? this.handles[from]! : this.start;
    for (let i = from + 1; i <= last; i++) {
      dir = await openDirAt(dir, this.names[i]!);
      this.handles[i] = dir;
      await this.trim();
    }
    return dir;
  }

  async enter(name: string): Promise<void> {
    const handle = await openDirAt(await this.current(), name);
    this.names.push(name);
    this.handles.push(handle);
    await this.trim();
  }

  async leave(): Promise<void> {
    this.names.pop();
    await this.handles.pop()?.close();
  }

  async closeAll(): Promise<void> {
    while (this.handles.length > 0) await this.leave();
  }

  private async trim(): Promise<void> {
    let open = this.handles.filter(Boolean).length;
    for (let i = 0; open > WINDOW && i < this.handles.length; i++) {
      const handle = this.handles[i];
      if (!handle) continue;
      this.handles[i] = undefined;
      open--;
      await handle.close();
    }
  }
}

/** A folder that went away or was swapped for something else while a walk was in it: skipped, not an error. */
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

export type Visit = (path: string, info: Stats) => 'descend' | 'next' | 'stop';

/**
 * Visits every entry below the folder `start` holds, depth first, names in
 * sorted order, each entry before what is inside it; `path` is relative to
 * start ("a/b"), `info` its lstat. Descends into a folder only when `visit`
 * says so and it is still a folder when opened (never through a symlink);
 * entries that vanish meanwhile are skipped.
 */
export async function walkTree(start: FileHandle, visit: Visit): Promise<void> {
  const folders = new OpenFolders(start);
  const walk = async (prefix: string): Promise<boolean> => {
    let names: string[];
    try {
      names = (await readdir(at(await folders.current()))).sort();
    } catch (error) {
      if (prefix !== '' && GONE.has(codeOf(error) ?? '')) return false;
      throw error;
    }
    for (const name of names) {
      let info: Stats;
      try {
        info = await lstat(at(await folders.current(), name));
      } catch (error) {
        if (codeOf(error) === 'ENOENT') continue;
        if (prefix !== '' && GONE.has(codeOf(error) ?? '')) return false;
        throw error;
      }
      const path = prefix === '' ? name : `${prefix}/${name}`;
      const next = visit(path, info);
      if (next === 'stop') return true;
      if (next !== 'descend' || !info.isDirectory()) continue;
      try {
        await folders.enter(name);
      } catch (error) {
        if (GONE.has(codeOf(error) ?? '')) continue;
        throw error;
      }
      try {
        if (await walk(path)) return true;
      } finally {
        await folders.leave();
      }
    }
    return false;
  };
  try {
    await walk('');
  } finally {
    await folders.closeAll();
  }
}

/**
 * Removes the entry `name` of the folder `dir` holds: a file or symlink is
 * unlinked (a symlink's target is never touched), a folder is emptied through
 * descriptors, then removed. ENOENT when there is no such entry; ENOTEMPTY when
 * the folder kept filling while it was being emptied.
 */
export async function removeAt(dir: FileHandle, name: string): Promise<void> {
  await removeEntry(dir, name, undefined, 0);
}

/**
 * One entry gone, `depth` levels below `top` (the folder being removed; none
 * for the entry the caller named). Returns whether a folder was moved up into
 * `top` instead (too deep to hold one more descriptor for). An entry swapped
 * for another kind between the look and the act is looked at again.
 */
async function removeEntry(dir: FileHandle, name: string, top: FileHandle | undefined, depth: number): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      const info = await lstat(at(dir, name));
      if (!info.isDirectory()) {
        await unlink(at(dir, name));
        return false;
      }
      if (top && depth >= MAX_HELD) {
        await rename(at(dir, name), at(top, tempName('.remove-')));
        return true;
      }
      const folder = await openDirAt(dir, name);
      let moved = false;
      try {
        if (top) {
          moved = await emptyFolder(folder, top, depth + 1);
        } else {
          for (let round = 1; await emptyFolder(folder, folder, 1); round++) {
            if (round >= MAX_ROUNDS) throw errno('ENOTEMPTY', 'the folder kept filling while it was removed');
          }
        }
      } finally {
        await folder.close();
      }
      await rmdir(at(dir, name));
      return moved;
    } catch (error) {
      const code = codeOf(error);
      if (top && code === 'ENOENT') return false; // inside the folder being removed: already gone is what we want
      if (attempt < 3 && (code === 'ENOTDIR' || code === 'ELOOP' || code === 'EISDIR')) continue;
      throw error;
    }
  }
}

/** Removes everything in the folder `dir` holds; whether anything was moved up into `top` for another round. */
async function emptyFolder(dir: FileHandle, top: FileHandle, depth: number): Promise<boolean> {
  let moved = false;
  for (const name of await readdir(at(dir))) {
    if (await removeEntry(dir, name, top, depth)) moved = true;
  }
  return moved;
}
