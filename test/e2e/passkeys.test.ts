// Passkeys in Chromium with a virtual authenticator (Chrome DevTools Protocol): enrolment at first login, signing in
// with it, a ceremony that fails, and the security page adding a passkey (also on a device that already has one)
// and removing an authenticator app; refusals after which the button opens its page again.
import t, { type Test } from 'tap';
import type { Page } from 'playwright-core';
import type { Ceremony } from '../../src/services/ceremony.js';
import { addVirtualAuthenticator, andWait, axeViolations, enrolTotp, focused, launchChromium, newPage, shownCodes, startE2eStack, submit, submitPassword, url, wrongTotp, type E2eStack } from '../helpers/e2e.js';
import { totpAt } from '../helpers/stack.js';

const P = '/_mfa';
const browser = await launchChromium(t);

/** The first sign-in: the password, a passkey created, the recovery codes acknowledged, on to the portal. */
async function signUpWithPasskey(t: Test, page: Page, s: E2eStack): Promise<void> {
  await submitPassword(page, s);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  await page.check('#ack');
  await submit(page);
  t.equal(url(page), '/records');
}

t.test('first login with a passkey, sign out, sign in with it; a failed ceremony says so', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  const authenticator = await addVirtualAuthenticator(context, page);

  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);
  const create = page.getByRole('button', { name: 'Create passkey' });
  t.equal(await create.isEnabled(), true, 'the script has enabled the passkey button (disabled without JavaScript)');
  await page.fill('#passkey-name', 'This laptop');
  await andWait(page, create.click());
  t.equal(url(page), `${P}/recovery-codes`, 'the passkey is registered');
  const [credential, ...more] = await authenticator.credentials();
  t.same(more, [], 'one credential');
  t.equal(credential?.rpId, 'localhost', 'for the relying party localhost');
  t.equal((await shownCodes(page)).length, 10, 'recovery codes after a passkey too');
  await page.check('#ack');
  await submit(page);
  t.equal(url(page), '/records');
  t.match(await page.textContent('body'), 'Signed in as alice');

  await page.goto(`${s.base}${P}/security`);
  t.match(await page.textContent('.factors'), /This laptop – Security key or passkey on one device/, 'listed by the name given');

  await page.goto(`${s.base}/records`);
  await andWait(page, page.getByRole('link', { name: 'Sign out' }).click());
  t.equal(url(page), '/login', "signed out with the portal's own link");

  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  t.equal(await page.locator('#code').count(), 0, 'no code field for a user without an authenticator app');
  await andWait(page, page.getByRole('button', { name: 'Use your passkey or security key' }).click());
  t.equal(url(page), '/records', 'signed in with the passkey');
  t.match(await page.textContent('body'), 'Signed in as alice');
  t.ok((await authenticator.credentials())[0]!.signCount > credential!.signCount, 'the authenticator signed again');

  // The authenticator loses its passkey: the ceremony fails in the browser, and the page says so.
  await authenticator.cdp.send('WebAuthn.clearCredentials', { authenticatorId: authenticator.id });
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  const use = page.getByRole('button', { name: 'Use your passkey or security key' });
  await use.click();
  const status = page.getByRole('alert');
  await status.waitFor({ timeout: 10_000 });
  t.equal(await status.textContent(), 'The passkey request was cancelled or timed out. Try again when you are ready.', 'announced (role=alert)');
  t.equal(url(page), `${P}/verify`, 'still on the sign-in page');
  t.equal(await use.isEnabled(), true, 'the button can be used again');
  t.match((await focused(page)).element, /^button "Use your passkey/, 'focus back on the button');
  t.same(await axeViolations(page), [], 'axe: the page with the message has no WCAG 2.2 A/AA violations');
});

t.test('security page: add a passkey, remove the authenticator app; the passkey signs in', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  const authenticator = await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  await enrolTotp(page, s);
  t.equal(url(page), '/records');

  // The security page is linked from every gateway page shown signed in, e.g. the sign-out page.
  await page.goto(`${s.base}${P}/logout`);
  await andWait(page, page.getByRole('navigation').getByRole('link', { name: 'Your sign-in settings' }).click());
  t.equal(url(page), `${P}/security`);
  t.equal(await page.locator('.factors > li').count(), 1);
  t.match(await page.textContent('.factors'), 'This is your only second step, so it cannot be removed');
  t.equal(await page.getByRole('button', { name: /^Remove/ }).count(), 0, 'the only factor cannot be removed');

  await andWait(page, page.getByRole('link', { name: 'Add a passkey or security key' }).click());
  t.equal(url(page), `${P}/security/passkey`);
  await page.fill('#passkey-name', 'Blue key');
  // Enter in the name field, as in any form with one field: it starts the passkey (the button is clicked above).
  await andWait(page, page.press('#passkey-name', 'Enter'));
  t.equal(`${url(page)}${new URL(page.url()).search}`, `${P}/security?notice=done`);
  t.match(await page.getByRole('status').textContent(), 'Your change is saved');
  t.equal((await authenticator.credentials()).length, 1, 'the authenticator holds the new passkey');
  t.equal(await page.locator('.factors > li').count(), 2, 'two factors');

  await andWait(page, page.getByRole('button', { name: 'Remove Authenticator app' }).click());
  t.match(await page.title(), /^Remove \u2068Authenticator app\u2069\? – /, 'asked first');
  t.equal(await page.locator('.factors > li').count(), 0);
  await andWait(page, page.getByRole('button', { name: 'Remove Authenticator app' }).click());
  t.match(await page.getByRole('status').textContent(), 'Your change is saved');
  const left = await page.locator('.factors > li').allTextContents();
  t.equal(left.length, 1, 'one factor left');
  t.match(left[0], /Blue key – Security key or passkey on one device/);
  t.match(left[0], 'This is your only second step');

  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  t.equal(await page.locator('#code').count(), 0, 'no code field: the authenticator app is gone');
  await andWait(page, page.getByRole('button', { name: 'Use your passkey or security key' }).click());
  t.equal(url(page), '/records', 'signed in with the passkey added on the security page');
});

t.test('security page: a passkey added on a device that already holds one for the account says so, not "try again"', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  const authenticator = await addVirtualAuthenticator(context, page);
  await signUpWithPasskey(t, page, s);

  // The same authenticator again: the options name its passkey to exclude, and the browser refuses (InvalidStateError).
  await page.goto(`${s.base}${P}/security/passkey`);
  const create = page.getByRole('button', { name: 'Create passkey' });
  await create.click();
  const status = page.getByRole('alert');
  await status.waitFor({ timeout: 10_000 });
  t.equal(
    await status.textContent(),
    'This device already has a passkey for your account. Use another device or security key, or choose another way.',
    'announced (role=alert): trying again on this device could never work',
  );
  t.equal(url(page), `${P}/security/passkey`, 'still on the page');
  t.equal((await authenticator.credentials()).length, 1, 'no second passkey on the device');
  t.equal(await create.isEnabled(), true, 'the button can be used again (with another security key)');
  t.match((await focused(page)).element, /^button "Create passkey/, 'focus back on the button');
  t.same(await axeViolations(page), [], 'axe: the page with the message has no WCAG 2.2 A/AA violations');
});

t.test('JavaScript on, but a browser without passkeys: the page says so instead of a button that never wakes', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  // JavaScript on, no WebAuthn: as in an old browser or one that turned passkeys off.
  await page.addInitScript(() => delete (window as { PublicKeyCredential?: unknown }).PublicKeyCredential);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);
  const status = page.getByRole('alert');
  t.equal(await status.textContent(), 'This browser cannot use passkeys here. Use another way, or another browser.', 'announced (role=alert)');
  t.equal(await page.getByRole('button', { name: 'Create passkey' }).isEnabled(), false, 'the button stays off');
  t.same(await axeViolations(page), [], 'axe: no WCAG 2.2 A/AA violations');
});

t.test('the sign-in run out of time while its passkey page was open: the button leads to the page that says so, with its way on', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 + 1);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  t.equal(await page.textContent('h1'), 'Your sign-in has expired. Please sign in again.', 'the page says what happened');
  t.equal(await page.getByRole('link', { name: 'Sign in again' }).count(), 1, 'and links on: not a button that can only fail again');
});

t.test('the same, after the skip link put #main in the address: the page still opens again', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  // Keyboard users take the skip link first (it shows when focused).
  await page.getByRole('link', { name: /skip/i }).focus();
  await page.keyboard.press('Enter');
  t.equal(url(page), `${P}/enrol`);
  t.match(page.url(), /#main$/, 'the skip link was followed');
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 + 1);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  t.equal(await page.textContent('h1'), 'Your sign-in has expired. Please sign in again.', 'the page says what happened');
});

t.test('a passkey found copied at sign-in: the press leads at once to the page that says the sign-in must start again', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  const authenticator = await addVirtualAuthenticator(context, page);
  await signUpWithPasskey(t, page, s);
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  await andWait(page, page.getByRole('button', { name: 'Use your passkey or security key' }).click());
  t.equal(url(page), '/records', 'the passkey has signed in, its sign counter now ahead of 0');

  // The authenticator holds the same passkey with its counter set back, as a copy of it made earlier would.
  const [held] = (await authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator.id })).credentials;
  await authenticator.cdp.send('WebAuthn.clearCredentials', { authenticatorId: authenticator.id });
  await authenticator.cdp.send('WebAuthn.addCredential', { authenticatorId: authenticator.id, credential: { ...held!, signCount: 0 } });
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  await andWait(page, page.getByRole('button', { name: 'Use your passkey or security key' }).click());
  t.equal(await page.textContent('h1'), 'Your sign-in has expired. Please sign in again.', 'the first press: the page says the sign-in ended, no button to press again');
  t.equal(await page.getByRole('link', { name: 'Sign in again' }).count(), 1, 'and links on');
  t.equal(await page.getByRole('button', { name: 'Use your passkey or security key' }).count(), 0);
});

t.test('passkeys turned off after too many failures while the sign-in page was open: the press opens the page again, which offers what still works', async (t) => {
  const s = await startE2eStack(t, { patch: (raw) => (raw.limits = { secondFactor: { freeAttempts: 3, baseSeconds: 1, maxSeconds: 1, cap: 3 } }) });
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await signUpWithPasskey(t, page, s);
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  const use = page.getByRole('button', { name: 'Use your passkey or security key' });
  t.equal(await use.isEnabled(), true, 'the passkey is offered');

  // Meanwhile passkeys are turned off for the user: their count of failures is put at the cap directly.
  const gw = s.app.gateway;
  const ceremony = { pid: gw.pidOf('alice')! } as Ceremony;
  for (let i = 0; i < 3; i++) await gw.limits.attempts.againstUser(ceremony, { n: 0, kind: 'webauthn', last: false });
  t.same([...(await gw.limits.attempts.disabledKinds(ceremony.pid))], ['webauthn']);

  await andWait(page, use.click());
  t.equal(url(page), `${P}/verify`, 'the same page, opened again');
  t.equal(await page.getByRole('button', { name: 'Use your passkey or security key' }).count(), 0, 'no button that could only be refused again');
  t.match(await page.textContent('main'), 'Some of your sign-in methods have been turned off', 'the page says why');
  t.equal(await page.getByRole('link', { name: 'Use a recovery code' }).count(), 1, 'and offers what still works');
});

t.test('the same at a step-up that answered a wrong code: the page opened again keeps where it goes back to and what it offers', async (t) => {
  const s = await startE2eStack(t, {
    patch: (raw) => {
      raw.limits = { secondFactor: { freeAttempts: 3, baseSeconds: 1, maxSeconds: 1, cap: 3 } };
      raw.policy.rules.splice(raw.policy.rules.length - 1, 0, { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['totp', 'webauthn'] });
    },
  });
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  const { secret } = await enrolTotp(page, s);
  await page.goto(`${s.base}${P}/security/passkey`);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  t.equal(url(page), `${P}/security`, 'a passkey beside the app');

  s.clock.advance(301_000);
  await page.goto(`${s.base}/prescriptions/`);
  t.equal(`${url(page)}${new URL(page.url()).search}`, `${P}/step-up?to=%2Fprescriptions%2F&factors=totp,webauthn`);
  await page.fill('#code', await wrongTotp(secret, s.clock.now()));
  await submit(page);
  t.equal(page.url(), `${s.base}${P}/step-up`, "the wrong code's answer, at the form's address");

  const gw = s.app.gateway;
  const ceremony = { pid: gw.pidOf('alice')! } as Ceremony;
  for (let i = 0; i < 3; i++) await gw.limits.attempts.againstUser(ceremony, { n: 0, kind: 'webauthn', last: false });
  await andWait(page, page.getByRole('button', { name: 'Use your passkey or security key' }).click());
  t.equal(`${url(page)}${new URL(page.url()).search}`, `${P}/step-up?to=%2Fprescriptions%2F&factors=totp,webauthn`, 'opened again with its query');
  t.match(await page.textContent('main'), 'Some of your sign-in methods have been turned off', 'the page says why');
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), '/prescriptions/', 'the app steps up, and goes back to the page it was for');
});

t.test('a step-up in another tab gave the session a new form token: a passkey pressed on a page opened before opens it again, and then works', async (t) => {
  const s = await startE2eStack(t, {
    patch: (raw) => void raw.policy.rules.splice(raw.policy.rules.length - 1, 0, { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300 }),
  });
  const { context, page } = await newPage(t, browser);
  await submitPassword(page, s);
  const { secret } = await enrolTotp(page, s);
  const other = await context.newPage();
  await addVirtualAuthenticator(context, other);
  await other.goto(`${s.base}${P}/security/passkey`);

  s.clock.advance(301_000);
  await page.goto(`${s.base}/prescriptions/`);
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), '/prescriptions/', 'stepped up in the first tab');

  // The second tab's page holds the token the step-up replaced: opened again, it has the current one.
  await Promise.all([other.waitForNavigation({ timeout: 10_000 }), other.getByRole('button', { name: 'Create passkey' }).click()]);
  t.equal(url(other), `${P}/security/passkey`, 'the page opened again');
  await andWait(other, other.getByRole('button', { name: 'Create passkey' }).click());
  t.equal(url(other), `${P}/security`, 'the passkey is added');
  t.equal(await other.locator('.factors > li').count(), 2);
});
