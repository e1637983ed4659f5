/**
 * Signals to the agent's processes inside a sandbox, sent from inside it as
 * the agent user (one `sh` running the shell builtin `kill`: no fork, so it
 * works under a full pids limit):
 *  - signalGroup: a signal to one exec'd command's process group (exec-process.ts);
 *  - killAll: `kill -s KILL -- -1`, every process of the agent's uid,
 *    repeated until nothing is left so a fork bomb cannot outrun it; when
 *    that keeps failing, the container is restarted (files kept).
 *
 * Owns: how the driver kills what the agent runs. Must not touch: the relay
 * (another uid, which these signals cannot reach).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunnerError } from '../../core/errors.ts';
import type { SandboxHandle } from '../../core/ports/sandbox.ts';
import type { Capture } from './capture.ts';
import { isConflict, isNotFound } from './errors.ts';
import type { SandboxLogger } from './exec-process.ts';

/** Kills every process of the calling uid (the shell's builtin kill is not killed by kill -1). */
const KILL_ALL_SCRIPT = 'n=0; while kill -s KILL -- -1 2>/dev/null && [ "$n" -lt 50 ]; do n=$((n+1)); done; exit 0';
/** Signals a process group and its leader ($1 = signal name without SIG, $2 = pid). */
const SIGNAL_GROUP_SCRIPT = 'kill -s "$1" -- "-$2" "$2" 2>/dev/null; exit 0';

export interface AgentSignalsDeps {
  capture: Capture;
  agentUser: string;
  logger: SandboxLogger;
  toError(error: unknown, action: string, sessionKey: string): RunnerError;
  /** The last resort of killAll: the container restarted, and ready again. */
  restart(handle: SandboxHandle): Promise<void>;
}

export async function signalGroup(deps: AgentSignalsDeps, handle: SandboxHandle, pid: number, signal: NodeJS.Signals): Promise<void> {
  const command = ['/bin/sh', '-c', SIGNAL_GROUP_SCRIPT, 'sh', signal.replace(/^SIG/, ''), String(pid)];
  const result = await deps.capture({ containerId: handle.id, sessionKey: handle.sessionKey, command, user: deps.agentUser, timeoutMs: 10_000 });
  if (result.exitCode !== 0) throw new Error(`kill exited with ${result.exitCode}: ${result.stderr.trim()}`);
}

export async function killAll(deps: AgentSignalsDeps, handle: SandboxHandle): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const command = ['/bin/sh', '-c', KILL_ALL_SCRIPT];
      const result = await deps.capture({ containerId: handle.id, sessionKey: handle.sessionKey, command, user: deps.agentUser, timeoutMs: 15_000 });
      if (result.exitCode === 0) return;
      throw new Error(`exit code ${result.exitCode}: ${result.stderr.trim()}`);
    } catch (error) {
      const runnerError = deps.toError(error, 'kill the agent processes', handle.sessionKey);
      // not running or gone: there is nothing left to kill
      if (runnerError.code === 'SANDBOX_UNAVAILABLE' && (isConflict(error) || isNotFound(error))) return;
      if (attempt < 3) {
        await sleep(100 * attempt);
        continue;
      }
      // Last resort: restarting the container kills everything in it (files are kept;
      // the resource counters restart from zero).
      deps.logger.warn({ sessionKey: handle.sessionKey, err: runnerError.message }, 'sandbox: kill failed, restarting the container');
      try {
        await deps.restart(handle);
      } catch (restartError) {
        throw deps.toError(restartError, 'restart the container', handle.sessionKey);
      }
      return;
    }
  }
}
