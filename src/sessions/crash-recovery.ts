/**
 * What a crash (or kill -9) left behind, put right at start-up, before the
 * scheduler claims anything:
 *  - tasks left running end as `interrupted` (they cost money and may have
 *    had side effects: never re-run silently), told like any other end; what
 *    they spent and the tools they used were stored as they happened;
 *  - folders of sessions that no longer exist (a delete cut short) are removed;
 *    the workspace volumes of the others are mounted (SANDBOX_DISK_MODE=loop,
 *    after a reboot);
 *  - sandboxes of sessions that no longer exist are removed, the others
 *    stopped: an agent process left running inside would go on spending and
 *    writing (the next task starts them again).
 *
 * With several nodes on one store (`nodeId` set), only this node's own tasks
 * and sandboxes are its to put right (the others' are taken over when their
 * lease runs out), and folders are left alone: a folder without a session
 * may be a session another node is making right now.
 *
 * Owns: start-up reconciliation. Must not touch: HTTP; the store, sandboxes
 * and folders only through their ports.
 */
import { RunnerError } from '../core/errors.ts';
import type { SandboxDriver } from '../core/ports/sandbox.ts';
import type { Store } from '../core/ports/store.ts';
import type { TaskEndings } from '../tasks/task-endings.ts';
import type { SessionDirectories } from '../workspace/session-dirs.ts';

export interface CrashRecoveryDeps {
  store: Store;
  endings: TaskEndings;
  sandbox: SandboxDriver;
  dirs: SessionDirectories;
  /** This node's id when other nodes share the store; undefined: this runner is alone on it. */
  nodeId?: string;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export interface RecoveryReport {
  interruptedTasks: string[];
  removedFolders: string[];
  removedSandboxes: string[];
  stoppedSandboxes: string[];
  /** Set when the sandbox backend could not be reached: its part is left for later. */
  sandboxError?: string;
}

export class CrashRecovery {
  private readonly deps: CrashRecoveryDeps;

  constructor(deps: CrashRecoveryDeps) {
    this.deps = deps;
  }

  async run(): Promise<RecoveryReport> {
    const { logger } = this.deps;
    const report: RecoveryReport = { interruptedTasks: await this.interruptTasks(), removedFolders: [], removedSandboxes: [], stoppedSandboxes: [] };
    if (report.interruptedTasks.length > 0) logger.warn({ tasks: report.interruptedTasks }, 'tasks interrupted by the last shutdown or crash');
    // Sandboxes first: no agent of a deleted session may still run while its folders are removed.
    try {
      await this.deps.sandbox.check();
      Object.assign(report, await this.reconcileSandboxes());
      if (report.removedSandboxes.length + report.stoppedSandboxes.length > 0) {
        logger.info({ removed: report.removedSandboxes, stopped: report.stoppedSandboxes }, 'sandboxes reconciled');
      }
    } catch (error) {
      report.sandboxError = error instanceof RunnerError ? error.code : 'unavailable';
      logger.error({ err: error }, 'the sandbox backend is not ready: tasks will fail until it is');
    }
    report.removedFolders = await this.reconcileFolders();
    if (report.removedFolders.length > 0) logger.info({ sessions: report.removedFolders }, 'folders of deleted sessions removed');
    return report;
  }

  /** Ends this node's tasks left `running` in the store as `interrupted` (all tasks when alone on it), told like any end. */
  async interruptTasks(): Promise<string[]> {
    const { store, endings } = this.deps;
    const interrupted = await store.interruptRunningTasks(this.deps.nodeId ?? null, new RunnerError('TASK_INTERRUPTED').toBody(), Date.now());
    // Alone on the store: sessions owned under another runner id (RUNNER_ID changed) are this runner's to run.
    if (this.deps.nodeId === undefined) await store.releaseSessions(null);
    for (const task of interrupted) {
      const ended = await store.getTask(task.id);
      if (ended) await endings.ended(ended);
    }
    return interrupted.map((task) => task.id);
  }

  /** Removes the folders of sessions that are gone; mounts the others' volumes. One that fails is logged, not fatal. */
  private async reconcileFolders(): Promise<string[]> {
    const known = new Set(await this.deps.store.listAllSessionKeys());
    const removed: string[] = [];
    for (const key of await this.deps.dirs.listKeys()) {
      try {
        if (known.has(key)) {
          await this.deps.dirs.mount(key);
        } else if (this.deps.nodeId === undefined) {
          await this.deps.dirs.remove(key);
          removed.push(key);
        }
      } catch (error) {
        this.deps.logger.error({ sessionKey: key, err: error }, 'could not put a session\'s folders right at start-up');
      }
    }
    return removed;
  }

  private async reconcileSandboxes(): Promise<{ removedSandboxes: string[]; stoppedSandboxes: string[] }> {
    const known = new Set(await this.deps.store.listAllSessionKeys());
    const removedSandboxes: string[] = [];
    const stoppedSandboxes: string[] = [];
    for (const sandbox of await this.deps.sandbox.list()) {
      if (!known.has(sandbox.sessionKey)) {
        await this.deps.sandbox.remove(sandbox.sessionKey);
        removedSandboxes.push(sandbox.sessionKey);
      } else if (sandbox.running) {
        await this.deps.sandbox.stop(sandbox.sessionKey);
        stoppedSandboxes.push(sandbox.sessionKey);
      }
    }
    return { removedSandboxes, stoppedSandboxes };
  }
}
