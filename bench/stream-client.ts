/**
 * A WebSocket subscriber of one session's stream (WS /stream/:sessionId), for
 * "submit → first `text` event": opened (and `connected` received) before the
 * task is submitted; `arm()` before each submit, `firstText` after it.
 */
import WebSocket from 'ws';

export class SessionStream {
  private armedAt = 0;
  private textAt: number | null = null;
  private waiters: Array<(at: number) => void> = [];
  private readonly socket: WebSocket;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data) => {
      const at = performance.now();
      // Cheap check first: most frames are not text.
      const raw = data.toString();
      if (!raw.includes('"type":"text"')) return;
      if (this.armedAt === 0 || this.textAt !== null) return;
      this.textAt = at;
      for (const wake of this.waiters.splice(0)) wake(at);
    });
  }

  /** Opens the stream and waits for its `connected` frame. */
  static open(baseUrl: string, sessionId: string): Promise<SessionStream> {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/stream/${encodeURIComponent(sessionId)}`);
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.once('message', (data) => {
        if (!data.toString().includes('"connected"')) return reject(new Error(`bench: first frame was not connected: ${data.toString()}`));
        socket.off('error', reject);
        socket.on('error', () => undefined);
        resolve(new SessionStream(socket));
      });
    });
  }

  /** From now on, the first `text` frame is the one `firstText` reports. */
  arm(): void {
    this.armedAt = performance.now();
    this.textAt = null;
  }

  /** performance.now() of the first `text` frame since arm() (waits up to timeoutMs for it). */
  firstText(timeoutMs = 5000): Promise<number> {
    if (this.textAt !== null) return Promise.resolve(this.textAt);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bench: no text frame')), timeoutMs);
      this.waiters.push((at) => {
        clearTimeout(timer);
        resolve(at);
      });
    });
  }

  close(): void {
    this.socket.terminate();
  }
}
