/**
 * Live events over WebSocket (the seed's WS /stream/:sessionId) and SSE
 * (GET /session/:id/events, GET /tasks/:taskId/events). Every frame carries
 * its sequence number; a client resumes with ?after=<seq> (WS) or
 * Last-Event-ID (SSE). Without either, a session stream starts at the
 * oldest unfinished task (a client that connects after POST /task sees the
 * whole task), or live when nothing is in flight (the seed's behaviour).
 *
 * A reader that falls more than STREAM_BUFFER_BYTES behind is cut off at
 * once (its buffer freed); the task and other readers never wait for it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { StoredEvent } from '../../core/events.ts';
import { RunnerError } from '../../core/errors.ts';
import type { Session, Task } from '../../core/model.ts';
import { isFinal } from '../../core/task-status.ts';
import type { Subscription } from '../../events/event-log.ts';
import { eventFrame } from '../views.ts';
import type { HttpDeps } from '../app.ts';

const HEARTBEAT_MS = 15_000;

function parseSeq(value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined;
  const text = String(value);
  if (!/^\d{1,15}$/.test(text)) throw new RunnerError('INVALID_REQUEST', 'after / Last-Event-ID must be a sequence number.');
  return Number(text);
}

/** Where a session stream starts when the client does not say. */
async function defaultStart(deps: HttpDeps, session: Session): Promise<number> {
  const inFlight = await deps.store.oldestUnfinishedTask(session.key);
  if (inFlight) {
    const first = await deps.store.taskFirstEventSeq(session.key, inFlight.id);
    if (first !== null) return first - 1;
  }
  return (await deps.store.eventBounds(session.key)).lastSeq;
}

function ends(task: Task, event: StoredEvent): boolean {
  return event.taskId === task.id && (event.type === 'task_complete' || event.type === 'task_error');
}

export function streamRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const bound = deps.streamBufferBytes;

  const sessionOf = async (request: FastifyRequest): Promise<Session> => {
    const { sessionId } = request.params as { sessionId: string };
    if (request.caller.sessionId !== undefined && request.caller.sessionId !== sessionId) throw new RunnerError('SESSION_NOT_FOUND');
    return deps.sessions.get(request.caller.tenantId, sessionId);
  };

  app.get('/stream/:sessionId', {
    websocket: true,
    // Checked before the upgrade, so a bad request gets an HTTP error, not an open socket.
    preValidation: async (request) => {
      request.streamSession = await sessionOf(request);
      parseSeq((request.query as { after?: string }).after);
    },
  }, async (socket: WebSocket, request) => {
    const session = request.streamSession!;
    const after = parseSeq((request.query as { after?: string }).after) ?? await defaultStart(deps, session);
    const summary = await deps.store.summarizeSession(session.key);
    const bounds = await deps.store.eventBounds(session.key);
    let subscription: Subscription | undefined;
    let open = true;
    const cut = (): void => {
      if (!open) return;
      open = false;
      subscription?.close();
      socket.terminate();
    };
    const send = (frame: Record<string, unknown>): void => {
      if (!open) return;
      socket.send(JSON.stringify(frame));
      if (socket.bufferedAmount > bound) cut();
    };
    socket.on('close', () => { open = false; subscription?.close(); });
    socket.on('error', () => cut());
    const ping = setInterval(() => socket.ping(), HEARTBEAT_MS);
    socket.on('close', () => clearInterval(ping));
    send({ type: 'connected', sessionId: session.id, busy: (summary?.running ?? 0) > 0, turns: session.turns, lastSeq: bounds.lastSeq, after });
    subscription = await deps.events.subscribe(session.key, after, {
      onEvent: (event) => send(eventFrame(event)),
      onGap: (fromSeq, toSeq) => send({ type: 'gap', fromSeq, toSeq }),
      onOverflow: cut,
    });
    if (!open) subscription.close();
  });

  app.get('/session/:sessionId/events', async (request, reply) => {
    const session = await sessionOf(request);
    const after = parseSeq(request.headers['last-event-id'] ?? (request.query as { after?: string }).after)
      ?? await defaultStart(deps, session);
    await sse(reply, bound, async (write, end) => {
      write({ event: 'connected', data: { sessionId: session.id, turns: session.turns, after } });
      return deps.events.subscribe(session.key, after, {
        onEvent: (event) => write({ id: event.seq, event: event.type, data: eventFrame(event) }),
        onGap: (fromSeq, toSeq) => write({ event: 'gap', data: { type: 'gap', fromSeq, toSeq } }),
        onOverflow: end,
      });
    });
  });

  app.get('/tasks/:taskId/events', async (request, reply) => {
    const { taskId } = request.params as { taskId: string };
    const task = await deps.tasks.get(request.caller.tenantId, taskId);
    const given = parseSeq(request.headers['last-event-id'] ?? (request.query as { after?: string }).after);
    const first = await deps.store.taskFirstEventSeq(task.sessionKey, task.id);
    const after = given ?? (first === null ? (await deps.store.eventBounds(task.sessionKey)).lastSeq : first - 1);
    await sse(reply, bound, async (write, end) => {
      write({ event: 'connected', data: { taskId: task.id, sessionId: task.sessionId, status: task.status, after } });
      const subscription = await deps.events.subscribe(task.sessionKey, after, {
        onEvent: (event) => {
          if (event.taskId !== task.id) return;
          write({ id: event.seq, event: event.type, data: eventFrame(event) });
          if (ends(task, event)) end(true);
        },
        onGap: (fromSeq, toSeq) => write({ event: 'gap', data: { type: 'gap', fromSeq, toSeq } }),
        onOverflow: end,
      });
      // Ended before its last event could be stored (e.g. trimmed): say so instead of hanging.
      const current = await deps.store.getTask(task.id);
      if (current && isFinal(current.status) && first === null) end(true);
      return subscription;
    });
  });
}

type SseWrite = (frame: { id?: number; event: string; data: unknown }) => void;

/** Takes over the response for an SSE stream; `start` subscribes and returns the subscription. */
async function sse(
  reply: FastifyReply,
  bound: number,
  start: (write: SseWrite, end: (graceful?: boolean) => void) => Promise<Subscription>,
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 2000\n\n');
  let subscription: Subscription | undefined;
  let open = true;
  const end = (graceful = false): void => {
    if (!open) return;
    open = false;
    subscription?.close();
    clearInterval(heartbeat);
    if (graceful) res.end();
    else res.destroy();
  };
  const write: SseWrite = ({ id, event, data }) => {
    if (!open) return;
    res.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    if (res.writableLength > bound) end();
  };
  const heartbeat = setInterval(() => open && res.write(': ping\n\n'), HEARTBEAT_MS);
  res.on('close', () => end());
  try {
    subscription = await start(write, end);
    if (!open) subscription.close();
  } catch (error) {
    write({ event: 'error', data: { error: error instanceof RunnerError ? error.toBody() : { code: 'INTERNAL', message: 'Internal error.' } } });
    end(true);
  }
}
