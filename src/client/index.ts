/**
 * `claude-runner/client`: the typed client of the Claude Runner API, for
 * Node 20+ and browsers, with no runtime dependency (global fetch, web
 * streams). Owns talking to the API: a method per route, errors as
 * ClaudeRunnerError with the server's code, resumable event streams (sse.ts)
 * and files as streams. Its types come from the wire contract (src/api) by
 * `import type` only: it must never import server code at run time, since
 * it is shipped compiled (dist/client) and runs where the server does not.
 */
import type {
  FileDeleted, FileEntry, FileList, FileWritten, Health, SessionAbort, SessionDeleted, SessionReset, SessionView,
  StreamFrame, StreamToken, StreamTokenInput, SubmitTaskInput, TaskAccepted, TaskPage, TaskResult, TaskView,
  TaskInputInput, WebhookDeliveryList,
} from '../api/index.ts';
import { ClaudeRunnerError, errorFromResponse, networkError } from './errors.ts';
import { followStream } from './sse.ts';

export { ClaudeRunnerError, isClaudeRunnerError } from './errors.ts';
export type { ClientErrorCode, TaskErrorFields } from './errors.ts';
export type {
  ConnectedFrame, ErrorBody, ErrorFrame, EventFrame, EventFrameOf, FileDeleted, FileEntry, FileList, FileWritten, GapFrame,
  Health, SessionAbort, SessionDeleted, SessionReset, SessionView, StreamFrame, StreamToken, StreamTokenInput,
  SubmitTaskInput, TaskAccepted, TaskInputInput, TaskPage, TaskResult, TaskView, WebhookDeliveryList,
} from '../api/index.ts';
export type { ErrorCode } from '../core/errors.ts';
export type { TaskStatus } from '../core/task-status.ts';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:3456';

export interface ClaudeRunnerClientOptions {
  /** e.g. http://127.0.0.1:3456 */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <key>` when the runner has API_KEYS. */
  apiKey?: string;
  /** Another fetch (a test's, one with a proxy or longer timeouts). */
  fetch?: typeof globalThis.fetch;
  /** Sent with every request. */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface SubmitOptions extends RequestOptions {
  /** A retried submit with the same key answers the first task instead of queueing another. */
  idempotencyKey?: string;
}

export interface PageOptions {
  limit?: number;
  cursor?: string;
}

export interface StreamOptions {
  /** Resume after this seq (the last one you saw); default: where the server starts a stream. */
  after?: number;
  /** Ends the iteration (without error). */
  signal?: AbortSignal;
}

/** What an upload can send; streams go out as they are read. */
export type UploadBody = ReadableStream<Uint8Array> | Uint8Array | string | Blob | AsyncIterable<Uint8Array>;

export type TaskInput = Omit<SubmitTaskInput, 'wait'>;

type FetchBody = NonNullable<RequestInit['body']>;

interface CallInit {
  method?: string;
  json?: unknown;
  body?: FetchBody;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  signal?: AbortSignal | undefined;
}

export class ClaudeRunnerClient {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly extraHeaders: Record<string, string>;

  constructor(options: ClaudeRunnerClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.extraHeaders = options.headers ?? {};
  }

  // Tasks

  /** POST /task and wait for the task to end: its answer, or a ClaudeRunnerError carrying the task's fields. */
  async runTask(body: TaskInput, options: SubmitOptions = {}): Promise<TaskResult> {
    return this.json<TaskResult>('/task', { method: 'POST', json: { ...body, wait: true }, ...submitInit(options) });
  }

  /** POST /task with wait: false: 202, the task queued. */
  async submitTask(body: TaskInput, options: SubmitOptions = {}): Promise<TaskAccepted> {
    return this.json<TaskAccepted>('/task', { method: 'POST', json: { ...body, wait: false }, ...submitInit(options) });
  }

  getTask(taskId: string, options: RequestOptions = {}): Promise<TaskView> {
    return this.json(`/tasks/${enc(taskId)}`, { signal: options.signal });
  }

  /** The task's webhook deliveries and every attempt made for them. */
  listDeliveries(taskId: string, options: RequestOptions = {}): Promise<WebhookDeliveryList> {
    return this.json(`/tasks/${enc(taskId)}/deliveries`, { signal: options.signal });
  }

  /** Answers what the task's agent waits for (an `input_required` event): `{requestId, answers}` or `{requestId, decision}`. */
  answerInput(taskId: string, body: TaskInputInput, options: RequestOptions = {}): Promise<TaskView> {
    return this.json(`/tasks/${enc(taskId)}/input`, { method: 'POST', json: body, signal: options.signal });
  }

  abortTask(taskId: string, options: RequestOptions = {}): Promise<TaskView> {
    return this.json(`/tasks/${enc(taskId)}/abort`, { method: 'POST', signal: options.signal });
  }

  /** Aborts the session's running task and every queued one. */
  abortSession(sessionId: string, options: RequestOptions = {}): Promise<SessionAbort> {
    return this.json(`/task/${enc(sessionId)}/abort`, { method: 'POST', signal: options.signal });
  }

  /** A page of the session's tasks, newest first; pass `nextCursor` back for the next. */
  listTasks(sessionId: string, page: PageOptions = {}): Promise<TaskPage> {
    return this.json(`/session/${enc(sessionId)}/tasks`, { query: { limit: page.limit, cursor: page.cursor } });
  }

  // Sessions

  async listSessions(page: PageOptions = {}): Promise<{ sessions: SessionView[]; nextCursor: string | null }> {
    const response = await this.call('/sessions', { query: { limit: page.limit, cursor: page.cursor } });
    const sessions = await readJson<SessionView[]>(response);
    return { sessions, nextCursor: response.headers.get('x-next-cursor') };
  }

  getSession(sessionId: string): Promise<SessionView> {
    return this.json(`/session/${enc(sessionId)}`);
  }

  /** A clean state: workspace back to the template, conversation forgotten. */
  resetSession(sessionId: string): Promise<SessionReset> {
    return this.json(`/session/${enc(sessionId)}/reset`, { method: 'POST' });
  }

  /** Deletes the session: its tasks stop, its sandbox, files and events go. */
  deleteSession(sessionId: string): Promise<SessionDeleted> {
    return this.json(`/session/${enc(sessionId)}`, { method: 'DELETE' });
  }

  // Files

  async listFiles(sessionId: string, path?: string): Promise<FileEntry[]> {
    const list = await this.json<FileList>(`/session/${enc(sessionId)}/files`, { query: { path } });
    return list.files;
  }

  /** The file's bytes as a stream, and its size (Content-Length). */
  async downloadFile(sessionId: string, path: string, options: RequestOptions = {}): Promise<{ stream: ReadableStream<Uint8Array>; size: number }> {
    const response = await this.call(filePath(sessionId, path), { signal: options.signal });
    if (!response.body) throw new ClaudeRunnerError({ code: 'INVALID_RESPONSE', message: 'A download answered without a body.', status: response.status });
    return { stream: response.body, size: Number(response.headers.get('content-length') ?? Number.NaN) };
  }

  async readFile(sessionId: string, path: string, options: RequestOptions = {}): Promise<Uint8Array> {
    const response = await this.call(filePath(sessionId, path), { signal: options.signal });
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Writes the file (folders created); a stream is sent as it is read, never held whole. */
  uploadFile(sessionId: string, path: string, body: UploadBody, options: RequestOptions = {}): Promise<FileWritten> {
    return this.json(filePath(sessionId, path), {
      method: 'PUT',
      body: uploadBody(body),
      headers: { 'content-type': 'application/octet-stream' },
      signal: options.signal,
    });
  }

  deleteFile(sessionId: string, path: string): Promise<FileDeleted> {
    return this.json(filePath(sessionId, path), { method: 'DELETE' });
  }

  // Streams

  /** A session's events, live, across reconnects (see StreamOptions); never ends by itself. */
  sessionEvents(sessionId: string, options: StreamOptions = {}): AsyncIterable<StreamFrame> {
    return followStream({
      open: (lastSeq, signal) => this.openStream(`/session/${enc(sessionId)}/events`, lastSeq, signal),
      isFinal: () => false,
    }, options);
  }

  /** One task's events, from its first (or after `after`); ends after its last. */
  taskEvents(taskId: string, options: StreamOptions = {}): AsyncIterable<StreamFrame> {
    return followStream({
      open: (lastSeq, signal) => this.openStream(`/tasks/${enc(taskId)}/events`, lastSeq, signal),
      isFinal: (frame) => frame.type === 'task_complete' || frame.type === 'task_error',
      // The server ends a task's stream once the task has ended, even when its last event is gone (retention).
      doneAfterCleanEnd: async () => !['queued', 'running', 'awaiting_input'].includes((await this.getTask(taskId)).status),
    }, options);
  }

  /** A short-lived token for `?token=` on streams (browsers cannot set headers there). */
  streamToken(input: StreamTokenInput = {}): Promise<StreamToken> {
    return this.json('/auth/stream-token', { method: 'POST', json: input });
  }

  // Service

  /** The health report; a degraded runner (503) answers one too, so it is returned, not thrown. */
  async health(): Promise<Health> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.url('/health'), { headers: this.headers() });
    } catch (error) {
      throw networkError(error, 'GET /health');
    }
    if (response.status === 503) {
      const body = await response.clone().json().catch(() => undefined) as Health | undefined;
      if (body && typeof body.status === 'string') return body;
    }
    if (!response.ok) throw await errorFromResponse(response);
    return readJson<Health>(response);
  }

  /** Prometheus metrics, as text. */
  async metrics(): Promise<string> {
    return (await this.call('/metrics')).text();
  }

  // Plumbing

  private openStream(path: string, lastSeq: number | undefined, signal: AbortSignal): Promise<Response> {
    const headers = this.headers({ accept: 'text/event-stream' });
    if (lastSeq !== undefined) headers['last-event-id'] = String(lastSeq);
    return this.fetchImpl(this.url(path), { headers, signal });
  }

  private async json<T>(path: string, init: CallInit = {}): Promise<T> {
    return readJson<T>(await this.call(path, init));
  }

  /** One request; a non-2xx answer is thrown as ClaudeRunnerError. */
  private async call(path: string, init: CallInit = {}): Promise<Response> {
    const method = init.method ?? 'GET';
    const headers = this.headers(init.headers);
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    const request: RequestInit & { duplex?: 'half' } = { method, headers };
    if (body !== undefined) request.body = body;
    if (init.signal) request.signal = init.signal;
    // A stream body needs this in fetch (Node and browsers).
    if (body instanceof ReadableStream) request.duplex = 'half';
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path, init.query), request);
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw networkError(error, `${method} ${path}`);
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  private url(path: string, query?: Record<string, string | number | undefined>): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined && value !== '') params.set(key, String(value));
    const search = params.toString();
    return `${this.baseUrl}${path}${search ? `?${search}` : ''}`;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { ...this.extraHeaders, ...extra };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    return headers;
  }
}

function submitInit(options: SubmitOptions): Pick<CallInit, 'headers' | 'signal'> {
  return {
    headers: options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {},
    signal: options.signal,
  };
}

const enc = encodeURIComponent;

/** Each path component encoded on its own: the slashes stay. */
function filePath(sessionId: string, path: string): string {
  const components = path.split('/').filter((part) => part !== '');
  return `/session/${enc(sessionId)}/files/${components.map(enc).join('/')}`;
}

async function readJson<T>(response: Response): Promise<T> {
  const text = await response.text();
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new ClaudeRunnerError({
      code: 'INVALID_RESPONSE',
      message: `Expected JSON, got: ${text.slice(0, 200)}`,
      status: response.status,
      requestId: response.headers.get('x-request-id') ?? undefined,
      body: text,
      cause: error,
    });
  }
}

function uploadBody(body: UploadBody): FetchBody {
  if (typeof body === 'string' || body instanceof Blob || body instanceof ReadableStream) return body as FetchBody;
  if (body instanceof Uint8Array) return body as FetchBody;
  // An async iterable (a Node Readable, a generator): read as the upload goes out.
  const iterator = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await iterator.return?.(reason);
    },
  });
}
