// Step-up in My Account: the demo user alice signs in to My Account with her password
// alone. Her second factor is a code by email, so setting up an authenticator app sends
// her through Usher's sign-in again, which asks for that code first; only then is the
// key shown. Once the authenticator is on, removing it asks for the authenticator.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDemo } from '../lib/demo.js';
import { launch, newPage, shot } from '../lib/browser.js';
import { totp } from '../lib/totp.js';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/** The outbox's mail whose subject is `subject`, waiting for it to arrive. */
async function mailWithSubject(subject) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    let files = [];
    try {
      files = readdirSync(demo.outbox).filter((f) => f.endsWith('.eml'));
    } catch { /* not created yet */ }
    for (const name of files) {
      const text = readFileSync(join(demo.outbox, name), 'utf8');
      if (text.includes(`Subject: ${subject}`)) return text.replace(/=\r?\n/g, '');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no mail "${subject}" arrived in ${demo.outbox}`);
}

test('My Account asks for the existing second factor before a new one is set up', async () => {
  const page = await newPage(browser);
  await page.goto(`${demo.usher}/myaccount`);
  await page.click('button[value=password]');
  await page.locator('input[name=password]').waitFor();
  await page.fill('input[name=username]', 'alice');
  await page.fill('input[name=password]', 'wonderland-42');
  await page.click('button[type=submit]');
  await page.getByRole('heading', { name: 'My Account' }).waitFor();

  // With only her password, the setup page is not shown: Usher asks for her email code.
  await page.getByRole('link', { name: 'Set up an authenticator app' }).click();
  await page.locator('input[name=code]').waitFor();
  assert.equal(await page.locator('#totp-secret').count(), 0, 'no key before the step-up');
  assert.equal(await page.locator('input[name=password]').count(), 0, 'the recent password stands');
  await shot(page, 'usher-step-up-email-code');
  await page.fill('input[name=code]', await demo.emailCode());
  await page.click('button[type=submit]:not([name=resend])');

  // Back where she was going, the key is shown.
  await page.locator('#totp-secret').waitFor();
  assert.match(new URL(page.url()).pathname, /\/myaccount\/totp$/);
  const secret = (await page.textContent('#totp-secret')).trim();
  await page.fill('input[name=code]', totp(secret));
  await page.click('button[type=submit]');
  await page.locator('ul.codes').waitFor();
  const notice = await mailWithSubject('An authenticator app was set up');
  assert.match(notice, /from the address 127\.0\.0\.1/);

  // Removing it now needs the authenticator itself: the email code does not stand in.
  await page.click('text=Remove the authenticator app');
  await page.locator('button[value=totp]').waitFor();
  assert.equal(await page.locator('button[value=email_otp]').count(), 0);
  await shot(page, 'usher-step-up-authenticator');
  await page.click('button[value=totp]');
  await page.locator('input[name=code]').waitFor();
  // A code of the next time step: the one used to set it up is spent.
  await page.fill('input[name=code]', totp(secret, Date.now() / 1000 + 30));
  await page.click('button[type=submit]');
  await page.getByRole('heading', { name: 'My Account' }).waitFor();
  await page.click('text=Remove the authenticator app');
  await page.getByText('Authenticator app:').waitFor();
  assert.match(await page.textContent('#mfa-title + p'), /off/);
  await page.context().close();
});
