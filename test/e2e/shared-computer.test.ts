// A shared computer (a clinic, a library): after one person signs out, or walks away half-way, the next one at the
// same browser presses Back. Chromium with its back/forward cache on, as people have it.
import t from 'tap';
import type { Page } from 'playwright-core';
import { andWait, enrolTotp, launchChromium, newPage, startE2eStack, submit, submitPassword } from '../helpers/e2e.js';
import { ALICE } from '../helpers/stack.js';

const browser = await launchChromium(t, { backForwardCache: true });

/**
 * What the tab shows now: whether it is a page of the signed-in person, and the passwords its fields hold. (Chromium
 * puts a username typed back into a form it loads again on Back: the portal's page can stop that, with
 * autocomplete="off", not the gateway.)
 */
async function shown(page: Page) {
  return page.evaluate(() => ({
    signedIn: document.body.innerText.includes('Signed in as'),
    passwords: [...document.querySelectorAll('input[type=password]')].map((i) => (i as HTMLInputElement).value).filter((v) => v !== ''),
  }));
}

/** Back, whether the page comes from the back/forward cache (no load event) or from the network. */
async function goBack(page: Page): Promise<void> {
  await page.goBack({ waitUntil: 'commit' });
  await page.waitForFunction(() => document.readyState !== 'loading');
}

for (const how of ['the gateway', "the portal's link"] as const) {
  t.test(`signed out with ${how}: Back shows none of the person's pages, nor their password`, async (t) => {
    const s = await startE2eStack(t);
    const { page } = await newPage(t, browser);
    await submitPassword(page, s);
    await enrolTotp(page, s);
    await page.goto(`${s.base}/messages`);
    t.ok((await shown(page)).signedIn, 'signed in, reading their messages');
    if (how === 'the gateway') {
      await page.goto(`${s.base}/_mfa/logout`);
      await submit(page);
    } else {
      await andWait(page, page.getByRole('link', { name: 'Sign out' }).click());
    }
    const visited: string[] = [];
    for (let back = 1; back <= 4; back++) {
      await goBack(page);
      visited.push(new URL(page.url()).pathname);
      t.same(await shown(page), { signedIn: false, passwords: [] }, `Back ${back}: ${visited.at(-1)}`);
    }
    // Back went as far as their sign-in's own pages, and so through the signed-in ones after it (which, loaded again,
    // lead to the login page), not round a signed-out page that stayed put.
    t.match(visited.at(-1), /^\/_mfa\/(recovery-codes|enrol)/, `Back went past their portal pages: ${visited.join(', ')}`);
  });
}

t.test('a sign-in left at the code step: Back shows the login form without the password', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  await enrolTotp(page, s);
  await page.goto(`${s.base}/_mfa/logout`);
  await submit(page);
  await submitPassword(page, s, ALICE);
  t.match(page.url(), '/_mfa/verify', 'the password accepted, the code page open; then the person walks away');
  await goBack(page);
  t.equal(new URL(page.url()).pathname, '/login', 'Back is at the login form');
  t.equal(await page.locator('input[type=password]').count(), 1, 'which shows its password field');
  t.same(await shown(page), { signedIn: false, passwords: [] }, 'no password in the form');
});
