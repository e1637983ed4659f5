/**
 * Workspace files over HTTP: list, read, write, delete inside one session's
 * workspace, and nowhere else. A path is refused when it is absolute, has a
 * ".." or NUL, or resolves (through any symlink the agent made) outside the
 * workspace; the last component is opened with O_NOFOLLOW so a symlink swapped
 * in after the check is not followed either.
 *
 * Owns: host paths of sessions and access to their files. Must not touch:
 * sessions' records or sandboxes (the session service decides when folders change).
 */
import { randomBytes } from 'node:crypto';
import { constants, type ReadStream } from 'node:fs';
import { chown, lstat, mkdir, open, readdir, readlink, realpath, rename, rm } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { RunnerError } from '../core/errors.ts';

export interface FileEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  modifiedAt: number;
}

const MAX_PATH_LENGTH = 1024;
const MAX_LIST_ENTRIES = 10_000;

function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root + sep);
}

/** The absolute path for a caller's relative path, checked lexically (no filesystem access). */
export function lexicalPath(root: string, relPath: string): string {
  if (typeof relPath !== 'string' || relPath.length === 0 || relPath.length > MAX_PATH_LENGTH) {
    throw new RunnerError('INVALID_PATH', 'A relative path of 1-1024 characters is required.');
  }
  if (relPath.includes('\0') || relPath.startsWith('/') || relPath.startsWith('\\')) {
    throw new RunnerError('INVALID_PATH', 'The path must be relative to the workspace.');
  }
  if (relPath.split(/[\\/]/).includes('..')) throw new RunnerError('INVALID_PATH', 'The path may not contain "..".');
  const absolute = resolve(root, relPath);
  if (!isInside(root, absolute) || absolute === root) throw new RunnerError('INVALID_PATH');
  return absolute;
}

/**
 * Resolves symlinks of the deepest existing ancestor and checks it is still
 * inside the workspace. A dangling symlink on the way is followed to where it
 * points (realpath fails on it): writing through it would create a file there.
 */
async function checkRealPath(root: string, absolute: string): Promise<void> {
  const realRoot = await realpath(root);
  let probe = absolute;
  for (let links = 0; ;) {
    try {
      const real = await realpath(probe);
      if (!isInside(realRoot, real)) throw new RunnerError('INVALID_PATH', 'The path leads outside the workspace.');
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new RunnerError('INVALID_PATH', 'The path has a symlink loop.');
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const target = await readlink(probe).catch(() => null);
      if (target === null) {
        probe = dirname(probe);
      } else {
        if (++links > 40) throw new RunnerError('INVALID_PATH', 'The path has too many symlinks.');
        probe = resolve(dirname(probe), target);
      }
    }
  }
}

/** What a filesystem error on a caller's path means to the caller; other errors pass through (500). */
function pathError(error: unknown, op: 'read' | 'write' | 'remove' | 'list'): unknown {
  if (error instanceof RunnerError) return error;
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return new RunnerError('FILE_NOT_FOUND');
    case 'ENOTDIR':
    case 'EEXIST':
      return op === 'write' ? new RunnerError('INVALID_PATH', 'A folder on the path is a file.') : new RunnerError('FILE_NOT_FOUND');
    case 'EISDIR':
    case 'ENOTEMPTY':
      return new RunnerError('INVALID_PATH', 'The path is a folder.');
    case 'ENAMETOOLONG':
      return new RunnerError('INVALID_PATH', 'A name in the path is too long.');
    case 'ELOOP':
      return new RunnerError('INVALID_PATH', 'The path is a symlink.');
    default:
      return error;
  }
}

export class WorkspaceFiles {
  async list(root: string, relDir?: string): Promise<FileEntry[]> {
    return this.listIn(root, relDir).catch((error: unknown) => { throw pathError(error, 'list'); });
  }

  private async listIn(root: string, relDir?: string): Promise<FileEntry[]> {
    const start = relDir ? lexicalPath(root, relDir) : root;
    await checkRealPath(root, start);
    const entries: FileEntry[] = [];
    const walk = async (dir: string): Promise<void> => {
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new RunnerError('FILE_NOT_FOUND');
        if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') throw new RunnerError('INVALID_PATH', 'Not a directory.');
        throw error;
      }
      for (const name of names) {
        if (entries.length >= MAX_LIST_ENTRIES) return;
        const full = join(dir, name);
        const info = await lstat(full);
        const type = info.isSymbolicLink() ? 'symlink' : info.isDirectory() ? 'directory' : 'file';
        entries.push({ path: relative(root, full), type, size: info.isFile() ? info.size : 0, modifiedAt: Math.round(info.mtimeMs) });
        if (type === 'directory') await walk(full);
      }
    };
    await walk(start);
    return entries;
  }

  async read(root: string, relPath: string): Promise<{ stream: ReadStream; size: number }> {
    return this.readIn(root, relPath).catch((error: unknown) => { throw pathError(error, 'read'); });
  }

  private async readIn(root: string, relPath: string): Promise<{ stream: ReadStream; size: number }> {
    const absolute = lexicalPath(root, relPath);
    await checkRealPath(root, absolute);
    let handle;
    try {
      handle = await open(absolute, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new RunnerError('FILE_NOT_FOUND');
      if (code === 'ELOOP') throw new RunnerError('INVALID_PATH', 'The path is a symlink.');
      throw error;
    }
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new RunnerError('INVALID_PATH', 'Not a regular file.');
    }
    // The stream owns the FileHandle and closes it; a bare fd would be closed a second time when the handle is collected.
    return { stream: handle.createReadStream(), size: info.size };
  }

  /** Writes atomically (temp file + rename), creating parent folders; returns the size written. */
  async write(
    root: string,
    relPath: string,
    body: Readable,
    options: { maxBytes: number; owner?: { uid: number; gid: number } | undefined },
  ): Promise<number> {
    return this.writeIn(root, relPath, body, options).catch((error: unknown) => { throw pathError(error, 'write'); });
  }

  private async writeIn(
    root: string,
    relPath: string,
    body: Readable,
    options: { maxBytes: number; owner?: { uid: number; gid: number } | undefined },
  ): Promise<number> {
    const absolute = lexicalPath(root, relPath);
    await checkRealPath(root, absolute);
    await mkdir(dirname(absolute), { recursive: true });
    await checkRealPath(root, dirname(absolute));
    // A short unique name next to the target: concurrent uploads of one path never collide, a long name still fits.
    const temp = join(dirname(absolute), `.upload-${randomBytes(8).toString('hex')}`);
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    let size = 0;
    try {
      const out = handle.createWriteStream();
      await pipeline(body, async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          size += chunk.length;
          if (size > options.maxBytes) throw new RunnerError('PAYLOAD_TOO_LARGE', `Uploads are limited to ${options.maxBytes} bytes.`);
          yield chunk;
        }
      }, out);
      if (options.owner) await chown(temp, options.owner.uid, options.owner.gid);
      // rename replaces a symlink at the target instead of following it.
      await rename(temp, absolute);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return size;
  }

  async remove(root: string, relPath: string): Promise<void> {
    return this.removeIn(root, relPath).catch((error: unknown) => { throw pathError(error, 'remove'); });
  }

  private async removeIn(root: string, relPath: string): Promise<void> {
    const absolute = lexicalPath(root, relPath);
    await checkRealPath(root, dirname(absolute));
    try {
      await lstat(absolute);
    } catch {
      throw new RunnerError('FILE_NOT_FOUND');
    }
    await rm(absolute, { recursive: true, force: true });
  }
}
