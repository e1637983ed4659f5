/**
 * Commands that run here rather than call a runner: `serve`, `demo`,
 * `image build`, `scripted-model`, `tools from-har`. Each imports what it
 * runs only when it runs, so the remote commands start fast and do not
 * load the server.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { ClaudeRunnerClient, StreamFrame } from '../../client/index.ts';
import { clientOf, EXIT, ExitCode, parseInteger } from '../context.ts';
import { colours, FrameRenderer } from '../output.ts';

/** What src/har/from-har.ts exports (written by another change; loaded lazily so the CLI works before it lands). */
interface ToolsFromHar {
  toolsFromHar(options: {
    harPath: string; agentDir: string; dryRun: boolean; keepSecrets?: boolean; client: ClaudeRunnerClient; onFrame?: (frame: StreamFrame) => void;
  }): Promise<{ files: { path: string; mode: number }[]; diff: string; written: boolean; redactions: number; sessionId: string; taskId: string }>;
}

/** Runs a module that parses process.argv itself (commander's .parse()), as if it had been started with `args`. */
async function runWithArgs(modulePath: string, name: string, args: string[]): Promise<void> {
  process.argv = [process.argv[0]!, name, ...args];
  await import(modulePath);
}

export function localCommands(program: Command): void {
  program
    .command('serve')
    .description('Start the runner (as `npm start`): configuration from the environment and .env')
    .option('--env-file <file>', 'read variables from this file first (default: .env when present)')
    .option('--no-image-check', 'do not build the sandbox image when it is missing')
    .action(async (options: { envFile?: string; imageCheck: boolean }) => {
      const envFile = options.envFile ?? (existsSync('.env') ? '.env' : undefined);
      if (envFile) process.loadEnvFile(resolve(envFile));
      if (options.imageCheck) {
        const { buildImage } = await import('./image.ts');
        await buildImage({ ifMissing: true });
      }
      await import('../../main.ts');
      // main.ts runs the server and exits on SIGINT / SIGTERM after a graceful shutdown.
      await new Promise(() => undefined);
    });

  program
    .command('demo')
    .description('Everything on this machine, no API key: scripted model, mock API, runner, a task live. Ctrl-C removes it all')
    .option('--once', 'stop after the example task')
    .option('--port <port>', 'the runner\'s port (0: any free one)', parseInteger, Number(process.env.PORT ?? 3456))
    .option('--api-port <port>', 'the mock Acme API\'s port (0: any free one)', parseInteger, 3457)
    .action(async (options: { once?: boolean; port: number; apiPort: number }) => {
      const { runDemo } = await import('../demo.ts');
      const code = await runDemo({ once: Boolean(options.once), port: options.port, apiPort: options.apiPort });
      if (code !== 0) throw new ExitCode(code);
    });

  const image = program.command('image').description('The sandbox image');
  image
    .command('build')
    .description('Build the sandbox image (image/Dockerfile)')
    .option('-t, --tag <name>', 'image name (default SANDBOX_IMAGE or claude-runner-sandbox:latest)')
    .option('--base <image>', 'base image (Debian-like); skips the automatic choice')
    .option('--offline', 'build the base from Debian packages with debootstrap (no registry needed)')
    .option('--rebuild-base', 'rebuild the offline base even if it exists')
    .option('--rootfs <dir>', 'offline: import this already debootstrapped folder instead of running debootstrap')
    .option('--mirror <url>', 'offline: Debian mirror for debootstrap')
    .option('--pull-timeout <seconds>', 'how long to try pulling the default base before going offline', parseInteger, 20)
    .option('--if-missing', 'do nothing when the image exists')
    .action(async (options: Record<string, unknown>) => {
      const { buildImage } = await import('./image.ts');
      if (!await buildImage(options)) throw new ExitCode(EXIT.failed);
    });

  program
    .command('scripted-model')
    .description('A scripted Anthropic Messages API server for offline runs (options: scripted-model --help)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'passed on: --port, --host, --script, --require-api-key, --help')
    .action(async (args: string[]) => {
      await runWithArgs(new URL('../../scripted-model/cli.ts', import.meta.url).href.replace(/\.ts$/, scriptExtension()), 'scripted-model', args);
      await new Promise(() => undefined);
    });

  const tools = program.command('tools').description('Make agent tools');
  tools
    .command('from-har')
    .description('Write tools/*.sh for an agent from a HAR recording of a web app (secrets redacted)')
    .argument('<file.har>', 'the HAR file')
    .requiredOption('--agent <dir>', 'the agent template folder to write into')
    .option('--dry-run', 'print the diff, write nothing')
    .option('--keep-secrets', 'keep tokens and cookies found in the HAR (they are redacted by default)')
    .action(async (harPath: string, options: { agent: string; dryRun?: boolean; keepSecrets?: boolean }, command: Command) => {
      const specifier = `../../har/from-har${scriptExtension()}`;
      let module: ToolsFromHar;
      try {
        module = await import(specifier) as ToolsFromHar;
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
        process.stderr.write('tools from-har is not available in this build.\n');
        throw new ExitCode(EXIT.failed);
      }
      const renderer = new FrameRenderer();
      const result = await module.toolsFromHar({
        harPath: resolve(harPath),
        agentDir: resolve(options.agent),
        dryRun: Boolean(options.dryRun),
        keepSecrets: Boolean(options.keepSecrets),
        client: clientOf(command),
        onFrame: (frame) => renderer.render(frame),
      });
      renderer.finish();
      if (options.dryRun) process.stdout.write(`${result.diff}\n`);
      else for (const file of result.files) process.stdout.write(`${colours.green('wrote')} ${file.path} ${colours.dim((file.mode & 0o777).toString(8))}\n`);
      process.stdout.write(colours.dim(`${result.redactions} secret(s) redacted · session ${result.sessionId} · task ${result.taskId}\n`));
    });
}

/** .ts when running from the source, .js when compiled. */
function scriptExtension(): string {
  return import.meta.url.endsWith('.ts') ? '.ts' : '.js';
}
