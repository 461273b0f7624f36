// An authenticator app in Chromium: first login and enrolment, a later sign-in, a recovery code instead, and the
// whole enrolment with the keyboard alone.
import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  andWait,
  enrolTotp,
  focused,
  launchChromium,
  newPage,
  pressTab,
  shownCodes,
  shownSecret,
  startE2eStack,
  submit,
  submitPassword,
  wrongTotp,
  type FocusStop,
  url,
} from '../helpers/e2e.js';
import { ALICE, totpAt } from '../helpers/stack.js';

const P = '/_mfa';
const browser = await launchChromium(t);

t.test('first login: an authenticator app, then the records page; a later sign-in with a code', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);

  await page.goto(`${s.base}/records`);
  t.equal(url(page), '/login', 'signed out: sent to the portal login page');
  await page.fill('#username', ALICE.username);
  await page.fill('#password', ALICE.password);
  await submit(page, 'button[type=submit]');
  t.equal(url(page), `${P}/enrol`, 'no factor yet: the factor choice');

  await andWait(page, page.getByRole('link', { name: 'Set up an authenticator app' }).click());
  t.equal(url(page), `${P}/enrol/totp`);
  t.ok(await page.getByRole('img', { name: 'QR code for your authenticator app' }).locator('svg').isVisible(), 'the QR code');
  const secret = await shownSecret(page);
  t.match(secret, /^[A-Z2-7]{32}$/, 'the key to type in, grouped for reading');

  await page.fill('#code', await wrongTotp(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/enrol/totp`);
  t.match(await page.textContent('#code-error'), 'That code did not work');
  t.equal(await shownSecret(page), secret, 'the same key again');

  const code = await totpAt(secret, s.clock.now());
  await page.fill('#code', code);
  await submit(page);
  t.equal(url(page), `${P}/recovery-codes`);
  const codes = await shownCodes(page);
  t.equal(new Set(codes).size, 10, 'ten different recovery codes');
  t.ok(codes.every((c) => /^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$/.test(c)), 'in groups of four');
  // Continue without the box ticked: the browser says so, and the codes stay on the page.
  await page.click('button[type=submit]');
  t.equal(await page.$eval('#ack', (e) => (e as HTMLInputElement).validationMessage !== ''), true, 'the browser asks for the box');
  t.same(await shownCodes(page), codes, 'the codes are still shown');
  await page.check('#ack');
  await submit(page);
  t.equal(url(page), '/records', 'on to the page first asked for');
  t.match(await page.textContent('body'), 'Signed in as alice');
  const cookies = await context.cookies();
  t.same(cookies.map((c) => c.name).sort(), ['XSRF-TOKEN', '__Host-mfa-known', '__Host-mfa-session'], "the browser holds only the gateway's session and known-browser token, and the allow-listed cookie");
  t.equal(cookies.find((c) => c.name === '__Host-mfa-session')?.httpOnly, true);

  // The portal's own sign-out link ends the gateway session too.
  await andWait(page, page.getByRole('link', { name: 'Sign out' }).click());
  t.equal(url(page), '/login');
  await page.goto(`${s.base}/records`);
  t.equal(url(page), '/login', 'signed out');

  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  t.equal(await page.locator('.passkey').count(), 0, 'no passkey button for a user without one');
  await page.fill('#code', code);
  await submit(page);
  t.equal(url(page), `${P}/verify`, 'the code used at enrolment is spent');
  t.equal(await page.getAttribute('#code', 'aria-invalid'), 'true');
  s.clock.advance(30_000);
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), '/records');
  t.match(await page.textContent('body'), 'Signed in as alice', 'second sign-in: password, then a code');
});

t.test('the recovery codes page: a text file to download, Print and Copy; printed, only the codes and what they are', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.base });
  await submitPassword(page, s);
  await andWait(page, page.getByRole('link', { name: 'Set up an authenticator app' }).click());
  await page.fill('#code', await totpAt(await shownSecret(page), s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/recovery-codes`);
  const codes = await shownCodes(page);

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download them as a text file' }).click()]);
  t.equal(download.suggestedFilename(), 'recovery-codes.txt');
  const file = readFileSync((await download.path())!, 'utf8');
  t.match(file, /^Recovery codes for Riverbend Health Patient Portal\. /, 'the file says what they are for');
  t.same(file.trim().split('\n').slice(-11), ['', ...codes], 'and holds the codes shown, one a line');

  await page.getByRole('button', { name: 'Copy them' }).click();
  await page.getByRole('status').filter({ hasText: 'Copied' }).waitFor();
  t.equal(await page.evaluate(() => navigator.clipboard.readText()), codes.join('\n'), 'Copy: the codes, one a line');
  t.ok(await page.getByRole('button', { name: 'Print them' }).isVisible(), 'a Print button');

  await page.emulateMedia({ media: 'print' });
  t.same(await shownCodes(page), codes);
  for (const hidden of ['.save-codes', '#ack', 'form button[type=submit]', 'header nav']) t.notOk(await page.locator(hidden).first().isVisible(), `printed without ${hidden}`);
  t.ok(await page.locator('#recovery-codes').isVisible(), 'printed: the codes');
  await page.emulateMedia({ media: 'screen' });
  await page.check('#ack');
  await submit(page);
  t.equal(url(page), '/records', 'and on, as before');
  await page.goto(`${s.base}${P}/security`);
  await page.emulateMedia({ media: 'print' });
  t.ok(await page.getByRole('button', { name: 'Make new recovery codes' }).isVisible(), 'another page prints as it shows');
});

t.test('the recovery codes page printed once its time warning shows: still only the codes and what they are', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await page.clock.install();
  await submitPassword(page, s);
  await andWait(page, page.getByRole('link', { name: 'Set up an authenticator app' }).click());
  await page.fill('#code', await totpAt(await shownSecret(page), s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/recovery-codes`);
  const warning = page.getByRole('alert');
  await page.clock.runFor(s.config.mfa.pendingTimeoutSeconds * 1000 - 50_000);
  t.match(await warning.textContent(), /^Less than a minute left/, 'the warning, on the screen');
  await page.emulateMedia({ media: 'print' });
  t.ok(await page.locator('#recovery-codes').isVisible(), 'printed: the codes');
  t.notOk(await page.locator('.time-warning').isVisible(), 'printed without the warning');
  await page.emulateMedia({ media: 'screen' });
  await page.clock.runFor(60_000);
  t.match(await warning.textContent(), /has run out/, 'and once the time has run out');
  await page.emulateMedia({ media: 'print' });
  t.notOk(await page.locator('.time-warning').isVisible(), 'printed without that either');
});

t.test('the recovery codes page without JavaScript: the download link, no Print or Copy button that would do nothing', async (t) => {
  const s = await startE2eStack(t);
  const context = await browser.newContext({ javaScriptEnabled: false });
  t.teardown(() => context.close());
  const page = await context.newPage();
  await submitPassword(page, s);
  await andWait(page, page.getByRole('link', { name: 'Set up an authenticator app' }).click());
  await page.fill('#code', await totpAt(await shownSecret(page), s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/recovery-codes`);
  t.ok(await page.getByRole('link', { name: 'Download them as a text file' }).isVisible());
  t.equal(await page.getByRole('button', { name: /Print them|Copy them/ }).count(), 0, 'no Print or Copy button');
});

t.test('the app set-up page: Copy puts the key on the clipboard without its spaces; without JavaScript, no Copy button', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.base });
  await submitPassword(page, s);
  await andWait(page, page.getByRole('link', { name: 'Set up an authenticator app' }).click());
  t.equal(url(page), `${P}/enrol/totp`);
  t.match(await page.textContent('#secret'), /^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$/, 'shown in groups of four');
  const copy = page.getByRole('button', { name: 'Copy the key' });
  await copy.click();
  await page.getByRole('status').filter({ hasText: 'Copied. Paste it into your authenticator app.' }).waitFor();
  t.equal(await page.evaluate(() => navigator.clipboard.readText()), await shownSecret(page), 'copied: the key without spaces');
  t.match((await focused(page)).element, /^button "Copy the key"/, 'the button keeps focus');

  const noScript = await browser.newContext({ javaScriptEnabled: false });
  t.teardown(() => noScript.close());
  const plain = await noScript.newPage();
  await submitPassword(plain, s);
  await andWait(plain, plain.getByRole('link', { name: 'Set up an authenticator app' }).click());
  t.equal(url(plain), `${P}/enrol/totp`);
  t.ok(await plain.locator('#secret').isVisible(), 'without JavaScript: the key');
  t.equal(await plain.getByRole('button', { name: 'Copy the key' }).count(), 0, 'and no Copy button that would do nothing');
});

t.test('signing in with a recovery code', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  const { codes } = await enrolTotp(page, s);

  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  t.match(await page.textContent('h1'), 'You have signed out');
  await andWait(page, page.getByRole('link', { name: 'Sign in again' }).click());
  t.equal(url(page), '/login');

  await page.fill('#username', ALICE.username);
  await page.fill('#password', ALICE.password);
  await submit(page, 'button[type=submit]');
  t.equal(url(page), `${P}/verify`);
  await andWait(page, page.getByRole('link', { name: 'Lost your phone or security key? Use a recovery code' }).click());
  t.equal(url(page), `${P}/recovery`);
  await page.fill('#code', 'AAAA-BBBB-CCCC-DDDD');
  await submit(page);
  t.equal(url(page), `${P}/recovery`);
  t.match(await page.getByRole('alert').textContent(), 'That code did not work', 'a wrong code is refused');
  await page.fill('#code', codes[0]!.toLowerCase());
  await submit(page);
  t.equal(url(page), '/records', 'a saved code signs in (in any case)');
  t.match(await page.textContent('body'), 'Signed in as alice');

  await page.goto(`${s.base}${P}/security`);
  t.match(await page.textContent('main'), '9 of 10 recovery codes left.');

  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  await page.goto(`${s.base}${P}/recovery`);
  await page.fill('#code', codes[0]!);
  await submit(page);
  t.equal(url(page), `${P}/recovery`, 'a used code does not work again');
  await page.fill('#code', codes[1]!);
  await submit(page);
  t.equal(url(page), '/records', 'the next one does');
});

t.test('enrolment with the keyboard alone, focus visible at each stop', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);

  const tags = new Set<string>();
  const tab = async (shift = false): Promise<FocusStop> => {
    const stop = await pressTab(page, shift);
    t.ok(stop.visible, `focus shown on ${stop.element} (outline ${stop.outline}, shadow ${stop.boxShadow})`);
    tags.add(stop.tag);
    return stop;
  };
  const tabTo = async (what: RegExp): Promise<FocusStop> => {
    for (let i = 0; i < 20; i++) {
      const stop = await tab();
      if (what.test(stop.element)) return stop;
    }
    throw new Error(`Tab never reached ${what}`);
  };

  // The first stop is the skip link; it leads past the header into the main content.
  t.match((await tab()).element, /^a "Skip to main content"/);
  await page.keyboard.press('Enter');
  t.match((await tab()).element, /^input#passkey-name/, 'after the skip link, Tab goes on in the main content');

  await tabTo(/^a "Set up an authenticator app"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/enrol/totp`);
  t.equal((await focused(page)).index, -1, 'no field takes focus: the QR code and the key are read first, no keyboard covers them');
  await tabTo(/^input#code/);
  // A mistake first: the answer puts focus back on the field.
  await page.keyboard.type(await wrongTotp(await shownSecret(page), s.clock.now()));
  await andWait(page, page.keyboard.press('Enter'));
  t.match((await focused(page)).element, /^input#code/, 'focus on the field with the error');
  await page.keyboard.type(await totpAt(await shownSecret(page), s.clock.now()));
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/recovery-codes`);

  // Past the checkbox to the button, back with Shift+Tab, tick it with Space, on to the button and Enter.
  await tabTo(/^button "Continue"/);
  t.match((await tab(true)).element, /^input#ack/, 'Shift+Tab goes back to the checkbox');
  await page.keyboard.press('Space');
  t.equal(await page.isChecked('#ack'), true, 'ticked with Space');
  t.match((await tab()).element, /^button "Continue"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), '/records', 'signed in');
  t.match(await page.textContent('body'), 'Signed in as alice');
  t.same([...tags].sort(), ['a', 'button', 'input'], 'focus was shown on links, buttons and fields');
});
