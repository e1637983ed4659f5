/**
 * The OpenAPI 3.1 document, generated from the routes' zod schemas (src/api)
 * by fastify-type-provider-zod and @fastify/swagger, never written by hand:
 * GET /openapi.json, and the reference page /docs (@fastify/swagger-ui, its
 * assets served from node_modules, no CDN). Also what routes use to say what
 * a zod schema cannot: error answers per status, raw bytes, media types.
 *
 * Owns the document's frame (info, security schemes, tags). Must not hold a
 * wire shape (those live in src/api) nor decide anything a route does.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawServerDefault } from 'fastify';
import { createJsonSchemaTransform, createJsonSchemaTransformObject, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ErrorResponse } from '../api/index.ts';
import { errorTable, type ErrorCode } from '../core/errors.ts';
import { PUBLIC_ID_PATTERN } from '../core/model.ts';

export type ZodApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

export const DOCS_PREFIX = '/docs';
export const OPENAPI_PATH = '/openapi.json';

/** The reference page and its files (open without a key); decided by the route found, not the URL as sent. */
export function isDocsRoute(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return route === DOCS_PREFIX || route?.startsWith(`${DOCS_PREFIX}/`) === true;
}

const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * What every route behind a key can answer besides its own errors: a bad query or body, no key, a foreign Host,
 * the rate limit, a failure of ours, a database out of reach (PostgreSQL).
 */
const GUARDED: ErrorCode[] = ['INVALID_REQUEST', 'UNAUTHORIZED', 'HOST_NOT_ALLOWED', 'RATE_LIMITED', 'INTERNAL', 'DATABASE_UNAVAILABLE'];
/** What an open route (no key) can answer. */
export const OPEN_ERRORS: ErrorCode[] = ['HOST_NOT_ALLOWED', 'INTERNAL'];

/** Who may call: the document's security requirements (any one of a list will do). */
export const security: Record<'key' | 'stream' | 'open', Array<Record<string, string[]>>> = {
  /** A key, as a header. */
  key: [{ bearer: [] }, { apiKey: [] }],
  /** Stream routes also take a stream token as ?token=. */
  stream: [{ bearer: [] }, { apiKey: [] }, { streamToken: [] }],
  open: [],
};

/** A JSON answer. */
export function json<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** Raw bytes, whatever they hold (workspace files). */
export const Binary = z.any().meta({ type: 'string', format: 'binary', contentMediaType: 'application/octet-stream' });

/**
 * The error answers of a route, one per status, each naming the codes it can carry (see the error table in
 * docs/api.md); `common` are those every route of its kind shares.
 */
export function errorResponses(codes: ErrorCode[], common: ErrorCode[] = GUARDED) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set([...codes, ...common])) {
    const status = errorTable[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries([...byStatus].sort(([a], [b]) => a - b).map(([status, list]) =>
    [status, json(ErrorResponse, `Error: ${list.map((code) => `\`${code}\``).join(', ')}.`)]));
}

const zodTransform = createJsonSchemaTransform({ skipList: [] });
const zodTransformObject = createJsonSchemaTransformObject({});

type JsonObject = { properties?: Record<string, unknown>; required?: string[] } & Record<string, unknown>;

/**
 * A route without a schema is not part of the API (the dashboard's page and files): left out.
 * The route's wildcard (`*`, a file's path) is named `path` in the document: `{*}` would stump client generators.
 */
const transform: typeof zodTransform = (input) => {
  if (!input.schema) return { schema: { hide: true }, url: input.url };
  // @fastify/websocket hides its routes; ours is part of the API (its upgrade, its frames, its refusals).
  const websocket = (input.route as { websocket?: boolean }).websocket === true;
  const result = zodTransform(websocket ? { ...input, schema: { ...input.schema, hide: false } } : input);
  // Header schemas are keyed as node gives them (lower case); the document spells them as people do.
  const headers = (result.schema as { headers?: JsonObject }).headers;
  if (headers?.properties) {
    const spelled = (name: string) => name.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase()).replace(/-Id$/, '-ID');
    headers.properties = Object.fromEntries(Object.entries(headers.properties).map(([name, schema]) => [spelled(name), schema]));
    headers.required = headers.required?.map(spelled);
  }
  if (!result.url.endsWith('/*')) return result;
  const schema = result.schema as { params?: JsonObject };
  const params = schema.params;
  if (params?.properties?.['*'] !== undefined) {
    const { '*': wildcard, ...rest } = params.properties;
    schema.params = { ...params, properties: { ...rest, path: wildcard }, required: params.required?.map((name) => (name === '*' ? 'path' : name)) };
  }
  return { schema: result.schema, url: `${result.url.slice(0, -1)}:path` };
};

/**
 * Every registered zod schema lands in components twice (as read: `<id>Input`, as written: `<id>`): keep the
 * forms the operations refer to, and every stream frame (Event*, Frame_*) so a reader finds them all.
 */
const transformObject: typeof zodTransformObject = (input) => {
  const document = zodTransformObject(input) as { paths?: unknown; components: { schemas: Record<string, unknown> } };
  const schemas = document.components.schemas;
  const kept = (name: string): boolean => /^(Event|Frame_)/.test(name) && !name.endsWith('Input');
  const referenced = new Set<string>();
  const visit = (value: unknown): void => {
    for (const match of JSON.stringify(value ?? null).matchAll(/"#\/components\/schemas\/([^"]+)"/g)) {
      const name = decodeURIComponent(match[1]!);
      if (!referenced.has(name)) {
        referenced.add(name);
        visit(schemas[name]);
      }
    }
  };
  visit(document.paths);
  for (const name of Object.keys(schemas)) if (kept(name)) visit(schemas[name]);
  for (const name of Object.keys(schemas)) if (!referenced.has(name) && !kept(name)) delete schemas[name];
  return document as ReturnType<typeof zodTransformObject>;
};

/** Registers the generator; routes registered after this are documented. */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Claude Runner API',
        version: packageVersion,
        description: 'Runs Claude Code agents for your users: one sandbox, workspace and queue per session. '
          + 'Concepts, the blocking POST /task, idempotency, pagination and the error table: docs/api.md. '
          + 'Every stream frame: components Event_* and Frame_*, and docs/events.md.',
      },
      servers: [{ url: '/' }],
      tags: [
        { name: 'tasks', description: 'Submit, follow and abort tasks.' },
        { name: 'sessions', description: 'One per end user: its agent, workspace and history.' },
        { name: 'streams', description: 'Live events, replayable by seq: WebSocket and server-sent events.' },
        { name: 'files', description: 'A session\'s workspace, as raw bytes.' },
        { name: 'runner', description: 'Health, metrics, tokens and this document.' },
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key (API_KEYS) as `Authorization: Bearer <key>`. With no key configured, every caller is the tenant "default" (and the Host must be loopback or ALLOWED_HOSTS).' },
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'The same API key, as `x-api-key`.' },
          streamToken: { type: 'apiKey', in: 'query', name: 'token', description: 'Stream routes only: a short-lived token from POST /auth/stream-token (browsers cannot set headers on WebSocket or EventSource).' },
        },
      },
      security: security.key,
    },
    transform,
    transformObject,
  });
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    // No call to validator.swagger.io: the page uses nothing but this runner.
    uiConfig: { validatorUrl: null, deepLinking: true },
  });
}

/** GET /openapi.json: the document, open like /health (register after every documented route's plugin). */
export function openApiRoute(app: ZodApp): void {
  app.get(OPENAPI_PATH, {
    schema: {
      tags: ['runner'],
      summary: 'This document (OpenAPI 3.1), generated from the routes\' schemas',
      security: security.open,
      response: {
        200: json(z.object({ openapi: z.literal('3.1.0') }).catchall(z.unknown()), 'The OpenAPI document.'),
        ...errorResponses([], OPEN_ERRORS),
      },
    },
  }, async () => app.swagger() as unknown as { openapi: '3.1.0' });
}

/** A :sessionId in a path; a bad one answers INVALID_SESSION_ID (errors.ts), as the services would. */
export const SessionParams = z.object({
  sessionId: z.string().regex(PUBLIC_ID_PATTERN).describe('Your id for the end user (see SubmitTaskBody.sessionId).'),
});
export const TaskParams = z.object({ taskId: z.string().describe('As POST /task answered it.') });

/** preValidation of routes with a JSON body schema: no body at all reads as {}, so the answer names the missing fields. */
export async function noBodyAsEmptyObject(request: FastifyRequest): Promise<void> {
  request.body ??= {};
}
