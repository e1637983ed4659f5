/** runner.json: the network allowlist entries a template may list; built-in templates beside AGENT_DIR's. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { RunnerError } from '../../src/core/errors.ts';
import { BUILTIN_TEMPLATES_DIR, loadTemplate, TemplateCatalog } from '../../src/templates/catalog.ts';

const base = mkdtempSync(join(tmpdir(), 'runner-catalog-'));
after(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
function templateWithAllow(allow: unknown[]): string {
  const dir = mkdtempSync(join(base, `t${n++}-`));
  writeFileSync(join(dir, 'AGENTS.md'), '# Agent\n');
  writeFileSync(join(dir, 'runner.json'), JSON.stringify({ network: { mode: 'allowlist', allow } }));
  return dir;
}

test('wildcard entries load, with and without a port', () => {
  const allow = ['*.example.com', '*.example.com:8443', 'api.example.com', 'host.docker.internal:3457', '10.0.0.1:65535'];
  const template = loadTemplate('wild', templateWithAllow(allow));
  assert.deepEqual(template.network, { mode: 'allowlist', allow });
});

test('junk entries are refused, naming the entry and what is expected', () => {
  for (const entry of ['*', 'a b', 'host:999999', 'host:70000', 'host:0', '*example.com', 'a.*.com', 'http://api.example.com', 'api.example.com:', '']) {
    assert.throws(
      () => loadTemplate('junk', templateWithAllow(['ok.example.com', entry])),
      (error: Error) => error.message === 'agent template junk: runner.json: network.allow.1: expected host, host:port, *.domain or *.domain:port (port 1-65535)',
      JSON.stringify(entry),
    );
  }
});

test('built-in templates sit beside AGENT_DIR\'s: har-to-tools loads with no network, and never becomes the default', () => {
  const single = mkdtempSync(join(base, 'single-'));
  writeFileSync(join(single, 'AGENTS.md'), '# Agent\n');
  const catalog = new TemplateCatalog(single);
  assert.deepEqual(catalog.names(), ['default', 'har-to-tools']);
  const builtin = catalog.get('har-to-tools');
  assert.equal(builtin.dir, join(BUILTIN_TEMPLATES_DIR, 'har-to-tools'));
  assert.deepEqual(builtin.network, { mode: 'none', allow: [] });
  assert.match(builtin.agentsMd, /out\/tools\/<name>\.sh/);
  assert.notEqual(builtin.outputMd, null);
  // AGENT_DIR's one template is still the default: the built-in does not make the choice ambiguous.
  assert.equal(catalog.pick(undefined).name, 'default');
});

test('the operator\'s template of the same name wins over the built-in', () => {
  const folder = mkdtempSync(join(base, 'folder-'));
  for (const name of ['support', 'har-to-tools']) {
    mkdirSync(join(folder, name));
    writeFileSync(join(folder, name, 'AGENTS.md'), `# ${name} of the operator\n`);
  }
  const catalog = new TemplateCatalog(folder);
  assert.deepEqual(catalog.names(), ['har-to-tools', 'support']);
  assert.equal(catalog.get('har-to-tools').agentsMd, '# har-to-tools of the operator\n');
  assert.equal(catalog.get('har-to-tools').network.mode, undefined);
  // Several operator templates: a session must still name one.
  assert.throws(() => catalog.pick(undefined), (error: RunnerError) => error.code === 'AGENT_REQUIRED');
});

test('DEFAULT_AGENT cannot name a built-in; an unknown name lists the built-ins too', () => {
  const single = mkdtempSync(join(base, 'single-'));
  writeFileSync(join(single, 'AGENTS.md'), '# Agent\n');
  assert.throws(() => new TemplateCatalog(single, 'har-to-tools'), /DEFAULT_AGENT har-to-tools is not a template/);
  assert.throws(() => new TemplateCatalog(single).get('nope'),
    (error: RunnerError) => error.code === 'AGENT_NOT_FOUND' && error.message.includes('default, har-to-tools'));
});
