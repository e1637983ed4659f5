/**
 * Which network namespace a none or allowlist sandbox gets. Under runc, one
 * the runtime makes (ContainerConfig.hostsFile: a loopback and nothing else,
 * with the /etc/hosts written here), which spares every start Docker's
 * libnetwork hook; under any other runtime, Docker's `none` network as before
 * (gVisor's runsc brings no loopback up in a namespace Docker did not set up).
 * Decided once per driver, from the configured runtime or the engine's default.
 *
 * Owns: that decision and the hosts file. Must not touch: containers.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type Docker from 'dockerode';
import type { RunnerError } from '../../core/errors.ts';
import { SANDBOX_ETC_HOSTS } from './container-spec.ts';

export interface SandboxNamespacesOptions {
  docker: Docker;
  /** The configured OCI runtime; the engine's default when absent. */
  runtime: string | undefined;
  /** DockerSandboxDriverOptions.hostsFile (default: claude-runner-etc-hosts in the OS's temp folder). */
  hostsFile: string | undefined;
  toError(error: unknown, action: string): RunnerError;
}

export class SandboxNamespaces {
  readonly #docker: Docker;
  readonly #runtime: string | undefined;
  readonly #hostsFile: string;
  readonly #toError: SandboxNamespacesOptions['toError'];
  #decision: Promise<string | undefined> | undefined;
  #decided: { hostsFile: string | undefined } | undefined;

  constructor(options: SandboxNamespacesOptions) {
    this.#docker = options.docker;
    this.#runtime = options.runtime;
    this.#hostsFile = options.hostsFile ?? join(tmpdir(), 'claude-runner-etc-hosts');
    this.#toError = options.toError;
  }

  /** The hosts file when the runtime makes the namespace (written by then); undefined for Docker's `none` network. */
  resolve(): Promise<string | undefined> {
    this.#decision ??= this.#decide().then((hostsFile) => {
      this.#decided = { hostsFile };
      return hostsFile;
    }, (error: unknown) => {
      this.#decision = undefined; // asked again next time
      throw this.#toError(error, "prepare the sandboxes' network namespace");
    });
    return this.#decision;
  }

  /** What resolve() decided; before it has, what it would for the configured runtime, runc when none is. */
  get current(): string | undefined {
    if (this.#decided) return this.#decided.hostsFile;
    return (this.#runtime ?? 'runc') === 'runc' ? this.#hostsFile : undefined;
  }

  async #decide(): Promise<string | undefined> {
    const runtime = this.#runtime ?? ((await this.#docker.info()) as { DefaultRuntime?: string }).DefaultRuntime ?? 'runc';
    if (runtime !== 'runc') return undefined;
    // Whole or not at all, readable by the sandbox's users whatever this process's umask.
    await mkdir(dirname(this.#hostsFile), { recursive: true });
    const next = `${this.#hostsFile}.${randomBytes(4).toString('hex')}`;
    try {
      await writeFile(next, SANDBOX_ETC_HOSTS);
      await chmod(next, 0o644);
      await rename(next, this.#hostsFile);
    } catch (error) {
      await rm(next, { force: true });
      throw error;
    }
    return this.#hostsFile;
  }
}
