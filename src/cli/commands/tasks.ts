/**
 * `task` (submit, follow the agent live, print the answer) and `abort`.
 * A waiting `task` submits with wait: false and follows the task's event
 * stream, which resumes by itself after a disconnect, so a long task is
 * never cut by an HTTP timeout; the answer is then read with GET /tasks/:id.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { TaskInput, TaskView } from '../../client/index.ts';
import { clientOf, EXIT, ExitCode, interruptSignal, parseBoolean, parseInteger, parsePositiveNumber, printJson } from '../context.ts';
import { colours, FrameRenderer, printError, summary } from '../output.ts';

interface TaskOptions {
  context?: string;
  env: Record<string, string>;
  agent?: string;
  json?: boolean;
  wait: boolean;
  maxTurns?: number;
  budget?: number;
  timeout?: number;
  outputSchema?: string;
  idempotencyKey?: string;
}

function collectEnv(value: string, previous: Record<string, string>): Record<string, string> {
  const equals = value.indexOf('=');
  if (equals <= 0) throw new InvalidArgumentError('use NAME=value.');
  return { ...previous, [value.slice(0, equals)]: value.slice(equals + 1) };
}

function taskBody(sessionId: string, message: string, options: TaskOptions): TaskInput {
  const body: TaskInput = { sessionId, message };
  if (options.context !== undefined) body.context = options.context;
  if (Object.keys(options.env).length > 0) body.env = options.env;
  if (options.agent !== undefined) body.agent = options.agent;
  if (options.maxTurns !== undefined) body.maxTurns = options.maxTurns;
  if (options.budget !== undefined) body.budgetUsd = options.budget;
  if (options.timeout !== undefined) body.timeoutMs = options.timeout;
  if (options.outputSchema !== undefined) body.outputSchema = JSON.parse(readFileSync(options.outputSchema, 'utf8')) as Record<string, unknown>;
  return body;
}

/** The blocking POST /task's answer, from the stored task: the seed's shape, or the error with the task's fields. */
export function answerOf(task: TaskView): Record<string, unknown> {
  const fields = { taskId: task.taskId, sessionId: task.sessionId, cost: task.cost, duration: task.duration, tools: task.tools, resumed: task.resumed, status: task.status };
  return task.status === 'succeeded' ? { ...fields, output: task.output } : { error: task.error, ...fields };
}

function printOutput(task: TaskView): void {
  const c = colours;
  if (task.status !== 'succeeded') {
    printError(`task ${task.taskId} ${task.status}: ${task.error?.code ?? ''} ${task.error?.message ?? ''}`.trim());
    return;
  }
  const output = task.output as { response?: unknown } | null;
  const onlyText = output && typeof output === 'object' && Object.keys(output).length === 1 && typeof output.response === 'string';
  process.stdout.write(`\n${c.bold('Output')} ${c.dim(summary(task.duration, task.cost, task.tools))}\n`);
  process.stdout.write(`${onlyText ? String(output.response) : JSON.stringify(task.output, null, 2)}\n`);
}

export function taskCommands(program: Command): void {
  program
    .command('task')
    .description('Send a task to a session, stream the agent\'s work live, then print its output')
    .argument('<session>', 'session id (reuse it to continue the conversation)')
    .argument('<message>', 'what the agent is asked to do')
    .option('-c, --context <text>', 'extra context put before the message')
    .option('-e, --env <NAME=value>', 'a variable for the agent\'s tools (repeatable; sealed and redacted)', collectEnv, {})
    .option('-a, --agent <name>', 'agent template for a new session')
    .option('--json', 'print only the final answer, as JSON (for scripts)')
    .option('--wait <boolean>', 'false: print the accepted task and return at once', parseBoolean, true)
    .option('--max-turns <n>', 'model calls the agent may make', parseInteger)
    .option('--budget <usd>', 'most this task may spend, in USD', parsePositiveNumber)
    .option('--timeout <ms>', 'wall-clock limit in ms', parseInteger)
    .option('--output-schema <file>', 'JSON Schema file the output must match')
    .option('--idempotency-key <key>', 'a retry with the same key answers the first task')
    .action(async (sessionId: string, message: string, options: TaskOptions, command: Command) => {
      const client = clientOf(command);
      const idempotencyKey = options.idempotencyKey ?? `cli-${randomUUID()}`;
      const accepted = await client.submitTask(taskBody(sessionId, message, options), { idempotencyKey });
      if (!options.wait) {
        if (options.json) printJson(accepted);
        else process.stdout.write(`${accepted.taskId} ${accepted.status} (session ${accepted.sessionId})\n`);
        return;
      }
      const signal = interruptSignal();
      const renderer = options.json ? undefined : new FrameRenderer();
      for await (const frame of client.taskEvents(accepted.taskId, { signal })) renderer?.render(frame);
      renderer?.finish();
      if (signal.aborted) {
        process.stderr.write(`\nStopped following; the task goes on. Abort it with: claude-runner abort --task ${accepted.taskId}\n`);
        throw new ExitCode(EXIT.interrupted);
      }
      const task = await client.getTask(accepted.taskId);
      if (options.json) printJson(answerOf(task));
      else printOutput(task);
      if (task.status !== 'succeeded') throw new ExitCode(EXIT.failed);
    });

  program
    .command('abort')
    .description('Abort a session\'s running and queued tasks (or one task with --task)')
    .argument('<id>', 'session id, or task id with --task')
    .option('--task', 'the id is a task id')
    .option('--json', 'print the answer as JSON')
    .action(async (id: string, options: { task?: boolean; json?: boolean }, command: Command) => {
      const client = clientOf(command);
      if (options.task) {
        const task = await client.abortTask(id);
        if (options.json) printJson(task);
        else process.stdout.write(`${task.taskId} ${task.status}\n`);
        return;
      }
      const outcome = await client.abortSession(id);
      if (options.json) printJson(outcome);
      else process.stdout.write(`${outcome.message}\n`);
    });
}
