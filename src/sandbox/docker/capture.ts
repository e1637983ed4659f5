/**
 * Exec-and-capture: runs a short command in a container and collects its
 * output and exit code. The driver's own commands (readiness probe, kill,
 * signalling a process group, counter reads) use it; the agent's processes
 * go through exec-process.ts instead.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Writable, type Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';

export interface CaptureResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export interface CaptureRequest {
  containerId: string;
  sessionKey: string;
  command: string[];
  /** "uid:gid" the command runs as. */
  user: string;
  timeoutMs: number;
}

/** Runs a command in a container, bound to one Docker client. */
export type Capture = (request: CaptureRequest) => Promise<CaptureResult>;

/**
 * Runs a short command in the container and collects its output. Every
 * Docker call of it (exec create, start, the stream, inspect) shares one
 * deadline: a stuck engine makes it fail with SANDBOX_UNAVAILABLE, not hang.
 */
export function capture(docker: Docker, request: CaptureRequest): Promise<CaptureResult> {
  const { containerId, sessionKey, command, user, timeoutMs } = request;
  const abort = new AbortController();
  const abortSignal = abort.signal;
  let socket: Duplex | null = null;
  const work = async (): Promise<CaptureResult> => {
    const exec = await docker.getContainer(containerId).exec({ Cmd: command, User: user, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false, abortSignal });
    const stream = (await exec.start({ hijack: true, stdin: false, abortSignal })) as Duplex;
    socket = stream;
    if (abortSignal.aborted) stream.destroy();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const sink = (target: Buffer[]) => new Writable({ write(chunk: Buffer, _e, cb) { target.push(chunk); cb(); } });
    docker.modem.demuxStream(stream, sink(out), sink(err));
    await new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', () => resolve());
    });
    let exitCode: number | null = null;
    for (let delay = 2; delay < 1000 && !abortSignal.aborted; delay *= 2) {
      const info = await exec.inspect({ abortSignal });
      if (!info.Running) {
        exitCode = info.ExitCode ?? null;
        break;
      }
      await sleep(delay);
    }
    return { exitCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  };
  return new Promise<CaptureResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      abort.abort();
      (socket as Duplex | null)?.destroy();
      reject(new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `Docker did not run \`${command[0]}\` in the sandbox of session ${sessionKey} within ${timeoutMs} ms: the engine is stuck or overloaded.`,
        { action: `run ${command[0]} in the sandbox`, timeoutMs },
      ));
    }, timeoutMs);
    work().then(
      (result) => { clearTimeout(timer); resolve(result); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}
