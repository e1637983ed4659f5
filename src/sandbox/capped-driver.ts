/**
 * A cap on running sandboxes (MAX_RUNNING_SANDBOXES), around any sandbox
 * driver. When a sandbox must start and the cap is reached, the least
 * recently used running sandbox whose session has no task running is stopped
 * first: its files and conversation stay, and its next task starts it again
 * and resumes. The composition root also runs at most that many tasks at
 * once (tasks beyond it wait in their queue, abortable, their time limit not
 * yet ticking), so an idle sandbox to stop always exists. Should every
 * running sandbox still be busy (work outside the scheduler), ensure() waits
 * for one to free up for up to `waitMs` (the engine's answers included), then
 * fails with SANDBOX_UNAVAILABLE. ensure(spec, signal) stops waiting for a
 * slot when the signal aborts, with its reason; a start already under way is
 * awaited, so that no container appears after its owner has gone.
 */
import { RunnerError } from '../core/errors.ts';
import type {
  ExecOptions, ResourceCounters, SandboxDriver, SandboxEvent, SandboxHandle, SandboxInfo, SandboxProcess, SandboxSpec,
} from '../core/ports/sandbox.ts';

export interface SandboxCapOptions {
  /** 0: no cap. */
  maxRunning: number;
  /** True while a task of the session runs: its sandbox is never stopped to make room. */
  isBusy(sessionKey: string): boolean;
  /** True for a spare sandbox (a ready session nobody has claimed): the first stopped to make room. */
  isSpare?(sessionKey: string): boolean;
  /** Runs before an idle sandbox is stopped to make room (e.g. ends its live agent). */
  beforeStop(sessionKey: string): Promise<void>;
  /**
   * Runs after any sandbox was stopped or removed, whoever asked (the cap, a
   * failed task, the idle sweep, a reset): what lives only as long as the
   * sandbox (its gateway socket) goes with it.
   */
  afterStop?(sessionKey: string): Promise<void>;
  /** How long ensure() waits when every running sandbox is busy (default 60 s). */
  waitMs?: number;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export class CappedSandboxDriver implements SandboxDriver {
  private readonly inner: SandboxDriver;
  private readonly options: SandboxCapOptions;
  /** When each session's sandbox was last asked for (by a task). */
  private readonly lastUsed = new Map<string, number>();
  /** Sandboxes given a slot and still starting: they count against the cap. */
  private readonly starting = new Set<string>();
  /** Idle sandboxes a slot decision is stopping: their next task waits for that decision. */
  private readonly stopping = new Set<string>();
  private lock: Promise<void> = Promise.resolve();

  constructor(inner: SandboxDriver, options: SandboxCapOptions) {
    this.inner = inner;
    this.options = options;
  }

  check(): Promise<void> {
    return this.inner.check();
  }

  /** The port's ensure; `signal` (optional, the task's) ends the wait for a slot with its reason. */
  async ensure(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    signal?.throwIfAborted();
    const key = spec.sessionKey;
    this.lastUsed.set(key, Date.now());
    // A start under way is waited for even after an abort: left behind, it would create a container
    // nobody owns any more (after a delete or a shutdown). Only the wait for a slot is given up.
    // A warm session's sandbox takes no new slot: no wait behind other sessions' slot decisions,
    // no listing of them all. Unless a decision made it a victim (chosen idle, now being stopped).
    if (this.options.maxRunning <= 0 || (this.inner.knownRunning?.(key) && !this.stopping.has(key))) return this.inner.ensure(spec);
    const deadline = Date.now() + (this.options.waitMs ?? 60_000);
    let outcome: 'running' | 'slot' | 'full';
    for (let waited = false; (outcome = await this.slotBefore(key, deadline, signal)) === 'full'; waited = true) {
      if (Date.now() >= deadline) throw this.busyError();
      if (!waited) this.options.logger.warn({ sessionKey: key, maxRunning: this.options.maxRunning }, 'every running sandbox is busy: waiting for one to free up');
      await abortable(new Promise((resolve) => setTimeout(resolve, Math.min(250, deadline - Date.now()))), signal);
    }
    const started = this.inner.ensure(spec);
    // The slot is held until the start ends, even when this caller stops waiting for it.
    if (outcome === 'slot') void started.then(() => this.starting.delete(key), () => this.starting.delete(key));
    return started;
  }

  /**
   * Starts a spare sandbox (a ready session's) only into a free slot: nothing
   * is stopped for it and nothing waits. Undefined when the cap is reached.
   */
  async ensureSpare(spec: SandboxSpec): Promise<SandboxHandle | undefined> {
    const key = spec.sessionKey;
    if (this.options.maxRunning > 0) {
      const free = await this.exclusive(async () => {
        const running = new Set((await this.inner.list()).filter((s) => s.running).map((s) => s.sessionKey));
        for (const starting of this.starting) running.add(starting);
        if (running.size >= this.options.maxRunning) return false;
        this.starting.add(key);
        return true;
      });
      if (!free) return undefined;
    }
    this.lastUsed.set(key, Date.now());
    try {
      return await this.inner.ensure(spec);
    } finally {
      this.starting.delete(key);
    }
  }

  private busyError(): RunnerError {
    return new RunnerError(
      'SANDBOX_BUSY',
      `No sandbox could start within ${this.options.waitMs ?? 60_000} ms: all ${this.options.maxRunning} running sandboxes (MAX_RUNNING_SANDBOXES) are busy with tasks, or the Docker engine is slow; try again later.`,
    );
  }

  /**
   * takeSlot, after every earlier decision, given up at the deadline (a stuck
   * engine holds the lock) or on abort; a slot granted after this caller left
   * is handed back.
   */
  private slotBefore(sessionKey: string, deadline: number, signal: AbortSignal | undefined): Promise<'running' | 'slot' | 'full'> {
    let left = false;
    const decision = this.exclusive(() => (left ? Promise.resolve('full' as const) : this.takeSlot(sessionKey)));
    void decision.then((outcome) => {
      if (left && outcome === 'slot') this.starting.delete(sessionKey);
    }, () => {});
    return new Promise((resolve, reject) => {
      const leave = (reason: unknown): void => {
        left = true;
        done();
        reject(reason);
      };
      const onAbort = (): void => leave(signal!.reason);
      const timer = setTimeout(() => leave(this.busyError()), Math.max(0, deadline - Date.now()));
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      decision.then(
        (outcome) => { if (!left) { done(); resolve(outcome); } },
        (error: unknown) => { if (!left) { done(); reject(error); } },
      );
    });
  }

  /**
   * 'running': the session's sandbox runs (or is starting) already; 'slot': it
   * may start now (idle sandboxes were stopped if needed); 'full': every
   * running sandbox is busy.
   */
  private async takeSlot(sessionKey: string): Promise<'running' | 'slot' | 'full'> {
    const max = this.options.maxRunning;
    const running = new Set((await this.inner.list()).filter((s) => s.running).map((s) => s.sessionKey));
    if (running.has(sessionKey) || this.starting.has(sessionKey)) return 'running';
    for (const key of this.starting) running.add(key);
    const idle = [...running]
      .filter((key) => !this.starting.has(key) && !this.options.isBusy(key))
      .sort((a, b) => Number(this.isSpare(b)) - Number(this.isSpare(a)) || (this.lastUsed.get(a) ?? 0) - (this.lastUsed.get(b) ?? 0));
    const excess = running.size - max + 1;
    if (excess > idle.length) return 'full';
    const victims = idle.slice(0, Math.max(0, excess));
    for (const victim of victims) this.stopping.add(victim);
    try {
      for (const victim of victims) {
        this.options.logger.info({ sessionKey: victim, for: sessionKey, maxRunning: max }, 'sandbox cap reached: stopping the least recently used idle sandbox');
        await this.options.beforeStop(victim);
        await this.inner.stop(victim);
        await this.options.afterStop?.(victim);
      }
    } finally {
      for (const victim of victims) this.stopping.delete(victim);
    }
    this.starting.add(sessionKey);
    return 'slot';
  }

  private isSpare(sessionKey: string): boolean {
    return this.options.isSpare?.(sessionKey) ?? false;
  }

  /** Runs fn after every earlier slot decision: two starts never both see the last free slot. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.lock.then(fn);
    this.lock = result.then(() => undefined, () => undefined);
    return result;
  }

  exec(handle: SandboxHandle, command: string[], options: ExecOptions): SandboxProcess {
    return this.inner.exec(handle, command, options);
  }

  killAgentProcesses(handle: SandboxHandle): Promise<void> {
    return this.inner.killAgentProcesses(handle);
  }

  resourceCounters(handle: SandboxHandle): Promise<ResourceCounters> {
    return this.inner.resourceCounters(handle);
  }

  watch(handle: SandboxHandle, listener: (event: SandboxEvent) => void): () => void {
    return this.inner.watch(handle, listener);
  }

  async stop(sessionKey: string): Promise<void> {
    await this.inner.stop(sessionKey);
    await this.options.afterStop?.(sessionKey);
  }

  async remove(sessionKey: string): Promise<void> {
    this.lastUsed.delete(sessionKey);
    await this.inner.remove(sessionKey);
    await this.options.afterStop?.(sessionKey);
  }

  list(): Promise<SandboxInfo[]> {
    return this.inner.list();
  }

  /** Sandboxes that run now, as the engine lists them (metrics). */
  async runningCount(): Promise<number> {
    return (await this.inner.list()).filter((sandbox) => sandbox.running).length;
  }
}

/** The promise's outcome, or the signal's reason as soon as it aborts (the work itself goes on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error); },
    );
  });
}
