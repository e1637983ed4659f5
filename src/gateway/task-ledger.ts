/**
 * The gateway's ledger of open tasks: the token each task is reached by,
 * what it has spent, how many model calls it made, its budget and call
 * limit, and the slots its calls take upstream (p-limit, first come first
 * served).
 *
 * A token belongs to a session's sandbox, minted with its first task (or its
 * ready agent) and forgotten with the sandbox: it opens the Messages API only
 * while one of the session's tasks is open, only through the session's own
 * socket, and each call is that task's. So a live agent reads it once (no key
 * helper per model call), and a token saved by a tool is dead between tasks.
 *
 * Owns: tokens, spend and limits of open tasks. Must not touch: sockets or
 * the upstream connection; it reports through each TaskGrant's callbacks.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import { RunnerError } from '../core/errors.ts';
import { addUsage, emptyUsage, type TokenUsage } from '../core/model.ts';
import type { TaskGrant, TaskMeter } from '../core/ports/model-gateway.ts';
import type { ApiUsage } from '../pricing/prices.ts';

/** closeTask waits this long at most for cut calls to record their usage. */
const CLOSE_WAIT_MS = 10_000;

export interface Call {
  /** Ends the call now (the task is over); it still records what it metered. */
  cut(): void;
  /** Settles once the call has recorded its usage and let go of its slot. */
  done: Promise<void>;
}

export interface OpenTask {
  grant: TaskGrant;
  /** The hash of the session's token, which reaches this task while it is open. */
  tokenHash: string;
  usage: TokenUsage;
  costUsd: number;
  /** Calls that were metered. */
  modelCalls: number;
  /** Model calls counted against maxModelCalls: admitted, less those refused before or by the upstream. */
  countedCalls: number;
  limitReported: boolean;
  /** Connections of the sandbox the egress proxy refused while this task ran. */
  egressRefusals: number;
  closed: boolean;
  /** An answer of the task streamed text already (first_text is timed from the first one: metrics/hot-path.ts). */
  textSeen: boolean;
  /** Upstream slots: at most `concurrentCalls` of the task's calls at once. */
  slots: LimitFunction;
  calls: Set<Call>;
}

export interface MeteredCall {
  model: string;
  tokens: TokenUsage;
  usage: ApiUsage;
}

export interface TaskLedgerOptions {
  concurrentCalls: number;
  priceUsage(model: string, usage: ApiUsage): number;
  /** Registers a token with the redactor, so it never shows in logs or events. */
  registerSecret(sessionKey: string, token: string): void;
  logger: { warn(obj: object, msg?: string): void };
}

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class TaskLedger {
  private readonly options: TaskLedgerOptions;
  private readonly tasks = new Map<string, OpenTask>();
  private readonly byToken = new Map<string, OpenTask>();
  private readonly bySession = new Map<string, OpenTask>();
  /** Each attached session's token, as long as its sandbox lives. */
  private readonly sessionTokens = new Map<string, { token: string; hash: string }>();
  /** Sessions whose agent rehearses (rehearsal.ts): the gateway answers their token itself. */
  private readonly rehearsing = new Set<string>();

  constructor(options: TaskLedgerOptions) {
    this.options = options;
  }

  /** The task a token belongs to, if it is open. */
  byTokenOf(token: string): OpenTask | undefined {
    return this.byToken.get(hashToken(token));
  }

  /** The session's running task, if any. */
  runningIn(sessionKey: string): OpenTask | undefined {
    return this.bySession.get(sessionKey);
  }

  /** The session's sandbox is gone, and its agent with it: its token dies; the next sandbox gets a new one. */
  forgetSession(sessionKey: string): void {
    this.sessionTokens.delete(sessionKey);
    this.rehearsing.delete(sessionKey);
  }

  /** The token of an agent started before its session's first task (a ready session): it opens nothing until a task does. */
  async standby(sessionKey: string, socketDir: string): Promise<void> {
    await this.sessionToken(sessionKey, socketDir);
  }

  /** Until the returned function is called, the session's own token is answered by the gateway's rehearsal (it opens no task). */
  rehearse(sessionKey: string): () => void {
    this.rehearsing.add(sessionKey);
    return () => this.rehearsing.delete(sessionKey);
  }

  /** True when the token is this session's and the session rehearses. */
  rehearses(sessionKey: string, token: string): boolean {
    return this.rehearsing.has(sessionKey) && this.sessionTokens.get(sessionKey)?.hash === hashToken(token);
  }

  /** Opens the task: the session's token (minted and written to `socketDir/token` if new) reaches it until close. */
  async open(grant: TaskGrant, socketDir: string): Promise<{ token: string }> {
    const { token, hash } = await this.sessionToken(grant.sessionKey, socketDir);
    const task: OpenTask = {
      grant, tokenHash: hash, usage: emptyUsage(), costUsd: 0, modelCalls: 0, countedCalls: 0, limitReported: false, egressRefusals: 0, closed: false, textSeen: false,
      slots: pLimit(this.options.concurrentCalls), calls: new Set(),
    };
    this.tasks.set(grant.taskId, task);
    this.byToken.set(hash, task);
    this.bySession.set(grant.sessionKey, task);
    return { token };
  }

  private async sessionToken(sessionKey: string, socketDir: string): Promise<{ token: string; hash: string }> {
    const known = this.sessionTokens.get(sessionKey);
    if (known) return known;
    // The file first, the map after: a failed write must not leave a token that the sandbox never saw.
    const token = await this.mint(sessionKey, socketDir);
    const minted = { token, hash: hashToken(token) };
    this.sessionTokens.set(sessionKey, minted);
    return minted;
  }

  /** Mints a token and writes it to `socketDir/token`, where the sandbox's key helper reads it. */
  private async mint(sessionKey: string, socketDir: string): Promise<string> {
    const token = `crt_${randomBytes(24).toString('base64url')}`;
    this.options.registerSecret(sessionKey, token);
    const file = join(socketDir, 'token');
    try {
      await writeFile(`${file}.next`, token, { mode: 0o644 });
      await rename(`${file}.next`, file);
    } catch (error) {
      await rm(`${file}.next`, { force: true }).catch(() => undefined);
      throw error;
    }
    return token;
  }

  /** Revokes the task's token, cuts its calls, and returns its spend once they have recorded theirs. */
  async close(taskId: string): Promise<TaskMeter> {
    const task = this.tasks.get(taskId);
    if (!task) return { usage: emptyUsage(), costUsd: 0, modelCalls: 0 };
    this.tasks.delete(taskId);
    if (this.byToken.get(task.tokenHash) === task) this.byToken.delete(task.tokenHash);
    if (this.bySession.get(task.grant.sessionKey) === task) this.bySession.delete(task.grant.sessionKey);
    task.closed = true;
    const calls = [...task.calls];
    for (const call of calls) call.cut();
    // A cut call still records what it was billed so far: the totals wait for it (an aborted task reports its true cost).
    const settled = await Promise.race([Promise.all(calls.map((call) => call.done)).then(() => true), delay(CLOSE_WAIT_MS, false, { ref: false })]);
    if (!settled) this.options.logger.warn({ taskId, calls: task.calls.size }, 'model calls still open after the task closed; their usage is not in its total');
    return { usage: task.usage, costUsd: task.costUsd, modelCalls: task.modelCalls };
  }

  /** Why the call must be refused now (the budget is spent, or the model calls used up), or null. */
  refusal(task: OpenTask, metered: boolean): string | null {
    const budget = task.grant.budgetUsd;
    if (budget !== undefined && task.costUsd >= budget) return 'the task budget is spent';
    const max = task.grant.maxModelCalls;
    if (metered && task.countedCalls >= max) {
      this.reportLimit(task, new RunnerError('MAX_TURNS_REACHED', `The task reached its limit of ${max} model calls.`));
      return `claude-runner gateway: the task's limit of ${max} model calls is reached`;
    }
    return null;
  }

  /** Adds a metered call to the task's spend, tells the task, and reports a budget it reached. */
  record(task: OpenTask, call: MeteredCall): void {
    const costUsd = this.options.priceUsage(call.model, call.usage);
    task.usage = addUsage(task.usage, call.tokens);
    task.costUsd += costUsd;
    task.modelCalls += 1;
    this.notify(task, () => task.grant.onModelCall({ model: call.model, usage: call.tokens, costUsd }));
    const budget = task.grant.budgetUsd;
    if (budget !== undefined && task.costUsd >= budget) {
      this.reportLimit(task, new RunnerError('BUDGET_EXCEEDED', `The task spent $${task.costUsd.toFixed(4)} of its $${budget} budget.`));
    }
  }

  /** Once per task, the first limit it reaches; none after it closed (it is over already). */
  private reportLimit(task: OpenTask, error: RunnerError): void {
    if (task.limitReported || task.closed) return;
    task.limitReported = true;
    this.notify(task, () => task.grant.onLimitReached(error));
  }

  /** A callback that throws must not end the process from inside a socket event. */
  private notify(task: OpenTask, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.options.logger.warn({ taskId: task.grant.taskId, err: (error as Error).message }, 'a task grant callback threw');
    }
  }
}
