/**
 * Questions to a person: what a running task's agent waits for (a question
 * it asked, or a tool call under an `ask` rule), until someone answers over
 * the API, the wait passes INPUT_TIMEOUT_MS, or the task ends.
 *
 * While anything is pending the task reads `awaiting_input` (the store keeps
 * the pending requests with it, so GET /tasks/:taskId shows them), the stream
 * has had `input_required`, and the task's own clock (TASK_TIMEOUT_MS) is
 * paused: a person's time is not the agent's. An answer appends
 * `input_received` before the agent hears it.
 *
 * Owns: pending requests of the tasks running in this process. Must not
 * touch: the agent (it only resolves what the runtime awaits), HTTP, SQL.
 */
import { RunnerError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { InputAnswer, PendingInput, Task } from '../core/model.ts';
import type { HumanInputRequest } from '../core/ports/agent-runtime.ts';
import type { Store } from '../core/ports/store.ts';
import type { EventLog } from '../events/event-log.ts';

export interface HumanInputsDeps {
  store: Store;
  events: EventLog;
  /** How long a request waits for an answer before its task ends (INPUT_TIMEOUT). */
  timeoutMs: number;
  /** The tool input a person is shown is stored with the task: the task's secrets go first. */
  redactor: { redactDeep<T>(value: T, sessionKey: string): T };
}

/** The task's clock, paused while a person is asked. */
export interface PausableClock {
  pause(): void;
  resume(): void;
}

interface Waiting {
  task: Task;
  pending: PendingInput;
  settle(answer: InputAnswer): Promise<void>;
}

export class HumanInputs {
  private readonly deps: HumanInputsDeps;
  /** Pending requests by request id. */
  private readonly waiting = new Map<string, Waiting>();

  constructor(deps: HumanInputsDeps) {
    this.deps = deps;
  }

  /** The `askHuman` of one running task: its requests end with it (the controller's abort). */
  askerFor(task: Task, controller: AbortController, clock: PausableClock): (request: HumanInputRequest) => Promise<InputAnswer> {
    return (request) => this.ask(task, request, controller, clock);
  }

  /** Answers a pending request; the agent goes on once `input_received` is stored. */
  async answer(taskId: string, requestId: string, answer: InputAnswer): Promise<void> {
    const waiting = this.waiting.get(requestId);
    if (!waiting || waiting.task.id !== taskId) {
      throw new RunnerError('INPUT_NOT_PENDING', `The task is not waiting for request ${requestId}: it was answered, timed out, or never asked.`);
    }
    checkAnswer(waiting.pending, answer);
    await waiting.settle(answer);
  }

  private pendingOf(taskId: string): PendingInput[] {
    return [...this.waiting.values()].filter((w) => w.task.id === taskId).map((w) => w.pending);
  }

  private async ask(task: Task, request: HumanInputRequest, controller: AbortController, clock: PausableClock): Promise<InputAnswer> {
    const { store, events, timeoutMs } = this.deps;
    const signal = controller.signal;
    if (signal.aborted) throw signal.reason;
    const askedAt = Date.now();
    const pending: PendingInput = {
      requestId: newId('input'),
      kind: request.kind,
      ...(request.kind === 'question' ? { questions: request.questions } : { tool: request.tool }),
      input: this.deps.redactor.redactDeep(request.input, task.sessionKey),
      askedAt,
      expiresAt: askedAt + timeoutMs,
    };
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort = (): void => {};
    const answered = new Promise<InputAnswer>((resolve, reject) => {
      const leave = async (): Promise<void> => {
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiting.delete(pending.requestId);
        if (this.pendingOf(task.id).length === 0) clock.resume();
        await store.setPendingInput(task.id, this.pendingOf(task.id));
      };
      onAbort = () => {
        if (settled) return;
        void leave().finally(() => reject(signal.reason));
      };
      this.waiting.set(pending.requestId, {
        task,
        pending,
        settle: async (answer) => {
          if (settled) return;
          await leave();
          await events.append(task.sessionKey, task.id, 'input_received', {
            taskId: task.id, requestId: pending.requestId, kind: pending.kind,
            ...(answer.kind === 'question' ? { answers: answer.answers } : { decision: answer.decision }),
          });
          resolve(answer);
        },
      });
    });
    // Whoever ends the wait (an abort) rejects it; the runtime may have stopped awaiting by then.
    answered.catch(() => undefined);
    clock.pause();
    signal.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => controller.abort(new RunnerError(
      'INPUT_TIMEOUT', `No one answered the agent's ${pending.kind === 'question' ? 'question' : `request to use ${pending.tool}`} within ${timeoutMs} ms (INPUT_TIMEOUT_MS).`,
    )), timeoutMs);
    await store.setPendingInput(task.id, this.pendingOf(task.id));
    await events.append(task.sessionKey, task.id, 'input_required', {
      taskId: task.id, requestId: pending.requestId, kind: pending.kind,
      ...(pending.questions ? { questions: pending.questions } : {}),
      ...(pending.tool ? { tool: pending.tool } : {}),
      input: pending.input, expiresAt: new Date(pending.expiresAt).toISOString(),
    });
    return answered;
  }
}

/** The answer must fit the request: a decision for a tool call, an answer to each question asked. */
function checkAnswer(pending: PendingInput, answer: InputAnswer): void {
  if (answer.kind !== pending.kind) {
    throw new RunnerError('INVALID_REQUEST', pending.kind === 'question'
      ? 'This request is a question: answer it with `answers` ({question: answer}).'
      : 'This request asks to use a tool: answer it with `decision` ("allow" or "deny").');
  }
  if (answer.kind !== 'question') return;
  const asked = (pending.questions ?? []).map((q) => q.question);
  const unknown = Object.keys(answer.answers).filter((q) => !asked.includes(q));
  const missing = asked.filter((q) => !(q in answer.answers));
  if (unknown.length > 0 || missing.length > 0) {
    throw new RunnerError('INVALID_REQUEST', `answers: expected one answer per question asked${missing.length ? `; missing: ${missing.map((q) => JSON.stringify(q)).join(', ')}` : ''}${unknown.length ? `; not asked: ${unknown.map((q) => JSON.stringify(q)).join(', ')}` : ''}.`, { asked });
  }
}
