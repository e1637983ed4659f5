/**
 * Claude Code's permission prompts, turned into questions for a person: the
 * SDK's `canUseTool` callback, and the `settings.permissions` a template's
 * rules become.
 *
 * Owns: the translation both ways (AskUserQuestion's input and answers, a
 * permission prompt and its decision). Must not touch: tasks, events, HTTP;
 * it calls the task's `askHuman` and waits for its answer (the domain arms
 * the timeout: Claude Code's permission prompts have no deadline of their own).
 *
 * Verified against the real CLI (SDK 0.3.332, scripted model), with
 * permissionMode 'bypassPermissions' (the SDK's CLAUDE_SDK_CAN_USE_TOOL_SHADOWED
 * warning notwithstanding):
 * - AskUserQuestion is offered and routed to canUseTool; allowing it with
 *   `updatedInput: {...input, answers: {[question]: label}}` gives the model
 *   `Your questions have been answered: "Q"="label". ...`;
 * - a call matching `settings.permissions.ask` is routed to canUseTool; a
 *   denial's `message` reaches the model as an is_error tool_result;
 * - a call matching `settings.permissions.deny` is refused by the CLI itself;
 * - a call matching no rule runs without asking.
 */
import type { CanUseTool, PermissionResult } from '@anthropic-ai/claude-agent-sdk';
import type { InputQuestion } from '../../core/model.ts';
import type { AgentRunRequest } from '../../core/ports/agent-runtime.ts';

const QUESTION_TOOL = 'AskUserQuestion';

/**
 * The SDK warns at every start that canUseTool "will not be invoked" under
 * bypassPermissions. For what it is used for here (questions and `ask` rules)
 * it is invoked: test/questions proves it. The warning would only mislead an
 * operator reading the log, so that one code is dropped; every other passes.
 */
const SHADOWED_WARNING = 'CLAUDE_SDK_CAN_USE_TOOL_SHADOWED';
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const options = rest[0];
  if (options && typeof options === 'object' && (options as { code?: string }).code === SHADOWED_WARNING) return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

/** The `settings.permissions` block Claude Code reads the template's rules from (nothing when there are none). */
export function permissionSettings(rules: AgentRunRequest['permissions']): { permissions?: { ask: string[]; deny: string[] } } {
  if (!rules || (rules.ask.length === 0 && rules.deny.length === 0)) return {};
  return { permissions: { ask: [...rules.ask], deny: [...rules.deny] } };
}

function questionsOf(input: Record<string, unknown>): InputQuestion[] {
  const questions = Array.isArray(input.questions) ? input.questions : [];
  return questions.map((q: Record<string, unknown>) => ({
    question: String(q.question ?? ''),
    header: String(q.header ?? ''),
    options: Array.isArray(q.options)
      ? q.options.map((o: Record<string, unknown>) => ({ label: String(o.label ?? ''), description: String(o.description ?? '') }))
      : [],
    multiSelect: q.multiSelect === true,
  }));
}

/**
 * A canUseTool that asks the person behind the task running at that moment
 * (`current`: the live agent serves one task after another).
 */
export function humanCanUseTool(current: () => AgentRunRequest | undefined): CanUseTool {
  return async (toolName, input): Promise<PermissionResult> => {
    const request = current();
    if (!request) return { behavior: 'deny', message: 'No task is running to ask a person.' };
    if (toolName === QUESTION_TOOL) {
      const answer = await request.askHuman({ kind: 'question', questions: questionsOf(input), input });
      if (answer.kind !== 'question') return { behavior: 'deny', message: 'The question was not answered.' };
      return { behavior: 'allow', updatedInput: { ...input, answers: answer.answers } };
    }
    const answer = await request.askHuman({ kind: 'permission', tool: toolName, input });
    if (answer.kind === 'permission' && answer.decision === 'allow') return { behavior: 'allow', updatedInput: input };
    const reason = answer.kind === 'permission' && answer.message ? `: ${answer.message}` : '.';
    return { behavior: 'deny', message: `A person denied this ${toolName} call${reason}` };
  };
}
