/**
 * The HTTP layer: fastify with authentication, rate limits, one error shape,
 * and routes that only parse, call one service and shape the answer.
 * It holds no state and no business rules.
 *
 * Owns: routes, authentication, which web pages may call (guard.ts), request
 * ids, the error shape (errors.ts). Must not touch: the store,
 * Docker or the runtime (only services), nor decide anything a service decides.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import rateLimit from '@fastify/rate-limit';
import websocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import { HealthSchema, StreamTokenBody, StreamTokenSchema } from '../api/index.ts';
import { RunnerError } from '../core/errors.ts';
import { dashboardRoutes, isDashboardRoute } from '../dashboard/routes.ts';
import type { Session } from '../core/model.ts';
import type { EventLog } from '../events/event-log.ts';
import type { StreamStarts } from '../events/stream-starts.ts';
import { assertSessionId, type SessionService } from '../sessions/session-service.ts';
import type { TaskService } from '../tasks/task-service.ts';
import type { WorkspaceFiles } from '../workspace/files.ts';
import type { ApiAuth, Caller } from './auth.ts';
import { errorHandler, sendError } from './errors.ts';
import { registerOriginPolicy } from './guard.ts';
import { errorResponses, isDocsRoute, json, noBodyAsEmptyObject, OPEN_ERRORS, OPENAPI_PATH, openApiRoute, registerOpenApi, security } from './openapi.ts';
import { fileRoutes } from './routes/files.ts';
import { sessionRoutes } from './routes/sessions.ts';
import { streamRoutes } from './routes/stream.ts';
import { taskRoutes } from './routes/tasks.ts';
import { deliveryRoutes } from './routes/deliveries.ts';
import { inputRoutes } from './routes/input.ts';
import type { WebhookOutbox } from '../core/ports/webhook-outbox.ts';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
    streamSession?: Session;
  }
}

export interface HealthReport {
  status: 'ok' | 'degraded';
  [key: string]: unknown;
}

export interface HttpDeps {
  tasks: TaskService;
  sessions: SessionService;
  events: EventLog;
  streamStarts: StreamStarts;
  files: WorkspaceFiles;
  auth: ApiAuth;
  logger: Logger;
  bodyLimitBytes: number;
  fileUploadLimitBytes: number;
  streamBufferBytes: number;
  rateLimitPerMinute: number;
  /** Host names (or host:port) a request may name besides loopback, when no API key is configured (ALLOWED_HOSTS). */
  allowedHosts: string[];
  /** Web origins besides the runner's own that may open streams and change state, answered with CORS (CORS_ORIGINS). */
  corsOrigins: string[];
  /** Uploaded files are given to the agent's user, so its tools can change them. */
  workspaceOwner: { uid: number; gid: number } | undefined;
  health(): Promise<HealthReport>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Task webhook deliveries (GET /tasks/:taskId/deliveries); none when absent. */
  webhookOutbox?: WebhookOutbox;
}

const OPEN_ROUTES = new Set(['/health', OPENAPI_PATH]);
const STREAM_ROUTE = /^\/(stream\/|session\/[^/]+\/events|tasks\/[^/]+\/events)/;

/**
 * Answers are not serialized through their zod schemas: a view that drifted from its schema would turn a
 * finished task's answer (the blocking POST /task a caller waited minutes for) into a 500, and zod's encoding
 * drops unknown fields without a word. test/http/openapi.test.ts instead validates real answers of every
 * route against the document. Requests are validated by the schemas (validatorCompiler).
 */
const serializeAsJson = () => (data: unknown): string => JSON.stringify(data);

export async function buildHttpApp(deps: HttpDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes,
    // One line per request is written by the onResponse hook below, with the route and timing.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 1024 },
    forceCloseConnections: true,
    // Unique and unguessable, never taken from the caller: answers quote it as the reference to the log.
    genReqId: () => randomUUID(),
  });
  app.decorateRequest('caller', null as unknown as Caller);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializeAsJson);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendError(reply, new RunnerError('ROUTE_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}.`)));
  // A route that takes no body accepts an empty one sent as JSON (generic HTTP clients label every call so).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') done(null, undefined);
    else parseJson(request, body as string, done);
  });

  // Every answer names its request: errors refer to it, the log carries it.
  const requestIds = new WeakMap<IncomingMessage, string>();
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    requestIds.set(request.raw, request.id);
  });
  // Host and Origin checks, CORS answers (preflights before authentication).
  await registerOriginPolicy(app, { checkHost: !deps.auth.enabled, allowedHosts: deps.allowedHosts, corsOrigins: deps.corsOrigins });
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0]!;
    // The dashboard's page and files are open (the page then asks for a key); decided by the route found.
    if (OPEN_ROUTES.has(path) || isDashboardRoute(request) || isDocsRoute(request)) return;
    request.caller = deps.auth.authenticate(request, request.method === 'GET' && STREAM_ROUTE.test(path));
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ method: request.method, url: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    // A refused WebSocket upgrade (e.g. 401 here, before @fastify/websocket's own hooks ran) must not keep its socket open.
    if (request.headers.upgrade !== undefined && !request.raw.socket.destroyed) request.raw.socket.destroy();
  });

  await app.register(rateLimit, {
    hook: 'preHandler',
    max: deps.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => request.caller?.keyId ?? request.ip,
    allowList: (request) => OPEN_ROUTES.has(request.url.split('?')[0]!) || isDocsRoute(request) || deps.rateLimitPerMinute === 0,
    errorResponseBuilder: (_request, context) => {
      const error = new RunnerError('RATE_LIMITED', `Too many requests: the limit is ${context.max} a minute. Retry in ${Math.ceil(context.ttl / 1000)} s.`);
      return Object.assign(error, { statusCode: 429 });
    },
  });
  // Our own preClose (routes/stream.ts) ends streams with 1001 "going away"; the plugin's would cut them first.
  await app.register(websocket, { options: { maxPayload: 64 * 1024 }, preClose: (done) => done() });
  app.websocketServer.on('headers', (headers: string[], raw: IncomingMessage) => {
    const id = requestIds.get(raw);
    if (id !== undefined) headers.push(`x-request-id: ${id}`);
  });

  // Routes registered from here on are in the OpenAPI document.
  await registerOpenApi(app);
  const api = app.withTypeProvider<ZodTypeProvider>();
  api.get('/health', {
    schema: {
      tags: ['runner'], summary: 'Is the runner up, and can it run tasks', security: security.open,
      response: { 200: json(HealthSchema, 'Ready.'), 503: json(HealthSchema, 'Degraded: see `docker`, `accepting`.'), ...errorResponses([], OPEN_ERRORS) },
    },
  }, async (_request, reply) => {
    const report = await deps.health();
    return reply.code(report.status === 'ok' ? 200 : 503).send(report as z.infer<typeof HealthSchema>);
  });
  api.get('/metrics', {
    schema: {
      tags: ['runner'], summary: 'Prometheus metrics (text exposition format)',
      response: { 200: { description: 'The metrics.', content: { 'text/plain': { schema: z.string() } } }, ...errorResponses([]) },
    },
  }, async (_request, reply) => {
    const { contentType, body } = await deps.metrics();
    return reply.header('content-type', contentType).send(body);
  });
  api.post('/auth/stream-token', {
    schema: {
      tags: ['runner'], summary: 'Trade the API key for a short-lived stream token (for browsers: ?token= on a stream route)',
      body: StreamTokenBody,
      response: { 200: json(StreamTokenSchema, 'The token.'), ...errorResponses(['INVALID_SESSION_ID', 'ORIGIN_NOT_ALLOWED']) },
    },
    preValidation: noBodyAsEmptyObject,
  }, async (request) => {
    const body = request.body;
    // The session may not exist yet: a browser opens its stream before the session's first task.
    if (body.sessionId) assertSessionId(body.sessionId);
    return deps.auth.issueStreamToken(request.caller, body.sessionId, body.ttlSeconds * 1000);
  });

  taskRoutes(api, deps);
  deliveryRoutes(api, deps);
  inputRoutes(api, deps);
  sessionRoutes(api, deps);
  streamRoutes(api, deps);
  await api.register(async (files) => fileRoutes(files, deps));
  openApiRoute(api);
  await app.register(dashboardRoutes);
  return app;
}
