// The MFA conflict and its two fixes. Without the script, a GitHub user (pass-through,
// no account) reaches step 2, which needs an account: Usher says so and sends the
// browser back to Thrift with access_denied. With JIT turned on for GitHub, the same
// login creates an account and step 2 works. (The third way, the script, is the
// demo's default and is covered by github.test.js.)

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo } from '../lib/demo.js';
import { launch, newPage, shot } from '../lib/browser.js';

const running = [];
let browser;

async function demoWith(args) {
  const demo = await startDemo(args);
  running.push(demo);
  browser ??= await launch();
  return demo;
}

after(async () => {
  await browser?.close();
  for (const demo of running) await demo.stop();
});

async function githubAuthorize(demo) {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.click('button[value=github]');
  await page.locator('button[value=authorize]').waitFor();
  await page.click('button[value=authorize]');
  return page;
}

test('--no-script: a GitHub sign-in ends at the MFA conflict page', async () => {
  const demo = await demoWith(['--no-script']);
  const page = await githubAuthorize(demo);
  await page.locator('h1', { hasText: 'This sign-in cannot be completed' }).waitFor();
  assert.ok(page.url().startsWith(demo.usher), 'Usher shows the page');
  assert.match(await page.textContent('main'), /needs an account/);
  await shot(page, 'usher-mfa-conflict');

  await page.getByRole('link', { name: 'Go back' }).click();
  await page.locator('#alert').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift);
  const alert = await page.textContent('#alert');
  assert.match(alert, /access_denied/);
  assert.match(alert, /requires a local account/);
  await shot(page, 'thrift-mfa-conflict');
  await page.context().close();
});

test('--no-script --github-jit: GitHub users get an account, and step 2 works', async () => {
  const demo = await demoWith(['--no-script', '--github-jit']);
  const page = await githubAuthorize(demo);
  await page.locator('button[value=totp]').waitFor();
  assert.match(await page.textContent('main'), /Step 2 of 2/);
  // The new account's verified GitHub address is its second factor already: an
  // authenticator is not set up with GitHub alone, so step 2 is the code by email.
  await page.click('button[value=email_otp]');
  await page.locator('input[name=code]').waitFor();
  await page.fill('input[name=code]', await demo.emailCode());
  await page.click('button[type=submit]:not([name=resend])');

  await page.locator('#account-status').waitFor();
  assert.match(await page.textContent('#account-status'), /Usher has an account for you/);
  assert.match(await page.textContent('[data-claim=sub]'), /^u_/);
  assert.match(await page.textContent('#behind'), /GitHub user 583231/);
  await shot(page, 'thrift-profile-github-jit', { fullPage: true });
  await page.context().close();
});
