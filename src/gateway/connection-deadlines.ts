/**
 * Header deadlines for the gateway's connections. Its HTTP server never
 * listens (each session's net server hands it the connections), so Node
 * never runs the checks behind headersTimeout/requestTimeout; this does the
 * part that matters with socket timers: a connection must send a complete
 * request head soon after it opens, and a kept-alive connection that starts
 * a next request must finish its head soon after too. An idle kept-alive
 * connection is left to the HTTP server's keepAliveTimeout.
 */
import type { Socket } from 'node:net';

interface State {
  timer: NodeJS.Timeout | undefined;
  /** Requests whose head has arrived and whose response has not ended. */
  open: number;
}

export class HeaderDeadlines {
  private readonly ms: number;
  private readonly states = new WeakMap<Socket, State>();

  constructor(ms: number) {
    this.ms = ms;
  }

  /** A new connection: its first request head is due within the deadline. */
  connected(socket: Socket): void {
    const state: State = { timer: undefined, open: 0 };
    this.states.set(socket, state);
    state.timer = setTimeout(() => socket.destroy(), this.ms).unref();
    socket.once('close', () => this.release(socket));
  }

  /** A request head arrived. */
  requestStarted(socket: Socket): void {
    const state = this.states.get(socket);
    if (!state) return;
    state.open += 1;
    clearTimeout(state.timer);
  }

  /** A response ended: the connection idles until bytes of a next request arrive, then that head is due. */
  requestEnded(socket: Socket): void {
    const state = this.states.get(socket);
    if (!state) return;
    state.open = Math.max(0, state.open - 1);
    if (state.open > 0 || socket.destroyed) return;
    clearTimeout(state.timer);
    const idleAt = socket.bytesRead;
    let partialSeen = false;
    // Node consumes the socket natively (no 'data' events), so arrivals are seen through bytesRead.
    const check = (): void => {
      if (socket.bytesRead === idleAt) {
        state.timer = setTimeout(check, this.ms).unref();
      } else if (!partialSeen) {
        partialSeen = true;
        state.timer = setTimeout(check, this.ms).unref();
      } else {
        socket.destroy();
      }
    };
    state.timer = setTimeout(check, this.ms).unref();
  }

  /** The socket left HTTP (a CONNECT tunnel): no more deadlines. */
  release(socket: Socket): void {
    clearTimeout(this.states.get(socket)?.timer);
    this.states.delete(socket);
  }
}
