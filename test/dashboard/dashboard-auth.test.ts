/**
 * The dashboard with API_KEYS (issue 10): the page loads without a key and asks for one; a refused key is
 * told; with a tenant's key it lists only that tenant's sessions, and a session's live stream works through
 * a stream token (the WebSocket carries ?token=st_..., never the key); forgetting the key asks again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { rule, text } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { launchBrowser, scriptErrors, type Browser } from './browser.ts';

const KEY_A = 'dashboard-key-of-tenant-a-5b3f7c1e9d';
const KEY_B = 'dashboard-key-of-tenant-b-0d2a8f6e4c';

describe('dashboard with API keys', () => {
  let h: Harness;
  let browser: Browser;
  let page: Page;

  before(async () => {
    h = await startHarness({ env: { API_KEYS: `acme:${KEY_A},globex:${KEY_B}` }, rules: [rule('greet', text('Hello from the tenant acme agent, streamed to the page.'))] });
    const made = await Promise.all([
      h.api('/task', { method: 'POST', headers: { authorization: `Bearer ${KEY_A}` }, json: { sessionId: 'acme-user-1', message: 'greet me' } }),
      h.api('/task', { method: 'POST', headers: { authorization: `Bearer ${KEY_B}` }, json: { sessionId: 'globex-user-1', message: 'greet me' } }),
    ]);
    for (const res of made) assert.equal(res.status, 200, JSON.stringify(res.body));
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    await h?.close();
  });

  test('the page loads without a key, asks for one, and tells a refused key', async () => {
    const response = await page.goto(`${h.url}/`);
    assert.equal(response?.status(), 200);
    await page.locator('#api-key').waitFor();
    await browser.screenshot(page, 'api-key');
    await page.locator('#api-key').fill('not-a-key-of-this-runner');
    await page.locator('.key-card button[type="submit"]').click();
    await page.locator('.key-card .error-line', { hasText: 'This key was refused.' }).waitFor();
    assert.equal(await page.locator('table.sessions').count(), 0);
  });

  test("with a tenant's key the page shows only that tenant's sessions, and keeps the key", async () => {
    await page.locator('#api-key').fill(KEY_A);
    await page.locator('.key-card button[type="submit"]').click();
    await page.locator('tr.session-row[data-session-id="acme-user-1"]').waitFor();
    assert.equal(await page.locator('tr.session-row').count(), 1);
    assert.equal(await page.locator('tr.session-row[data-session-id="globex-user-1"]').count(), 0);
    // Kept: a reload does not ask again.
    await page.reload();
    await page.locator('tr.session-row[data-session-id="acme-user-1"]').waitFor();
    assert.equal(await page.locator('#api-key').count(), 0);
  });

  test('the session stream works through a stream token, and another tenant\'s session shows nothing of it', async () => {
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(`${h.url}/#/session/acme-user-1`);
    // The stored log is replayed: the earlier task's text is there.
    await page.locator('.turn .say', { hasText: 'Hello from the tenant acme agent' }).first().waitFor();
    await page.locator('.composer textarea').fill('greet me again');
    await page.locator('.composer button[type="submit"]').click();
    const turn = page.locator('.turn', { hasText: 'greet me again' });
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    assert.match((await turn.locator('.say').textContent())!, /Hello from the tenant acme agent, streamed to the page\./);
    assert.ok(sockets.length >= 1);
    for (const url of sockets) {
      assert.match(url, /\/stream\/acme-user-1\?after=\d+&token=st_/);
      assert.ok(!url.includes(KEY_A), 'the key never travels in a URL');
    }
    // globex's session is not acme's to see: its page shows no history and no files.
    await page.goto(`${h.url}/#/session/globex-user-1`);
    await page.locator('.side-panel .empty', { hasText: 'No tasks yet.' }).waitFor();
    assert.equal(await page.locator('.turn').count(), 0);
    assert.deepEqual(scriptErrors(page), []);
  });

  test('forgetting the key brings the form back', async () => {
    await page.goto(`${h.url}/`);
    await page.locator('.topbar button', { hasText: 'Forget key' }).click();
    await page.locator('#api-key').waitFor();
    assert.equal(await page.evaluate(() => localStorage.length), 0);
  });
});
