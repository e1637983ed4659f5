/**
 * Maps every error to the one JSON shape callers see: {error: {code, message}}
 * with the status from the error table. Only unknown errors are 500 and only
 * they are logged as bugs; their text never reaches the caller.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { RunnerError, errorTable } from '../core/errors.ts';

export function toHttpError(error: unknown): RunnerError | null {
  if (error instanceof RunnerError) return error;
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

export function sendError(reply: FastifyReply, error: RunnerError, extra?: Record<string, unknown>): FastifyReply {
  return reply.code(errorTable[error.code].status).send({ error: error.toBody(), ...extra });
}

export function errorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const known = toHttpError(error);
  if (known) return sendError(reply, known);
  request.log.error({ err: error }, 'unhandled error');
  return sendError(reply, new RunnerError('INTERNAL'));
}

/** Parses input with a zod schema, or throws INVALID_REQUEST naming the fields. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`);
  throw new RunnerError('INVALID_REQUEST', `Invalid request: ${issues.join('; ')}`, { issues });
}
