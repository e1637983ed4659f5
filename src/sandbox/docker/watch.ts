/**
 * SandboxDriver.watch for Docker: `oom` and `died` come from the engine's
 * events (engine-events.ts, one stream per driver); `pids_limit` has no engine
 * event, so the container's pids.events counter is polled while it is
 * watched, one poll per container whatever the number of its watchers: a file
 * read every second when the host's cgroup files are visible (their paths are
 * found once, cgroup-counters.ts), else an exec read every few seconds. No
 * inspect per poll: only while the paths are unknown, backing off when the
 * container does not run.
 */
import type { SandboxEvent, SandboxHandle } from '../../core/ports/sandbox.ts';
import type { CgroupCounters } from './cgroup-counters.ts';
import type { EngineEvents } from './engine-events.ts';
import type { SandboxLogger } from './exec-process.ts';

export interface SandboxWatchersOptions {
  events: EngineEvents;
  counters: CgroupCounters;
  logger: SandboxLogger;
  /** Between two reads of the host's counter file (default 1 s). */
  pollMs?: number;
  /** Between two reads from inside the sandbox, when the host's files are not visible (default 5 s). */
  insidePollMs?: number;
}

interface Watcher {
  listener: (event: SandboxEvent) => void;
}

/** The pids-limit poll of one container. */
interface PidsPoll {
  handle: SandboxHandle;
  watchers: Set<Watcher>;
  /** The last count read; null before the first read (the baseline). */
  last: number | null;
  failures: number;
  timer: NodeJS.Timeout | null;
  stopped: boolean;
}

const MAX_RETRY_MS = 30_000;

export class SandboxWatchers {
  #options: SandboxWatchersOptions;
  #polls = new Map<string, PidsPoll>();

  constructor(options: SandboxWatchersOptions) {
    this.#options = options;
  }

  watch(handle: SandboxHandle, listener: (event: SandboxEvent) => void): () => void {
    const watcher: Watcher = { listener };
    const unsubscribe = this.#options.events.subscribe(handle.id, (event) => {
      listener(event.action === 'oom' ? { type: 'oom' } : { type: 'died', exitCode: event.exitCode });
    });
    let poll = this.#polls.get(handle.id);
    if (!poll) {
      poll = { handle, watchers: new Set(), last: null, failures: 0, timer: null, stopped: false };
      this.#polls.set(handle.id, poll);
      void this.#tick(poll);
    }
    poll.watchers.add(watcher);
    const owner = poll;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      unsubscribe();
      owner.watchers.delete(watcher);
      if (owner.watchers.size === 0) this.#stop(owner);
    };
  }

  /** Ends every watch. */
  close(): void {
    for (const poll of [...this.#polls.values()]) this.#stop(poll);
    this.#options.events.close();
  }

  #stop(poll: PidsPoll): void {
    poll.stopped = true;
    if (poll.timer) clearTimeout(poll.timer);
    if (this.#polls.get(poll.handle.id) === poll) this.#polls.delete(poll.handle.id);
  }

  async #tick(poll: PidsPoll): Promise<void> {
    poll.timer = null;
    const { counters, logger, pollMs = 1000, insidePollMs = 5000 } = this.#options;
    let delay: number;
    try {
      const read = await counters.poll(poll.handle);
      if (poll.stopped) return;
      const hits = read.counters.pidsLimitHits;
      const rose = poll.last !== null && hits > poll.last;
      // a count that went down: the container restarted, its counters with it
      poll.last = hits;
      poll.failures = 0;
      if (rose) {
        for (const watcher of [...poll.watchers]) {
          try {
            watcher.listener({ type: 'pids_limit' });
          } catch (error) {
            logger.error({ err: (error as Error).message }, 'sandbox: a watch listener threw');
          }
        }
      }
      delay = read.inside ? insidePollMs : pollMs;
    } catch {
      if (poll.stopped) return;
      // not running (stopped, restarting) or unreadable: look again, less and less often
      poll.failures++;
      delay = Math.min(pollMs * 2 ** poll.failures, MAX_RETRY_MS);
    }
    if (poll.stopped) return;
    poll.timer = setTimeout(() => void this.#tick(poll), delay);
    poll.timer.unref();
  }
}
