/**
 * Watches a running task's sandbox for the limits that end it: memory (a
 * process OOM-killed), processes (the pids limit hit), both as the sandbox
 * driver reports them, and the workspace's disk quota, measured now and then.
 * The first limit hit aborts the task with a RunnerError saying which.
 *
 * Owns: turning limit signals into a task's failure. Must not touch: how the
 * signals are read (the sandbox driver, the workspace quota).
 */
import { RunnerError } from '../core/errors.ts';
import type { ResourceCounters, SandboxDriver, SandboxEvent, SandboxHandle } from '../core/ports/sandbox.ts';
import type { QuotaDirs, WorkspaceQuota } from '../workspace/quota.ts';

export function limitFailure(before: ResourceCounters, now: ResourceCounters): RunnerError | undefined {
  if (now.oomKills > before.oomKills) return outOfMemory();
  if (now.pidsLimitHits > before.pidsLimitHits) return tooManyProcesses();
  return undefined;
}

const outOfMemory = (): RunnerError => new RunnerError('SANDBOX_LIMIT', 'The sandbox ran out of memory: a process was killed.');
const tooManyProcesses = (): RunnerError => new RunnerError('SANDBOX_LIMIT', 'The sandbox hit its process limit.');

function eventFailure(event: SandboxEvent): RunnerError | undefined {
  if (event.type === 'oom') return outOfMemory();
  if (event.type === 'pids_limit') return tooManyProcesses();
  return undefined;
}

export interface LimitWatchOptions {
  sandbox: SandboxDriver;
  quota: WorkspaceQuota;
  /** How often the workspace's size is measured while the task runs. */
  diskPollMs: number;
}

export class LimitWatch {
  private readonly options: LimitWatchOptions;
  private before: ResourceCounters | undefined;
  private unwatch: (() => void) | undefined;
  private diskTimer: NodeJS.Timeout | undefined;

  constructor(options: LimitWatchOptions) {
    this.options = options;
  }

  /** Starts watching; `fail` is called with the first limit the task hits. */
  async start(handle: SandboxHandle, dirs: QuotaDirs, fail: (error: RunnerError) => void): Promise<void> {
    const { sandbox, quota, diskPollMs } = this.options;
    this.before = await sandbox.resourceCounters(handle);
    this.unwatch = sandbox.watch(handle, (event) => {
      const failure = eventFailure(event);
      if (failure) fail(failure);
    });
    if (quota.limitBytes > 0) {
      let measuring = false;
      this.diskTimer = setInterval(() => {
        if (measuring) return;
        measuring = true;
        quota.overLimit(dirs)
          .then((failure) => { if (failure) fail(failure); })
          .catch(() => undefined)
          .finally(() => { measuring = false; });
      }, diskPollMs);
      this.diskTimer.unref();
    }
  }

  stop(): void {
    this.unwatch?.();
    clearInterval(this.diskTimer);
  }

  /**
   * A limit the task hit that its end may not have shown (a tool killed for
   * memory need not fail the agent), read once more after the task.
   */
  async failureSince(handle: SandboxHandle, dirs: QuotaDirs): Promise<RunnerError | undefined> {
    this.stop();
    const before = this.before;
    const [disk, counters] = await Promise.all([
      this.options.quota.overLimit(dirs).catch(() => undefined),
      before ? this.options.sandbox.resourceCounters(handle).catch(() => undefined) : undefined,
    ]);
    if (disk) return disk;
    return before && counters ? limitFailure(before, counters) : undefined;
  }
}
