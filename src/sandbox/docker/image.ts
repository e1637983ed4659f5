/**
 * Building the sandbox image (image/Dockerfile) through the Docker API.
 *
 * Base selection:
 *  - `base`: use that image as BASE_IMAGE (pulled by the engine only if absent);
 *  - `offline`: build `claude-runner-base:bookworm` from Debian packages with
 *    debootstrap and import it (reused when present unless `rebuildBase`);
 *  - neither: the default base (debian:bookworm-slim) when it is present or can
 *    be pulled within `pullTimeoutMs`, else the offline path.
 *
 * Programs (debootstrap, tar) run with execFile/spawn and an args array, never
 * through a shell. Used by scripts/build-image.ts (`npm run image`) and tests.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';

export const DEFAULT_SANDBOX_IMAGE = 'claude-runner-sandbox:latest';
export const DEFAULT_BASE_IMAGE = 'debian:bookworm-slim';
export const OFFLINE_BASE_IMAGE = 'claude-runner-base:bookworm';
/** Debian packages the sandbox needs (the Dockerfile installs the missing ones). */
export const SANDBOX_PACKAGES = [
  'bash', 'coreutils', 'curl', 'jq', 'git', 'ca-certificates', 'procps', 'socat', 'tini',
] as const;
/** The folder holding the Dockerfile (the build context). */
export const IMAGE_CONTEXT_DIR = fileURLToPath(new URL('../../../image/', import.meta.url));

/**
 * Left out of the imported rootfs to keep the base small: apt's downloaded
 * packages and lists (apt-get update fetches them again), man pages, locales.
 */
const ROOTFS_EXCLUDES = [
  './var/cache/apt/archives/*.deb',
  './var/cache/apt/*.bin',
  './var/lib/apt/lists/*_*',
  './usr/share/man/*',
  './usr/share/info/*',
  './usr/share/locale/*',
  './var/log/*.log',
  './var/log/apt/*',
];

export interface BuildImageOptions {
  docker?: Docker;
  /** Name of the image to build (default SANDBOX_IMAGE env or claude-runner-sandbox:latest). */
  tag?: string;
  /** Base image to build from (skips the automatic choice). */
  base?: string;
  /** Build the base from Debian packages with debootstrap (no registry needed). */
  offline?: boolean;
  /** Rebuild claude-runner-base:bookworm even when it exists. */
  rebuildBase?: boolean;
  /** Import this already debootstrapped folder instead of running debootstrap (offline path). */
  rootfsDir?: string;
  /** Debian mirror for debootstrap (default: debootstrap's own). */
  mirror?: string;
  /** How long to try pulling the default base before going offline (ms, default 20000). */
  pullTimeoutMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface BuildImageResult {
  tag: string;
  imageId: string;
  base: string;
  baseBuilt: boolean;
}

export class ImageBuildError extends Error {
  override name = 'ImageBuildError';
}

async function imageExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw error;
  }
}

/** Reads a progress stream (build, pull, import) to its end; throws on an error event. */
function followProgress(docker: Docker, stream: NodeJS.ReadableStream, log: (line: string) => void): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    let failure: string | null = null;
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: unknown[]) => {
        if (error) reject(error);
        else if (failure) reject(new ImageBuildError(failure));
        else resolve(output);
      },
      (event: { stream?: string; status?: string; progress?: string; error?: string; errorDetail?: { message?: string } }) => {
        if (event.error || event.errorDetail) {
          failure = event.errorDetail?.message ?? event.error ?? 'unknown error';
          log(`error: ${failure}`);
        } else if (event.stream) {
          const text = event.stream.replace(/\n$/, '');
          if (text.trim()) log(text);
        } else if (event.status && !event.progress) {
          log(event.status);
        }
      },
    );
  });
}

async function findProgram(name: string): Promise<string | null> {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

/** Runs a program (args array, no shell), streaming its output lines to log. */
function run(program: string, args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new ImageBuildError(`${path.basename(program)} failed (${signal ?? `exit ${code}`}):\n${tail.trim()}`));
    });
  });
}

/** Imports a root filesystem folder as an image (`tar -C dir -c . | docker import - name`). */
async function importRootfs(docker: Docker, dir: string, name: string, log: (line: string) => void): Promise<void> {
  const [repo, tag = 'latest'] = splitName(name);
  const tar = spawn('tar', ['-C', dir, '--numeric-owner', ...ROOTFS_EXCLUDES.map((p) => `--exclude=${p}`), '-c', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tarError = '';
  tar.stderr.on('data', (chunk: Buffer) => { tarError = (tarError + chunk.toString()).slice(-2000); });
  const tarDone = new Promise<void>((resolve, reject) => {
    tar.on('error', reject);
    tar.on('close', (code) => (code === 0 ? resolve() : reject(new ImageBuildError(`tar failed (exit ${code}): ${tarError.trim()}`))));
  });
  tarDone.catch(() => {}); // observed below
  const stream = await docker.importImage(tar.stdout, { repo, tag, changes: ['CMD ["/bin/bash"]'] } as Parameters<Docker['importImage']>[1]);
  await followProgress(docker, stream, log);
  await tarDone;
}

function splitName(name: string): [string, string | undefined] {
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  return colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, undefined];
}

/** Builds (or reuses) claude-runner-base:bookworm with debootstrap. */
export async function buildOfflineBase(
  docker: Docker,
  options: { rebuild?: boolean; rootfsDir?: string; mirror?: string; log?: (line: string) => void } = {},
): Promise<{ name: string; built: boolean }> {
  const log = options.log ?? (() => {});
  if (!options.rebuild && (await imageExists(docker, OFFLINE_BASE_IMAGE))) {
    log(`reusing base ${OFFLINE_BASE_IMAGE} (pass --rebuild-base to rebuild it)`);
    return { name: OFFLINE_BASE_IMAGE, built: false };
  }
  if (options.rootfsDir) {
    log(`importing the root filesystem ${options.rootfsDir} as ${OFFLINE_BASE_IMAGE}`);
    await importRootfs(docker, options.rootfsDir, OFFLINE_BASE_IMAGE, log);
    return { name: OFFLINE_BASE_IMAGE, built: true };
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new ImageBuildError(
      'Building the offline base needs root (debootstrap creates device nodes and sets file owners). ' +
        'Run `sudo npm run image -- --offline`, or give a base image that has a registry: `npm run image -- --base debian:bookworm-slim`.',
    );
  }
  const debootstrap = await findProgram('debootstrap');
  if (!debootstrap) {
    throw new ImageBuildError(
      'debootstrap is not installed: install it (`apt-get install -y debootstrap`), ' +
        'or give a base image from a registry: `npm run image -- --base debian:bookworm-slim`.',
    );
  }
  if (!(await findProgram('tar'))) throw new ImageBuildError('tar is not installed: install it (`apt-get install -y tar`).');
  const dir = await mkdtemp(path.join(tmpdir(), 'claude-runner-rootfs-'));
  try {
    log(`debootstrap bookworm into ${dir} (about a minute)`);
    const args = ['--variant=minbase', `--include=${SANDBOX_PACKAGES.join(',')}`, 'bookworm', dir];
    if (options.mirror) args.push(options.mirror);
    let packages = 0;
    await run(debootstrap, args, (line) => {
      // debootstrap is chatty: show its stages and a package count, not every package
      if (/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) /.test(line)) {
        if (++packages % 50 === 0) log(`  ... ${packages} package steps`);
      } else {
        log(line);
      }
    });
    log(`importing ${dir} as ${OFFLINE_BASE_IMAGE}`);
    await importRootfs(docker, dir, OFFLINE_BASE_IMAGE, log);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { name: OFFLINE_BASE_IMAGE, built: true };
}

/** Tries to pull an image within a time limit. */
export async function tryPull(docker: Docker, name: string, timeoutMs: number, log: (line: string) => void): Promise<boolean> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    log(`pulling ${name} (up to ${Math.round(timeoutMs / 1000)} s)`);
    const stream = await docker.pull(name, { abortSignal: signal });
    await followProgress(docker, stream, () => {});
    return await imageExists(docker, name);
  } catch (error) {
    log(`cannot pull ${name}: ${signal.aborted ? 'timed out' : (error as Error).message.trim()}`);
    return false;
  }
}

async function packageVersion(): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'dev';
  } catch {
    return 'dev';
  }
}

/** Builds the sandbox image; returns its name and id. */
export async function buildSandboxImage(options: BuildImageOptions = {}): Promise<BuildImageResult> {
  const docker = options.docker ?? new Docker();
  const log = options.log ?? (() => {});
  const tag = options.tag ?? process.env.SANDBOX_IMAGE ?? DEFAULT_SANDBOX_IMAGE;
  try {
    await docker.ping();
  } catch (error) {
    throw new ImageBuildError(
      `The Docker engine is not reachable (${(error as Error).message}). Start it (e.g. \`systemctl start docker\` or \`dockerd &\`) and check access to /var/run/docker.sock.`,
    );
  }

  let base: string;
  let baseBuilt = false;
  if (options.base) {
    base = options.base;
  } else if (options.offline) {
    ({ name: base, built: baseBuilt } = await buildOfflineBase(docker, { rebuild: options.rebuildBase, rootfsDir: options.rootfsDir, mirror: options.mirror, log }));
  } else if (await imageExists(docker, DEFAULT_BASE_IMAGE)) {
    base = DEFAULT_BASE_IMAGE;
  } else if (await tryPull(docker, DEFAULT_BASE_IMAGE, options.pullTimeoutMs ?? 20_000, log)) {
    base = DEFAULT_BASE_IMAGE;
  } else {
    log('no registry: building the base offline with debootstrap');
    ({ name: base, built: baseBuilt } = await buildOfflineBase(docker, { rebuild: options.rebuildBase, rootfsDir: options.rootfsDir, mirror: options.mirror, log }));
  }

  let previousId: string | null = null;
  try {
    previousId = (await docker.getImage(tag).inspect()).Id;
  } catch {
    previousId = null;
  }
  const version = await packageVersion();
  log(`building ${tag} from ${base} (image version ${version})`);
  const stream = await docker.buildImage(
    { context: IMAGE_CONTEXT_DIR, src: ['Dockerfile'] },
    { t: tag, buildargs: { BASE_IMAGE: base, IMAGE_VERSION: version }, rm: true, forcerm: true },
  );
  await followProgress(docker, stream, log);
  const imageId = (await docker.getImage(tag).inspect()).Id;
  if (previousId && previousId !== imageId) {
    // the old image is now untagged: drop it unless a container still uses it
    await docker.getImage(previousId).remove().then(
      () => log(`removed the previous image ${previousId.slice(7, 19)}`),
      () => {},
    );
  }
  log(`built ${tag} (${imageId.slice(7, 19)})`);
  return { tag, imageId, base, baseBuilt };
}

/** Builds the sandbox image only when it is missing (tests, first start). */
export async function ensureSandboxImage(options: BuildImageOptions = {}): Promise<{ tag: string; built: boolean }> {
  const docker = options.docker ?? new Docker();
  const tag = options.tag ?? process.env.SANDBOX_IMAGE ?? DEFAULT_SANDBOX_IMAGE;
  if (await imageExists(docker, tag)) return { tag, built: false };
  await buildSandboxImage({ ...options, docker, tag });
  return { tag, built: true };
}
