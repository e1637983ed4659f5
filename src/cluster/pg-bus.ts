/**
 * The cluster bus over PostgreSQL: NOTIFY on one channel, LISTEN on one
 * dedicated connection per node. Leadership is a session advisory lock held
 * on that same connection: PostgreSQL frees it the moment the leader's
 * connection dies, so another node takes over without waiting for a lease.
 *
 * A cut connection is made again with backoff; meanwhile the node is no
 * leader, and once back its handlers are told to re-read (notices carry no
 * state, see the port).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { RunnerError, type ErrorBody } from '../core/errors.ts';
import type { ClusterBus, ClusterNotice, ClusterRequest } from '../core/ports/cluster-bus.ts';

const CHANNEL = 'claude_runner';
/** The advisory lock whose holder is the leader (any constant unique to this program). */
const LEADER_LOCK = 7_263_551_104_002n;
/** How often a node that is not the leader tries to become it. */
const LEADER_RETRY_MS = 1_000;
/** PostgreSQL refuses NOTIFY payloads from 8000 bytes. */
const MAX_PAYLOAD = 7_900;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5_000;

interface Envelope {
  from: string;
  to?: string;
  id?: string;
  notice?: ClusterNotice;
  request?: ClusterRequest;
  reply?: { error?: ErrorBody };
}

type Handlers = Parameters<ClusterBus['listen']>[0];

export interface PgClusterBusOptions {
  url: string;
  nodeId: string;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export class PgClusterBus implements ClusterBus {
  readonly nodeId: string;
  private readonly options: PgClusterBusOptions;
  private readonly sender: pg.Pool;
  private listener: pg.Client | null = null;
  private handlers: Handlers | null = null;
  private readonly pending = new Map<string, { resolve(): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  private readonly leadershipListeners: Array<(leader: boolean) => void> = [];
  private leader = false;
  private closed = false;
  private leaderTimer: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;

  constructor(options: PgClusterBusOptions) {
    this.options = options;
    this.nodeId = options.nodeId;
    this.sender = new pg.Pool({ connectionString: options.url, max: 2 });
    // An idle pooled connection cut by the server must not crash the process.
    this.sender.on('error', (error) => options.logger.warn({ err: error }, 'cluster bus: a sending connection failed'));
  }

  listen(handlers: Handlers): void {
    this.handlers = handlers;
  }

  async start(): Promise<void> {
    await this.connect();
    this.leaderTimer = setInterval(() => void this.tryLead(), LEADER_RETRY_MS);
    this.leaderTimer.unref();
  }

  isLeader(): boolean {
    return this.leader;
  }

  onLeadership(listener: (leader: boolean) => void): void {
    this.leadershipListeners.push(listener);
  }

  async notify(notice: ClusterNotice): Promise<void> {
    await this.send({ from: this.nodeId, notice });
  }

  async request(nodeId: string, request: ClusterRequest, timeoutMs: number): Promise<void> {
    const id = randomUUID();
    const answered = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RunnerError('NODE_UNREACHABLE', `Runner node "${nodeId}" did not answer within ${timeoutMs} ms.`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
    try {
      await this.send({ from: this.nodeId, to: nodeId, id, request });
    } catch (error) {
      clearTimeout(this.pending.get(id)?.timer);
      this.pending.delete(id);
      throw error;
    }
    return answered;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.leaderTimer);
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new RunnerError('SHUTTING_DOWN'));
      this.pending.delete(id);
    }
    this.setLeader(false);
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
    await this.sender.end().catch(() => undefined);
  }

  private async send(envelope: Envelope): Promise<void> {
    const payload = JSON.stringify(envelope);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD) {
      throw new RunnerError('INVALID_REQUEST', 'The message is too large to hand to another runner node.');
    }
    await this.sender.query('select pg_notify($1, $2)', [CHANNEL, payload]);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.url });
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload) this.received(message.payload);
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('the connection ended')));
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    this.listener = client;
    this.reconnectDelay = RECONNECT_MIN_MS;
    await this.tryLead();
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.listener !== client || this.closed) return;
    this.listener = null;
    this.setLeader(false);
    this.options.logger.warn({ err: error }, 'cluster bus: the listening connection was lost, connecting again');
    client.end().catch(() => undefined);
    const retry = (): void => {
      if (this.closed) return;
      this.connect().then(() => {
        this.options.logger.info({}, 'cluster bus: connected again');
        this.handlers?.reconnected();
      }, (connectError: unknown) => {
        this.options.logger.warn({ err: connectError }, 'cluster bus: could not connect');
        this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
        setTimeout(retry, this.reconnectDelay).unref();
      });
    };
    setTimeout(retry, this.reconnectDelay).unref();
  }

  private async tryLead(): Promise<void> {
    const client = this.listener;
    if (this.leader || !client || this.closed) return;
    try {
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [LEADER_LOCK.toString()]);
      if (rows[0]?.locked && this.listener === client) this.setLeader(true);
    } catch {
      // the connection is failing: lost() takes it from here
    }
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    for (const listener of this.leadershipListeners) listener(leader);
  }

  private received(payload: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(payload) as Envelope;
    } catch {
      return;
    }
    if (envelope.from === this.nodeId || (envelope.to !== undefined && envelope.to !== this.nodeId)) return;
    if (envelope.reply && envelope.id) {
      const waiting = this.pending.get(envelope.id);
      if (!waiting) return;
      this.pending.delete(envelope.id);
      clearTimeout(waiting.timer);
      const { error } = envelope.reply;
      if (error) waiting.reject(new RunnerError(error.code, error.message, error.details));
      else waiting.resolve();
      return;
    }
    if (envelope.notice) {
      this.handlers?.notice(envelope.notice, envelope.from);
      return;
    }
    if (envelope.request && envelope.id) {
      const { id, from } = envelope;
      const handled = this.handlers ? this.handlers.request(envelope.request, from) : Promise.reject(new RunnerError('NODE_UNREACHABLE'));
      void handled.then(
        () => this.send({ from: this.nodeId, to: from, id, reply: {} }),
        (error: unknown) => this.send({ from: this.nodeId, to: from, id, reply: { error: errorBody(error) } }),
      ).catch((error: unknown) => this.options.logger.warn({ err: error }, 'cluster bus: could not reply'));
    }
  }
}

function errorBody(error: unknown): ErrorBody {
  return error instanceof RunnerError ? error.toBody() : new RunnerError('INTERNAL').toBody();
}
