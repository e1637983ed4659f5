/** The README's configuration table and the variables the runner reads agree. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configVariables, loadConfig, readyPoolDefault } from '../../src/config.ts';
import { ROOT } from '../support/harness.ts';

test('every configuration variable is in the README table, and the table names no other', () => {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## API'));
  const documented = new Set([...section.matchAll(/^\| (`[A-Z_]+`(?: \/ `[A-Z_]+`)*) \|/gm)].flatMap((m) => m[1]!.match(/[A-Z_]+/g)!));
  const missing = configVariables.filter((v) => !documented.has(v));
  const extra = [...documented].filter((v) => !configVariables.includes(v));
  assert.deepEqual(missing, [], 'variables missing from the README');
  assert.deepEqual(extra, [], 'README rows for variables the runner does not read');
});

test('the defaults start a runner with nothing set, on loopback', () => {
  const config = loadConfig({});
  assert.equal(config.port, 3456);
  assert.equal(config.host, '127.0.0.1');
  assert.ok(config.dataDir.endsWith('/data'));
  assert.ok(config.agentDir.endsWith('/agent'));
});

test('without API keys a remote HOST is refused and said so; bad values are a clear error', () => {
  const config = loadConfig({ HOST: '0.0.0.0' });
  assert.equal(config.host, '127.0.0.1');
  assert.match(config.warnings.join('\n'), /No API_KEYS/);
  assert.equal(loadConfig({ HOST: '0.0.0.0', API_KEYS: 'k-123456789' }).host, '0.0.0.0');
  assert.throws(() => loadConfig({ PORT: 'eighty' }), /PORT/);
  assert.throws(() => loadConfig({ SANDBOX_MEMORY: 'lots' }), /SANDBOX_MEMORY/);
});

test('READY_POOL_SIZE: sized to the machine unless set; bounded by live agents and memory', () => {
  const GiB = 1024 ** 3;
  assert.equal(readyPoolDefault(8, 2, 24 * GiB), 1);
  assert.equal(readyPoolDefault(8, 8, 24 * GiB), 2);
  assert.equal(readyPoolDefault(3, 8, 24 * GiB), 0, 'fewer than 4 live agents: none');
  assert.equal(readyPoolDefault(8, 8, 1.5 * GiB), 0, 'under 2 GB of memory: none');
  assert.equal(loadConfig({ READY_POOL_SIZE: '3' }).limits.readyPoolSize, 3);
  assert.equal(loadConfig({ READY_POOL_SIZE: '0' }).limits.readyPoolSize, 0);
  assert.throws(() => loadConfig({ READY_POOL_SIZE: '99' }), /READY_POOL_SIZE/);
});
