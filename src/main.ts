/**
 * `npm start`: reads the configuration, starts the runner, and shuts it down
 * gracefully on SIGTERM / SIGINT (running tasks get SHUTDOWN_GRACE_MS).
 */
import { createRunner } from './app.ts';
import { loadConfig } from './config.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}

const runner = await createRunner(config).catch((error: unknown) => {
  console.error(`claude-runner could not start: ${(error as Error).message}`);
  process.exit(1);
});

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    runner.logger.info({ signal }, 'signal received');
    runner.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        runner.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}

await runner.start().catch((error: unknown) => {
  runner.logger.error({ err: error }, 'claude-runner could not start');
  console.error(`claude-runner could not start: ${(error as Error).message}`);
  process.exit(1);
});
