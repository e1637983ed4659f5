/**
 * Workspace files over HTTP: list, read, write, delete inside one session's
 * workspace, and nowhere else. A path is refused when it is absolute, has a
 * ".." or NUL, or resolves (through any symlink the agent made) outside the
 * workspace; the last component is opened with O_NOFOLLOW so a symlink swapped
 * in after the check is not followed either.
 */
import { constants, createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { chown, lstat, mkdir, open, readdir, realpath, rename, rm } from 'node:fs/promises';
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

/** Resolves symlinks of the deepest existing ancestor and checks it is still inside the workspace. */
async function checkRealPath(root: string, absolute: string): Promise<void> {
  const realRoot = await realpath(root);
  let probe = absolute;
  for (;;) {
    try {
      const real = await realpath(probe);
      if (!isInside(realRoot, real)) throw new RunnerError('INVALID_PATH', 'The path leads outside the workspace.');
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      probe = dirname(probe);
    }
  }
}

export class WorkspaceFiles {
  async list(root: string, relDir?: string): Promise<FileEntry[]> {
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
    return { stream: createReadStream('', { fd: handle.fd, autoClose: true }), size: info.size };
  }

  /** Writes atomically (temp file + rename), creating parent folders; returns the size written. */
  async write(
    root: string,
    relPath: string,
    body: Readable,
    options: { maxBytes: number; owner?: { uid: number; gid: number } | undefined },
  ): Promise<number> {
    const absolute = lexicalPath(root, relPath);
    await checkRealPath(root, absolute);
    await mkdir(dirname(absolute), { recursive: true });
    await checkRealPath(root, dirname(absolute));
    const temp = `${absolute}.upload-${process.pid}-${Date.now()}`;
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    let size = 0;
    try {
      const out = createWriteStream('', { fd: handle.fd, autoClose: true });
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
