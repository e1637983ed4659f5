/**
 * Task routes. POST /task keeps the seed's blocking behaviour (answers when
 * the task ends); with "wait": false it answers 202 at once.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { RunnerError } from '../../core/errors.ts';
import type { Task } from '../../core/model.ts';
import { parseInput, sendError } from '../errors.ts';
import { acceptedView, pageQuery, storedError, taskResultView, taskView } from '../views.ts';
import type { HttpDeps } from '../app.ts';

const submitBody = z.object({
  sessionId: z.string().min(1).max(128),
  message: z.string().min(1).max(200_000),
  context: z.string().max(200_000).optional(),
  env: z.record(z.string(), z.unknown()).optional(),
  agent: z.string().min(1).max(128).optional(),
  wait: z.boolean().default(true),
  maxTurns: z.number().int().positive().max(1000).optional(),
  budgetUsd: z.number().positive().max(10_000).optional(),
  timeoutMs: z.number().int().positive().max(24 * 3_600_000).optional(),
  outputSchema: z.record(z.string(), z.unknown()).optional(),
}).strict();

const idempotencyKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

const tasksPage = pageQuery(50, 200);

export function taskRoutes(app: FastifyInstance, deps: HttpDeps): void {
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

  app.post('/task', async (request, reply) => {
    // The task is durable: a caller that goes away stops waiting, not the task. (The request's own
    // 'close' fires once its body is read; the response's tells when the connection is gone.)
    const gone = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) gone.abort(new Error('caller went away'));
    });
    // No body at all (or an empty JSON one) is an empty object here, so the answer names the missing fields.
    const body = parseInput(submitBody, request.body ?? {});
    const keyHeader = request.headers['idempotency-key'];
    const key = keyHeader === undefined ? undefined : parseInput(idempotencyKey, keyHeader);
    const { task, created } = await deps.tasks.submit({
      tenantId: request.caller.tenantId,
      sessionId: body.sessionId,
      message: body.message,
      context: body.context,
      env: body.env,
      agent: body.agent,
      idempotencyKey: key,
      options: {
        ...(body.maxTurns !== undefined ? { maxTurns: body.maxTurns } : {}),
        ...(body.budgetUsd !== undefined ? { budgetUsd: body.budgetUsd } : {}),
        ...(body.timeoutMs !== undefined ? { timeoutMs: body.timeoutMs } : {}),
        ...(body.outputSchema !== undefined ? { outputSchema: body.outputSchema } : {}),
      },
    });
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
    return sendTaskResult(reply, final);
  });

  app.get('/tasks/:taskId', async (request) => {
    const { taskId } = request.params as { taskId: string };
    return taskView(await deps.tasks.get(request.caller.tenantId, taskId));
  });

  app.post('/tasks/:taskId/abort', async (request) => {
    const { taskId } = request.params as { taskId: string };
    return taskView(await deps.tasks.abortTask(request.caller.tenantId, taskId));
  });

  app.post('/task/:sessionId/abort', async (request) => {
    const { sessionId } = request.params as { sessionId: string };
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

  app.get('/session/:sessionId/tasks', async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    const query = parseInput(tasksPage, request.query);
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
