/**
 * A real browser for the dashboard tests: Debian's Chromium driven by playwright-core, headless, with a fresh
 * profile, and the flags that keep it from reaching for the (closed) network. Screenshots go to
 * docs/screenshots with UPDATE_SCREENSHOTS=1, else to a temporary folder.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from '../support/harness.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface Browser {
  context: BrowserContext;
  newPage(): Promise<Page>;
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'cr-chromium-'));
  const shots = process.env.UPDATE_SCREENSHOTS === '1' ? join(ROOT, 'docs/screenshots') : mkdtempSync(join(tmpdir(), 'cr-shots-'));
  mkdirSync(shots, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1360, height: 820 }, colorScheme: 'light',
  });
  context.setDefaultTimeout(30_000);
  const errors: string[] = [];
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      // A script error on the page fails the test that made it, via the assertion in the test's own checks.
      page.on('pageerror', (error) => errors.push(error.message));
      (page as Page & { scriptErrors: string[] }).scriptErrors = errors;
      return page;
    },
    async screenshot(page, name) {
      const path = join(shots, `${name}.png`);
      await page.screenshot({ path });
      return path;
    },
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
      if (process.env.UPDATE_SCREENSHOTS !== '1') rmSync(shots, { recursive: true, force: true });
    },
  };
}

/** Script errors the page threw so far. */
export function scriptErrors(page: Page): string[] {
  return (page as Page & { scriptErrors?: string[] }).scriptErrors ?? [];
}
