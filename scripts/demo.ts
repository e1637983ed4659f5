/**
 * `npm run demo`: the whole product on one machine with no API key (scripted
 * model, mock Acme API, runner with the support-bot agent, a task shown live).
 * The same code as `claude-runner demo` (src/cli/demo.ts): Ctrl-C removes
 * everything it started. `npm run demo -- --once` exits after the example task.
 *   PORT (default 3456) the runner's port; DEMO_API_PORT (default 3457) the mock API's.
 */
import { runDemo } from '../src/cli/demo.ts';

process.exitCode = await runDemo({
  once: process.argv.includes('--once'),
  port: Number(process.env.PORT ?? 3456),
  apiPort: Number(process.env.DEMO_API_PORT ?? 3457),
});
process.exit();
