/**
 * Session lifecycle: created on a first task (bound to one agent template,
 * with a fresh copy of it as workspace), listed, reset to a fresh copy with
 * its memory forgotten, deleted with everything it had. Idle sessions have
 * their sandbox stopped. (What a crash left behind: crash-recovery.ts.)
 *
 * Owns: sessions and their folders. Must not touch: HTTP, Docker or SQL
 * directly (ports only). Tasks of a session are stopped through `stopTasks`,
 * which the task service provides.
 */
import { RunnerError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { isValidPublicId, type Page, type Session, type SessionSummary } from '../core/model.ts';
import { isActive } from '../core/task-status.ts';
import type { AgentRuntime } from '../core/ports/agent-runtime.ts';
import type { ClusterBus } from '../core/ports/cluster-bus.ts';
import type { SandboxDriver } from '../core/ports/sandbox.ts';
import type { PageRequest, Store } from '../core/ports/store.ts';
import type { EventLog } from '../events/event-log.ts';
import type { TemplateCatalog } from '../templates/catalog.ts';
import type { WorkspaceQuota } from '../workspace/quota.ts';
import type { SessionDirectories } from '../workspace/session-dirs.ts';
import { KeyedLock } from '../core/keyed-lock.ts';

/** How long the node holding a session may take to close its agent and remove its sandbox. */
const TEARDOWN_ELSEWHERE_MS = 10_000;

export interface SessionServiceDeps {
  store: Store;
  events: EventLog;
  sandbox: SandboxDriver;
  runtime: AgentRuntime;
  templates: TemplateCatalog;
  dirs: SessionDirectories;
  quota: WorkspaceQuota;
  /** Ends the session's queued tasks and stops its running one (the task service's). */
  stopTasks(sessionKey: string): Promise<void>;
  /** Ready sessions to claim (src/sessions/ready-pool.ts); without it every session starts from nothing. */
  readySessions?: {
    claim(template: string): string | undefined;
    /** Ends a claim: the key is the stored session's, or (not stored) back to the pool as it was. */
    settle(sessionKey: string, stored: boolean): Promise<void>;
  };
  /** Other nodes on the same store (PostgreSQL): the node holding a session's sandbox tears it down. */
  bus?: ClusterBus;
  maxSessions: number;
  idleTimeoutMs: number;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export interface SessionView extends SessionSummary {
  busy: boolean;
  agentLive: boolean;
  /** Only filled in by describe (one session). */
  lastTaskId?: string | null;
}

export class SessionService {
  private readonly deps: SessionServiceDeps;
  /** Per public id (tenant, session id): a reset or delete never interleaves with a submit. */
  private readonly locks = new KeyedLock();
  private readonly createdListeners = new Set<(session: Session) => void>();
  /** The sweep of each kind under way: a slow one (many containers to stop) is not overtaken by the next tick. */
  private readonly sweeps = new Map<string, Promise<string[]>>();

  constructor(deps: SessionServiceDeps) {
    this.deps = deps;
  }

  /**
   * Runs fn with the session to itself: no reset or delete of it starts or is
   * under way meanwhile. A submit holds it from finding the session to
   * storing the task, so a task is never queued on a session being torn down
   * (its caller would wait forever for a row that a delete removed).
   */
  async exclusive<T>(tenantId: string, sessionId: string, fn: () => Promise<T>): Promise<T> {
    assertSessionId(sessionId);
    return this.locks.run(`${tenantId}\u0000${sessionId}`, fn);
  }

  /** The session, created (with its workspace) when it does not exist yet. */
  async ensure(tenantId: string, sessionId: string, agent: string | undefined): Promise<Session> {
    assertSessionId(sessionId);
    const existing = await this.deps.store.findSession(tenantId, sessionId);
    if (existing) {
      if (agent !== undefined && agent !== existing.agent) {
        throw new RunnerError('AGENT_MISMATCH', `Session ${sessionId} is bound to agent "${existing.agent}", not "${agent}".`);
      }
      return existing;
    }
    const template = this.deps.templates.pick(agent);
    const now = Date.now();
    // A ready session (sandbox up, agent waiting) when the pool has one; else a fresh copy of the template.
    const readyKey = this.deps.readySessions?.claim(template.name);
    const candidate: Session = {
      key: readyKey ?? newId('s'), tenantId, id: sessionId, agent: template.name, agentSessionId: null, turns: 0, totalCostUsd: 0,
      createdAt: now, lastActivityAt: now,
    };
    if (!readyKey) await this.deps.dirs.create(candidate.key, template.dir);
    // Not stored (a limit, or the same session made meanwhile by another request): nothing ran in it yet.
    const unused = (): Promise<void> => (readyKey ? this.deps.readySessions!.settle(readyKey, false) : this.deps.dirs.remove(candidate.key));
    try {
      const { session, created } = await this.deps.store.createSession(candidate, { maxSessions: this.deps.maxSessions });
      if (!created) await unused();
      else {
        if (readyKey) await this.deps.readySessions!.settle(readyKey, true);
        this.deps.logger.info({ sessionKey: session.key, tenantId, sessionId, agent: template.name, ready: Boolean(readyKey) }, 'session created');
        for (const listener of this.createdListeners) listener(session);
      }
      return session;
    } catch (error) {
      await unused();
      throw error;
    }
  }

  /** Calls `listener` with every session created from now on (streams opened before their session's first task). */
  onCreated(listener: (session: Session) => void): () => void {
    this.createdListeners.add(listener);
    return () => this.createdListeners.delete(listener);
  }

  /** The session, or undefined when it does not exist (yet). */
  async find(tenantId: string, sessionId: string): Promise<Session | undefined> {
    assertSessionId(sessionId);
    return this.deps.store.findSession(tenantId, sessionId);
  }

  async get(tenantId: string, sessionId: string): Promise<Session> {
    assertSessionId(sessionId);
    const session = await this.deps.store.findSession(tenantId, sessionId);
    if (!session) throw new RunnerError('SESSION_NOT_FOUND', `No session ${sessionId}.`);
    return session;
  }

  async describe(tenantId: string, sessionId: string): Promise<SessionView> {
    const session = await this.get(tenantId, sessionId);
    const summary = await this.deps.store.summarizeSession(session.key);
    if (!summary) throw new RunnerError('SESSION_NOT_FOUND');
    const recent = await this.deps.store.listTasks(session.key, { limit: 1 });
    return { ...this.view(summary), lastTaskId: recent.items[0]?.id ?? null };
  }

  async list(tenantId: string | null, page: PageRequest): Promise<Page<SessionView>> {
    const result = await this.deps.store.listSessions(tenantId, page);
    return { items: result.items.map((s) => this.view(s)), nextCursor: result.nextCursor };
  }

  workspaceDir(session: Session): string {
    return this.deps.dirs.of(session.key).workspace;
  }

  /** What an upload may still take under the session's disk quota; DISK_QUOTA_EXCEEDED when nothing. */
  uploadRoom(session: Session): Promise<number> {
    return this.deps.quota.remaining(this.deps.dirs.of(session.key));
  }

  /** A fresh copy of the template, memory forgotten, turns 0; same id, same template. */
  reset(tenantId: string, sessionId: string): Promise<Session> {
    return this.exclusive(tenantId, sessionId, () => this.resetNow(tenantId, sessionId));
  }

  private async resetNow(tenantId: string, sessionId: string): Promise<Session> {
    const session = await this.get(tenantId, sessionId);
    await this.deps.stopTasks(session.key);
    await this.teardown(session.key);
    const template = this.deps.templates.get(session.agent);
    await this.deps.dirs.reset(session.key, template.dir);
    await this.deps.store.resetSession(session.key, Date.now());
    await this.deps.events.append(session.key, null, 'session_reset', {});
    return (await this.deps.store.getSessionByKey(session.key))!;
  }

  /** Kills the sandbox and removes the workspace, the memory and every row of the session. */
  delete(tenantId: string, sessionId: string): Promise<void> {
    return this.exclusive(tenantId, sessionId, () => this.deleteNow(tenantId, sessionId));
  }

  private async deleteNow(tenantId: string, sessionId: string): Promise<void> {
    const session = await this.get(tenantId, sessionId);
    await this.deps.stopTasks(session.key);
    await this.teardown(session.key);
    // Rows before folders: a crash in between leaves folders without a session, which start-up removes.
    await this.deps.store.deleteSession(session.key);
    this.deps.events.closeSession(session.key);
    this.deps.bus?.notify({ kind: 'session_deleted', sessionKey: session.key })
      .catch((error: unknown) => this.deps.logger.warn({ sessionKey: session.key, err: error }, 'could not tell the other nodes a session was deleted'));
    await this.deps.dirs.remove(session.key);
    this.deps.logger.info({ sessionKey: session.key, tenantId, sessionId }, 'session deleted');
  }

  /** Stops the sandboxes of sessions with nothing to do for IDLE_TIMEOUT_MS; the next task starts them again. */
  stopIdle(now = Date.now()): Promise<string[]> {
    return this.oneSweepAtATime('idle', () => this.sweepIdle(now));
  }

  private oneSweepAtATime(kind: string, sweep: () => Promise<string[]>): Promise<string[]> {
    if (this.sweeps.has(kind)) return Promise.resolve([]);
    const running = sweep().finally(() => this.sweeps.delete(kind));
    this.sweeps.set(kind, running);
    return running;
  }

  /**
   * Between tasks, what an agent left running may still write: sandboxes of
   * sessions past their disk quota, with no task running, are stopped (the
   * running ones are watched by their task). Returns the sessions stopped.
   */
  stopOverQuota(): Promise<string[]> {
    if (this.deps.quota.limitBytes <= 0) return Promise.resolve([]);
    return this.oneSweepAtATime('disk', () => this.sweepOverQuota());
  }

  private async sweepOverQuota(): Promise<string[]> {
    const stopped: string[] = [];
    for (const sandbox of (await this.deps.sandbox.list()).filter((s) => s.running)) {
      const unfinished = await this.deps.store.oldestUnfinishedTask(sandbox.sessionKey);
      if (unfinished && isActive(unfinished.status)) continue;
      const over = await this.deps.quota.overLimit(this.deps.dirs.of(sandbox.sessionKey)).catch(() => undefined);
      if (!over) continue;
      await this.deps.runtime.release(sandbox.sessionKey);
      await this.deps.sandbox.stop(sandbox.sessionKey);
      stopped.push(sandbox.sessionKey);
      this.deps.logger.warn({ sessionKey: sandbox.sessionKey, details: over.details }, 'sandbox stopped between tasks: past its disk quota');
    }
    return stopped;
  }

  private async sweepIdle(now: number): Promise<string[]> {
    const before = now - this.deps.idleTimeoutMs;
    const idle = await this.deps.store.listIdleSessions(before);
    if (idle.length === 0) return [];
    const running = new Set((await this.deps.sandbox.list()).filter((s) => s.running).map((s) => s.sessionKey));
    const stopped: string[] = [];
    for (const session of idle) {
      if (!running.has(session.key)) continue;
      const done = await this.exclusive(session.tenantId, session.id, async () => {
        // Checked again with submits held off: a task queued since the list was read keeps its
        // sandbox (stopping it under a starting task would fail that task).
        const current = await this.deps.store.getSessionByKey(session.key);
        if (!current || current.lastActivityAt >= before) return false;
        if (await this.deps.store.oldestUnfinishedTask(session.key)) return false;
        await this.deps.runtime.release(session.key);
        await this.deps.sandbox.stop(session.key);
        return true;
      });
      if (!done) continue;
      stopped.push(session.key);
      this.deps.logger.info({ sessionKey: session.key }, 'idle session sandbox stopped');
    }
    return stopped;
  }

  /** The agent and the sandbox go (its gateway socket with it, see CappedSandboxDriver.afterStop), on whichever node holds them. */
  private async teardown(sessionKey: string): Promise<void> {
    const { bus } = this.deps;
    const owner = bus ? await this.deps.store.sessionOwner(sessionKey) : null;
    if (bus && owner !== null && owner !== bus.nodeId) {
      // A node that does not answer is dead or dying: its sandboxes go with its takeover.
      await bus.request(owner, { kind: 'teardown', sessionKey }, TEARDOWN_ELSEWHERE_MS)
        .catch((error: unknown) => this.deps.logger.warn({ sessionKey, owner, err: error }, 'the node holding the session did not tear it down'));
    }
    await this.teardownHere(sessionKey);
  }

  /** The session's live agent and sandbox on this node go (asked by another node, or by teardown). */
  async teardownHere(sessionKey: string): Promise<void> {
    await this.deps.runtime.release(sessionKey);
    await this.deps.sandbox.remove(sessionKey);
  }

  private view(summary: SessionSummary): SessionView {
    return { ...summary, busy: summary.running > 0, agentLive: this.deps.runtime.liveSessions().includes(summary.key) };
  }
}

export function assertSessionId(sessionId: unknown): asserts sessionId is string {
  if (!isValidPublicId(sessionId)) {
    throw new RunnerError('INVALID_SESSION_ID');
  }
}
