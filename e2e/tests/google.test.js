// The article's first scenario: a first sign-in with Google, where JIT provisioning is
// on, creates an account on the spot; because that account exists, the same login goes
// on to the second factor (here a code by email, read from the demo's outbox).

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
  assert.equal(demo?.exitCode, 0, 'Ctrl-C stops the demo cleanly');
});

test('Google with JIT on: account created at the first sign-in, then MFA, then sign-out', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  assert.equal(await page.title(), 'Thrift');
  await page.locator('#sign-in').waitFor();
  await shot(page, 'thrift-home');

  await page.click('#sign-in');
  await page.locator('button[value=google]').waitFor();
  assert.ok(page.url().startsWith(demo.usher), 'Thrift sends the browser to Usher');
  assert.match(await page.textContent('main'), /Step 1 of 2/);
  // Each connection has its own badge (not the same "G" for Google and GitHub).
  assert.equal(await page.locator('button[value=google] .connection-mark-google').count(), 1);
  assert.equal(await page.locator('button[value=github] .connection-mark-github svg').count(), 1);
  await shot(page, 'usher-sign-in');

  await page.click('button[value=google]');
  await page.locator('button[value=authorize]').waitFor();
  assert.ok(page.url().startsWith(demo.google), 'Usher sends the browser to the Google stand-in');
  const consent = await page.textContent('main');
  assert.match(consent, /Ada Lovelace/);
  assert.match(consent, /Alan Turing/, 'the stand-in has a second ready user');
  await shot(page, 'google-consent');

  await page.click('button[value=authorize]');
  // Back at Usher: the account exists already, so step 2 applies to Ada.
  await page.locator('button[value=email_otp]').waitFor();
  assert.match(await page.textContent('main'), /Step 2 of 2/);
  await shot(page, 'usher-second-step');

  await page.click('button[value=email_otp]');
  await page.locator('input[name=code]').waitFor();
  const code = await demo.emailCode();
  await shot(page, 'usher-email-code');
  await page.fill('input[name=code]', code);
  await page.click('button[type=submit]:not([name=resend])');

  await page.locator('#account-status').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift, 'back on Thrift');
  assert.equal(await page.textContent('#profile-name'), 'Ada Lovelace');
  assert.match(await page.textContent('#account-status'), /Usher has an account for you/);
  const sub = await page.textContent('[data-claim=sub]');
  assert.match(sub, /^u_/, 'the subject is a local account');
  assert.match(await page.textContent('[data-claim=amr]'), /"otp"/);
  assert.match(await page.textContent('#behind'), /Google user 104857261093347712345/);
  // Alice (the demo's password user) and Ada.
  assert.equal(await page.textContent('#accounts-total'), '2');
  await shot(page, 'thrift-profile-google', { fullPage: true });

  // The admin's view, as in the article's "Users" check: Ada is listed, linked to Google.
  const users = demo.usersList();
  assert.match(users, /ada\.lovelace@example\.com/);
  assert.match(users, /google/);
  assert.match(users, /2 user\(s\)/);

  // My Account: the SSO session carries Ada in without asking again.
  await page.click('#manage-account');
  await page.locator('h1', { hasText: 'My Account' }).waitFor();
  assert.ok(page.url().startsWith(demo.usher));
  assert.match(await page.textContent('main'), /ada\.lovelace@example\.com/);
  await shot(page, 'usher-myaccount-google');

  await page.goto(`${demo.thrift}/me`);
  await page.click('#sign-out');
  await page.locator('#alert').waitFor();
  assert.match(await page.textContent('#alert'), /signed out/);
  await page.locator('#sign-in').waitFor();

  // Usher's session is gone too: signing in again starts at step 1.
  await page.click('#sign-in');
  await page.locator('button[value=google]').waitFor();
  assert.match(await page.textContent('main'), /Step 1 of 2/);
  await page.context().close();
});
