/**
 * Every error the runner can answer with, in one table: a stable machine-readable
 * code, the HTTP status the API layer maps it to, and a default message.
 * Services throw `RunnerError`; only the HTTP layer turns it into a response.
 * docs/api.md lists the same codes; test/core/errors.test.ts checks they agree.
 */

export const errorTable = {
  // 400: the caller sent something we will not accept
  INVALID_REQUEST: { status: 400, message: 'The request is not valid.' },
  OVERRIDE_NOT_ALLOWED: { status: 400, message: 'The task asks for a model or a limit its agent template does not allow.' },
  INVALID_SESSION_ID: { status: 400, message: 'Session ids are 1-128 characters: letters, digits and _ - . @ : + = (a letter or digit first).' },
  INVALID_ENV: { status: 400, message: 'The env object is not allowed.' },
  INVALID_PATH: { status: 400, message: 'The path is not inside the workspace.' },
  INVALID_SCHEMA: { status: 400, message: 'The JSON Schema is too large, too deep or not valid.' },
  WEBHOOK_NOT_CONFIGURED: { status: 400, message: 'This runner sends no webhooks: WEBHOOK_SECRET is not set.' },
  WEBHOOK_TARGET_NOT_ALLOWED: { status: 400, message: 'The webhook URL is not allowed: it must be an absolute http(s) URL of a public address.' },
  // 401 / 403 / 404
  UNAUTHORIZED: { status: 401, message: 'A valid API key is required.' },
  HOST_NOT_ALLOWED: { status: 403, message: 'The Host header names a host this runner does not serve: without API keys it accepts only localhost, 127.0.0.1, [::1] and ALLOWED_HOSTS.' },
  ORIGIN_NOT_ALLOWED: { status: 403, message: 'This web origin may not open streams or change anything here: only the runner\'s own origin and CORS_ORIGINS may.' },
  SESSION_NOT_FOUND: { status: 404, message: 'No such session.' },
  TASK_NOT_FOUND: { status: 404, message: 'No such task.' },
  FILE_NOT_FOUND: { status: 404, message: 'No such file in the workspace.' },
  AGENT_NOT_FOUND: { status: 404, message: 'No such agent template.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such route.' },
  // 409: the request conflicts with the state of the session or task
  AGENT_MISMATCH: { status: 409, message: 'The session is bound to another agent template.' },
  AGENT_REQUIRED: { status: 409, message: 'Several agent templates exist: name one in the "agent" field.' },
  TASK_ABORTED: { status: 409, message: 'The task was aborted.' },
  IDEMPOTENCY_CONFLICT: { status: 409, message: 'This Idempotency-Key was used for a different request.' },
  INPUT_NOT_PENDING: { status: 409, message: 'The task is not waiting for this input: no such request is pending (answered, timed out, or never asked).' },
  // 402 / 413 / 422 / 429: limits
  BUDGET_EXCEEDED: { status: 402, message: 'The task spent its budget.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  MAX_TURNS_REACHED: { status: 422, message: 'The agent reached the maximum number of turns.' },
  OUTPUT_INVALID: { status: 422, message: 'The agent output does not match the output schema.' },
  SANDBOX_LIMIT: { status: 422, message: 'The sandbox hit a resource limit (memory or processes).' },
  DISK_QUOTA_EXCEEDED: { status: 507, message: 'The session\'s workspace is past its disk quota (SANDBOX_DISK): delete files to go on.' },
  QUEUE_FULL: { status: 429, message: 'The session queue is full.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests.' },
  SESSION_LIMIT_REACHED: { status: 429, message: 'The maximum number of sessions is reached.' },
  // 5xx: something outside the request went wrong
  INTERNAL: { status: 500, message: 'Internal error.' },
  AGENT_CRASHED: { status: 502, message: 'The agent process ended unexpectedly.' },
  MODEL_ERROR: { status: 502, message: 'The model API failed.' },
  MODEL_CREDENTIALS_MISSING: { status: 503, message: 'No model credential is configured: set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN.' },
  SANDBOX_UNAVAILABLE: { status: 503, message: 'The Docker engine is not reachable.' },
  SANDBOX_BUSY: { status: 503, message: 'No sandbox could start in time: every running sandbox is busy (MAX_RUNNING_SANDBOXES), or the engine is slow. Try again later.' },
  SANDBOX_IMAGE_MISSING: { status: 503, message: 'The sandbox image is missing: run `npm run image`.' },
  NODE_UNREACHABLE: { status: 503, message: 'The runner node that runs this task or holds this session did not answer in time. Try again.' },
  DATABASE_UNAVAILABLE: { status: 503, message: 'The database is not reachable. Try again later.' },
  SHUTTING_DOWN: { status: 503, message: 'The server is shutting down.' },
  TASK_INTERRUPTED: { status: 503, message: 'The task was interrupted by a server restart or shutdown.' },
  TASK_TIMEOUT: { status: 504, message: 'The task ran past its time limit.' },
  INPUT_TIMEOUT: { status: 504, message: 'No one answered the agent\'s question in time (INPUT_TIMEOUT_MS).' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorTable;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export class RunnerError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? errorTable[code].message);
    this.name = 'RunnerError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return errorTable[this.code].status;
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/**
 * Codes whose own message may name engine errors, socket paths, containers or
 * log tails: callers get the table's message and a reference to find the rest
 * in the log, never the text itself.
 */
const OPAQUE_CODES: ReadonlySet<ErrorCode> = new Set(['INTERNAL', 'SANDBOX_UNAVAILABLE']);

/**
 * The body a caller may see. For an opaque code the message is the table's,
 * and `reference` (a request or task id, under which the full text is
 * logged) is added to it; `logged` tells whether the caller must log it.
 */
export function publicError(error: RunnerError, reference: string): { body: ErrorBody; logged: boolean } {
  if (!OPAQUE_CODES.has(error.code)) {
    // An engine's own words (details.docker) are the operator's: to the log, not the answer.
    const details = error.details as Record<string, unknown> | undefined;
    if (details && typeof details === 'object' && 'docker' in details) {
      const { docker: _engine, statusCode: _status, ...rest } = details;
      return { body: { code: error.code, message: error.message, details: { ...rest, reference } }, logged: true };
    }
    return { body: error.toBody(), logged: false };
  }
  return { body: { code: error.code, message: `${errorTable[error.code].message} (reference ${reference}: the server log has the details)`, details: { reference } }, logged: true };
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorTable, value);
}
