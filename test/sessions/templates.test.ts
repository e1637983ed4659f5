/**
 * Several agent templates in AGENT_DIR: the `agent` field of a session's
 * first task binds it to one (its workspace is a copy of that template and
 * its prompt is that template's AGENTS.md); without it the choice is refused
 * as ambiguous; a later task naming another template is a mismatch.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';

describe('several agent templates', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({
      templates: {
        billing: { 'AGENTS.md': '# Billing agent\nYou are the billing-agent-marker.\n', 'billing.txt': 'invoices\n' },
        support: { 'AGENTS.md': '# Support agent\nYou are the support-agent-marker.\n', 'tools/faq.sh': '#!/bin/sh\necho faq-answer\n' },
      },
      rules: [
        rule('run-the-faq-tool', bash('./tools/faq.sh'), text('faq done')),
        rule('template-hello', text('hi')),
      ],
    });
  });
  after(async () => h?.close());

  const submit = (json: Record<string, unknown>) => h.api('/task', { method: 'POST', json });
  const systemOf = (prompt: string) => JSON.stringify((h.model.findRequests({ prompt })[0]?.body as { system?: unknown })?.system ?? '');
  const workspaceOf = async (id: string) => join(h.dataDir, 'sessions', (await h.runner.store.findSession('default', id))!.key, 'workspace');

  test('without "agent" a new session is refused as ambiguous, and nothing is created', async () => {
    const res = await submit({ sessionId: 'undecided', message: 'template-hello undecided' });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'AGENT_REQUIRED');
    assert.match(res.body.error.message, /billing, support/);
    assert.equal((await h.api('/session/undecided')).status, 404);
    const unknown = await submit({ sessionId: 'undecided', message: 'template-hello', agent: 'sales' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'AGENT_NOT_FOUND');
    assert.equal((await h.api('/session/undecided')).status, 404);
    assert.equal(h.model.findRequests({ prompt: 'template-hello undecided' }).length, 0);
  });

  test('"agent" binds the session: its workspace and system prompt come from that template', async () => {
    const support = await submit({ sessionId: 'sup', message: 'run-the-faq-tool', agent: 'support' });
    assert.equal(support.status, 200, JSON.stringify(support.body));
    assert.match(JSON.stringify(h.model.findRequests({ prompt: 'run-the-faq-tool' })[1]?.body), /faq-answer/);
    assert.match(systemOf('run-the-faq-tool'), /support-agent-marker/);
    assert.doesNotMatch(systemOf('run-the-faq-tool'), /billing-agent-marker/);
    const supWs = await workspaceOf('sup');
    assert.ok(existsSync(join(supWs, 'tools', 'faq.sh')));
    assert.equal(existsSync(join(supWs, 'billing.txt')), false);

    const billing = await submit({ sessionId: 'bill', message: 'template-hello billing', agent: 'billing' });
    assert.equal(billing.status, 200);
    assert.match(systemOf('template-hello billing'), /billing-agent-marker/);
    assert.equal(readFileSync(join(await workspaceOf('bill'), 'billing.txt'), 'utf8'), 'invoices\n');

    const sessions = (await h.api('/sessions')).body;
    assert.equal(sessions.find((s: any) => s.sessionId === 'sup').agent, 'support');
    assert.equal(sessions.find((s: any) => s.sessionId === 'bill').agent, 'billing');
  });

  test('later tasks may omit "agent" or repeat it; naming another template is AGENT_MISMATCH', async () => {
    const omitted = await submit({ sessionId: 'bill', message: 'template-hello again' });
    assert.equal(omitted.status, 200);
    assert.match(systemOf('template-hello again'), /billing-agent-marker/);
    const same = await submit({ sessionId: 'bill', message: 'template-hello same', agent: 'billing' });
    assert.equal(same.status, 200);
    const other = await submit({ sessionId: 'bill', message: 'template-hello other', agent: 'support' });
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'AGENT_MISMATCH');
    assert.match(other.body.error.message, /billing/);
    assert.equal(h.model.findRequests({ prompt: 'template-hello other' }).length, 0);
    // A reset keeps the binding.
    const reset = await h.api('/session/bill/reset', { method: 'POST' });
    assert.equal(reset.body.agent, 'billing');
    assert.equal(readFileSync(join(await workspaceOf('bill'), 'billing.txt'), 'utf8'), 'invoices\n');
  });
});

describe('DEFAULT_AGENT with several templates', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      templates: { alpha: { 'AGENTS.md': 'alpha-marker' }, beta: { 'AGENTS.md': 'beta-marker' } },
      env: { DEFAULT_AGENT: 'beta' },
    });
  });
  after(async () => h?.close());

  test('a new session without "agent" gets DEFAULT_AGENT', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'defaulted', message: 'hello default' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((await h.api('/session/defaulted')).body.agent, 'beta');
  });
});
