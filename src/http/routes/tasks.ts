/**
 * Task routes. POST /task keeps the seed's blocking behaviour (answers when
 * the task ends); with "wait": false it answers 202 at once.
 */
import type { FastifyReply } from 'fastify';
import { SessionAbortSchema, SubmitTaskBody, SubmitTaskHeaders, TaskAcceptedSchema, TaskPageSchema, TaskResultSchema, TaskViewSchema, TasksPageQuery } from '../../api/index.ts';
import { RunnerError, type ErrorCode } from '../../core/errors.ts';
import type { Task } from '../../core/model.ts';
import { hotPath } from '../../metrics/hot-path.ts';
import { sendError } from '../errors.ts';
import { errorResponses, json, noBodyAsEmptyObject, SessionParams, TaskParams, type ZodApp } from '../openapi.ts';
import { acceptedView, storedError, taskResultView, taskView } from '../views.ts';
import type { HttpDeps } from '../app.ts';

/** What the blocking POST /task can answer: refusals of the request, and every way a task can end but success. */
const SUBMIT_ERRORS: ErrorCode[] = [
  'INVALID_SESSION_ID', 'INVALID_ENV', 'INVALID_SCHEMA', 'OVERRIDE_NOT_ALLOWED', 'WEBHOOK_NOT_CONFIGURED', 'WEBHOOK_TARGET_NOT_ALLOWED', 'ORIGIN_NOT_ALLOWED', 'AGENT_NOT_FOUND', 'AGENT_MISMATCH', 'AGENT_REQUIRED',
  'IDEMPOTENCY_CONFLICT', 'PAYLOAD_TOO_LARGE', 'QUEUE_FULL', 'SESSION_LIMIT_REACHED', 'SHUTTING_DOWN', 'MODEL_CREDENTIALS_MISSING',
  'TASK_ABORTED', 'BUDGET_EXCEEDED', 'MAX_TURNS_REACHED', 'OUTPUT_INVALID', 'SANDBOX_LIMIT', 'DISK_QUOTA_EXCEEDED', 'AGENT_CRASHED',
  'MODEL_ERROR', 'SANDBOX_UNAVAILABLE', 'SANDBOX_BUSY', 'SANDBOX_IMAGE_MISSING', 'TASK_INTERRUPTED', 'TASK_TIMEOUT', 'INPUT_TIMEOUT',
];

export function taskRoutes(app: ZodApp, deps: HttpDeps): void {
  // Blocking POST /task answers still being written; shutdown lets them go out before connections are cut.
  const answering = new Set<Promise<void>>();
  app.addHook('preClose', async () => {
    deps.tasks.releaseWaiters();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...answering]),
      new Promise((resolve) => { timer = setTimeout(resolve, 2000); }),
    ]);
    clearTimeout(timer);
  });

  app.post('/task', {
    schema: {
      tags: ['tasks'],
      summary: 'Run a task in a session (created on first use); blocks until it ends unless "wait": false',
      description: 'The seed\'s blocking call: answers when the task ends, 200 with its output or the error\'s status with the task\'s fields beside `error`. '
        + 'With "wait": false, 202 at once. A retry with the same Idempotency-Key and body answers the first task (header `idempotent-replay: true`).',
      headers: SubmitTaskHeaders,
      body: SubmitTaskBody,
      response: {
        200: json(TaskResultSchema, 'The task succeeded (the seed\'s answer, plus status).'),
        202: json(TaskAcceptedSchema, '"wait": false: the task is queued; follow it with GET /tasks/{taskId} or its events.'),
        ...errorResponses(SUBMIT_ERRORS),
      },
    },
    preValidation: noBodyAsEmptyObject,
  }, async (request, reply) => {
    // The task is durable: a caller that goes away stops waiting, not the task. (The request's own
    // 'close' fires once its body is read; the response's tells when the connection is gone.)
    const gone = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) gone.abort(new Error('caller went away'));
    });
    const body = request.body;
    const key = request.headers['idempotency-key'];
    const { task, created } = await deps.tasks.submit({
      tenantId: request.caller.tenantId,
      sessionId: body.sessionId,
      message: body.message,
      context: body.context,
      env: body.env,
      agent: body.agent,
      idempotencyKey: key,
      options: {
        ...(body.model !== undefined ? { model: body.model } : {}),
        ...(body.maxTurns !== undefined ? { maxTurns: body.maxTurns } : {}),
        ...(body.budgetUsd !== undefined ? { budgetUsd: body.budgetUsd } : {}),
        ...(body.timeoutMs !== undefined ? { timeoutMs: body.timeoutMs } : {}),
        ...(body.outputSchema !== undefined ? { outputSchema: body.outputSchema } : {}),
        ...(body.webhookUrl !== undefined ? { webhookUrl: body.webhookUrl } : {}),
      },
    });
    // http_in: the request received (fastify's onRequest) → the task stored and queued.
    hotPath.observe('http_in', reply.elapsedTime);
    if (!created) reply.header('idempotent-replay', 'true');
    if (!body.wait) return reply.code(202).send(acceptedView(task));
    // A caller already gone has nothing left to be answered ('close' fired already: do not wait for it).
    const answered = reply.raw.closed ? Promise.resolve() : new Promise<void>((resolve) => reply.raw.once('close', () => resolve()));
    answering.add(answered);
    void answered.then(() => answering.delete(answered));
    let final: Task;
    try {
      final = await deps.tasks.wait(task, gone.signal);
    } catch (error) {
      // The caller went away: nobody to answer (the task goes on).
      if (gone.signal.aborted) return reply;
      // Anything else (the store failed while waiting): the caller is answered, never left hanging.
      if (!(error instanceof RunnerError)) {
        return sendError(reply, new RunnerError('INTERNAL'), { taskId: task.id, sessionId: task.sessionId }, { cause: error });
      }
      // Shutting down before the task ended: say where it stands, so the caller can follow it later.
      const current = await deps.tasks.get(request.caller.tenantId, task.id).catch(() => task);
      return sendError(reply, error, { taskId: task.id, sessionId: task.sessionId, status: current.status });
    }
    const endedAt = performance.now();
    reply.raw.once('finish', () => hotPath.since('http_out', endedAt));
    return sendTaskResult(reply, final);
  });

  app.get('/tasks/:taskId', {
    schema: { tags: ['tasks'], summary: 'A task: status, output, error, usage', params: TaskParams, response: { 200: json(TaskViewSchema, 'The task.'), ...errorResponses(['TASK_NOT_FOUND']) } },
  }, async (request) => {
    const { taskId } = request.params;
    return taskView(await deps.tasks.get(request.caller.tenantId, taskId));
  });

  app.post('/tasks/:taskId/abort', {
    schema: {
      tags: ['tasks'], summary: 'Abort a task (queued or running); a task that ended is answered as it is', params: TaskParams,
      response: { 200: json(TaskViewSchema, 'The task, as the abort left it.'), ...errorResponses(['TASK_NOT_FOUND', 'ORIGIN_NOT_ALLOWED', 'NODE_UNREACHABLE']) },
    },
  }, async (request) => {
    const { taskId } = request.params;
    return taskView(await deps.tasks.abortTask(request.caller.tenantId, taskId));
  });

  app.post('/task/:sessionId/abort', {
    schema: {
      tags: ['tasks'], summary: 'Abort the running task of a session and empty its queue (the seed\'s route)', params: SessionParams,
      response: { 200: json(SessionAbortSchema, 'What was aborted.'), ...errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'ORIGIN_NOT_ALLOWED', 'NODE_UNREACHABLE']) },
    },
  }, async (request) => {
    const { sessionId } = request.params;
    const outcome = await deps.tasks.abortSession(request.caller.tenantId, sessionId);
    const aborted = (outcome.running ? 1 : 0) + outcome.queued.length;
    return {
      sessionId,
      aborted: aborted > 0,
      runningTaskId: outcome.running,
      queuedTaskIds: outcome.queued,
      message: aborted > 0 ? `Aborted ${aborted} task(s).` : 'Nothing to abort: the session is idle.',
    };
  });

  app.get('/session/:sessionId/tasks', {
    schema: {
      tags: ['tasks'], summary: 'A session\'s tasks, newest first, a page at a time', params: SessionParams, querystring: TasksPageQuery,
      response: { 200: json(TaskPageSchema, 'A page; `nextCursor` (also header `x-next-cursor`) fetches the next, null on the last.'), ...errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND']) },
    },
  }, async (request, reply) => {
    const { sessionId } = request.params;
    const query = request.query;
    const page = await deps.tasks.list(request.caller.tenantId, sessionId, { limit: query.limit, cursor: query.cursor ?? null });
    if (page.nextCursor) reply.header('x-next-cursor', page.nextCursor);
    return { tasks: page.items.map(taskView), nextCursor: page.nextCursor };
  });
}

/**
 * A finished task as the blocking POST /task answers it: 200 with the seed's shape, or the error's status.
 * An opaque error (INTERNAL, SANDBOX_UNAVAILABLE) is answered with the task id as its reference, whatever was stored.
 */
function sendTaskResult(reply: FastifyReply, task: Task) {
  if (task.status === 'succeeded') return reply.send(taskResultView(task));
  const error = storedError(task);
  return sendError(reply, error, { ...taskResultView(task), output: undefined }, { reference: task.id, cause: { taskId: task.id, stored: task.error } });
}
