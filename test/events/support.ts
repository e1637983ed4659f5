/**
 * Real network clients for the event streams: a WebSocket client (ws), an
 * SSE client over fetch that parses the raw `id:`/`event:`/`data:` text, a
 * raw TCP WebSocket client that can stop reading, and a seeded PRNG so
 * random disconnect points reproduce.
 */
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import type { Runner } from '../../src/app.ts';
import { DEFAULT_TENANT } from '../../src/core/model.ts';
import { eventFrame } from '../../src/http/views.ts';

export interface Frame {
  type: string;
  seq?: number;
  taskId?: string | null;
  [key: string]: any;
}

function wsUrl(base: string, path: string): string {
  return `${base.replace(/^http/, 'ws')}${path}`;
}

/** A WebSocket subscriber that records every frame and when it came. */
export class WsClient {
  readonly frames: Frame[] = [];
  readonly arrivals: number[] = [];
  readonly socket: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      this.arrivals.push(Date.now());
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => socket.on('close', (code, reason) => {
      for (const wake of this.waiters.splice(0)) wake();
      resolve({ code, reason: reason.toString() });
    }));
  }

  static open(base: string, sessionId: string, query = ''): Promise<WsClient> {
    const socket = new WebSocket(wsUrl(base, `/stream/${encodeURIComponent(sessionId)}${query}`));
    const client = new WsClient(socket);
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
      });
      socket.once('error', reject);
    });
  }

  /** Events with a seq (not `connected`, not `gap`). */
  get events(): Frame[] {
    return this.frames.filter((f) => f.seq !== undefined && f.type !== 'gap');
  }

  /** Resolves with the first frame that matches, waiting for it. */
  async waitFor(match: (frame: Frame) => boolean, timeoutMs = 30_000, what = 'a frame'): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (this.socket.readyState >= WebSocket.CLOSING) throw new Error(`socket closed while waiting for ${what}: ${JSON.stringify(this.frames.map((f) => f.type))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames.map((f) => f.type))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  close(): Promise<unknown> {
    this.socket.close();
    return this.closed;
  }

  /** Drops the connection at once (no close handshake), as a lost network would. */
  kill(): void {
    this.socket.terminate();
  }
}

export interface SseEvent {
  id?: string;
  event: string;
  data: any;
}

/** An SSE subscriber over fetch; `raw` is the exact text received. */
export class SseClient {
  readonly events: SseEvent[] = [];
  raw = '';
  status = 0;
  headers: Headers | undefined;
  /** Resolves when the server ends the stream (or the client aborts). */
  readonly done: Promise<'ended' | 'aborted' | 'error'>;
  private readonly controller = new AbortController();
  private waiters: Array<() => void> = [];
  private finished = false;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.done = this.run(url, headers);
  }

  private async run(url: string, headers: Record<string, string>): Promise<'ended' | 'aborted' | 'error'> {
    try {
      const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: this.controller.signal });
      this.status = response.status;
      this.headers = response.headers;
      if (!response.body) return 'ended';
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of response.body) {
        const text = decoder.decode(chunk as Uint8Array, { stream: true });
        this.raw += text;
        pending += text;
        let cut: number;
        while ((cut = pending.indexOf('\n\n')) >= 0) {
          this.dispatch(pending.slice(0, cut));
          pending = pending.slice(cut + 2);
        }
        this.wake();
      }
      return 'ended';
    } catch (error) {
      return this.controller.signal.aborted ? 'aborted' : 'error';
    } finally {
      this.finished = true;
      this.wake();
    }
  }

  private dispatch(block: string): void {
    let id: string | undefined;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    this.events.push({ ...(id !== undefined ? { id } : {}), event, data: JSON.parse(data.join('\n')) });
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  async waitFor(match: (event: SseEvent) => boolean, timeoutMs = 30_000, what = 'an event'): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (this.finished) throw new Error(`stream ended while waiting for ${what}: ${JSON.stringify(this.events.map((e) => e.event))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.events.map((e) => e.event))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  close(): Promise<unknown> {
    this.controller.abort();
    return this.done;
  }
}

/**
 * A stream client over a raw TCP socket that can stop reading, so the
 * server's writes pile up as with a stalled browser tab: a WebSocket
 * (`kind: 'ws'`) or an SSE stream (`kind: 'sse'`, HTTP/1.0 so the body is
 * plain text, not chunked).
 */
export class RawStreamClient {
  readonly socket: Socket;
  readonly kind: 'ws' | 'sse';
  /** Bytes received after the response head. */
  private received = Buffer.alloc(0);
  readonly head: Promise<string>;
  readonly ended: Promise<'end' | 'close'>;
  endedAt = 0;

  constructor(base: string, path: string, kind: 'ws' | 'sse', headers: Record<string, string> = {}) {
    const url = new URL(base);
    this.kind = kind;
    this.socket = connect(Number(url.port), url.hostname);
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    this.socket.on('connect', () => {
      this.socket.write(kind === 'ws'
        ? `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
        : `GET ${path} HTTP/1.0\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n${extra}\r\n`);
    });
    let head: Buffer | null = Buffer.alloc(0);
    this.head = new Promise((resolve, reject) => {
      this.socket.on('data', (chunk: Buffer) => {
        if (head === null) {
          this.received = Buffer.concat([this.received, chunk]);
          return;
        }
        const all = Buffer.concat([head, chunk]);
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) {
          head = all;
          return;
        }
        const text = all.subarray(0, end + 4).toString('latin1');
        head = null;
        this.received = all.subarray(end + 4);
        if (/^HTTP\/1\.[01] (101|200)/.test(text)) resolve(text);
        else reject(new Error(`refused: ${text}`));
      });
      this.socket.once('error', reject);
    });
    this.ended = new Promise((resolve) => {
      this.socket.once('end', () => { this.endedAt = Date.now(); resolve('end'); });
      this.socket.once('close', () => { this.endedAt ||= Date.now(); resolve('close'); });
    });
    this.socket.on('error', () => undefined);
  }

  /** Stops reading from the kernel: the server's writes pile up. */
  stopReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  get bytesReceived(): number {
    return this.received.length;
  }

  /** The events received so far, parsed (complete ones only). */
  frames(): Frame[] {
    return this.kind === 'ws' ? wsTextFrames(this.received) : sseDataFrames(this.received.toString('utf8'));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Unmasked server-to-client text frames: enough for JSON events. */
function wsTextFrames(received: Buffer): Frame[] {
  const out: Frame[] = [];
  let buf = received;
  while (buf.length >= 2) {
    const opcode = buf[0]! & 0x0f;
    let length = buf[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buf.length < 4) break;
      length = buf.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buf.length < 10) break;
      length = Number(buf.readBigUInt64BE(2));
      offset = 10;
    }
    if (buf.length < offset + length) break;
    if (opcode === 1) out.push(JSON.parse(buf.subarray(offset, offset + length).toString('utf8')) as Frame);
    buf = buf.subarray(offset + length);
  }
  return out;
}

function sseDataFrames(text: string): Frame[] {
  const blocks = text.split('\n\n');
  blocks.pop(); // the last one may be incomplete
  return blocks.flatMap((block) => {
    const data = block.split('\n').find((line) => line.startsWith('data: '));
    if (!data) return [];
    const frame = JSON.parse(data.slice(6)) as Frame;
    const event = block.split('\n').find((line) => line.startsWith('event: '))?.slice(7);
    return [{ ...frame, type: frame.type ?? event }];
  });
}

/** Deterministic PRNG (mulberry32), so a failing random schedule can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The session's stored log, as frames (what a full replay must equal). */
export async function storedFrames(runner: Runner, sessionId: string, tenantId = DEFAULT_TENANT): Promise<Frame[]> {
  await runner.events.settle();
  const session = await runner.store.findSession(tenantId, sessionId);
  if (!session) throw new Error(`no session ${sessionId}`);
  const events = await runner.store.readEvents(session.key, 0, 1_000_000);
  return events.map((e) => JSON.parse(JSON.stringify(eventFrame(e))) as Frame);
}

/** Seqs must rise by exactly 1 from one frame to the next. */
export function assertConsecutive(frames: Frame[], what = 'stream'): void {
  for (let i = 1; i < frames.length; i++) {
    if (frames[i]!.seq !== frames[i - 1]!.seq! + 1) {
      throw new Error(`${what}: seq ${frames[i - 1]!.seq} is followed by ${frames[i]!.seq} (index ${i})`);
    }
  }
}
