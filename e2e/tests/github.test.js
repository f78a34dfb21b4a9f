// The article's second scenario: GitHub with JIT off (pass-through). Signing in works,
// the claims reach Thrift, and no account is created; the script skips MFA for a user
// without an account. Then Deny at GitHub's consent page returns to Thrift.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo } from '../lib/demo.js';
import { launch, newPage, shot } from '../lib/browser.js';

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

test('GitHub with JIT off: signed in, no account, no second step', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.click('button[value=github]');
  await page.locator('button[value=authorize]').waitFor();
  assert.ok(page.url().startsWith(demo.github), 'the GitHub stand-in asks');
  assert.match(await page.textContent('h1'), /Authorize Thrift/);
  assert.match(await page.textContent('main'), /Mona Lisa/, 'the stand-in has a second ready user');
  await shot(page, 'github-consent');

  await page.click('button[value=authorize]');
  await page.locator('#account-status').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift, 'straight back to Thrift: no step 2');
  assert.equal(await page.textContent('[data-claim=sub]'), 'github|583231');
  assert.equal(await page.textContent('[data-claim=preferred_username]'), 'octocat');
  assert.match(await page.textContent('#account-status'), /No account in Usher/);
  // Only the demo's password user: GitHub created nobody.
  assert.equal(await page.textContent('#accounts-total'), '1');
  await shot(page, 'thrift-profile-github', { fullPage: true });

  // The admin's view: still only the demo's password user.
  const users = demo.usersList();
  assert.match(users, /1 user\(s\)/);
  assert.doesNotMatch(users, /octocat/);

  // My Account has nothing to manage for a user without an account, and says why.
  await page.click('#manage-account');
  await page.locator('h1', { hasText: 'There is no account to manage' }).waitFor();
  assert.match(await page.textContent('main'), /GitHub/);
  await shot(page, 'usher-myaccount-github');
  await page.context().close();
});

test('Deny at GitHub returns to Thrift with the error', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.click('button[value=github]');
  await page.locator('button[value=deny]').waitFor();
  await page.click('button[value=deny]');

  await page.locator('#alert').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift, 'back on Thrift');
  const alert = await page.textContent('#alert');
  assert.match(alert, /Sign-in did not complete/);
  assert.match(alert, /access_denied/);
  await page.locator('#sign-in').waitFor();
  await shot(page, 'thrift-denied');
  await page.context().close();
});
