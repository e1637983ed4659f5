/**
 * Live events over WebSocket (the seed's WS /stream/:sessionId) and SSE
 * (GET /session/:id/events, GET /tasks/:taskId/events). Every event frame
 * carries its sequence number; a client resumes with ?after=<seq> (WS) or
 * Last-Event-ID (SSE, or ?after=). Without either, a session stream starts at
 * the oldest unfinished task (a client that connects after POST /task sees
 * the whole task), or live when nothing is in flight (the seed's behaviour);
 * a task stream starts at the task's first event and ends after its last.
 * A session stream may be opened before the session exists (the seed's
 * "connect before POST /task"): it waits for the session, then sends all of it.
 * docs/events.md describes every frame.
 *
 * Backpressure: a reader that stays more than STREAM_BUFFER_BYTES behind
 * for a second, or falls 4 × STREAM_BUFFER_BYTES behind, is cut off (its
 * buffer freed); the task and other readers never wait for it, and it
 * resumes from its last seq. A stream's userland buffer never passes
 * 4 × STREAM_BUFFER_BYTES plus one frame. A replay is paced by the reader
 * instead (it waits for the socket to drain), so resuming a long backlog
 * works on a slow link.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { SseHeaders, StreamFrameSchema, StreamQuery } from '../../api/index.ts';
import type { StoredEvent } from '../../core/events.ts';
import { publicError, RunnerError } from '../../core/errors.ts';
import type { Session, Task } from '../../core/model.ts';
import { isFinal } from '../../core/task-status.ts';
import { errorResponses, security, SessionParams, TaskParams, type ZodApp } from '../openapi.ts';
import { eventFrame } from '../views.ts';
import type { HttpDeps } from '../app.ts';

const HEARTBEAT_MS = 15_000;
/** A task that ended but whose last event is not (or no longer) in the log: how long to wait for it before ending its stream. */
const FINAL_EVENT_GRACE_MS = 1_000;
/** A stream whose buffer passes this many times STREAM_BUFFER_BYTES is cut at once... */
const HARD_LIMIT_FACTOR = 4;
/** ...and one that stays over STREAM_BUFFER_BYTES this long. */
const STALL_MS = 1_000;
/** On shutdown, how long a WebSocket gets to answer the close frame before it is cut (a stalled one never does). */
const CLOSE_GRACE_MS = 250;

/** One frame: WS sends `data` as the message; SSE adds the `id:` and `event:` lines. */
interface OutFrame {
  id?: number;
  event: string;
  data: string;
}

/** What a stream writes to: a WebSocket or an SSE response. */
interface Transport {
  write(frame: OutFrame): void;
  ping(): void;
  /** Bytes written but not yet taken by the kernel. */
  buffered(): number;
  /** Resolves once the buffer is empty or the connection is gone. */
  drained(): Promise<void>;
  /** A clean end (SSE end of stream, WS close frame). */
  end(): void;
  /** Cuts the connection at once, dropping what is buffered. */
  cut(): void;
  /** The server shuts down. */
  shutdown(): void;
}

interface Stream {
  write(frame: OutFrame): void;
  /** Subscribes after `after`; `filter` returns false for events this stream does not send. */
  subscribe(sessionKey: string, after: number, filter?: (event: StoredEvent) => boolean): Promise<void>;
  end(): void;
  cut(): void;
  /** The connection went away. */
  closed(): void;
  fail(error: unknown): void;
  readonly open: boolean;
  /** Aborts when the stream ends, whoever ends it. */
  readonly signal: AbortSignal;
}

const openStreams = new WeakMap<object, Set<Transport>>();

/** Bytes each open stream holds in userland (see Backpressure above). For tests and metrics. */
export function streamBufferedBytes(app: FastifyInstance): number[] {
  return [...(openStreams.get(app) ?? [])].map((t) => t.buffered());
}

/** Serialized once per event, however many subscribers it goes to. */
const frameJson = new WeakMap<StoredEvent, string>();
function eventJson(event: StoredEvent): string {
  let json = frameJson.get(event);
  if (json === undefined) frameJson.set(event, (json = JSON.stringify(eventFrame(event))));
  return json;
}

/** ?after=, or for SSE the Last-Event-ID header an EventSource sends when it reconnects (both checked by the route's schema). */
function requestedSeq(request: FastifyRequest, header: boolean): number | undefined {
  const fromHeader = header ? request.headers['last-event-id'] : undefined;
  const text = fromHeader || (request.query as { after?: string }).after;
  return text ? Number(text) : undefined;
}

const SSE_FORMAT = 'Server-sent events: `retry: 2000`, then one event per frame: `id: <seq>` (stored events and gaps), '
  + '`event: <type>`, `data: <the frame as JSON>`; `: ping` comments keep it open. Resume with Last-Event-ID or ?after=.';
const sseAnswer = (what: string) => ({ description: `${what} ${SSE_FORMAT}`, content: { 'text/event-stream': { schema: StreamFrameSchema } } });

function endsTask(task: Task, event: StoredEvent): boolean {
  return event.taskId === task.id && (event.type === 'task_complete' || event.type === 'task_error');
}

/** An error frame's body: opaque errors refer to the request id (the error itself is logged under it). */
function errorBody(error: unknown, reference: string) {
  return publicError(error instanceof RunnerError ? error : new RunnerError('INTERNAL'), reference).body;
}

export function streamRoutes(app: ZodApp, deps: HttpDeps): void {
  const limit = deps.streamBufferBytes;
  /** A stream that buffers more than this is cut at once. */
  const hardLimit = HARD_LIMIT_FACTOR * limit;
  const registry = new Set<Transport>();
  openStreams.set(app, registry);
  // Streams never end by themselves: without this, closing the server would wait for every client (30 s for a stalled WebSocket).
  app.addHook('preClose', (done) => {
    for (const transport of registry) transport.shutdown();
    done();
  });

  /** The session a stream is for; undefined when it does not exist yet (the stream then waits for it). Before validation (WS preValidation): a bad id is the service's INVALID_SESSION_ID. */
  const sessionOf = async (request: FastifyRequest): Promise<Session | undefined> => {
    const { sessionId } = request.params as { sessionId: string };
    if (request.caller.sessionId !== undefined && request.caller.sessionId !== sessionId) throw new RunnerError('SESSION_NOT_FOUND');
    return deps.sessions.find(request.caller.tenantId, sessionId);
  };

  /** Resolves with the session once it is created, or undefined if the stream ends first. */
  const created = (tenantId: string, sessionId: string, signal: AbortSignal): Promise<Session | undefined> =>
    new Promise((resolve) => {
      const done = (session: Session | undefined): void => {
        stopListening();
        signal.removeEventListener('abort', onAbort);
        resolve(session);
      };
      const onAbort = (): void => done(undefined);
      const stopListening = deps.sessions.onCreated((session) => {
        if (session.tenantId === tenantId && session.id === sessionId) done(session);
      });
      signal.addEventListener('abort', onAbort, { once: true });
      // Created between the first look and the listener.
      void deps.sessions.find(tenantId, sessionId).then((session) => session && done(session), () => undefined);
    });

  /** A session stream: `connected`, then events (all of them, for a session created after the stream opened). */
  const follow = async (stream: Stream, request: FastifyRequest, found: Session | undefined, requested: number | undefined): Promise<void> => {
    if (found) {
      const start = await deps.streamStarts.session(found, requested);
      stream.write({ event: 'connected', data: JSON.stringify({ type: 'connected', ...start.connected }) });
      await stream.subscribe(found.key, start.after);
      return;
    }
    const { sessionId } = request.params as { sessionId: string };
    stream.write({ event: 'connected', data: JSON.stringify({ type: 'connected', sessionId, busy: false, turns: 0, lastSeq: 0, after: 0 }) });
    const session = await created(request.caller.tenantId, sessionId, stream.signal);
    if (session && stream.open) await stream.subscribe(session.key, 0);
  };


  /** Subscription, backpressure, heartbeat and bookkeeping, the same for both transports. */
  const pump = (transport: Transport, request: FastifyRequest): Stream => {
    let open = true;
    const subscription = new AbortController();
    const stop = (): boolean => {
      if (!open) return false;
      open = false;
      subscription.abort();
      clearInterval(heartbeat);
      registry.delete(transport);
      return true;
    };
    // When the buffer first went over the bound, if it still is. A busy server (one stored batch is
    // published at once) can leave a reader that keeps up over it for a moment; one that stays over is not reading.
    let overSince = 0;
    const stream: Stream = {
      get open() { return open; },
      signal: subscription.signal,
      write(frame) {
        if (!open) return;
        const buffered = transport.buffered();
        if (buffered <= limit) overSince = 0;
        else overSince ||= Date.now();
        if (buffered > hardLimit || (overSince > 0 && Date.now() - overSince >= STALL_MS)) {
          request.log.info({ buffered, limit, overMs: overSince ? Date.now() - overSince : 0 }, 'stream reader too slow: cut off');
          stream.cut();
          return;
        }
        transport.write(frame);
      },
      async subscribe(sessionKey, after, filter) {
        await deps.events.subscribe(sessionKey, after, {
          onEvent: (event) => {
            if (!filter || filter(event)) stream.write({ id: event.seq, event: event.type, data: eventJson(event) });
          },
          // Carries id: toSeq, so an EventSource that reconnects resumes after the gap.
          onGap: (fromSeq, toSeq) => stream.write({ id: toSeq, event: 'gap', data: JSON.stringify({ type: 'gap', fromSeq, toSeq }) }),
          onOverflow: () => stream.cut(),
          onEnd: () => stream.end(),
          whenWritable: () => (open && transport.buffered() > limit / 2 ? transport.drained() : undefined),
        }, subscription.signal);
      },
      end() {
        if (stop()) transport.end();
      },
      cut() {
        if (stop()) transport.cut();
      },
      closed() {
        stop();
      },
      fail(error) {
        request.log.error({ err: error }, 'stream failed');
        stream.write({ event: 'error', data: JSON.stringify({ type: 'error', error: errorBody(error, request.id) }) });
        stream.end();
      },
    };
    const heartbeat = setInterval(() => {
      if (transport.buffered() > limit) stream.cut();
      else transport.ping();
    }, HEARTBEAT_MS);
    heartbeat.unref();
    registry.add(transport);
    return stream;
  };

  const sse = (reply: FastifyReply, request: FastifyRequest): Stream => {
    // Headers set so far (x-request-id, CORS) go out too: a hijacked reply does not send them itself.
    const earlier = Object.fromEntries(Object.entries(reply.getHeaders()).filter(([, value]) => value !== undefined));
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...earlier,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    // Frames of one burst go out as one chunk: one write (and one chunked-encoding frame) instead of one per event.
    let pending = '';
    const flush = (): void => {
      if (pending === '') return;
      const text = pending;
      pending = '';
      if (!res.destroyed) res.write(text);
    };
    const transport: Transport = {
      write: ({ id, event, data }) => {
        if (pending === '') queueMicrotask(flush);
        pending += `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${data}\n\n`;
      },
      ping: () => { res.write(': ping\n\n'); },
      buffered: () => res.writableLength + pending.length,
      drained: () => drainedOf(res),
      end: () => {
        flush();
        res.end();
      },
      cut: () => { res.destroy(); },
      shutdown: () => stream.end(),
    };
    const stream = pump(transport, request);
    res.on('close', () => stream.closed());
    return stream;
  };

  app.get('/stream/:sessionId', {
    websocket: true,
    schema: {
      tags: ['streams'],
      summary: 'WebSocket: a session\'s events, live and replayed (the seed\'s stream)',
      description: 'A WebSocket upgrade (GET with `Upgrade: websocket`). Each message is one StreamFrame as JSON: `connected` first, then the stored events '
        + 'after ?after= (default: from the oldest unfinished task, else live). Opened before the session exists, it waits for it. '
        + 'A refused upgrade answers with an HTTP error instead.',
      security: security.stream,
      params: SessionParams,
      querystring: StreamQuery,
      response: {
        101: { description: 'Switching Protocols; then each WebSocket message is one StreamFrame (JSON).', content: { 'application/json': { schema: StreamFrameSchema } } },
        ...errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'ORIGIN_NOT_ALLOWED']),
      },
    },
    // Checked before the upgrade (as is the schema), so a bad request gets an HTTP error, not an open socket.
    preValidation: async (request) => {
      request.streamSession = await sessionOf(request);
    },
  }, (socket: WebSocket, request) => {
    const raw = request.raw.socket as Socket;
    const transport: Transport = {
      write: (frame) => socket.send(frame.data),
      ping: () => socket.ping(),
      buffered: () => socket.bufferedAmount,
      drained: () => drainedOf(raw),
      end: () => socket.close(1000),
      cut: () => socket.terminate(),
      shutdown: () => {
        socket.close(1001, 'server shutting down');
        setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
      },
    };
    const stream = pump(transport, request);
    // Before any await: a client that leaves at once must not leave a subscription behind.
    socket.on('close', () => stream.closed());
    socket.on('error', () => stream.cut());
    void follow(stream, request, request.streamSession, requestedSeq(request, false)).catch((error: unknown) => {
      request.log.error({ err: error }, 'stream failed');
      if (stream.open) socket.close(1011, 'internal error');
    });
  });

  app.get('/session/:sessionId/events', {
    schema: {
      tags: ['streams'], summary: 'Server-sent events: a session\'s events, live and replayed', security: security.stream,
      params: SessionParams, querystring: StreamQuery, headers: SseHeaders,
      response: {
        200: sseAnswer('The same frames as the WebSocket, never ending by itself.'),
        ...errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'ORIGIN_NOT_ALLOWED']),
      },
    },
  }, async (request, reply) => {
    const session = await sessionOf(request);
    const requested = requestedSeq(request, true);
    const stream = sse(reply, request);
    try {
      await follow(stream, request, session, requested);
    } catch (error) {
      stream.fail(error);
    }
  });

  app.get('/tasks/:taskId/events', {
    schema: {
      tags: ['streams'], summary: 'Server-sent events of one task: from its first event, ending after its last', security: security.stream,
      params: TaskParams, querystring: StreamQuery, headers: SseHeaders,
      response: {
        200: sseAnswer('`connected`, the task\'s events, and the end of the stream after `task_complete` or `task_error`.'),
        ...errorResponses(['TASK_NOT_FOUND', 'ORIGIN_NOT_ALLOWED']),
      },
    },
  }, async (request, reply) => {
    const { taskId } = request.params;
    const task = await deps.tasks.get(request.caller.tenantId, taskId);
    if (request.caller.sessionId !== undefined && request.caller.sessionId !== task.sessionId) throw new RunnerError('TASK_NOT_FOUND');
    const requested = requestedSeq(request, true);
    const stream = sse(reply, request);
    let ended = false;
    try {
      const after = requested ?? await deps.streamStarts.task(task);
      stream.write({ event: 'connected', data: JSON.stringify({ type: 'connected', taskId: task.id, sessionId: task.sessionId, status: task.status, after }) });
      await stream.subscribe(task.sessionKey, after, (event) => {
        if (event.taskId !== task.id || ended) return false;
        if (endsTask(task, event)) {
          ended = true;
          // Right after this event is written.
          queueMicrotask(() => stream.end());
        }
        return true;
      });
      // Ended, but its last event is not (or no longer) in the log: end the stream instead of hanging.
      const current = await deps.tasks.get(request.caller.tenantId, task.id).catch(() => undefined);
      if (!ended && current && isFinal(current.status)) {
        await new Promise((resolve) => setTimeout(resolve, FINAL_EVENT_GRACE_MS));
        stream.end();
      }
    } catch (error) {
      stream.fail(error);
    }
  });
}

function drainedOf(emitter: { writableLength: number; destroyed: boolean; once(event: string, fn: () => void): unknown; off(event: string, fn: () => void): unknown }): Promise<void> {
  if (emitter.writableLength === 0 || emitter.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      emitter.off('drain', done);
      emitter.off('close', done);
      resolve();
    };
    emitter.once('drain', done);
    emitter.once('close', done);
  });
}
