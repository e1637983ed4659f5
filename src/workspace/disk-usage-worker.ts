/**
 * The thread that measures folders for disk-usage.ts: a walk with synchronous
 * calls, which take microseconds each here where the thread pool's
 * round trips took a tenth of a millisecond (a session's folders measured in
 * 0.3 ms instead of 3), and block only this thread whatever the tree's size.
 *
 * The walk keeps dir-walk.ts's rules: every name is looked up inside a folder
 * held open (/proc/self/fd/<fd>/<name>), a folder is entered only by opening
 * it with O_NOFOLLOW|O_DIRECTORY (a symlink, made before or swapped in, is
 * never followed), at most WINDOW folders are held open (deeper ones are
 * opened again from the deepest still open), and entries that vanish meanwhile
 * are skipped. A folder's entries are all counted while it is open, before
 * its subfolders are entered: coming back up a deep chain reopens nothing.
 * Each inode counts once; past `maxEntries` the size is Infinity.
 *
 * Owns: the measurements asked for, in turns. Must not touch: anything but
 * reading the tree (no write, no chown).
 */
import { closeSync, constants, lstatSync, openSync, readdirSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
const WINDOW = 32;
/** Entries a measurement counts before the next one under way gets its turn (a few milliseconds). */
const SLICE = 1000;
/** A folder that went away or was swapped for something else while the walk was in it: skipped. */
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

export interface UsageRequest { id: number; dir: string; maxEntries: number }
export type UsageReply = { id: number; bytes: number } | { id: number; error: { message: string; code?: string } };

const codeOf = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? '';
const at = (fd: number, name: string): string => `/proc/self/fd/${fd}/${name}`;

/** The folders from the root down to where the walk is; names kept so a closed one can be opened again. */
class OpenFolders {
  readonly names: string[] = [];
  readonly fds: number[] = [];
  private readonly root: number;

  constructor(root: number) {
    this.root = root;
  }

  current(): number {
    const last = this.fds.length - 1;
    if (last < 0) return this.root;
    if (this.fds[last]! >= 0) return this.fds[last]!;
    let from = last;
    while (from >= 0 && this.fds[from]! < 0) from--;
    let dir = from >= 0 ? this.fds[from]! : this.root;
    for (let i = from + 1; i <= last; i++) {
      dir = openSync(at(dir, this.names[i]!), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      this.fds[i] = dir;
      this.trim();
    }
    return dir;
  }

  enter(name: string): void {
    const fd = openSync(at(this.current(), name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    this.names.push(name);
    this.fds.push(fd);
    this.trim();
  }

  leave(): void {
    this.names.pop();
    const fd = this.fds.pop();
    if (fd !== undefined && fd >= 0) closeSync(fd);
  }

  closeAll(): void {
    while (this.fds.length > 0) this.leave();
  }

  private trim(): void {
    let open = this.fds.filter((fd) => fd >= 0).length;
    for (let i = 0; open > WINDOW && i < this.fds.length; i++) {
      if (this.fds[i]! < 0) continue;
      closeSync(this.fds[i]!);
      this.fds[i] = -1;
      open--;
    }
  }
}

/**
 * Bytes the tree takes on disk (512-byte blocks as allocated); 0 when the
 * folder does not exist. A generator: it pauses every SLICE entries, so the
 * thread can give the other measurements under way their turn.
 */
export function* measure(dir: string, maxEntries: number): Generator<void, number> {
  let root: number;
  try {
    root = openSync(dir, O_RDONLY | O_DIRECTORY);
  } catch {
    return 0;
  }
  const folders = new OpenFolders(root);
  const seen = new Set<string>();
  let bytes = 0;
  let entries = 0;
  /**
   * Counts what the folder the walk is in holds, all of it while that folder
   * is open (so coming back up a chain deeper than the window opens nothing
   * again); its subfolders, to enter next. Null: past maxEntries.
   */
  const count = function* (depth: number): Generator<void, string[] | null> {
    const subfolders: string[] = [];
    for (const name of readdirSync(`/proc/self/fd/${folders.current()}`)) {
      if (entries % SLICE === SLICE - 1) yield;
      let info;
      try {
        info = lstatSync(at(folders.current(), name));
      } catch (error) {
        if (codeOf(error) === 'ENOENT') continue;
        if (depth > 0 && GONE.has(codeOf(error))) return subfolders; // its folder went away: the rest of it too
        throw error;
      }
      if (++entries > maxEntries) return null;
      if (info.isDirectory()) subfolders.push(name);
      else if (info.nlink > 1) {
        const inode = `${info.dev}:${info.ino}`;
        if (seen.has(inode)) continue;
        seen.add(inode);
      }
      bytes += info.blocks * 512;
    }
    return subfolders;
  };
  try {
    // Depth first, without recursion (a tree may be deeper than the stack): one frame per open folder.
    const top = yield* count(0);
    if (top === null) return Infinity;
    const frames: Array<{ names: string[]; next: number }> = [{ names: top, next: 0 }];
    while (frames.length > 0) {
      const frame = frames.at(-1)!;
      const name = frame.names[frame.next++];
      if (name === undefined) {
        frames.pop();
        if (frames.length > 0) folders.leave();
        continue;
      }
      try {
        folders.enter(name);
      } catch (error) {
        if (GONE.has(codeOf(error))) continue;
        throw error;
      }
      let inside: string[] | null;
      try {
        inside = yield* count(frames.length);
      } catch (error) {
        folders.leave();
        if (GONE.has(codeOf(error))) continue;
        throw error;
      }
      if (inside === null) return Infinity;
      frames.push({ names: inside, next: 0 });
    }
    return bytes;
  } finally {
    folders.closeAll();
    closeSync(root);
  }
}

/**
 * The measurements under way, each given a slice in turn: a session with a
 * million files does not hold up another's measurement of a few dozen.
 */
const underWay: Array<{ id: number; walk: Generator<void, number> }> = [];
let turning = false;

function turn(): void {
  for (const job of [...underWay]) {
    let reply: UsageReply;
    try {
      const step = job.walk.next();
      if (!step.done) continue;
      reply = { id: job.id, bytes: step.value };
    } catch (error) {
      reply = { id: job.id, error: { message: (error as Error).message, code: codeOf(error) || undefined } };
    }
    underWay.splice(underWay.indexOf(job), 1);
    parentPort!.postMessage(reply);
  }
  turning = underWay.length > 0;
  // After the messages that came meanwhile: a new request joins the round.
  if (turning) setImmediate(turn);
}

parentPort?.on('message', ({ id, dir, maxEntries }: UsageRequest) => {
  underWay.push({ id, walk: measure(dir, maxEntries) });
  if (!turning) {
    turning = true;
    setImmediate(turn);
  }
});
