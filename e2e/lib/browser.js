// Headless Debian Chromium through playwright-core (no browser download), and the
// screenshots the README walkthrough shows.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './demo.js';

export const SCREENSHOTS = join(ROOT, 'docs', 'screenshots');

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A fresh browser profile (its own cookies), light theme, a laptop-sized window. */
export async function newPage(browser) {
  const context = await browser.newContext({
    viewport: { width: 1200, height: 820 },
    colorScheme: 'light',
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(20_000);
  return context.newPage();
}

/** Save a PNG of the page into docs/screenshots/. */
export async function shot(page, name, { fullPage = false } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}
