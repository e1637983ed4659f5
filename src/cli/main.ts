/**
 * The `claude-runner` command (bin/claude-runner.js starts it): commander
 * programs that talk to a runner through the typed client
 * (src/client), and a few that run things here (serve, demo, image build,
 * scripted-model, tools from-har). Owns argument parsing, output and exit
 * codes; must not reach into a runner's store or containers (only its API),
 * except `serve` and `demo`, which start one.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isClaudeRunnerError } from '../client/index.ts';
import { fileCommands } from './commands/files.ts';
import { localCommands } from './commands/local.ts';
import { sessionCommands } from './commands/sessions.ts';
import { taskCommands } from './commands/tasks.ts';
import { addGlobalOptions, EXIT, ExitCode } from './context.ts';
import { errorColours, printError } from './output.ts';

const HELP_FOOTER = `
Environment:
  CLAUDE_RUNNER_URL       the runner's address (default http://127.0.0.1:3456)
  CLAUDE_RUNNER_API_KEY   API key, when the runner has API_KEYS
  NO_COLOR                no colours (they are off anyway when stdout is not a terminal)

Exit codes:
  0    success
  1    the server answered an error, or the task did not succeed
  2    usage error (unknown command or option, missing argument)
  130  interrupted (Ctrl-C)

Examples:
  claude-runner demo
  claude-runner task user-1 "What can you do?"
  claude-runner task user-1 "Summarize report.pdf" --json | jq .output
  claude-runner tail user-1 --after 120
  claude-runner files put user-1 data/report.pdf ./report.pdf
`;

function packageVersion(): string {
  // Two levels up from src/cli and from dist/cli alike.
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

export function buildProgram(): Command {
  const program = new Command()
    .name('claude-runner')
    .description('Run Claude Code agents as a service, and talk to a running one.')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (text, write) => write(errorColours.red(text)) })
    // Usage errors exit 2, like other Unix tools; --help and --version exit 0.
    .exitOverride((error) => {
      throw error;
    })
    .addHelpText('after', HELP_FOOTER);
  addGlobalOptions(program);
  taskCommands(program);
  sessionCommands(program);
  fileCommands(program);
  localCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ExitCode) return error.code;
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (isClaudeRunnerError(error)) {
      if (error.code === 'NETWORK_ERROR') printError(`cannot reach the runner at ${program.opts<{ url: string }>().url}: ${error.message}`);
      else printError(`${error.code} (${error.status}): ${error.message}${error.requestId ? errorColours.dim(` [request ${error.requestId}]`) : ''}`);
      return EXIT.failed;
    }
    printError(error instanceof Error ? error.message : String(error));
    return EXIT.failed;
  }
}

// Server commands (serve, demo, scripted-model) never return here; a finished command exits at once
// (a kept-alive connection must not hold it), once what it wrote to a piped stdout has been flushed:
// `files get` of a large file into a pipe would otherwise lose its tail.
const code = await main(process.argv.slice(2));
process.stdout.write('', () => process.exit(code));
