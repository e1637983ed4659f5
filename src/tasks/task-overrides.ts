/**
 * What a task may change of its template at submit: the model (one of the
 * template's `models`) and its limits, lowered only. Refusals are
 * OVERRIDE_NOT_ALLOWED naming the field and the limit.
 *
 * Owns: the override rules. Must not touch: the store or the running task.
 */
import { RunnerError } from '../core/errors.ts';
import type { TaskOptions } from '../core/model.ts';
import type { AgentTemplate } from '../templates/catalog.ts';

/** The operator's values for a template that sets none: MAX_TURNS (a default), TASK_TIMEOUT_MS and MAX_BUDGET_USD (caps). */
export interface OperatorTaskLimits {
  maxTurns: number;
  timeoutMs: number;
  budgetUsd: number | undefined;
}

/**
 * The task's options, checked. The template's timeout is fixed here when the
 * task names none: the task's timer starts before the template is read again.
 */
export function effectiveOptions(options: TaskOptions, template: AgentTemplate, operator: OperatorTaskLimits): TaskOptions {
  if (options.model !== undefined) {
    const allowed = template.models;
    if (allowed === undefined || !allowed.includes(options.model)) {
      throw new RunnerError('OVERRIDE_NOT_ALLOWED',
        `model: "${options.model}" is not allowed by agent template "${template.name}"${allowed ? ` (allowed: ${allowed.join(', ')})` : ' (it lists no models in runner.json)'}.`,
        { field: 'model', allowed: allowed ?? [] });
    }
  }
  const limits = {
    maxTurns: template.maxTurns ?? operator.maxTurns,
    timeoutMs: template.timeoutMs ?? operator.timeoutMs,
    budgetUsd: template.budgetUsd ?? operator.budgetUsd,
  };
  for (const field of ['maxTurns', 'timeoutMs', 'budgetUsd'] as const) {
    const asked = options[field];
    const limit = limits[field];
    if (asked !== undefined && limit !== undefined && asked > limit) {
      throw new RunnerError('OVERRIDE_NOT_ALLOWED', `${field}: ${asked} is above the limit of ${limit} (a task can only lower it).`, { field, limit });
    }
  }
  return options.timeoutMs === undefined && template.timeoutMs !== undefined ? { ...options, timeoutMs: template.timeoutMs } : options;
}
