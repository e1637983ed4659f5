/**
 * Maps every error to the one JSON shape callers see: {error: {code, message}}
 * with the status from the error table. Answers that could carry engine
 * messages, socket paths, container names or log tails (INTERNAL,
 * SANDBOX_UNAVAILABLE: see publicError) carry the table's message and a
 * reference instead (the request id, also in every answer's x-request-id
 * header); the full text is logged under that request id.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, type ZodFastifySchemaValidationError } from 'fastify-type-provider-zod';
import { RunnerError, errorTable, publicError } from '../core/errors.ts';

export function toHttpError(error: unknown): RunnerError | null {
  if (error instanceof RunnerError) return error;
  if (hasZodFastifySchemaValidationErrors(error)) return validationError(error);
  const fastifyError = error as FastifyError;
  switch (fastifyError?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RunnerError('PAYLOAD_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RunnerError('INVALID_REQUEST', 'Unsupported content type.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new RunnerError('INVALID_REQUEST', 'The body is not valid JSON.');
    default:
      break;
  }
  if (fastifyError instanceof SyntaxError || fastifyError?.statusCode === 400) {
    return new RunnerError('INVALID_REQUEST', fastifyError.message);
  }
  if (fastifyError?.statusCode === 413) return new RunnerError('PAYLOAD_TOO_LARGE');
  if (fastifyError?.statusCode === 429) return new RunnerError('RATE_LIMITED');
  return null;
}

export interface SendErrorOptions {
  /** What the caller can quote to find the details in the log; default the request id. */
  reference?: string;
  /** What really happened, logged (never sent) when the answer is opaque; default the error itself. */
  cause?: unknown;
}

/** Sends `error` as the caller may see it (extra fields beside `error`), logging what it may not see. */
export function sendError(reply: FastifyReply, error: RunnerError, extra?: Record<string, unknown>, options: SendErrorOptions = {}): FastifyReply {
  const reference = options.reference ?? reply.request.id;
  const { body, logged } = publicError(error, reference);
  if (logged) {
    reply.request.log.error({ err: options.cause ?? error, code: error.code, reference }, `answered ${error.code} by reference`);
  }
  return reply.code(errorTable[error.code].status).send({ error: body, ...extra });
}

export function errorHandler(error: unknown, _request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const known = toHttpError(error);
  if (known) return sendError(reply, known);
  return sendError(reply, new RunnerError('INTERNAL'), undefined, { cause: error });
}

/**
 * A request the route's zod schema refused: 400 INVALID_REQUEST naming the fields
 * (`details.issues`), or INVALID_SESSION_ID for a bad :sessionId in the path, as the services say it.
 */
function validationError(error: { validation: ZodFastifySchemaValidationError[]; validationContext?: string }): RunnerError {
  const part = error.validationContext ?? 'body';
  const fields = error.validation.map((issue) => ({ path: issue.instancePath.slice(1).replaceAll('/', '.'), message: issue.message }));
  if (part === 'params' && fields.some((field) => field.path === 'sessionId')) return new RunnerError('INVALID_SESSION_ID');
  const issues = fields.map((field) => `${field.path || part}: ${field.message}`);
  return new RunnerError('INVALID_REQUEST', `Invalid request: ${issues.join('; ')}`, { issues });
}
