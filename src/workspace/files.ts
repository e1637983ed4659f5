/**
 * Workspace files over HTTP: list, read, write and delete inside one
 * session's workspace, and nowhere else, even while the agent (which can make
 * anything there, symlinks included, and swap it at any moment) races us.
 *
 * How it stays inside: a caller's path is checked lexically first (relative,
 * no "..", no NUL, at most 1024 characters), then never used as a path again.
 * The workspace root is opened as a folder (the runner's own path), and every
 * name of the caller's path is looked up relative to the folder opened just
 * before it, with O_NOFOLLOW (src/workspace/dir-walk.ts: the /proc/self/fd
 * walk). Symlinks are therefore never followed, not even ones that point
 * inside the workspace: a path through a symlink, or naming one for a read or
 * a write, is INVALID_PATH; listing shows a link as a link and does not enter
 * it; deleting one removes the link. A folder swapped for a symlink after any
 * check is refused the same way, because there is no separate check. Reads
 * open the last name with O_NOFOLLOW|O_NONBLOCK (a FIFO cannot hang us) and
 * serve only a regular file. Writes go to a new `.upload-<random>` file made
 * with O_EXCL|O_NOFOLLOW in the open parent folder, bounded by maxBytes, given
 * to the workspace owner by fchown, then renamed over the name in that same
 * folder (atomic; rename never follows the last name); missing folders are
 * made one by one the same way and given to the owner. Deletes unlink or empty
 * folders through descriptors only (never a recursive rm on a path). Every
 * descriptor is closed in a finally, on errors and early disconnects too (a
 * read's stream owns its file's). Needs Linux /proc (checked on first use).
 *
 * Owns: access to the files of session workspaces. Must not touch: sessions'
 * records or sandboxes (the session service decides when folders change),
 * anything outside the workspace it is given, or a path other than the
 * workspace root without going through an open folder.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RunnerError } from '../core/errors.ts';
import { at, openPath, removeAt, tempName, walkTree, type Owner } from './dir-walk.ts';

export interface FileEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  modifiedAt: number;
}

const MAX_PATH_LENGTH = 1024;
const MAX_LIST_ENTRIES = 10_000;
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

/** The names of a caller's relative path, checked lexically (no filesystem access). */
export function pathParts(relPath: string): string[] {
  if (typeof relPath !== 'string' || relPath.length === 0 || relPath.length > MAX_PATH_LENGTH) {
    throw new RunnerError('INVALID_PATH', 'A relative path of 1-1024 characters is required.');
  }
  if (relPath.includes('\0') || relPath.startsWith('/') || relPath.startsWith('\\')) {
    throw new RunnerError('INVALID_PATH', 'The path must be relative to the workspace.');
  }
  if (relPath.split(/[\\/]/).includes('..')) throw new RunnerError('INVALID_PATH', 'The path may not contain "..".');
  const parts = relPath.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.length === 0) throw new RunnerError('INVALID_PATH');
  return parts;
}

type Op = 'read' | 'write' | 'remove' | 'list';

/** What a filesystem error on a caller's path means to the caller; other errors pass through (500). */
function pathError(error: unknown, op: Op): unknown {
  if (error instanceof RunnerError) return error;
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return new RunnerError('FILE_NOT_FOUND');
    case 'ENOTDIR':
    case 'EEXIST':
      if (op === 'write') return new RunnerError('INVALID_PATH', 'A folder on the path is a file.');
      if (op === 'list') return new RunnerError('INVALID_PATH', 'Not a directory.');
      return new RunnerError('FILE_NOT_FOUND');
    case 'EISDIR':
      return new RunnerError('INVALID_PATH', 'The path is a folder.');
    case 'ENOTEMPTY':
      return new RunnerError('INVALID_PATH', op === 'remove' ? 'The folder changed while it was being removed.' : 'The path is a folder.');
    case 'ENAMETOOLONG':
      return new RunnerError('INVALID_PATH', 'A name in the path is too long.');
    case 'ELOOP':
      return new RunnerError('INVALID_PATH', 'The path is or goes through a symlink (symlinks are not followed).');
    case 'ENXIO':
      return new RunnerError('INVALID_PATH', 'Not a regular file.');
    case 'ENOSPC':
    case 'EDQUOT':
      // A loop volume full at SANDBOX_DISK (or the host's disk): the temporary file is gone already.
      return op === 'write' ? new RunnerError('DISK_QUOTA_EXCEEDED', 'No space is left for the upload.') : error;
    default:
      return error;
  }
}

async function guarded<T>(op: Op, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw pathError(error, op);
  }
}

function entryOf(path: string, info: Stats): FileEntry {
  const type = info.isSymbolicLink() ? 'symlink' : info.isDirectory() ? 'directory' : 'file';
  return { path, type, size: info.isFile() ? info.size : 0, modifiedAt: Math.round(info.mtimeMs) };
}

/** What an upload may take: the upload limit, and the room the session's disk quota leaves. */
export interface UploadLimits {
  maxBytes: number;
  roomBytes?: number;
  owner?: Owner | undefined;
}

/** Writes the whole body to `file`, refusing it past the limits; the size written. */
async function copyLimited(body: Readable, file: FileHandle, limits: UploadLimits): Promise<number> {
  const { maxBytes, roomBytes = Infinity } = limits;
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += bytes.length;
    if (size > maxBytes) throw new RunnerError('PAYLOAD_TOO_LARGE', `Uploads are limited to ${maxBytes} bytes.`);
    if (size > roomBytes) throw new RunnerError('DISK_QUOTA_EXCEEDED', `The session's disk quota leaves room for ${roomBytes} bytes: delete files to go on.`);
    for (let offset = 0; offset < bytes.length;) offset += (await file.write(bytes, offset, bytes.length - offset)).bytesWritten;
  }
  return size;
}

/**
 * The file's first `size` bytes, no more (the answer's Content-Length: bytes
 * the agent appends meanwhile must not run on into the connection), and an
 * error, which cuts the connection, when it shrank meanwhile.
 */
function exactly(file: FileHandle, size: number): Readable {
  if (size === 0) {
    void file.close();
    return Readable.from([]);
  }
  let sent = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      callback(sent < size ? new Error(`the file shrank while it was read (${sent} of ${size} bytes)`) : null);
    },
  });
  // The read stream owns the FileHandle and closes it.
  pipeline(file.createReadStream({ start: 0, end: size - 1 }), counted).catch(() => undefined);
  return counted;
}

export class WorkspaceFiles {
  /**
   * The entries below `relDir` (the whole workspace without it), depth first,
   * at most 10,000. Symlinks are listed, not entered; folders whose own path
   * is past 1024 characters are listed but not entered (no path there could
   * be asked for); entries that vanish while listed are left out.
   */
  async list(root: string, relDir?: string): Promise<FileEntry[]> {
    return guarded('list', async () => {
      const parts = relDir ? pathParts(relDir) : [];
      const prefix = parts.length > 0 ? `${parts.join('/')}/` : '';
      const start = await openPath(root, parts);
      const entries: FileEntry[] = [];
      try {
        await walkTree(start, (path, info) => {
          if (entries.length >= MAX_LIST_ENTRIES) return 'stop';
          entries.push(entryOf(prefix + path, info));
          return (prefix + path).length <= MAX_PATH_LENGTH ? 'descend' : 'next';
        });
      } finally {
        await start.close();
      }
      return entries;
    });
  }

  /** A regular file's bytes; the stream owns the file's descriptor and closes it when it ends or is destroyed. */
  async read(root: string, relPath: string): Promise<{ stream: Readable; size: number }> {
    return guarded('read', async () => {
      const parts = pathParts(relPath);
      const name = parts.pop()!;
      const dir = await openPath(root, parts);
      let file: FileHandle;
      try {
        file = await open(at(dir, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } finally {
        await dir.close();
      }
      try {
        const info = await file.stat();
        if (!info.isFile()) throw new RunnerError('INVALID_PATH', 'Not a regular file.');
        return { stream: exactly(file, info.size), size: info.size };
      } catch (error) {
        await file.close();
        throw error;
      }
    });
  }

  /** Writes atomically (temp file + rename), creating parent folders; returns the size written. */
  async write(
    root: string,
    relPath: string,
    body: Readable,
    options: UploadLimits,
  ): Promise<number> {
    return guarded('write', async () => {
      const parts = pathParts(relPath);
      const name = parts.pop()!;
      const dir = await openPath(root, parts, { owner: options.owner });
      try {
        const existing = await lstat(at(dir, name)).catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return undefined;
          throw error;
        });
        // Renaming over a symlink would replace the link, not follow it; refused anyway, as a read of it is.
        if (existing?.isSymbolicLink()) throw new RunnerError('INVALID_PATH', 'The path is a symlink (symlinks are not followed).');
        if (existing?.isDirectory()) throw new RunnerError('INVALID_PATH', 'The path is a folder.');
        // A short unique name next to the target: concurrent uploads of one path never collide, a long name still fits.
        const temp = tempName('.upload-');
        const file = await open(at(dir, temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
        try {
          let size: number;
          try {
            size = await copyLimited(body, file, options);
            if (options.owner) await file.chown(options.owner.uid, options.owner.gid);
          } finally {
            await file.close();
          }
          await rename(at(dir, temp), at(dir, name));
          return size;
        } catch (error) {
          await unlink(at(dir, temp)).catch(() => undefined);
          throw error;
        }
      } finally {
        await dir.close();
      }
    });
  }

  /** Deletes a file, a symlink (never its target) or a folder with everything in it. */
  async remove(root: string, relPath: string): Promise<void> {
    return guarded('remove', async () => {
      const parts = pathParts(relPath);
      const name = parts.pop()!;
      const dir = await openPath(root, parts);
      try {
        await removeAt(dir, name);
      } finally {
        await dir.close();
      }
    });
  }
}
