/**
 * One command running inside a sandbox, shaped like a child process (the
 * Agent SDK's SpawnedProcess): returned at once, while the Docker exec is
 * created and started behind it.
 *
 * - stdin: a buffer until the exec is attached, then piped into the hijacked
 *   socket; ending it half-closes the socket, which closes the process's stdin.
 * - stdout: the demultiplexed stdout frames (with backpressure on the socket);
 *   stderr frames go to onStderr. Docker's own error when the process cannot
 *   start (bad cwd...) comes as stdout: it is recognised and sent to onStderr.
 * - 'exit' fires exactly once on every path, after stdout ended: with the
 *   exec's ExitCode (or the signal that killed it); with (null, null) right
 *   after an 'error' when the process could not be started, or when its end
 *   could not be read within EXIT_TIMEOUT_MS of its stream closing (it is then
 *   killed, best effort). The Agent SDK, like Node's ChildProcess users,
 *   handles an 'exit' after an 'error'; a missing one would leave it waiting.
 * - kill(signal): the command is started through `/bin/sh -c` which writes its
 *   pid to stderr (one marker line, removed from the stream) and then `exec`s
 *   the command; every exec'd process is a session and group leader (runc
 *   calls setsid), so kill signals that process group from inside the sandbox
 *   (an exec of the shell builtin `kill` as the agent user). Killing the HTTP
 *   stream would not stop anything inside the container.
 */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import { PassThrough, Writable, type Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { SandboxProcess } from '../../core/ports/sandbox.ts';
import { RunnerError } from '../../core/errors.ts';

export interface SandboxLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const PID_MARKER = '\u001eclaude-runner-pid ';
/** Prints the shell's pid (which `exec` hands to the command) as a marker line on stderr. */
const WRAPPER_SCRIPT = `printf '${PID_MARKER.replace('\u001e', '\\036')}%s\\n' "$$" >&2 && exec "$@"`;

/** The argv actually executed for a command: the pid-reporting wrapper, then the command. */
export function wrapCommand(command: string[]): string[] {
  return ['/bin/sh', '-c', WRAPPER_SCRIPT, 'sh', ...command];
}

/** How long after its stream closed a process may still show as running before we give up on its exit code. */
const EXIT_TIMEOUT_MS = 5000;

function signalNumber(signal: string): number | undefined {
  return (osConstants.signals as Record<string, number>)[signal];
}

export interface ExecProcessDeps {
  docker: Docker;
  containerId: string;
  sessionKey: string;
  command: string[];
  user: string;
  cwd: string;
  env: Record<string, string>;
  onStderr?: (text: string) => void;
  logger: SandboxLogger;
  /** Sends a signal to a process group inside the sandbox. */
  signalGroup(pid: number, signal: NodeJS.Signals): Promise<void>;
  toError(error: unknown, action: string): RunnerError;
}

export class DockerExecProcess extends EventEmitter implements SandboxProcess {
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  #deps: ExecProcessDeps;
  #killed = false;
  #exitCode: number | null = null;
  #signalCode: NodeJS.Signals | null = null;
  #exited = false;
  #pid: number | null = null;
  #pendingSignal: NodeJS.Signals | null = null;
  #sentSignal: NodeJS.Signals | null = null;
  #markerDone = false;
  #markerBuffer = Buffer.alloc(0);
  #decoder = new StringDecoder('utf8');
  /**
   * stdout is held until the wrapper's pid line has arrived on stderr (it is
   * written before the command starts, so nothing is reordered). When Docker
   * cannot start the process at all (bad cwd...), its error arrives as stdout
   * and no pid line ever comes: that text then goes to onStderr instead.
   */
  #heldStdout: Buffer[] | null = [];
  #socket: Duplex | null = null;

  constructor(deps: ExecProcessDeps) {
    super();
    this.#deps = deps;
    // 'error' on stdin (write after exit) must not crash the server when nobody listens.
    this.stdin.on('error', () => {});
    void this.#start();
  }

  get killed(): boolean {
    return this.#killed;
  }

  get exitCode(): number | null {
    return this.#exitCode;
  }

  get signalCode(): NodeJS.Signals | null {
    return this.#signalCode;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.#exited) return false;
    if (signalNumber(signal) === undefined) throw new TypeError(`Unknown signal: ${signal}`);
    this.#killed = true;
    if (this.#pid === null) {
      // not started yet: sent as soon as the pid is known
      this.#pendingSignal = signal;
    } else {
      this.#send(signal);
    }
    return true;
  }

  #send(signal: NodeJS.Signals): void {
    const pid = this.#pid;
    if (pid === null || this.#exited) return;
    this.#sentSignal = signal;
    this.#deps.signalGroup(pid, signal).catch((error: unknown) => {
      this.#deps.logger.warn({ sessionKey: this.#deps.sessionKey, pid, signal, err: (error as Error).message }, 'sandbox: signal not delivered');
    });
  }

  async #start(): Promise<void> {
    const { docker, containerId, command, user, cwd, env } = this.#deps;
    let exec: Docker.Exec;
    try {
      await Promise.resolve(); // errors reach the listeners attached after exec() returned
      if (command.length === 0) throw new RunnerError('INTERNAL', 'No command to run in the sandbox.');
      const envList = Object.entries(env).map(([key, value]) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || typeof value !== 'string' || value.includes('\0')) {
          throw new RunnerError('INVALID_ENV', `Environment variable ${JSON.stringify(key)} cannot be passed to the sandbox.`);
        }
        return `${key}=${value}`;
      });
      exec = await docker.getContainer(containerId).exec({
        Cmd: wrapCommand(command),
        User: user,
        WorkingDir: cwd,
        Env: envList,
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
      });
      const socket = (await exec.start({ hijack: true, stdin: true })) as Duplex;
      this.#attach(socket, exec);
    } catch (error) {
      this.#fail(error);
    }
  }

  /**
   * Its container stopped: the stream is closed, and the exit follows. Some
   * runtimes (gVisor) leave an exec's stream open after its container stops,
   * which would hold the process and the runner open for good.
   */
  containerStopped(): void {
    this.#socket?.destroy();
  }

  #attach(socket: Duplex, exec: Docker.Exec): void {
    this.#socket = socket;
    const stdout = this.stdout;
    const stdoutSink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.#heldStdout) {
          // before the wrapper's pid line: see #heldStdout
          this.#heldStdout.push(chunk);
          return callback();
        }
        if (stdout.write(chunk)) return callback();
        socket.pause();
        stdout.once('drain', () => {
          socket.resume();
          callback();
        });
      },
    });
    const stderrSink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.#onStderrChunk(chunk);
        callback();
      },
    });
    this.#deps.docker.modem.demuxStream(socket, stdoutSink, stderrSink);
    socket.on('error', (error: Error) => {
      this.#deps.logger.debug({ sessionKey: this.#deps.sessionKey, err: error.message }, 'sandbox: exec stream error');
    });
    let ended = false;
    const onEnd = () => {
      if (ended) return;
      ended = true;
      this.stdin.unpipe(socket);
      this.stdin.resume(); // later writes are dropped, as to an exited process
      void this.#finish(exec, stdoutSink);
    };
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    // Writes made before this point were buffered by the PassThrough; ending
    // stdin ends the socket's writable side (half-close -> process stdin EOF).
    this.stdin.pipe(socket);
  }

  #onStderrChunk(chunk: Buffer): void {
    let data = chunk;
    if (!this.#markerDone) {
      this.#markerBuffer = Buffer.concat([this.#markerBuffer, chunk]);
      const text = this.#markerBuffer.toString('latin1');
      const newline = text.indexOf('\n');
      const prefixOk = PID_MARKER.startsWith(text.slice(0, PID_MARKER.length)) || text.startsWith(PID_MARKER);
      if (!prefixOk) {
        this.#markerDone = true; // no wrapper output: plain stderr
        data = this.#markerBuffer;
      } else if (newline === -1) {
        if (this.#markerBuffer.length < 64) return; // wait for the rest of the line
        this.#markerDone = true;
        data = this.#markerBuffer;
      } else {
        this.#markerDone = true;
        const pid = Number(text.slice(PID_MARKER.length, newline));
        data = this.#markerBuffer.subarray(newline + 1);
        if (Number.isInteger(pid) && pid > 1) {
          this.#pid = pid;
          if (this.#pendingSignal) {
            const signal = this.#pendingSignal;
            this.#pendingSignal = null;
            this.#send(signal);
          }
        }
      }
      this.#markerBuffer = Buffer.alloc(0);
      this.#releaseStdout(true);
      if (data.length === 0) return;
    }
    const text = this.#decoder.write(data);
    if (text && this.#deps.onStderr) {
      try {
        this.#deps.onStderr(text);
      } catch (error) {
        this.#deps.logger.warn({ err: (error as Error).message }, 'sandbox: onStderr threw');
      }
    }
  }

  /** Ends the holding of stdout: to stdout (the command ran) or to onStderr (Docker's own error). */
  #releaseStdout(toStdout: boolean): void {
    const held = this.#heldStdout;
    if (!held) return;
    this.#heldStdout = null;
    if (held.length === 0) return;
    if (toStdout) {
      for (const chunk of held) this.stdout.write(chunk);
    } else {
      this.#markerDone = true;
      this.#onStderrChunk(Buffer.concat(held));
    }
  }

  async #finish(exec: Docker.Exec, stdoutSink: Writable): Promise<void> {
    // everything demultiplexed has reached stdout: end it before 'exit'
    await new Promise<void>((resolve) => stdoutSink.end(resolve));
    if (!this.#markerDone && this.#markerBuffer.length > 0) {
      // a partial first stderr line and nothing more: plain stderr
      this.#markerDone = true;
      const rest = this.#markerBuffer;
      this.#markerBuffer = Buffer.alloc(0);
      this.#releaseStdout(true);
      this.#onStderrChunk(rest);
    }
    this.#releaseStdout(false);
    this.stdout.end();
    const ended = await this.#exitStatus(exec);
    if (ended === 'unknown') {
      this.#giveUp();
      return;
    }
    let code: number | null = ended === 'gone' ? null : ended;
    let signal: NodeJS.Signals | null = null;
    if (ended === 'gone') {
      signal = 'SIGKILL'; // the container (and its execs) was removed under us
    } else if (code !== null && this.#sentSignal && code > 128) {
      // Docker reports a process killed by signal N as exit code 128+N
      const sent = signalNumber(this.#sentSignal);
      if (code === 128 + (sent ?? -1)) signal = this.#sentSignal;
      else if (code === 128 + osConstants.signals.SIGKILL) signal = 'SIGKILL';
      if (signal) code = null;
    }
    this.#emitExit(code, signal);
  }

  /** The exec's exit code; 'gone' when its container was removed; 'unknown' when it still runs at the deadline. */
  async #exitStatus(exec: Docker.Exec): Promise<number | null | 'gone' | 'unknown'> {
    const abortSignal = AbortSignal.timeout(EXIT_TIMEOUT_MS);
    for (let delay = 5; ; delay = Math.min(delay * 2, 500)) {
      try {
        const info = await exec.inspect({ abortSignal });
        if (!info.Running) return info.ExitCode ?? null;
      } catch {
        return abortSignal.aborted ? 'unknown' : 'gone';
      }
      if (abortSignal.aborted) return 'unknown';
      await sleep(delay, undefined, { signal: abortSignal }).catch(() => {});
    }
  }

  /**
   * The stream closed but Docker still shows the process running (the
   * connection to the engine dropped, or the engine is stuck): nobody reads
   * it any more, so it is killed (best effort) and reported as an error, then
   * an exit with no code.
   */
  #giveUp(): void {
    const timeoutMs = EXIT_TIMEOUT_MS;
    const pid = this.#pid;
    if (pid !== null) {
      this.#deps.signalGroup(pid, 'SIGKILL').catch((error: unknown) => {
        this.#deps.logger.warn({ sessionKey: this.#deps.sessionKey, pid, err: (error as Error).message }, 'sandbox: could not kill a process whose stream closed');
      });
    }
    const error = new RunnerError(
      'SANDBOX_UNAVAILABLE',
      `A process in the sandbox of session ${this.#deps.sessionKey} still ran ${timeoutMs} ms after its output stream closed; ${pid !== null ? 'it was killed and ' : ''}its exit code is unknown.`,
    );
    this.#deps.logger.warn({ sessionKey: this.#deps.sessionKey, pid, timeoutMs }, 'sandbox: exec stream closed but the process still runs');
    try {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    } finally {
      this.#emitExit(null, null);
    }
  }

  #emitExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#exitCode = code;
    this.#signalCode = signal;
    const tail = this.#decoder.end();
    if (tail && this.#deps.onStderr) {
      try {
        this.#deps.onStderr(tail);
      } catch (error) {
        this.#deps.logger.warn({ err: (error as Error).message }, 'sandbox: onStderr threw');
      }
    }
    this.emit('exit', code, signal);
    this.emit('close', code, signal);
  }

  #fail(error: unknown): void {
    if (this.#exited) return;
    const runnerError = this.#deps.toError(error, 'start a process');
    this.#deps.logger.warn({ sessionKey: this.#deps.sessionKey, code: runnerError.code, err: runnerError.message }, 'sandbox: exec failed');
    this.stdin.resume();
    this.stdout.end();
    try {
      if (this.listenerCount('error') > 0) this.emit('error', runnerError);
    } finally {
      this.#emitExit(null, null);
    }
  }
}

/** The exec'd processes of each session, so a stop of its container ends them all (see containerStopped). */
export class SessionProcesses {
  #bySession = new Map<string, Set<DockerExecProcess>>();

  track(sessionKey: string, process: DockerExecProcess): DockerExecProcess {
    let set = this.#bySession.get(sessionKey);
    if (!set) this.#bySession.set(sessionKey, (set = new Set()));
    set.add(process);
    process.once('exit', () => {
      set.delete(process);
      if (set.size === 0 && this.#bySession.get(sessionKey) === set) this.#bySession.delete(sessionKey);
    });
    return process;
  }

  containerStopped(sessionKey: string): void {
    for (const process of this.#bySession.get(sessionKey) ?? []) process.containerStopped();
  }
}
