/**
 * This node's place among the nodes sharing the store: it joins (checking
 * that its id is its own and that it sees the same DATA_DIR as the others),
 * renews its lease with heartbeats, and takes over the nodes whose lease ran
 * out (their running tasks end `interrupted`, their sessions lose their
 * owner: see Store.reapExpiredNodes). What a takeover or a lost lease means
 * for tasks and sandboxes is the caller's (src/cluster/cluster-node.ts).
 *
 * The DATA_DIR check: each node writes a random mark to DATA_DIR/nodes/<id>
 * and stores it in its row. A node that cannot read every live node's mark
 * in its own DATA_DIR does not share it, and would lose workspaces when it
 * takes a session over: it refuses to start.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RunnerError } from '../core/errors.ts';
import type { NodeRecord, NodeTakeover, Store } from '../core/ports/store.ts';

export interface MembershipOptions {
  store: Store;
  nodeId: string;
  /** Where this node's API listens (for operators). */
  address: string;
  dataDir: string;
  leaseMs: number;
  /** Nodes were taken over: tell their tasks' ends, clear what they left. */
  onTakeover(takeovers: NodeTakeover[]): Promise<void>;
  /** This node's lease ran out or was taken over (it looked dead: paused, cut off): what it runs may be another's. */
  onLeaseLost(): Promise<void>;
  /** After onLeaseLost, this node has a lease again. */
  onRejoined(): Promise<void>;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

/** The marks of the nodes, in DATA_DIR. */
const MARKS_DIR = 'nodes';

export class NodeMembership {
  private readonly options: MembershipOptions;
  private record: NodeRecord | undefined;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | null = null;
  /** When this node last renewed its lease. */
  private renewedAt = 0;
  /** No takeover before then (this node was cut off). */
  private graceUntil = 0;
  /** The takeover under way, apart from the heartbeat so that a slow one does not hold up the renewals. */
  private reaping: Promise<unknown> | null = null;
  /** This node stopped what it ran: it could not renew its lease in time, so others may take its sessions over. */
  private fenced = false;
  /** Fences this node half a lease after its last renewal, unless it renews again first. */
  private fenceTimer: NodeJS.Timeout | undefined;

  constructor(options: MembershipOptions) {
    this.options = options;
  }

  /** Joins the cluster; throws (the node must not start) on an id in use or a DATA_DIR not shared. */
  async join(): Promise<void> {
    const { store, nodeId, dataDir, leaseMs } = this.options;
    await this.waitForOwnIdToLapse();
    const marks = join(dataDir, MARKS_DIR);
    await mkdir(marks, { recursive: true, mode: 0o700 });
    for (const other of await store.listNodes(Date.now())) {
      if (other.id === nodeId) continue;
      const seen = await readFile(join(marks, other.id), 'utf8').catch(() => null);
      if (seen?.trim() !== other.dataDirMark) {
        throw new Error(
          `DATA_DIR ${dataDir} is not the DATA_DIR of runner node "${other.id}" (${other.address}): its mark file ${join(marks, other.id)} is ` +
          `${seen === null ? 'missing' : 'different'} here. Every node must mount the same shared DATA_DIR (NFS, EFS, a shared volume): see docs/scaling.md.`,
        );
      }
    }
    await this.register();
    this.timer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(leaseMs / 3)));
    this.timer.unref();
  }

  /** Writes a fresh mark to DATA_DIR and a fresh row with a full lease (at join, and after a lease was lost). */
  private async register(): Promise<void> {
    const { store, nodeId, dataDir, leaseMs } = this.options;
    const mark = randomBytes(16).toString('hex');
    await writeFile(join(dataDir, MARKS_DIR, nodeId), mark, { mode: 0o600 });
    const now = Date.now();
    this.record = { id: nodeId, address: this.options.address, startedAt: now, leaseExpiresAt: now + leaseMs, dataDirMark: mark };
    await store.registerNode(this.record);
    this.renewed(now);
  }

  /**
   * The lease runs to `at` + a lease. Half a lease from now, unless renewed
   * again, this node stops all it runs: before the lease runs out and the
   * others may take its sessions over, so one session never has two agents
   * at work on its files (a database that hangs or a network cut alike).
   */
  private renewed(at: number): void {
    this.renewedAt = at;
    clearTimeout(this.fenceTimer);
    this.fenceTimer = setTimeout(() => {
      if (this.fenced || !this.record) return;
      this.options.logger.error({ nodeId: this.options.nodeId }, 'this node could not renew its lease in time: stopping what it runs');
      void this.fence();
    }, Math.max(0, at + this.options.leaseMs / 2 - Date.now()));
    this.fenceTimer.unref();
  }

  /** Live nodes now. */
  nodes(): Promise<NodeRecord[]> {
    return this.options.store.listNodes(Date.now());
  }

  /** Takes over the nodes whose lease expired; returns how many. */
  async reap(): Promise<number> {
    const { store, nodeId, dataDir } = this.options;
    const taken = await store.reapExpiredNodes(nodeId, new RunnerError('TASK_INTERRUPTED', 'The runner node running the task stopped answering.').toBody(), Date.now());
    if (taken.length === 0) return 0;
    this.options.logger.warn(
      { nodes: taken.map((t) => t.nodeId), tasks: taken.flatMap((t) => t.interrupted.map((task) => task.id)), sessions: taken.reduce((n, t) => n + t.releasedSessions.length, 0) },
      'took over runner nodes whose lease expired',
    );
    await Promise.all(taken.map((t) => rm(join(dataDir, MARKS_DIR, t.nodeId), { force: true })));
    await this.options.onTakeover(taken);
    return taken.length;
  }

  /** Leaves the cluster (shutdown): its sessions lose their owner, any node may run their next task. */
  async leave(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.fenceTimer);
    await this.beating;
    await this.reaping;
    if (!this.record) return;
    await this.options.store.removeNode(this.record.id);
    await rm(join(this.options.dataDir, MARKS_DIR, this.record.id), { force: true });
    this.record = undefined;
  }

  private heartbeat(): Promise<void> {
    this.beating ??= this.beat().finally(() => { this.beating = null; });
    return this.beating;
  }

  private async beat(): Promise<void> {
    const { store, leaseMs, logger } = this.options;
    const record = this.record;
    if (!record) return;
    const attempt = Date.now();
    try {
      // Fenced, or the row was taken over: a fresh row and lease, then the node works again.
      const lost = this.fenced || !(await withTimeout(store.renewNodeLease(record.id, attempt + leaseMs), leaseMs / 4));
      if (lost) {
        if (!this.fenced) {
          logger.error({ nodeId: record.id }, 'this node\'s lease was taken over: stopping what it ran and joining again');
          await this.fence();
        }
        await this.register();
        await this.options.onRejoined();
        this.fenced = false;
        logger.info({ nodeId: record.id }, 'this node joined again');
      }
    } catch (error) {
      logger.warn({ err: error }, 'node heartbeat failed');
      return;
    }
    // Cut off for a lease or more (the database down, this process paused): the others were too, maybe.
    // They get a lease's time to renew before this node takes anyone over.
    const cutOff = attempt - this.renewedAt > leaseMs;
    this.renewed(attempt);
    if (cutOff) {
      this.graceUntil = attempt + leaseMs;
      logger.warn({ nodeId: record.id }, 'this node could not renew its lease for a while: no takeover for one lease');
    }
    if (attempt >= this.graceUntil && !this.reaping) {
      this.reaping = this.reap()
        .catch((error: unknown) => logger.warn({ err: error }, 'taking over dead nodes failed'))
        .finally(() => { this.reaping = null; });
    }
  }

  /** Stops every task and lets go of every sandbox of this node (their sessions are, or may soon be, another's). */
  private async fence(): Promise<void> {
    this.fenced = true;
    await this.options.onLeaseLost().catch((error: unknown) => this.options.logger.error({ err: error }, 'stopping this node\'s work failed'));
  }

  /**
   * A live row with this node's id: this node's last run (a crash, a quick
   * restart) or another process with the same RUNNER_ID. Waits for the lease
   * to run out; a lease renewed meanwhile is another live process.
   */
  private async waitForOwnIdToLapse(): Promise<void> {
    const { store, nodeId, logger } = this.options;
    const mine = (await store.listNodes(Date.now())).find((n) => n.id === nodeId);
    if (!mine) return;
    logger.info({ nodeId, until: new Date(mine.leaseExpiresAt).toISOString() }, 'a node with this id holds a lease: waiting for it to lapse');
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, mine.leaseExpiresAt - Date.now()) + 50));
    const again = (await store.listNodes(Date.now())).find((n) => n.id === nodeId);
    if (again && again.leaseExpiresAt > mine.leaseExpiresAt) {
      throw new Error(`RUNNER_ID "${nodeId}" is in use by another live runner node (${again.address}): give each node its own RUNNER_ID.`);
    }
  }
}

/** The call's result, or a rejection once `ms` have passed (a database that hangs is as bad as one that refuses). */
async function withTimeout<T>(call: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(ms)} ms`)), ms);
  });
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}
