/**
 * One unix socket per session, mounted into that session's sandbox: the
 * socket a connection arrives on is what says which session sent it. Each
 * accepted connection is handed to the gateway's HTTP server.
 *
 * A socket lives exactly as long as its sandbox runs: attached before the
 * sandbox starts, detached whenever it stops (cap, failure, idle, reset,
 * delete), so descriptors never pile up over many sessions.
 *
 * Owns: the sockets' servers and connections. Must not touch: tokens, calls
 * or what a connection asks for.
 */
import { chmod, rm } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { KeyedLock } from '../core/keyed-lock.ts';
import type { HeaderDeadlines } from './connection-deadlines.ts';

interface Attached {
  server: NetServer;
  socketDir: string;
  sockets: Set<Socket>;
}

export interface SessionSocketsOptions {
  http: HttpServer;
  deadlines: HeaderDeadlines;
  maxConnections: number;
  logger: { warn(obj: object, msg?: string): void };
}

export class SessionSockets {
  private readonly options: SessionSocketsOptions;
  private readonly attached = new Map<string, Attached>();
  private readonly sessionOfSocket = new WeakMap<Socket, string>();
  /** Attaches and detaches of one session run one after the other: a detach never removes a newer socket. */
  private readonly lock = new KeyedLock();

  constructor(options: SessionSocketsOptions) {
    this.options = options;
  }

  /** The session whose socket a connection came in on. */
  sessionOf(socket: Socket): string | undefined {
    return this.sessionOfSocket.get(socket);
  }

  /** The folder of an attached session's socket (its task token is written there too). */
  socketDir(sessionKey: string): string | undefined {
    return this.attached.get(sessionKey)?.socketDir;
  }

  /** Sessions with a listening socket (for tests and metrics). */
  sessions(): string[] {
    return [...this.attached.keys()];
  }

  attach(sessionKey: string, socketDir: string): Promise<void> {
    return this.lock.run(sessionKey, () => this.listen(sessionKey, socketDir));
  }

  detach(sessionKey: string): Promise<void> {
    return this.lock.run(sessionKey, () => this.unlisten(sessionKey));
  }

  private async listen(sessionKey: string, socketDir: string): Promise<void> {
    if (this.attached.has(sessionKey)) return;
    const path = join(socketDir, 'gateway.sock');
    await rm(path, { force: true });
    const sockets = new Set<Socket>();
    const server = createNetServer((socket) => {
      this.sessionOfSocket.set(socket, sessionKey);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      this.options.deadlines.connected(socket);
      this.options.http.emit('connection', socket);
    });
    server.maxConnections = this.options.maxConnections;
    // For good, not only while listening: a later error (EMFILE on accept) must not end the process.
    server.on('error', (error) => this.options.logger.warn({ sessionKey, err: error.message }, 'gateway socket error'));
    server.on('drop', () => this.options.logger.warn({ sessionKey, max: this.options.maxConnections }, 'gateway connection refused: too many'));
    this.attached.set(sessionKey, { server, socketDir, sockets });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // The relay in the sandbox runs as another uid; the socket is only mounted into this session's sandbox.
      await chmod(path, 0o666);
    } catch (error) {
      this.attached.delete(sessionKey);
      server.close();
      throw error;
    }
  }

  private async unlisten(sessionKey: string): Promise<void> {
    const entry = this.attached.get(sessionKey);
    if (!entry) return;
    this.attached.delete(sessionKey);
    const closed = new Promise<void>((resolve) => entry.server.close(() => resolve()));
    // Kept-alive connections of the sandbox would hold the close open for as long as they idle.
    for (const socket of entry.sockets) socket.destroy();
    await closed;
    await rm(join(entry.socketDir, 'gateway.sock'), { force: true });
  }

  async close(): Promise<void> {
    for (const key of [...this.attached.keys()]) await this.detach(key);
  }
}
