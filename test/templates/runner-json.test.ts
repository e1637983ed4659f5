/** runner.json: every field parsed, and every bad field refused at load naming the template, the field and the reason. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTemplate, type OperatorCaps, TemplateCatalog } from '../../src/templates/catalog.ts';

const base = mkdtempSync(join(tmpdir(), 'runner-json-'));
after(() => rmSync(base, { recursive: true, force: true }));

const caps: OperatorCaps = { memoryBytes: 1024 ** 3, cpus: 1, pidsLimit: 256, taskTimeoutMs: 900_000, budgetUsd: 5 };

let n = 0;
function templateDir(runnerJson: unknown | string): string {
  const dir = mkdtempSync(join(base, `t${n++}-`));
  writeFileSync(join(dir, 'AGENTS.md'), '# Agent\n');
  writeFileSync(join(dir, 'runner.json'), typeof runnerJson === 'string' ? runnerJson : JSON.stringify(runnerJson));
  return dir;
}

function refused(runnerJson: unknown, expected: string): void {
  assert.throws(() => loadTemplate('support', templateDir(runnerJson), caps), (error: Error) => {
    assert.equal(error.message, `agent template support: runner.json: ${expected}`);
    return true;
  });
}

test('every field loads and is exposed on the template', () => {
  const template = loadTemplate('support', templateDir({
    model: 'claude-sonnet-4-5',
    models: ['claude-sonnet-4-5', 'claude-haiku-4-5'],
    maxTurns: 8,
    timeoutMs: 60_000,
    budgetUsd: 0.5,
    allowedTools: ['Read', 'Bash'],
    disallowedTools: ['Bash(rm:*)'],
    mcpServers: {
      calc: { command: '/workspace/mcp/calc.sh' },
      docs: { type: 'http', url: 'https://docs.example.com/mcp', headers: { authorization: 'Bearer x' } },
    },
    network: { mode: 'allowlist', allow: ['*.example.com'] },
    limits: { memory: '512m', cpus: 0.5, pids: 128 },
    webhook: 'https://hooks.example.com/runner',
    permissions: { ask: ['Bash(git push:*)', 'Write'], deny: ['mcp__x__y'] },
  }), caps);
  assert.equal(template.model, 'claude-sonnet-4-5');
  assert.deepEqual(template.models, ['claude-sonnet-4-5', 'claude-haiku-4-5']);
  assert.equal(template.maxTurns, 8);
  assert.equal(template.timeoutMs, 60_000);
  assert.equal(template.budgetUsd, 0.5);
  assert.deepEqual(template.toolRules, { offered: ['Read', 'Bash'], denied: ['Bash(rm:*)'] });
  assert.deepEqual(template.mcpServers.calc, { command: '/workspace/mcp/calc.sh' });
  assert.deepEqual(template.limits, { memoryBytes: 512 * 1024 ** 2, cpus: 0.5, pidsLimit: 128 });
  assert.equal(template.webhook, 'https://hooks.example.com/runner');
  assert.deepEqual(template.permissions, { ask: ['Bash(git push:*)', 'Write'], deny: ['mcp__x__y'] });
});

test('defaults: no runner.json fields gives empty tools, servers, limits and permissions; models defaults to model', () => {
  const bare = loadTemplate('bare', templateDir({}), caps);
  assert.deepEqual([bare.models, bare.toolRules, bare.mcpServers, bare.limits, bare.webhook, bare.permissions],
    [undefined, { offered: [], denied: [] }, {}, {}, undefined, { ask: [], deny: [] }]);
  assert.deepEqual(loadTemplate('one', templateDir({ model: 'm1' }), caps).models, ['m1']);
});

test('bad fields are refused naming the field and the reason', () => {
  refused('{ "maxTurns": ', 'invalid JSON: ' + (() => { try { JSON.parse('{ "maxTurns": '); } catch (e) { return (e as Error).message; } })());
  refused({ maxTurns: 0 }, 'maxTurns: expected a positive integer');
  refused({ readyPool: 17 }, 'readyPool: Too big: expected number to be <=16');
  refused({ readyPool: -1 }, 'readyPool: Too small: expected number to be >=0');
  refused({ maxTurns: 2.5 }, 'maxTurns: expected a positive integer');
  refused({ maxTurns: 'ten' }, 'maxTurns: expected a positive integer');
  refused({ timeoutMs: 1_000_000 }, "timeoutMs: 1000000 is above the operator's TASK_TIMEOUT_MS (900000)");
  refused({ budgetUsd: 6 }, "budgetUsd: 6 is above the operator's MAX_BUDGET_USD (5)");
  refused({ limits: { memory: '2g' } }, `limits.memory: ${2 * 1024 ** 3} is above the operator's SANDBOX_MEMORY (${1024 ** 3})`);
  refused({ limits: { cpus: 2 } }, "limits.cpus: 2 is above the operator's SANDBOX_CPUS (1)");
  refused({ limits: { pids: 1000 } }, "limits.pids: 1000 is above the operator's SANDBOX_PIDS (256)");
  refused({ limits: { memory: 'lots' } }, 'limits.memory: expected a size such as 512m, 2g or 1048576');
  refused({ model: 'a', models: ['b'] }, 'model: "a" is not one of models (b)');
  refused({ permissions: { ask: ['Bash(git:*'] } }, 'permissions.ask.0: expected a permission rule such as Write, Bash(git:*) or mcp__server__tool');
  refused({ permissions: { deny: ['rm -rf'] } }, 'permissions.deny.0: expected a permission rule such as Write, Bash(git:*) or mcp__server__tool');
  refused({ webhook: 'hooks.example.com/x' }, 'webhook: expected an absolute http(s) URL');
  refused({ webhook: 'ftp://hooks.example.com/x' }, 'webhook: expected an absolute http(s) URL');
  refused({ mcpServers: { 'bad name': { command: 'x' } } }, 'mcpServers.bad name: expected a name of letters, digits, _ or -');
  refused({ mcpServers: { docs: { type: 'http', url: 'https://docs.example.com/mcp' } }, network: { mode: 'allowlist', allow: ['api.example.com'] } },
    'mcpServers.docs.url: host docs.example.com:443 is not in network.allow');
  refused({ mcpServers: { docs: { type: 'sse', url: 'http://docs.example.com/sse' } } },
    'mcpServers.docs.url: a sse server needs network mode "allowlist" (with its host allowed) or "open"; the mode is "none"');
  refused({ unknownField: 1 }, ": Unrecognized key: \"unknownField\"");
});

test('http servers load when their host is allowed or the network is open', () => {
  const allowed = loadTemplate('a', templateDir({ mcpServers: { d: { type: 'http', url: 'http://host.docker.internal:3999/mcp' } }, network: { mode: 'allowlist', allow: ['host.docker.internal:3999'] } }), caps);
  assert.equal(allowed.mcpServers.d?.type, 'http');
  const open = loadTemplate('b', templateDir({ mcpServers: { d: { type: 'sse', url: 'https://x.example.org/sse' } }, network: { mode: 'open' } }), caps);
  assert.equal(open.mcpServers.d?.type, 'sse');
});

test('the catalog refuses a template above the operator caps at construction', () => {
  const folder = mkdtempSync(join(base, 'folder-'));
  const dir = templateDir({ limits: { memory: '4g' } });
  assert.throws(() => new TemplateCatalog(dir, undefined, folder, caps), /agent template default: runner.json: limits.memory: .* above the operator's SANDBOX_MEMORY/);
  // Without caps (unit use) only the schema applies.
  assert.equal(new TemplateCatalog(dir, undefined, folder).get('default').limits.memoryBytes, 4 * 1024 ** 3);
});

test('createRunner fails at start naming the template, the field and the operator limit', async () => {
  const { createRunner } = await import('../../src/app.ts');
  const { loadConfig } = await import('../../src/config.ts');
  const { testEnv, writeTemplate } = await import('../support/harness.ts');
  const agentDir = writeTemplate(join(base, 'start-agent'), { 'runner.json': { limits: { memory: '2g' } } });
  const config = loadConfig(testEnv({ DATA_DIR: join(base, 'start-data'), AGENT_DIR: agentDir, SANDBOX_MEMORY: '1g' }));
  await assert.rejects(createRunner(config), (error: Error) => {
    assert.equal(error.message, `agent template default: runner.json: limits.memory: ${2 * 1024 ** 3} is above the operator's SANDBOX_MEMORY (${1024 ** 3})`);
    return true;
  });
});
