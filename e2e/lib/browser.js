// Headless Debian Chromium through playwright-core (no browser download), and the
// screenshots the README walkthrough shows.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './demo.js';

export const SCREENSHOTS = join(ROOT, 'docs', 'screenshots');

// The PNGs are committed, so a plain test run must not rewrite them (they differ byte for
// byte from run to run and would leave the working tree dirty). They are refreshed only
// when asked: USHER_SCREENSHOTS=1, which `npm run screenshots` sets.
export const SAVE_SCREENSHOTS = process.env.USHER_SCREENSHOTS === '1';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

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

/**
 * Capture the page as a PNG, and check that the capture worked; write it into
 * docs/screenshots/ only when SAVE_SCREENSHOTS is on. Without it the capture stays in
 * memory, so every run still renders each pictured page the same way.
 */
export async function shot(page, name, { fullPage = false } = {}) {
  let path;
  if (SAVE_SCREENSHOTS) {
    mkdirSync(SCREENSHOTS, { recursive: true });
    path = join(SCREENSHOTS, `${name}.png`);
  }
  const png = await page.screenshot({ path, fullPage });
  assert.ok(png.length > PNG_SIGNATURE.length, `the ${name} screenshot is empty`);
  assert.ok(png.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE), `the ${name} screenshot is not a PNG`);
}
