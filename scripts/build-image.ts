/**
 * `npm run image`: builds the sandbox image (image/Dockerfile) as
 * claude-runner-sandbox:latest (or SANDBOX_IMAGE / --tag).
 *
 *   npm run image                      # debian:bookworm-slim if present or pullable, else offline
 *   npm run image -- --base IMAGE      # any Debian-like base
 *   npm run image -- --offline         # base from Debian packages (debootstrap, needs root)
 *   npm run image -- --offline --rebuild-base
 *   npm run image -- --if-missing      # what `npm start` and `npm test` run first: build only
 *                                      # when the image is absent; without Docker, say so and go on
 */
import { Command } from 'commander';
import Docker from 'dockerode';
import { buildSandboxImage, DEFAULT_SANDBOX_IMAGE } from '../src/sandbox/docker/image.ts';

const program = new Command()
  .name('build-image')
  .description('Build the Claude Runner sandbox image.')
  .option('-t, --tag <name>', 'image name', process.env.SANDBOX_IMAGE ?? DEFAULT_SANDBOX_IMAGE)
  .option('--base <image>', 'base image (Debian-like); skips the automatic choice')
  .option('--offline', 'build the base from Debian packages with debootstrap (no registry needed)', false)
  .option('--rebuild-base', 'rebuild the offline base even if claude-runner-base:bookworm exists', false)
  .option('--rootfs <dir>', 'offline: import this already debootstrapped folder instead of running debootstrap')
  .option('--mirror <url>', 'offline: Debian mirror for debootstrap')
  .option('--pull-timeout <seconds>', 'how long to try pulling the default base before going offline', '20')
  .option('--if-missing', 'do nothing when the image exists; without a Docker engine, warn and exit 0', false)
  .parse();

const options = program.opts<{
  tag: string;
  base?: string;
  offline: boolean;
  rebuildBase: boolean;
  rootfs?: string;
  mirror?: string;
  pullTimeout: string;
  ifMissing: boolean;
}>();

if (options.ifMissing) {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch {
    console.warn('[image] the Docker engine is not reachable: tasks will fail until it runs (see README, Prerequisites).');
    process.exit(0);
  }
  const present = await docker.getImage(options.tag).inspect().then(() => true, () => false);
  if (present) process.exit(0);
  console.log(`[image] ${options.tag} is missing: building it once (about a minute)`);
}

const started = Date.now();
try {
  const result = await buildSandboxImage({
    tag: options.tag,
    base: options.base,
    offline: options.offline,
    rebuildBase: options.rebuildBase,
    rootfsDir: options.rootfs,
    mirror: options.mirror,
    pullTimeoutMs: Number(options.pullTimeout) * 1000,
    log: (line) => console.log(`[image] ${line}`),
  });
  console.log(
    `[image] done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.tag} ${result.imageId.slice(7, 19)} (base ${result.base}${result.baseBuilt ? ', built now' : ''})`,
  );
} catch (error) {
  console.error(`[image] failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
