// The gateway's screens as a screen reader meets them, driven by the keyboard alone (Tab, Shift+Tab, Enter, Space):
// what Chromium gives a screen reader (roles, names, states, alerts), read through the DevTools protocol. axe's rules
// are checked in accessibility.test.ts; the whole enrolment by keyboard in totp.test.ts.
import t, { type Test } from 'tap';
import type { CDPSession, Page } from 'playwright-core';
import { addVirtualAuthenticator, andWait, axeViolations, enrolTotp, focused, launchChromium, newPage, shownCodes, shownSecret, startE2eStack, submit, submitPassword, url } from '../helpers/e2e.js';
import { totpAt } from '../helpers/stack.js';
import en from '../../src/ui/locales/en.json' with { type: 'json' };

const P = '/_mfa';
const browser = await launchChromium(t);

interface AxNode {
  role: string;
  name: string;
  /** aria-invalid as the browser works it out: also from the field's own validity. */
  invalid?: string;
}

// One DevTools session a page, kept open: one detached ends the page's virtual authenticator.
const sessions = new WeakMap<Page, CDPSession>();

/** The page's accessibility tree as Chromium gives it to a screen reader: its nodes not ignored, in the page's order. */
async function axTree(page: Page): Promise<AxNode[]> {
  let cdp = sessions.get(page);
  if (!cdp) sessions.set(page, (cdp = await page.context().newCDPSession(page)));
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  return nodes
    .filter((n) => !n.ignored)
    .map((n) => ({ role: String(n.role?.value), name: String(n.name?.value ?? ''), invalid: n.properties?.find((p) => p.name === 'invalid')?.value.value as string | undefined }));
}

/** Tab until focus is on the element `what` matches (tag, id and text, as `focused` names it). */
async function tabTo(page: Page, what: RegExp): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    if (what.test((await focused(page)).element)) return;
  }
  throw new Error(`Tab never reached ${what}`);
}

/** Someone who has enrolled an authenticator app and signed out again. */
async function enrolledAndSignedOut(t: Test) {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  await enrolTotp(page, s);
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  return { s, page };
}

t.test('the recovery codes: the box is not called invalid before it is sent unticked', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  await tabTo(page, /^a "Set up an authenticator app"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/enrol/totp`);
  await tabTo(page, /^input#code/);
  await page.keyboard.type(await totpAt(await shownSecret(page), s.clock.now()));
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/recovery-codes`);

  // Each code an item of a list, to be read one by one.
  const tree = await axTree(page);
  t.equal(tree.filter((n) => n.role === 'listitem').length, 10, 'ten items');
  t.same(tree.filter((n) => n.role === 'StaticText' && /^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$/.test(n.name)).map((n) => n.name), await shownCodes(page), 'a code in each');
  // Chromium takes a required box not yet ticked for invalid: a screen reader said "invalid" of it on arrival.
  t.same(tree.find((n) => n.role === 'checkbox'), { role: 'checkbox', name: en.recoveryAck, invalid: 'false' }, 'the box, on arrival: not invalid');
  // Sent unticked: the browser says so (an alert of its own) and puts focus on the box.
  await tabTo(page, /^button "Continue"/);
  await page.keyboard.press('Enter');
  t.match((await focused(page)).element, /^input#ack/, 'focus on the box');
  t.ok((await axTree(page)).some((n) => n.role === 'alert' && n.name.startsWith('Please check this box')), "the browser's alert says what is missing");
  await page.keyboard.press('Space');
  await page.keyboard.press('Tab');
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), '/records', 'signed in');
});

t.test("the security page: each factor's Rename and Remove buttons say which factor", async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  await enrolTotp(page, s);

  // A second factor: a passkey, added by the keyboard.
  await page.goto(`${s.base}${P}/security`);
  await tabTo(page, /^a "Add a passkey or security key"/);
  await andWait(page, page.keyboard.press('Enter'));
  await tabTo(page, /^button "Create passkey"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(`${url(page)}${new URL(page.url()).search}`, `${P}/security?notice=done`, 'passkey added');

  // Met in a screen reader's list of buttons, or tabbed to past the field, a bare "Rename" does not say which.
  const buttons = (await axTree(page)).filter((n) => n.role === 'button').map((n) => n.name);
  for (const factor of [en.totpDefaultName, en.passkeyDefaultName]) {
    for (const action of ['Rename', 'Remove']) t.ok(buttons.includes(`${action} ${factor}`), `a button "${action} ${factor}"`);
  }
  t.same(buttons.filter((b) => /^(Rename|Remove)$/.test(b)), [], 'none that does not say which factor');
});

t.test('a minute before a sign-in runs out of time, its page warns, and "I need more time" is a Tab away', async (t) => {
  const { s, page } = await enrolledAndSignedOut(t);
  await submitPassword(page, s);
  // The code page of an app-only person: a page with no passkey script.
  t.equal(url(page), `${P}/verify`);
  const warning = page.getByRole('alert');
  t.equal(await warning.count(), 0, 'no warning with the whole time left');

  // 62 s left when the page comes: the warning 2 s later.
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 - 62_000);
  await page.reload();
  t.equal(await warning.count(), 0, 'none yet');
  await tabTo(page, /^input#code/);
  await page.keyboard.type('123');
  await warning.waitFor({ timeout: 10_000 });
  t.equal(await warning.textContent(), en.timeAlmostUp, 'the warning, shown');
  t.ok((await axTree(page)).some((n) => n.role === 'alert'), 'an alert, which a screen reader announces');
  t.same(await axeViolations(page), [], 'axe: the page with the warning has no WCAG 2.2 A/AA violations');
  t.match((await focused(page)).element, /^input#code/, 'focus left where it was');
  t.equal(await page.inputValue('#code'), '123', 'and what was typed');
  await tabTo(page, /^button "I need more time"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(await page.locator('h1').textContent(), en.verifyTitle, 'the same page again');
  t.equal(await page.getByRole('status').textContent(), 'You have 5 minutes left to finish signing in. After that, start again with your password.', 'with its whole time again');
  t.equal(await warning.count(), 0, 'and no warning');
  t.equal(await page.inputValue('#code'), '123', 'what was typed, kept');
  t.match((await focused(page)).element, /^input#code/, 'focus back on the field, to go on typing');
  await page.keyboard.type('456');
  t.equal(await page.inputValue('#code'), '123456', 'after what was typed: the caret at its end');
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/verify`, 'Enter in the field still sends the code, not "I need more time"');
  t.match(await page.title(), /^Error: /, 'a wrong code (123456), answered as one');
});

t.test('"I need more time" on the factor choice keeps the passkey\'s name typed, and focus goes back to it', async (t) => {
  const s = await startE2eStack(t);
  const { context, page } = await newPage(t, browser);
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 - 62_000);
  await page.reload();
  await tabTo(page, /^input#passkey-name/);
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.type('Blue <key>');
  await tabTo(page, /^button "I need more time"/);
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(await page.locator('h1').textContent(), en.chooseTitle, 'the same page again');
  t.equal(await page.getByRole('status').textContent(), 'You have 5 minutes left to finish signing in. After that, start again with your password.', 'with its whole time again');
  t.equal(await page.inputValue('#passkey-name'), 'Blue <key>', 'the name typed, kept');
  t.match((await focused(page)).element, /^input#passkey-name/, 'focus back on the field, to go on typing');
  await page.keyboard.type(' 2');
  t.equal(await page.inputValue('#passkey-name'), 'Blue <key> 2', 'after what was typed: the caret at its end');
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(url(page), `${P}/recovery-codes`, 'Enter in the field still creates the passkey, not "I need more time"');
  await page.check('#ack');
  await submit(page);
  await page.goto(`${s.base}${P}/security`);
  t.match(await page.textContent('.factors'), 'Blue <key> 2 – ', 'named as typed');
});

t.test('the time left at the top of a sign-in page reads as words: minutes, then less than a minute', async (t) => {
  const { s, page } = await enrolledAndSignedOut(t);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  const read = async () => (await axTree(page)).filter((n) => n.role === 'StaticText').map((n) => n.name);
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 - 4 * 60_000);
  await page.reload();
  t.ok((await read()).includes('You have 4 minutes left to finish signing in. After that, start again with your password.'), 'minutes written out');
  s.clock.advance(3 * 60_000 + 30_000);
  await page.reload();
  const late = await read();
  t.ok(late.includes('Less than a minute left to finish signing in. If you need more time, use the button below.'), 'with a minute or less: less than a minute, not "1 minutes"');
  t.notOk(late.some((text) => /\bmin\b/.test(text)), 'no "min" to be read as a word');
});

t.test('when a sign-in runs out of time, its page says so (also when its timer fires late) and offers no more time', async (t) => {
  const { s, page } = await enrolledAndSignedOut(t);
  // The page's clock is the test's: moved on at will, its timers fired as they fall due.
  await page.clock.install();
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  const warning = page.getByRole('alert');
  const moreTime = page.locator('.more-time button');

  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 - 62_000);
  await page.reload();
  await tabTo(page, /^input#code/);
  await page.keyboard.type('123');
  await page.clock.runFor(3_000);
  t.equal(await warning.textContent(), en.timeAlmostUp, 'a minute before the end: the warning');
  t.equal(await moreTime.textContent(), en.moreTime);
  t.ok(await moreTime.isVisible(), 'and "I need more time"');
  await page.clock.runFor(60_000);
  t.equal(await warning.textContent(), en.timeRanOut, 'at the end: that the time has run out, in the same alert');
  t.ok((await axTree(page)).some((n) => n.role === 'alert'), 'still an alert, which a screen reader announces');
  t.notOk(await moreTime.isVisible(), 'no "I need more time", which could no longer give any');
  t.match((await focused(page)).element, /^input#code/, 'focus left where it was');
  t.equal(await page.inputValue('#code'), '123', 'and what was typed');

  // Focus on "I need more time" when the time runs out: not lost with the button, but on what says why it went.
  await page.reload();
  await page.clock.runFor(3_000);
  await tabTo(page, /^button "I need more time"/);
  await page.clock.runFor(60_000);
  t.notOk(await moreTime.isVisible(), 'the button gone');
  t.match((await focused(page)).element, /^p "The time to finish signing in has run/, 'focus on the alert that says why');

  // The tab in the background (the authenticator app in front of it, a phone asleep): its timer fires only once the
  // end has passed. The page says the time has run out, not that a minute is left.
  await page.reload();
  await page.clock.fastForward(120_000);
  await warning.waitFor();
  t.equal(await warning.textContent(), en.timeRanOut, 'a timer fired late: that the time has run out');
  t.notOk(await moreTime.isVisible(), 'and no more time offered');
});

t.test('the security page says how long changes stay open, warns a minute before and at the end; what was typed comes back after the step-up a late change asks for', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  const { secret } = await enrolTotp(page, s);
  await page.clock.install();
  await page.goto(`${s.base}${P}/security`);
  t.equal(await page.locator('main > h1 + p.hint').textContent(), en.changesMinutesLeft.replace('{minutes}', '5'), 'the time said at the top');
  const warning = page.getByRole('alert');
  t.equal(await warning.count(), 0, 'no warning with the whole time left');

  await tabTo(page, /^input#rename-/);
  await page.keyboard.type('Blue phone');
  await page.clock.runFor(4 * 60_000 + 1_000);
  t.equal(await warning.textContent(), en.changesAlmostUp, 'a minute before the end: the warning');
  t.ok((await axTree(page)).some((n) => n.role === 'alert'), 'an alert, which a screen reader announces');
  t.same(await axeViolations(page), [], 'axe: the page with the warning has no WCAG 2.2 A/AA violations');
  await page.clock.runFor(60_000);
  t.equal(await warning.textContent(), en.changesRanOut, 'at the end: that the time has run out, in the same alert');
  t.match((await focused(page)).element, /^input#rename-/, 'focus left where it was');
  t.equal(await page.inputValue('input[id^="rename-"]'), 'Blue phone', 'and what was typed');

  // Sent all the same: a step-up first, then back to the field with the new name in it, not yet saved.
  s.clock.advance(5 * 60_000 + 1);
  await andWait(page, page.keyboard.press('Enter'));
  await andWait(page, page.getByRole('link', { name: en.stepUpTitle }).click());
  t.equal(url(page), `${P}/step-up`);
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/security`);
  t.equal(await page.getByRole('status').textContent(), en.securityKept, 'the page says the change is not saved yet');
  t.match((await focused(page)).element, /^input#rename-/, 'focus on the field');
  t.equal(await page.inputValue('input[id^="rename-"]'), 'Blue phone', 'with what was typed');
  await andWait(page, page.keyboard.press('Enter'));
  t.equal(await page.locator('.factors strong bdi').textContent(), 'Blue phone', 'sent again: saved');

  // A passkey's name: its page opened again with it, across the step-up.
  await page.goto(`${s.base}${P}/security/passkey`);
  await page.fill('#passkey-name', 'Red key');
  s.clock.advance(5 * 60_000 + 1);
  await andWait(page, page.getByRole('button', { name: en.passkeyCreate }).click());
  t.equal(url(page), `${P}/step-up`, 'a step-up first');
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/security/passkey`);
  t.equal(await page.inputValue('#passkey-name'), 'Red key', 'the name typed, kept');
  t.equal(await page.getByRole('status').textContent(), en.securityKept);
});

t.test("a first enrolment's passkey page, opened again by its script, gets no name it would not read back", async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/enrol`);
  await page.fill('#passkey-name', 'Red key');
  const opened: string[] = [];
  page.on('request', (req) => {
    if (req.isNavigationRequest()) opened.push(new URL(req.url()).pathname + new URL(req.url()).search);
  });
  // The sign-in's time over: the options refused, the page opened again.
  s.clock.advance(60 * 60_000);
  await andWait(page, page.getByRole('button', { name: en.passkeyCreate }).click());
  t.equal(opened[0], `${P}/enrol`, 'opened again, without the name');
});
