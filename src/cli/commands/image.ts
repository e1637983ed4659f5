/**
 * `claude-runner image build` and the image check of `serve`: the logic of
 * scripts/build-image.ts over src/sandbox/docker/image.ts, here so that the
 * packed CLI (which has no scripts/) can run it.
 */
import Docker from 'dockerode';
import { buildSandboxImage, DEFAULT_SANDBOX_IMAGE } from '../../sandbox/docker/image.ts';
import { printError } from '../output.ts';

export interface ImageBuildOptions {
  tag?: string;
  base?: string;
  offline?: boolean;
  rebuildBase?: boolean;
  rootfs?: string;
  mirror?: string;
  pullTimeout?: number;
  ifMissing?: boolean;
}

/** Builds the image; false when the build failed. With ifMissing, nothing when it exists or no engine runs. */
export async function buildImage(options: ImageBuildOptions): Promise<boolean> {
  const tag = options.tag ?? process.env.SANDBOX_IMAGE ?? DEFAULT_SANDBOX_IMAGE;
  if (options.ifMissing) {
    const docker = new Docker();
    const reachable = await docker.ping().then(() => true, () => false);
    if (!reachable) {
      process.stderr.write('[image] the Docker engine is not reachable: tasks will fail until it runs.\n');
      return true;
    }
    if (await docker.getImage(tag).inspect().then(() => true, () => false)) return true;
    process.stdout.write(`[image] ${tag} is missing: building it once (about a minute)\n`);
  }
  const started = Date.now();
  try {
    const result = await buildSandboxImage({
      tag,
      base: options.base,
      offline: Boolean(options.offline),
      rebuildBase: Boolean(options.rebuildBase),
      rootfsDir: options.rootfs,
      mirror: options.mirror,
      pullTimeoutMs: (options.pullTimeout ?? 20) * 1000,
      log: (line) => process.stdout.write(`[image] ${line}\n`),
    });
    process.stdout.write(`[image] done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.tag} ${result.imageId.slice(7, 19)} (base ${result.base}${result.baseBuilt ? ', built now' : ''})\n`);
    return true;
  } catch (error) {
    printError(`[image] failed: ${(error as Error).message}`);
    return false;
  }
}
