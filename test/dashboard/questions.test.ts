/**
 * Questions to a human, answered from the dashboard: a real runner (scripted model, real Docker sandboxes) and
 * a real browser. The agent calls AskUserQuestion; the session page shows the question with a button per option,
 * a click sends the answer and the model gets it as the tool's result. A Bash call the template marks "ask"
 * shows as a permission prompt; Deny (with a reason) keeps the command from running and the model gets an
 * error result carrying the reason, Allow lets it run. Several choices are toggled, with a free-text "Other",
 * and sent together.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { bash, rule, text, toolUse } from '../../src/scripted-model/index.ts';
import type { ToolResultInfo } from '../../src/scripted-model/types.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { launchBrowser, scriptErrors, type Browser } from './browser.ts';

const COLOR_QUESTION = {
  question: 'Which color?',
  header: 'Color',
  options: [{ label: 'Red', description: 'A warm color' }, { label: 'Blue', description: 'A cool color' }],
  multiSelect: false,
};

/** What the model got back after each tool call, by rule: the tool results of the request that followed it. */
const received: Record<'color' | 'cleanup' | 'toppings' | 'removal', ToolResultInfo[]> = { color: [], cleanup: [], toppings: [], removal: [] };

const TOPPINGS_QUESTION = {
  question: 'Which toppings?',
  header: 'Toppings',
  options: [{ label: 'Cheese', description: '' }, { label: 'Olives', description: '' }, { label: 'Ham', description: '' }],
  multiSelect: true,
};

const rules = [
  rule('paint the fence',
    toolUse('AskUserQuestion', { questions: [COLOR_QUESTION] }, { text: 'Let me ask which color you want.' }),
    (ctx) => {
      received.color.push(...ctx.toolResults);
      return text(`Painting it as answered: ${ctx.lastToolResult}`);
    }),
  rule('clean the workspace',
    bash('rm -f /workspace/x', { text: 'Removing the file.' }),
    (ctx) => {
      received.cleanup.push(...ctx.toolResults);
      return text(`The removal came back: ${ctx.lastToolResult}`);
    }),
  rule('order a pizza',
    toolUse('AskUserQuestion', { questions: [TOPPINGS_QUESTION] }),
    (ctx) => {
      received.toppings.push(...ctx.toolResults);
      return text('Ordered.');
    }),
  rule('remove the scratch file',
    bash('rm -f /workspace/x'),
    (ctx) => {
      received.removal.push(...ctx.toolResults);
      return text('Removed.');
    }),
];

async function taskOf(h: Harness, sessionId: string): Promise<{ taskId: string; status: string; pendingInput: unknown[] }> {
  const list = await h.api(`/session/${sessionId}/tasks`);
  assert.equal(list.status, 200, list.text);
  const { taskId } = list.body.tasks[0];
  const task = await h.api(`/tasks/${taskId}`);
  assert.equal(task.status, 200, task.text);
  return task.body;
}

async function sendFromPage(page: Page, url: string, message: string) {
  await page.goto(url);
  await page.locator('.composer textarea').fill(message);
  await page.locator('.composer button[type="submit"]').click();
}

describe('dashboard: questions to a human', () => {
  let h: Harness;
  let browser: Browser;
  let page: Page;

  before(async () => {
    h = await startHarness({
      rules,
      template: { 'runner.json': { permissions: { ask: ['Bash(rm:*)'] } }, x: 'keep me\n' },
    });
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    await h?.close();
  });

  test('a question shows its options; clicking one answers it and the model receives the choice', async () => {
    await sendFromPage(page, `${h.url}/#/session/erin@example.com`, 'Please paint the fence');
    const prompt = page.locator('.input-prompt.prompt-question');
    const blue = prompt.locator('button.option', { hasText: 'Blue' });
    await blue.waitFor();

    // While it waits, the task says so, and the prompt shows the header, the question and both options.
    const waiting = await taskOf(h, 'erin@example.com');
    assert.equal(waiting.status, 'awaiting_input');
    assert.equal(waiting.pendingInput.length, 1);
    assert.match((await prompt.locator('.question-head').textContent())!, /Color\s+Which color\?/);
    assert.deepEqual(await prompt.locator('button.option').allTextContents(), ['Red', 'Blue']);
    assert.equal(await blue.getAttribute('title'), 'A cool color');
    await prompt.locator('input[name="other"]').waitFor();
    const turn = page.locator('.turn', { hasText: 'Please paint the fence' });
    assert.equal(await turn.getAttribute('data-status'), 'awaiting_input');
    await browser.screenshot(page, 'question');
    // The overview shows the session waiting for a person rather than just busy.
    const overview = await browser.newPage();
    await overview.goto(`${h.url}/`);
    await overview.locator('tr.session-row[data-session-id="erin@example.com"] .badge[data-state="awaiting_input"]', { hasText: 'awaiting input' }).waitFor();
    await overview.close();

    await blue.click();
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    await prompt.waitFor({ state: 'detached' });
    assert.equal(await turn.getAttribute('data-status'), 'succeeded');
    assert.equal(await turn.locator('.ask-record .ask-answer').textContent(), 'You chose: Blue');

    const done = await taskOf(h, 'erin@example.com');
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(done.pendingInput, []);
    // The model got the choice as the question's tool result, and said so.
    assert.equal(received.color.length, 1);
    assert.equal(received.color[0]!.isError, false);
    assert.match(received.color[0]!.text, /"Which color\?"="Blue"/);
    await turn.locator('.say', { hasText: /Painting it as answered: .*Blue/ }).waitFor();
    assert.deepEqual(scriptErrors(page), []);
  });

  test('a Bash call that needs permission shows the command; Deny with a reason keeps it from running', async () => {
    await sendFromPage(page, `${h.url}/#/session/frank@example.com`, 'Please clean the workspace');
    const prompt = page.locator('.input-prompt.prompt-permission');
    await prompt.locator('button.deny').waitFor();
    assert.equal(await prompt.locator('.permission-input').textContent(), 'rm -f /workspace/x');
    assert.equal(await prompt.locator('.tool-name').textContent(), 'Bash');
    assert.equal((await taskOf(h, 'frank@example.com')).status, 'awaiting_input');
    await browser.screenshot(page, 'permission');

    await prompt.locator('input[name="reason"]').fill('that file is still needed');
    await prompt.locator('button.deny').click();
    const turn = page.locator('.turn', { hasText: 'Please clean the workspace' });
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    await prompt.waitFor({ state: 'detached' });
    assert.equal(await turn.locator('.ask-record .ask-answer').textContent(), 'Denied: that file is still needed');

    assert.equal((await taskOf(h, 'frank@example.com')).status, 'succeeded');
    assert.equal(received.cleanup.length, 1);
    assert.equal(received.cleanup[0]!.isError, true);
    assert.match(received.cleanup[0]!.text, /that file is still needed/);
    // The command never ran: the file is still in the workspace.
    const file = await h.api('/session/frank@example.com/files/x');
    assert.equal(file.status, 200, file.text);
    assert.equal(file.text, 'keep me\n');
    assert.deepEqual(scriptErrors(page), []);
  });

  test('several choices are toggled and sent together with a free-text answer', async () => {
    await sendFromPage(page, `${h.url}/#/session/gina@example.com`, 'Please order a pizza');
    const prompt = page.locator('.input-prompt.prompt-question');
    const send = prompt.locator('button.send-answers');
    await send.waitFor();
    assert.equal(await send.isDisabled(), true, 'nothing chosen yet');
    await prompt.locator('button.option[data-label="Cheese"]').click();
    await prompt.locator('button.option[data-label="Ham"]').click();
    await prompt.locator('button.option[data-label="Ham"]').click();
    await prompt.locator('button.option[data-label="Olives"]').click();
    assert.equal(await prompt.locator('button.option[aria-pressed="true"]').count(), 2);
    await prompt.locator('input[name="other"]').fill('extra basil');
    await send.click();
    const turn = page.locator('.turn', { hasText: 'Please order a pizza' });
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    assert.equal(await turn.locator('.ask-record .ask-answer').textContent(), 'You chose: Cheese, Olives, extra basil');
    assert.equal(received.toppings.length, 1);
    assert.match(received.toppings[0]!.text, /"Which toppings\?"="Cheese, Olives, extra basil"/);
    assert.deepEqual(scriptErrors(page), []);
  });

  test('Allow lets the command run', async () => {
    await sendFromPage(page, `${h.url}/#/session/hank@example.com`, 'Please remove the scratch file');
    const prompt = page.locator('.input-prompt.prompt-permission');
    await prompt.locator('button.allow').click();
    const turn = page.locator('.turn', { hasText: 'Please remove the scratch file' });
    await turn.locator('.ending', { hasText: 'completed' }).waitFor();
    assert.equal(await turn.locator('.ask-record .ask-answer').textContent(), 'Allowed');
    assert.equal(received.removal.length, 1);
    assert.equal(received.removal[0]!.isError, false);
    assert.equal((await h.api('/session/hank@example.com/files/x')).status, 404);
    assert.deepEqual(scriptErrors(page), []);
  });
});
