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
import { createPool } from '../store/postgres/connection.ts';

const CHANNEL = 'claude_runner';
/** The advisory lock whose holder is the leader (any constant unique to this program). */
const LEADER_LOCK = 7_263_551_104_002n;
/** How often a node checks its listening connection (and, when it is not the leader, tries to become it). */
const TICK_MS = 1_000;
/** A query on the listening connection not answered by then: the connection is taken as lost. */
const LISTENER_QUERY_TIMEOUT_MS = 5_000;
/** How long a NOTIFY waits for a sending connection. */
const SEND_CONNECT_TIMEOUT_MS = 5_000;
/** PostgreSQL refuses NOTIFY payloads from 8000 bytes: a larger message goes as parts, in one transaction. */
const MAX_PAYLOAD = 7_900;
/** Bytes of a message per part (base64 makes 6,668 characters of them, with room left for the part's own fields). */
const PART_BYTES = 5_000;
/** No message between nodes is larger (an answer to a question is at most a few tens of KB). */
const MAX_MESSAGE_BYTES = 1 << 20;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5_000;

/** One part of a message too large for one NOTIFY. */
interface Part {
  id: string;
  index: number;
  count: number;
  /** base64 of the part's bytes. */
  data: string;
}

interface Envelope {
  part?: Part;
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
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private reconnectDelay = RECONNECT_MIN_MS;
  /** Parts received of messages sent in parts, by message id. */
  private readonly parts = new Map<string, Buffer[]>();

  constructor(options: PgClusterBusOptions) {
    this.options = options;
    this.nodeId = options.nodeId;
    this.sender = createPool({
      url: options.url, size: 2, connectTimeoutMs: SEND_CONNECT_TIMEOUT_MS,
      onIdleError: (error) => options.logger.warn({ err: error }, 'cluster bus: a sending connection failed'),
    });
  }

  listen(handlers: Handlers): void {
    this.handlers = handlers;
  }

  async start(): Promise<void> {
    await this.connect();
    this.tickTimer = setInterval(() => void this.tick(), TICK_MS);
    this.tickTimer.unref();
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
    // Handled from now: the timeout may fire while the send below still waits for a connection.
    answered.catch(() => undefined);
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
    clearInterval(this.tickTimer);
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
    const bytes = Buffer.byteLength(payload);
    if (bytes <= MAX_PAYLOAD) {
      await this.sender.query('select pg_notify($1, $2)', [CHANNEL, payload]);
      return;
    }
    if (bytes > MAX_MESSAGE_BYTES) throw new RunnerError('INVALID_REQUEST', 'The message is too large to hand to another runner node.');
    // Notifications of one transaction are delivered together, in order, at its commit.
    const whole = Buffer.from(payload);
    const id = randomUUID();
    const count = Math.ceil(whole.length / PART_BYTES);
    const client = await this.sender.connect();
    try {
      await client.query('begin');
      for (let index = 0; index < count; index++) {
        const data = whole.subarray(index * PART_BYTES, (index + 1) * PART_BYTES).toString('base64');
        await client.query('select pg_notify($1, $2)', [CHANNEL, JSON.stringify({ from: this.nodeId, part: { id, index, count, data } })]);
      }
      await client.query('commit');
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** A part of a larger message: the whole message once its last part is here. */
  private assemble(part: Part): string | undefined {
    const received = this.parts.get(part.id) ?? [];
    received[part.index] = Buffer.from(part.data, 'base64');
    if (received.filter(Boolean).length < part.count) {
      this.parts.set(part.id, received);
      return undefined;
    }
    this.parts.delete(part.id);
    return Buffer.concat(received).toString();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.url, keepAlive: true, connectionTimeoutMillis: LISTENER_QUERY_TIMEOUT_MS, query_timeout: LISTENER_QUERY_TIMEOUT_MS,
    });
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload) this.received(message.payload);
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('the connection ended')));
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    this.listener = client;
    this.reconnectDelay = RECONNECT_MIN_MS;
    await this.tick();
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.listener !== client || this.closed) return;
    this.listener = null;
    // A message cut in the middle never completes.
    this.parts.clear();
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

  /**
   * The leader checks that its listening connection still answers (one dropped
   * without a word would lose every notice, and keep a leader that is none);
   * any other node tries to become the leader, which checks it the same way.
   */
  private async tick(): Promise<void> {
    const client = this.listener;
    if (!client || this.closed || this.ticking) return;
    this.ticking = true;
    try {
      if (this.leader) {
        await client.query('select 1');
      } else {
        const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [LEADER_LOCK.toString()]);
        if (rows[0]?.locked && this.listener === client) this.setLeader(true);
      }
    } catch (error) {
      this.lost(client, error as Error);
    } finally {
      this.ticking = false;
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
    if (envelope.part) {
      const whole = this.assemble(envelope.part);
      if (whole !== undefined) this.received(whole);
      return;
    }
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
