/**
 * The client's one error type: what the server answered (its error code,
 * HTTP status, request id, details and, for a task that failed, the task's
 * fields), or that it could not be reached (NETWORK_ERROR) or answered
 * something that is not the API's shape (INVALID_RESPONSE).
 */
import type { ErrorCode } from '../core/errors.ts';
import type { TaskStatus } from '../core/task-status.ts';

/** The server's error codes (docs/api.md), and the client's own two. */
export type ClientErrorCode = ErrorCode | 'NETWORK_ERROR' | 'INVALID_RESPONSE';

/** The fields of the task an error answer concerns (the blocking POST /task, SHUTTING_DOWN). */
export interface TaskErrorFields {
  taskId: string;
  sessionId?: string;
  status?: TaskStatus;
  cost?: number;
  duration?: number;
  tools?: string[];
  resumed?: boolean;
}

export interface ClaudeRunnerErrorInit {
  code: ClientErrorCode;
  message: string;
  status?: number;
  requestId?: string | undefined;
  details?: unknown;
  body?: unknown;
  cause?: unknown;
}

export class ClaudeRunnerError extends Error {
  override readonly name = 'ClaudeRunnerError';
  readonly code: ClientErrorCode;
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The answer's x-request-id: the server's log lines of that request carry it. */
  readonly requestId: string | undefined;
  readonly details: unknown;
  /** The whole parsed answer body, as the server sent it. */
  readonly body: unknown;
  /** When the answer names a task (a task that ended in error): its fields. */
  readonly task: TaskErrorFields | undefined;

  constructor(init: ClaudeRunnerErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status ?? 0;
    this.requestId = init.requestId;
    this.details = init.details;
    this.body = init.body;
    this.task = taskFields(init.body);
  }
}

export function isClaudeRunnerError(value: unknown): value is ClaudeRunnerError {
  return value instanceof ClaudeRunnerError || (value instanceof Error && value.name === 'ClaudeRunnerError' && 'code' in value);
}

function taskFields(body: unknown): TaskErrorFields | undefined {
  if (typeof body !== 'object' || body === null || typeof (body as { taskId?: unknown }).taskId !== 'string') return undefined;
  const { error: _error, output: _output, ...fields } = body as Record<string, unknown>;
  return fields as unknown as TaskErrorFields;
}

/** The error a non-2xx answer stands for: its JSON `{error: {code, message, details}}`, or INVALID_RESPONSE. */
export async function errorFromResponse(response: Response): Promise<ClaudeRunnerError> {
  const requestId = response.headers.get('x-request-id') ?? undefined;
  const text = await response.text().catch(() => '');
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: a proxy's page, say
  }
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  if (error && typeof error.code === 'string') {
    return new ClaudeRunnerError({
      code: error.code as ErrorCode,
      message: typeof error.message === 'string' ? error.message : error.code,
      status: response.status,
      requestId,
      details: error.details,
      body,
    });
  }
  return new ClaudeRunnerError({
    code: 'INVALID_RESPONSE',
    message: `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 200)}`,
    status: response.status,
    requestId,
    body,
  });
}

export function networkError(error: unknown, what: string): ClaudeRunnerError {
  const reason = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
  return new ClaudeRunnerError({ code: 'NETWORK_ERROR', message: `${what}: ${reason}`, cause: error });
}
