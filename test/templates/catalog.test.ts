/** runner.json: the network allowlist entries a template may list. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTemplate } from '../../src/templates/catalog.ts';

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
