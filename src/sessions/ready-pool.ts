/**
 * Ready sessions: for each agent template, a few sessions prepared before
 * anyone asks for them. Each has a workspace copied from its template, its
 * hardened sandbox running (the very spec its first task would make:
 * src/tasks/session-setup.ts), the gateway's socket open and a live `claude`
 * started, rehearsed (one turn the gateway answers, then cleared: no model
 * call, no cost) and waiting for its first task. A new session claims one (the
 * entry's key becomes the session's key) and only pays for its task.
 *
 * Refilling is background work at low priority: it waits while tasks run
 * here, takes only a free sandbox slot and a free live-agent place (it never
 * stops anything of a real session, and a real session's task stops a spare
 * first: `isSpare`), and only with memory to spare. An entry is handed out
 * once: a claimed key is the session's, whatever becomes of it. A change in a
 * template's folder drains that template's entries; they are made again from
 * the new files.
 *
 * Owns: ready entries (session keys reserved, not yet in the store), their
 * folders, sandboxes and agents until claimed. Must not touch: the store,
 * stored sessions, HTTP, Docker (ports only).
 */
import { freemem } from 'node:os';
import { newId } from '../core/ids.ts';
import type { AgentRuntime } from '../core/ports/agent-runtime.ts';
import type { ModelGateway } from '../core/ports/model-gateway.ts';
import type { NetworkMode, SandboxHandle, SandboxSpec } from '../core/ports/sandbox.ts';
import { agentSetupFor, networkOf, sandboxSpecFor } from '../tasks/session-setup.ts';
import type { TemplateCatalog } from '../templates/catalog.ts';
import type { SessionDirectories } from '../workspace/session-dirs.ts';

/** The sandbox driver's side of spares (CappedSandboxDriver). */
export interface SpareSandboxes {
  /** Starts the sandbox only into a free slot; undefined when there is none. */
  ensureSpare(spec: SandboxSpec): Promise<SandboxHandle | undefined>;
  remove(sessionKey: string): Promise<void>;
}

export interface ReadyPoolDeps {
  templates: Pick<TemplateCatalog, 'names' | 'get' | 'readyPoolSize'>;
  dirs: SessionDirectories;
  sandbox: SpareSandboxes;
  gateway: Pick<ModelGateway, 'attachSession' | 'standbyToken' | 'rehearse' | 'sandboxEnv'>;
  runtime: Pick<AgentRuntime, 'prestart' | 'release' | 'liveSessions'>;
  defaults: { model: string | undefined; network: NetworkMode };
  /** READY_POOL_SIZE: entries per template (a template's runner.json may say otherwise). */
  size: number;
  maxLiveAgents: number;
  /** True while tasks run or wait here: refilling waits (it never competes with a task). */
  isBusy(): boolean | Promise<boolean>;
  /** Refilling waits while the machine has less free memory than this. */
  minFreeMemoryBytes: number;
  freeMemoryBytes?(): number;
  /** How long refilling waits after a failure, or for room that no notification announces (memory). */
  retryMs?: number;
  /** Refilling starts this long after a task's end: default 300 ms. */
  quietMs?: number;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; debug(obj: object, msg?: string): void };
}

interface Entry {
  key: string;
  template: string;
  /** The template's generation when the entry was made: a template change makes older entries stale. */
  generation: number;
  ready: boolean;
  /** Its sandbox stopped while it was claimed: not given back. */
  stopped?: boolean;
}

const MAX_RETRY_MS = 5 * 60_000;
/** Refilling starts this long after the last task ended. */
const QUIET_MS = 300;

export interface ReadyPoolStatus {
  /** Entries wanted, all templates together. */
  size: number;
  /** Entries ready to be claimed. */
  ready: number;
}

export class ReadyPool {
  private readonly deps: ReadyPoolDeps;
  private readonly entries = new Map<string, Entry>();
  /** Claimed, until the claimer says whether its session was stored (settle). */
  private readonly lent = new Map<string, Entry>();
  private readonly generations = new Map<string, number>();
  private filling: Promise<void> | null = null;
  private again = false;
  private retry: NodeJS.Timeout | undefined;
  private lastTaskEndAt = 0;
  /** A fill paused while tasks run, waiting for the next wake. */
  private readonly idleWaiters: Array<() => void> = [];
  /** Entries that failed in a row. */
  private failures = 0;
  private closed = false;

  constructor(deps: ReadyPoolDeps) {
    this.deps = deps;
  }

  /** Entries wanted for a template. */
  sizeOf(template: string): number {
    return this.deps.templates.readyPoolSize(template, this.deps.size);
  }

  status(): ReadyPoolStatus {
    const size = this.deps.templates.names().reduce((sum, name) => sum + this.sizeOf(name), 0);
    const live = new Set(this.deps.runtime.liveSessions());
    return { size, ready: [...this.entries.values()].filter((entry) => entry.ready && !this.stale(entry) && live.has(entry.key)).length };
  }

  /** A ready session of this template: its key, now the caller's; undefined when none is ready. */
  claim(template: string): string | undefined {
    const live = new Set(this.deps.runtime.liveSessions());
    for (const entry of this.entries.values()) {
      if (entry.template !== template || !entry.ready || this.stale(entry)) continue;
      if (!live.has(entry.key)) {
        // Its agent was closed to make room for a real session's: the entry goes, and is made again later.
        void this.discard(entry.key);
        continue;
      }
      this.entries.delete(entry.key);
      this.lent.set(entry.key, entry);
      // No refill now: the claimer's task is about to run; its end wakes the pool.
      this.deps.logger.debug({ sessionKey: entry.key, template }, 'ready pool: session claimed');
      return entry.key;
    }
    return undefined;
  }

  /**
   * Ends a claim: `stored`, the key is its session's for good; otherwise (a
   * limit refused the session, or another request made it first) nothing ran
   * in it, and it is ready again unless its template changed or its sandbox
   * stopped meanwhile.
   */
  async settle(sessionKey: string, stored: boolean): Promise<void> {
    const entry = this.lent.get(sessionKey);
    this.lent.delete(sessionKey);
    if (stored || !entry) return;
    if (this.closed || this.stale(entry) || entry.stopped) return this.discard(sessionKey);
    this.entries.set(sessionKey, entry);
  }

  /** True for a key the pool holds (ready or being made): its sandbox is the first stopped for room. */
  isSpare(sessionKey: string): boolean {
    return this.entries.has(sessionKey);
  }

  /** A spare's sandbox was stopped (the cap made room for a real session): the entry goes. */
  sandboxStopped(sessionKey: string): void {
    const lent = this.lent.get(sessionKey);
    if (lent) lent.stopped = true;
    if (this.entries.has(sessionKey)) void this.discard(sessionKey);
  }

  /**
   * Removes everything of an entry: its agent, sandbox and folders. Also for a
   * claimed key whose session could not be stored: it is never handed out again.
   */
  async discard(sessionKey: string): Promise<void> {
    this.entries.delete(sessionKey);
    try {
      await this.deps.runtime.release(sessionKey);
      await this.deps.sandbox.remove(sessionKey);
      await this.deps.dirs.remove(sessionKey);
    } catch (error) {
      // What is left has no session: start-up removes it (crash-recovery.ts).
      this.deps.logger.warn({ sessionKey, err: error }, 'ready pool: could not remove an entry');
    }
  }

  /** The template's files changed: its entries are stale (removed now, or when made), and made again. */
  templateChanged(template: string): void {
    this.generations.set(template, this.generation(template) + 1);
    const stale = [...this.entries.values()].filter((entry) => entry.template === template && entry.ready);
    this.deps.logger.info({ template, entries: stale.length }, 'ready pool: template changed, draining its entries');
    void Promise.all(stale.map((entry) => this.discard(entry.key))).then(() => this.wake());
  }

  /** A task ended here: refill (after a quiet moment), and a fill paused for tasks looks again. */
  taskEnded(): void {
    this.lastTaskEndAt = Date.now();
    this.wake();
  }

  /** Something changed (a task ended, an entry was removed, start-up): refill if there is room. */
  wake(): void {
    // A fill paused for a task goes on once nothing runs (it looks again).
    for (const resume of this.idleWaiters.splice(0)) resume();
    if (this.closed) return;
    if (this.filling) {
      this.again = true;
      return;
    }
    this.filling = this.fill().finally(() => {
      this.filling = null;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  /** Stops refilling and removes every entry not claimed. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    for (const resume of this.idleWaiters.splice(0)) resume();
    await this.filling;
    await Promise.all([...this.entries.keys()].map((key) => this.discard(key)));
  }

  private generation(template: string): number {
    return this.generations.get(template) ?? 0;
  }

  private stale(entry: Entry): boolean {
    return entry.generation !== this.generation(entry.template);
  }

  /** Makes entries one at a time while some template lacks one and there is room. */
  private async fill(): Promise<void> {
    // Ready entries whose agent was closed for room (a real session's) go first: they are made again.
    const live = new Set(this.deps.runtime.liveSessions());
    await Promise.all([...this.entries.values()].filter((entry) => entry.ready && !live.has(entry.key)).map((entry) => this.discard(entry.key)));
    for (;;) {
      if (this.closed) return;
      const template = this.templateToFill();
      if (template === undefined) return;
      // A session's next message usually follows its answer at once: leave it the machine for a moment.
      const quietFor = this.lastTaskEndAt + (this.deps.quietMs ?? QUIET_MS) - Date.now();
      if (quietFor > 0) return this.wakeIn(quietFor);
      const room = await this.room();
      if (room !== 'ok') {
        // A task's end wakes the pool; memory and slots freed otherwise are looked at again later.
        if (room !== 'busy') this.retryLater();
        return;
      }
      const made = await this.makeEntry(template);
      // A failure (the engine down, the image missing) is tried again less and less often, up to every 5 min.
      this.failures = made === 'failed' ? this.failures + 1 : made === 'made' ? 0 : this.failures;
      if (made !== 'made') {
        this.retryLater();
        return;
      }
    }
  }

  private templateToFill(): string | undefined {
    return this.deps.templates.names().find((name) => {
      const held = [...this.entries.values()].filter((entry) => entry.template === name && !this.stale(entry)).length;
      return held < this.sizeOf(name);
    });
  }

  private async room(): Promise<'ok' | 'busy' | 'full'> {
    const { deps } = this;
    if (await deps.isBusy()) return 'busy';
    if (deps.runtime.liveSessions().length >= deps.maxLiveAgents) return 'full';
    if ((deps.freeMemoryBytes ?? freemem)() < deps.minFreeMemoryBytes) return 'full';
    return 'ok';
  }

  /** Returns once no task runs or waits here (at once when none does); a task's end wakes the pool. */
  private async whenIdle(): Promise<void> {
    while (!this.closed && (await this.deps.isBusy())) await new Promise<void>((resume) => this.idleWaiters.push(resume));
  }

  private retryLater(): void {
    const base = this.deps.retryMs ?? 5_000;
    this.wakeIn(Math.min(base * 2 ** this.failures, Math.max(base, MAX_RETRY_MS)));
  }

  /** One pending wake at a time: a later decision replaces an earlier one. */
  private wakeIn(ms: number): void {
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.wake(), ms);
    this.retry.unref();
  }

  /** One entry, made step by step; when there was no room after all or a step failed, it is undone. */
  private async makeEntry(templateName: string): Promise<'made' | 'no-room' | 'failed'> {
    const { deps } = this;
    const entry: Entry = { key: newId('s'), template: templateName, generation: this.generation(templateName), ready: false };
    this.entries.set(entry.key, entry);
    const gone = (): boolean => this.closed || this.entries.get(entry.key) !== entry || this.stale(entry);
    const started = performance.now();
    try {
      const template = deps.templates.get(templateName);
      await deps.dirs.create(entry.key, template.dir);
      const dirs = deps.dirs.of(entry.key);
      const network = networkOf(template, deps.defaults.network).mode;
      await this.whenIdle();
      const handle = gone() ? undefined : await deps.sandbox.ensureSpare(sandboxSpecFor({ key: entry.key, tenantId: '', id: '' }, template, dirs, deps.defaults.network));
      if (!handle || gone()) {
        await this.discard(entry.key);
        return 'no-room';
      }
      await deps.gateway.attachSession(entry.key, dirs.socketDir);
      // Claude Code reads its key at start: without one, its first call would be refused and retried a second later.
      await deps.gateway.standbyToken(entry.key);
      // Starting `claude` is the costly step: a task that arrived meanwhile goes first.
      await this.whenIdle();
      if (gone()) {
        await this.discard(entry.key);
        return 'made';
      }
      // Its first turn is a rehearsal the gateway answers: the first task's message finds a warmed-up `claude`.
      const rehearsing = deps.gateway.rehearse(entry.key);
      try {
        await deps.runtime.prestart(agentSetupFor(template, { sessionKey: entry.key, sandbox: handle }, {
          model: template.model ?? deps.defaults.model,
          outputSchema: template.outputSchema,
          network,
          env: {},
          processEnv: deps.gateway.sandboxEnv(network),
        }));
      } finally {
        rehearsing();
      }
      if (gone()) {
        await this.discard(entry.key);
        return 'made';
      }
      entry.ready = true;
      deps.logger.info({ sessionKey: entry.key, template: templateName, ms: Math.round(performance.now() - started) }, 'ready pool: session ready');
      return 'made';
    } catch (error) {
      // Closed for room or by a template change as it started: not a failure to back off from.
      // Asked before the discard, which takes the entry out (and would make every failure look gone).
      const wasGone = gone();
      await this.discard(entry.key);
      if (wasGone) return 'made';
      deps.logger.warn({ template: templateName, err: error, failures: this.failures + 1 }, 'ready pool: could not prepare a session');
      return 'failed';
    }
  }
}
