/**
 * The web dashboard end to end (issue 10): a real runner (scripted model, real Docker sandboxes) and a real
 * browser. The overview lists sessions made through the API with their figures; a session page sends a task
 * and shows its streamed text, thinking and the Bash call with its input and result; aborts a long task;
 * opens a workspace file. Screenshots of the main views are taken on the way (docs/screenshots with
 * UPDATE_SCREENSHOTS=1).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { bash, rule, text, withThinking } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { launchBrowser, scriptErrors, type Browser } from './browser.ts';

const ORDER = { id: 4812, customer: 'Alice Chen', status: 'shipped', carrier: 'DHL', tracking: 'JD014600003SE', shippedAt: '2026-12-02' };
const REPLY = 'Order 4812 shipped on 2 December with DHL (tracking JD014600003SE) and should arrive by Friday.';

const rules = [
  rule('order 4812',
    withThinking('The customer asks about an order: the order files are in the workspace.', bash('cat orders/4812.json', { text: "I'll look the order up." })),
    text(REPLY)),
  rule('refund', text('Refund of $42.00 for order 4799 approved; the customer gets it in 3 to 5 business days.')),
  rule('weekly report', bash('echo building the report; sleep 120; echo report written', { text: 'Building the report: this takes a while.' }), text('Report written.')),
];

describe('dashboard', () => {
  let h: Harness;
  let browser: Browser;
  let page: Page;

  before(async () => {
    h = await startHarness({ rules, template: { 'AGENTS.md': '# Support agent\nAnswer customers from the order files.\n', 'orders/4812.json': ORDER } });
    const made = await Promise.all([
      h.api('/task', { method: 'POST', json: { sessionId: 'alice@example.com', message: 'Where is my order 4812?' } }),
      h.api('/task', { method: 'POST', json: { sessionId: 'bob@example.com', message: 'I would like a refund for order 4799' } }),
    ]);
    for (const res of made) assert.equal(res.status, 200, JSON.stringify(res.body));
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    await h?.close();
  });

  test('the overview lists the sessions made through the API, with their state, turns and cost, and the totals', async () => {
    await page.goto(`${h.url}/`);
    const alice = page.locator('tr.session-row[data-session-id="alice@example.com"]');
    await alice.waitFor();
    const cells = await alice.locator('td').allTextContents();
    assert.equal(cells[0], 'alice@example.com');
    assert.equal(cells[1], 'default');
    assert.equal(cells[2], 'idle');
    assert.equal(cells[4], '1', 'turns');
    assert.match(cells[5]!, /^\$0\.\d+$/);
    assert.equal(await page.locator('tr.session-row').count(), 2);
    // The total cost is the sum of the sessions' costs, as the API tells them.
    const sessions = (await h.api('/sessions')).body as Array<{ totalCost: number }>;
    const total = sessions.reduce((sum, s) => sum + s.totalCost, 0);
    assert.ok(total > 0);
    await page.locator('[data-stat="sessions"] .stat-value', { hasText: '2' }).waitFor();
    assert.equal(await page.locator('[data-stat="cost"] .stat-value').textContent(), total < 0.01 ? `$${total.toFixed(4)}` : `$${total.toFixed(2)}`);
    assert.equal(await page.locator('[data-stat="engine"] .stat-value').textContent(), 'ok');
  });

  test('a task sent from the session page streams its text, thinking and the Bash call with its input and result', async () => {
    await page.goto(`${h.url}/#/session/carol@example.com`);
    await page.locator('.composer textarea').fill('Hi, can you tell me where order 4812 is?');
    await page.locator('.composer button[type="submit"]').click();

    const turn = page.locator('.turn', { hasText: 'Hi, can you tell me where order 4812 is?' });
    await turn.locator('.say', { hasText: REPLY }).waitFor();
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    assert.equal(await turn.getAttribute('data-status'), 'succeeded');
    assert.match((await turn.locator('.say').first().textContent())!, /I'll look the order up\./);
    assert.match((await turn.locator('.thinking summary').textContent())!, /the order files are in the workspace/);

    const card = turn.locator('details.tool[data-tool="Bash"]');
    assert.equal(await card.count(), 1);
    assert.equal(await card.locator('.tool-arg').textContent(), 'cat orders/4812.json');
    assert.equal(await card.locator('.tool-state').textContent(), 'done');
    await card.locator('summary').click();
    assert.equal(JSON.parse((await card.locator('.tool-input').textContent())!).command, 'cat orders/4812.json');
    const result = JSON.parse((await card.locator('.tool-result').textContent())!);
    assert.deepEqual(result, ORDER);

    // The task history has it, with its output.
    const row = page.locator('.history-row[data-status="succeeded"]', { hasText: 'where order 4812 is' });
    await row.waitFor();
    await row.locator('summary').click();
    assert.match((await row.locator('.history-body').textContent())!, /shipped on 2 December with DHL/);
    await page.locator('.session-bar .badge', { hasText: 'idle' }).waitFor();
    await browser.screenshot(page, 'session');
    assert.deepEqual(scriptErrors(page), []);
  });

  test('a long task is aborted from the page and ends as aborted', async () => {
    await page.locator('.composer textarea').fill('Please build the weekly report');
    await page.locator('.composer button[type="submit"]').click();
    const turn = page.locator('.turn', { hasText: 'Please build the weekly report' });
    await turn.locator('details.tool[data-tool="Bash"] .tool-state', { hasText: 'running' }).waitFor();
    assert.equal(await turn.locator('.tool-arg').textContent(), 'echo building the report; sleep 120; echo report written');

    // The overview shows the session busy and one running task while it runs.
    const overview = await browser.newPage();
    await overview.goto(`${h.url}/`);
    await overview.locator('tr.session-row[data-session-id="carol@example.com"] .badge', { hasText: 'busy' }).waitFor();
    await overview.locator('[data-stat="running"] .stat-value', { hasText: '1' }).waitFor();
    // Its container runs (the engine's count, as /health reports it).
    await overview.locator('[data-stat="containers"] .stat-value', { hasText: /^[1-9]\d*$/ }).waitFor();
    await browser.screenshot(overview, 'overview');
    await overview.close();

    await page.locator('.session-bar button', { hasText: 'Abort' }).click();
    await turn.locator('.ending', { hasText: 'aborted' }).waitFor();
    assert.equal(await turn.getAttribute('data-status'), 'aborted');
    assert.match((await turn.locator('.ending').textContent())!, /TASK_ABORTED/);
    assert.equal(await turn.locator('.tool-state').textContent(), 'no result');
    const task = (await h.api('/session/carol@example.com/tasks')).body.tasks[0];
    assert.equal(task.status, 'aborted');
    assert.equal(task.message, 'Please build the weekly report');
  });

  test('a workspace file is opened from the Files tab', async () => {
    const put = await h.api('/session/carol@example.com/files/notes/follow-up.md', { method: 'PUT', body: '# Follow-up\n- Call Carol back on Friday about order 4812\n' });
    assert.equal(put.status, 201, put.text);
    await page.locator('.tab', { hasText: 'Files' }).click();
    await page.locator('.file-entry[data-path="orders"]').click();
    await page.locator('.file-entry[data-path="orders/4812.json"]').click();
    assert.deepEqual(JSON.parse((await page.locator('.file-text').textContent())!), ORDER);
    await page.locator('.crumbs a', { hasText: 'workspace' }).click();
    await page.locator('.file-entry[data-path="notes"]').click();
    await page.locator('.file-entry[data-path="notes/follow-up.md"]').click();
    await page.locator('.file-text', { hasText: 'Call Carol back on Friday' }).waitFor();
    assert.equal(await page.locator('.file-view-head code').textContent(), 'notes/follow-up.md');
    await browser.screenshot(page, 'files');
    assert.deepEqual(scriptErrors(page), []);
  });

  test('delete asks first, then removes the session and goes back to the list', async () => {
    page.once('dialog', (dialog) => void dialog.accept());
    await page.goto(`${h.url}/#/session/bob@example.com`);
    await page.locator('.session-bar .badge', { hasText: 'idle' }).waitFor();
    await page.locator('.session-bar button', { hasText: 'Delete' }).click();
    await page.waitForURL((url) => !url.hash.includes('session'));
    await page.locator('tr.session-row[data-session-id="alice@example.com"]').waitFor();
    await page.locator('tr.session-row[data-session-id="bob@example.com"]').waitFor({ state: 'detached' });
    assert.equal((await h.api('/session/bob@example.com')).status, 404);
  });
});
