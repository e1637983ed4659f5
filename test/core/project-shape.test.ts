/**
 * The project's shape, checked: a fresh machine's Node (20) installs it with
 * no engine warning and runs no install script it does not need; no source
 * file passes 400 lines; the domain names nothing of Claude Code's own.
 */
import assert from 'node:assert/strict';
import { globSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import semver from 'semver';
import { ROOT } from '../support/harness.ts';

interface LockEntry { engines?: { node?: string } | string[]; hasInstallScript?: boolean; optional?: boolean }

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; allowScripts: Record<string, boolean> };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

test('Node 20 installs every locked package without an engine warning, as the README promises', () => {
  for (const version of ['20.0.0', '20.20.2', '24.0.0']) {
    assert.ok(semver.satisfies(version, pkg.engines.node), `engines.node ${pkg.engines.node} refuses ${version}`);
    for (const [path, entry] of Object.entries(lock.packages)) {
      const wanted = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (wanted && version.startsWith('20.')) assert.ok(semver.satisfies(version, wanted), `${path} wants node ${wanted}: EBADENGINE on ${version}`);
    }
  }
});

test('allowScripts runs the install script of `node` (it brings Node 24) and of nothing else, and names every package that has one', () => {
  const withScripts = Object.entries(lock.packages).filter(([, entry]) => entry.hasInstallScript).map(([path]) => path.replace(/^.*node_modules\//, ''));
  assert.deepEqual(Object.entries(pkg.allowScripts).filter(([, allowed]) => allowed).map(([name]) => name), ['node']);
  for (const name of withScripts) assert.ok(name in pkg.allowScripts, `${name} has an install script that allowScripts does not decide`);
});

test('no source file passes 400 lines', () => {
  const long = globSync('src/**/*.ts', { cwd: ROOT })
    .map((file) => ({ file, lines: readFileSync(join(ROOT, file), 'utf8').split('\n').length - 1 }))
    .filter(({ lines }) => lines > 400);
  assert.deepEqual(long, []);
});

test('the domain names nothing of Claude Code: its tools, settings and markers stay behind the runtime and gateway ports', () => {
  const domain = globSync('src/{core,tasks,sessions,events}/**/*.ts', { cwd: ROOT });
  assert.ok(domain.length > 10);
  for (const file of domain) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const word of ['WebSearch', 'CLAUDE_CODE_MAX_RETRIES', 'proxyEnv', '[truncated]', 'disallowedTools']) {
      assert.ok(!text.includes(word), `${file} names ${word}`);
    }
  }
});
