/** POST /tasks/:taskId/input: a person answers what the task's agent waits for (status awaiting_input). */
import { TaskInputBody, TaskViewSchema } from '../../api/index.ts';
import type { InputAnswer } from '../../core/model.ts';
import { errorResponses, json, TaskParams, type ZodApp } from '../openapi.ts';
import type { HttpDeps } from '../app.ts';
import { taskView } from '../views.ts';

export function inputRoutes(app: ZodApp, deps: HttpDeps): void {
  app.post('/tasks/:taskId/input', {
    schema: {
      tags: ['tasks'],
      summary: 'Answer the agent\'s question, or allow or deny a tool call waiting for approval',
      description: 'The task must be `awaiting_input` with this `requestId` pending (an `input_required` event). The agent goes on in the same process; `input_received` is appended first.',
      params: TaskParams,
      body: TaskInputBody,
      response: {
        200: json(TaskViewSchema, 'The task, as the answer left it (running again unless something else is pending).'),
        ...errorResponses(['INVALID_REQUEST', 'TASK_NOT_FOUND', 'INPUT_NOT_PENDING', 'ORIGIN_NOT_ALLOWED', 'NODE_UNREACHABLE']),
      },
    },
  }, async (request) => {
    const { requestId, answers, decision, message } = request.body;
    const answer: InputAnswer = answers !== undefined
      ? { kind: 'question', answers }
      : { kind: 'permission', decision: decision!, ...(message !== undefined ? { message } : {}) };
    return taskView(await deps.tasks.answerInput(request.caller.tenantId, request.params.taskId, requestId, answer));
  });
}
