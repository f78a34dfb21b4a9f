// Sign-up with email and password, the code mailed to the address, then the second step: TOTP enrolment, answered by
// computing the code from the key Usher shows (as an authenticator app would), then the
// recovery codes, and back on Thrift with a local account.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
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

test('sign up with a password, enrol TOTP, land on Thrift with an account', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.getByRole('link', { name: 'Create an account' }).click();
  await page.locator('input[name=password_confirm]').waitFor();
  await page.fill('input[name=email]', 'grace@example.com');
  await page.fill('input[name=password]', 'correct horse battery');
  await page.fill('input[name=password_confirm]', 'correct horse battery');
  await shot(page, 'usher-sign-up');
  await page.click('button[type=submit]');

  // The address is proven first: a code goes to it, and the account exists only after.
  await page.locator('input[name=code]').waitFor();
  assert.match(await page.textContent('#verify-info'), /grace@example\.com/);
  await page.fill('input[name=code]', await demo.emailCode());
  await shot(page, 'usher-verify-email');
  await page.click('button[type=submit]:not([name=resend])');

  // Step 2: Grace has an account, so the second factor applies; she enrols TOTP.
  await page.locator('button[value=totp]').waitFor();
  await page.click('button[value=totp]');
  await page.locator('#totp-secret').waitFor();
  await shot(page, 'usher-totp-enrol');
  const secret = (await page.textContent('#totp-secret')).trim();
  assert.match(secret, /^[A-Z2-7 ]+$/, 'a base32 key');
  await page.fill('input[name=code]', totp(secret));
  await page.click('button[type=submit]');

  await page.locator('ul.codes').waitFor();
  assert.ok((await page.locator('ul.codes li').count()) >= 5, 'recovery codes are shown');
  await shot(page, 'usher-recovery-codes');
  await page.click('button[type=submit]');

  await page.locator('#account-status').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift);
  assert.equal(await page.textContent('[data-claim=email]'), 'grace@example.com');
  const amr = await page.textContent('[data-claim=amr]');
  assert.match(amr, /"pwd"/);
  assert.match(amr, /"otp"/);
  assert.match(await page.textContent('#account-status'), /Usher has an account for you/);
  assert.match(await page.textContent('#behind'), /Authenticator app\s*enrolled/);
  await shot(page, 'thrift-profile-password', { fullPage: true });
  await page.context().close();
});

test('the demo password user signs in and is asked for a second factor', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.click('button[value=password]');
  await page.locator('input[name=password]').waitFor();
  await page.fill('input[name=username]', 'alice');
  await page.fill('input[name=password]', 'wonderland-42');
  await shot(page, 'usher-password');
  await page.click('button[type=submit]');
  await page.locator('button[value=email_otp]').waitFor();
  await page.click('button[value=email_otp]');
  await page.locator('input[name=code]').waitFor();
  await page.fill('input[name=code]', await demo.emailCode());
  await page.click('button[type=submit]:not([name=resend])');
  await page.locator('#account-status').waitFor();
  assert.equal(await page.textContent('[data-claim=preferred_username]'), 'alice');
  await page.context().close();
});
