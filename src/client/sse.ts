/**
 * Server-Sent Events for the client: a parser of the `text/event-stream`
 * format (id:, event:, data:, comments) over a web ReadableStream, and the
 * resumable iterator over a session's or a task's frames: it reconnects
 * with backoff after a disconnect, sending Last-Event-ID (the last seq it
 * saw), and drops anything at or before that seq, so no event comes twice
 * and none is missed.
 */
import type { StreamFrame } from '../api/events.ts';
import { ClaudeRunnerError, errorFromResponse, networkError } from './errors.ts';

export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
}

/** Parses an event stream into messages (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A lone \r at the end may be the first half of \r\n: keep it for the next chunk.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          id = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let text = colon === -1 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') data.push(text);
        else if (field === 'event') event = text;
        else if (field === 'id' && !text.includes('\0')) id = text;
      }
    }
  } finally {
    reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

export interface FollowOptions {
  /** Resume after this seq (the last one you saw). */
  after?: number;
  signal?: AbortSignal;
}

export interface FollowPlan {
  /** Opens one connection, resuming after `lastSeq` when it is known. */
  open(lastSeq: number | undefined, signal: AbortSignal): Promise<Response>;
  /** A task stream: true once its final event came (the stream is done), false for session streams. */
  isFinal(frame: StreamFrame): boolean;
  /** A connection ended without the final event: is the stream done anyway? (a task that ended long ago) */
  doneAfterCleanEnd?(): Promise<boolean>;
}

const BACKOFF_START_MS = 250;
const BACKOFF_MAX_MS = 5_000;

/**
 * Follows a stream across disconnects. Yields each connection's `connected`
 * frame, then events and gaps in order; each stored event exactly once.
 * Ends (without error) when the signal aborts or a task stream's last event
 * came; throws ClaudeRunnerError when the server refuses the stream with a
 * 4xx (an unknown task, a bad key).
 */
export async function* followStream(plan: FollowPlan, options: FollowOptions): AsyncGenerator<StreamFrame> {
  let lastSeq = options.after;
  let backoff = BACKOFF_START_MS;
  const outer = options.signal;
  for (;;) {
    if (outer?.aborted) return;
    const connection = new AbortController();
    const abort = (): void => connection.abort();
    outer?.addEventListener('abort', abort, { once: true });
    let cleanEnd = false;
    try {
      let response: Response;
      try {
        response = await plan.open(lastSeq, connection.signal);
      } catch (error) {
        if (outer?.aborted) return;
        throw networkError(error, 'stream');
      }
      if (!response.ok) {
        const error = await errorFromResponse(response);
        // A client error will not go away by retrying; a 5xx (shutting down, a proxy) may.
        if (response.status < 500 && response.status !== 429) throw error;
        throw Object.assign(error, { retry: true });
      }
      if (!response.body) throw new ClaudeRunnerError({ code: 'INVALID_RESPONSE', message: 'The stream answered without a body.', status: response.status });
      for await (const message of parseSse(response.body)) {
        const frame = parseFrame(message);
        if (!frame) continue;
        if (frame.type === 'connected') {
          // Where the stream really goes on: resuming from there leaves no gap even if no event came yet.
          if (lastSeq === undefined || frame.after > lastSeq) lastSeq = frame.after;
          backoff = BACKOFF_START_MS;
          yield frame;
          continue;
        }
        if (frame.type === 'gap') {
          if (lastSeq !== undefined && frame.toSeq <= lastSeq) continue;
          lastSeq = frame.toSeq;
          yield frame;
          continue;
        }
        if ('seq' in frame) {
          if (lastSeq !== undefined && frame.seq <= lastSeq) continue;
          lastSeq = frame.seq;
        }
        yield frame;
        if (plan.isFinal(frame)) return;
      }
      cleanEnd = true;
    } catch (error) {
      if (outer?.aborted) return;
      const retry = error instanceof ClaudeRunnerError && (error.code === 'NETWORK_ERROR' || (error as { retry?: boolean }).retry === true);
      // A body that breaks off mid-stream is a network error too (undici: TypeError "terminated").
      if (!retry && !(error instanceof TypeError) && !isAbortLike(error)) throw error;
    } finally {
      outer?.removeEventListener('abort', abort);
      connection.abort();
    }
    if (cleanEnd && plan.doneAfterCleanEnd && await plan.doneAfterCleanEnd().catch(() => false)) return;
    if (!await sleep(backoff, outer)) return;
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

function parseFrame(message: SseMessage): StreamFrame | undefined {
  try {
    const frame = JSON.parse(message.data) as StreamFrame;
    return typeof frame === 'object' && frame !== null && typeof frame.type === 'string' ? frame : undefined;
  } catch {
    return undefined;
  }
}

function isAbortLike(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/** Waits `ms`; false when the signal aborted first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value: boolean): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
