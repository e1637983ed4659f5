/**
 * Group commit for the SQLite store: commits run with synchronous=NORMAL (no
 * fsync inside the commit, which node:sqlite would make on the event loop,
 * blocking the whole process for it), and a store call that wrote resolves
 * only once the WAL file is fsynced, by Node's thread pool. Writes that end
 * while an fsync is under way share the next one. So what the store
 * acknowledges is on disk, as with synchronous=FULL, but the process keeps
 * serving (model calls, streams) while the disk catches up, and a burst of
 * writes costs one fsync.
 *
 * Owns: when the WAL is fsynced. Must not touch: what is written.
 */
import { open, type FileHandle } from 'node:fs/promises';

/** fdatasyncs the file at `path` through `handle`, opened on first use and kept (SQLite keeps its WAL while the store is open). */
export interface FileSyncer {
  sync(path: string): Promise<void>;
  close(): Promise<void>;
}

export function fileSyncer(): FileSyncer {
  let handle: Promise<FileHandle> | undefined;
  return {
    async sync(path) {
      handle ??= open(path, 'r');
      try {
        await (await handle).datasync();
      } catch (error) {
        handle = undefined;
        // No WAL: SQLite checkpointed it into the database (synced) and removed it, as it does when it closes.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    },
    async close() {
      const closing = handle;
      handle = undefined;
      await (await closing?.catch(() => undefined))?.close();
    },
  };
}

export class WalSync {
  readonly #walPath: string;
  readonly #syncFile: (path: string) => Promise<void>;
  /** Statements that may have written, counted; `#synced` is how many of them the last completed fsync covers. */
  #written = 0;
  #synced = 0;
  #syncing: Promise<void> | null = null;

  constructor(walPath: string, syncFile: (path: string) => Promise<void>) {
    this.#walPath = walPath;
    this.#syncFile = syncFile;
  }

  /** A statement that may write has run (called by the driver, on the event loop, as it runs). */
  wrote(): void {
    this.#written += 1;
  }

  /** Resolves once everything written so far is on disk; rejects when the fsync fails (the write is not acknowledged). */
  async sync(): Promise<void> {
    const target = this.#written;
    while (this.#synced < target) {
      this.#syncing ??= this.#fsync();
      await this.#syncing;
    }
  }

  async #fsync(): Promise<void> {
    // What was written before this point is in the WAL file: this fsync covers it.
    const covers = this.#written;
    try {
      await this.#syncFile(this.#walPath);
      if (covers > this.#synced) this.#synced = covers;
    } finally {
      this.#syncing = null;
    }
  }
}
