/**
 * `npm test`: checks that the real components are there (Docker engine,
 * sandbox image), runs every test file with Node's test runner, then checks
 * that no test left a container behind.
 *
 *   npm test                       all tests
 *   npm test -- test/core          only files under test/core
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { globSync } from 'node:fs';
import Docker from 'dockerode';

const docker = new Docker();
const image = process.env.SANDBOX_IMAGE ?? 'claude-runner-sandbox:latest';
try {
  await docker.ping();
} catch {
  console.error('The Docker engine is not reachable (/var/run/docker.sock). Start it (e.g. `dockerd &`) or run .ci/run, which installs and starts it.');
  process.exit(1);
}
try {
  await docker.getImage(image).inspect();
} catch {
  console.error(`The sandbox image ${image} is missing: run \`npm run image\` (add -- --offline on a machine that cannot pull).`);
  process.exit(1);
}

const filters = process.argv.slice(2);
const files = globSync('test/**/*.test.ts').sort().filter((file) => filters.length === 0 || filters.some((f) => file.startsWith(f.replace(/^\.\//, ''))));
if (files.length === 0) {
  console.error(`No test files match ${filters.join(' ')}`);
  process.exit(1);
}
// Every runner a test starts carries this run's id in its runner id (test/support/harness.ts).
const run = randomBytes(2).toString('hex');
const result = spawnSync(process.execPath, ['--test', `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`, '--test-timeout=300000', ...files], {
  stdio: 'inherit',
  env: { ...process.env, CLAUDE_RUNNER_TEST_RUN: run },
});

// Whatever this run's tests created must be gone; other runs on the same engine are not touched.
// The first client's kept-alive connection sat idle through the whole run, and spawnSync blocked the event
// loop meanwhile: let it see that the engine closed it (else the next call writes to it: EPIPE), then ask anew.
await new Promise((resolve) => setTimeout(resolve, 200));
const engine = new Docker();
const leftovers = (await engine.listContainers({ all: true, filters: { label: ['dev.claude-runner.instance'] } }))
  .filter((c) => (c.Labels['dev.claude-runner.instance'] ?? '').startsWith(`t${run}`));
if (leftovers.length > 0) {
  const described = leftovers.map((c) => `${c.Names[0]} (runner ${c.Labels['dev.claude-runner.instance']}, session ${c.Labels['dev.claude-runner.session-id']}, ${c.State})`);
  console.error(`Tests left ${leftovers.length} container(s) behind: ${described.join('; ')}`);
  for (const c of leftovers) await engine.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  process.exit(1);
}
process.exit(result.status ?? 1);
