// "Forgot your password?": a code mailed to Alice's verified address and a new password,
// then the sign-in asks for the new password and still for the second factor, and lands
// on Thrift.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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

function mails() {
  try {
    return readdirSync(demo.outbox).filter((f) => f.endsWith('.eml'));
  } catch {
    return [];
  }
}

/** The code in a message that is not in `seen`, waiting for one to arrive. */
async function newCode(seen) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    for (const name of mails()) {
      if (seen.includes(name)) continue;
      const m = readFileSync(join(demo.outbox, name), 'utf8').match(/^\s*(\d{6})\s*$/m);
      if (m) {
        seen.push(name);
        return m[1];
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no new code arrived in ${demo.outbox}`);
}

test('a forgotten password is reset by a mailed code, and the second factor is still asked', async () => {
  const page = await newPage(browser);
  await page.goto(demo.thrift);
  await page.click('#sign-in');
  await page.click('button[value=password]');
  await page.locator('input[name=password]').waitFor();
  const seen = mails();

  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  await page.locator('#forgot-info').waitFor();
  await page.fill('input[name=username]', 'alice');
  await shot(page, 'usher-forgot-password');
  await page.click('button[type=submit]');

  await page.locator('input[name=password_confirm]').waitFor();
  const code = await newCode(seen);
  // A new password that breaks the policy is refused, and the code still works after.
  await page.fill('input[name=code]', code);
  await page.fill('input[name=password]', 'short');
  await page.fill('input[name=password_confirm]', 'short');
  await page.click('button[type=submit]');
  await page.locator('#form-errors').waitFor();
  await page.fill('input[name=code]', code);
  await page.fill('input[name=password]', 'a-new-password-42');
  await page.fill('input[name=password_confirm]', 'a-new-password-42');
  await shot(page, 'usher-reset-password');
  await page.click('button[type=submit]');

  // Back at the password step, not signed in.
  await page.locator('input[name=username]').waitFor();
  assert.match(await page.textContent('#form-error'), /Your password was changed/);
  await page.fill('input[name=username]', 'alice');
  await page.fill('input[name=password]', 'a-new-password-42');
  await page.click('button[type=submit]');

  // The second factor is still asked.
  await page.locator('button[value=email_otp]').waitFor();
  await page.click('button[value=email_otp]');
  await page.locator('input[name=code]').waitFor();
  await page.fill('input[name=code]', await newCode(seen));
  await page.click('button[type=submit]:not([name=resend])');
  await page.locator('#account-status').waitFor();
  assert.equal(new URL(page.url()).origin, demo.thrift);
  assert.equal(await page.textContent('[data-claim=preferred_username]'), 'alice');
  const amr = await page.textContent('[data-claim=amr]');
  assert.match(amr, /"pwd"/);
  assert.match(amr, /"otp"/);
  await page.context().close();
});
