// Every gateway screen in Chromium: axe-core (WCAG 2.0–2.2 A and AA), the WCAG 2.2 AA points the pages must meet
// checked in the browser (labels, errors tied to fields, code fields, visible focus, reflow and zoom), and a
// screenshot of each at a phone and a desktop width.
import t from 'tap';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import {
  DESKTOP,
  PHONE,
  addVirtualAuthenticator,
  andWait,
  axeViolations,
  focused,
  horizontalOverflow,
  launchChromium,
  newPage,
  pressTab,
  screenshotDir,
  shownSecret,
  startE2eStack,
  submit,
  submitPassword,
  tabbableCount,
  wrongTotp,
  type E2eStack,
  type FocusStop,
  url,
} from '../helpers/e2e.js';
import { inputValue } from '../helpers/browser.js';
import { ALICE, BOB, enrol, submitPassword as submitHttpPassword, totpAt } from '../helpers/stack.js';

const P = '/_mfa';
const SHOTS = screenshotDir();
// E2E_DOCS_SCREENSHOTS=1 also refreshes the few phone-width screenshots the README shows.
const DOCS = process.env.E2E_DOCS_SCREENSHOTS ? join(import.meta.dirname, '..', '..', 'docs', 'screenshots') : undefined;
const FOR_DOCS = new Set(['choose', 'totp-enrol', 'verify-passkey-totp', 'security-notice']);
// The widest codes of letters as printed: an enrolment code (12 letters) and a recovery code (16).
const INVITATION = 'WMWM-WMWM-WMWM';
const RECOVERY = 'WMWM-WMWM-WMWM-WMWM';
const invite = (raw: Record<string, any>) => (raw.enrolment = { proof: 'invite', inviteDays: 30 });
t.comment(`screenshots: ${SHOTS}`);
const browser = await launchChromium(t);

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

interface Expect {
  /** The id of the field the page shows an error for (none: the page shows no field error). */
  errorFor?: string;
  /**
   * The code field (#code or #proof) and what it takes: six digits, or letters and digits (`longest`: the longest code
   * of letters it is for, as printed, which must show whole in the field).
   */
  code?: { id: string; digits: boolean; longest?: string };
  /** An error page while a sign-in is in progress (its pages say so by their time limit; an error page does not). */
  signingIn?: boolean;
  /** The page shown once signed out. */
  signedOut?: boolean;
}

/** All checks of one screen, as it is now; leaves it as it was found (phone width, top of the page). */
async function screen(t: Test, page: Page, name: string, expect: Expect = {}): Promise<void> {
  await t.test(name, async (t) => {
    // A page answering a mistake opens with focus on the field to correct (WCAG 3.3.1, 3.3.3).
    if (expect.errorFor) t.equal((await focused(page)).element.split(' ')[0], `input#${expect.errorFor}`, 'the field with the error has focus');
    t.same(await axeViolations(page), [], 'axe: no violations of WCAG 2.2 A and AA rules');

    // What the page says about itself, read in one go.
    const facts = await page.evaluate((codeId) => {
      const visible = (e: Element) => e.checkVisibility();
      const code = codeId ? document.getElementById(codeId) : null;
      return {
        lang: document.documentElement.lang,
        h1: document.querySelectorAll('h1').length,
        securityLink: document.querySelectorAll('header nav a[href="/_mfa/security"]').length,
        signingIn: / left to finish signing in/.test(document.querySelector('main')?.textContent ?? ''),
        fields: [...document.querySelectorAll<HTMLInputElement>('input:not([type=hidden])')].map((i) => ({
          id: i.id,
          labels: [...(i.labels ?? [])].map((l) => (visible(l) ? l.textContent!.trim() : '')),
        })),
        code: code && { autocomplete: code.getAttribute('autocomplete'), inputmode: code.getAttribute('inputmode') },
        errors: [...document.querySelectorAll('.error')].filter(visible).map((e) => ({ id: e.id, role: e.getAttribute('role'), text: e.textContent!.trim() })),
        invalid: [...document.querySelectorAll('[aria-invalid="true"]')].map((e) => ({ id: e.id, describedBy: e.getAttribute('aria-describedby') ?? '' })),
      };
    }, expect.code?.id);

    // One of the gateway's own pages: language, one h1, and the way to the sign-in settings, for someone signed in (a
    // sign-in in progress has none yet, and leaving the recovery codes would lose them; signed out, it would only ask
    // to sign in).
    t.equal(facts.lang, 'en', 'language of the page');
    t.equal(facts.h1, 1, 'one h1');
    const signedIn = !facts.signingIn && !expect.signingIn && !expect.signedOut;
    t.equal(facts.securityLink, signedIn ? 1 : 0, signedIn ? 'links to the security page' : 'no link to the security page when not signed in');

    // Fields have a visible label of their own (WCAG 1.3.1, 3.3.2, 4.1.2).
    for (const f of facts.fields) t.ok(f.labels.length === 1 && f.labels[0], `#${f.id} has a visible label (${f.labels.join(' | ')})`);

    // Touch targets (WCAG 2.5.5): 44×44 CSS px, at the widths and text size where they are smallest. A checkbox has
    // its label to tap too, and is 24 px (2.5.8); a link in a sentence (a letter beside it, outside links) is exempt.
    for (const width of [320, PHONE.width]) {
      await page.setViewportSize({ width, height: 640 });
      const small = await page.evaluate(() =>
        [...document.querySelectorAll<HTMLElement>('a[href]:not(.skip), button, input:not([type=hidden])')]
          .filter((e) => e.checkVisibility())
          .filter((e) => {
            const parent = e.parentElement!;
            const outside = [...parent.childNodes].filter((n) => !(n instanceof HTMLAnchorElement)).map((n) => n.textContent).join('');
            return !(e instanceof HTMLAnchorElement && /\p{L}/u.test(outside));
          })
          .map((e) => ({ e, r: e.getBoundingClientRect(), least: e.matches('input[type=checkbox]') ? 24 : 44 }))
          .filter(({ r, least }) => r.width < least || r.height < least)
          .map(({ e, r }) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''} "${e.textContent!.trim().slice(0, 30)}" ${r.width.toFixed(1)}×${r.height.toFixed(1)}`),
      );
      t.same(small, [], `touch targets of 44×44 CSS px at ${width} CSS px`);
    }
    await page.setViewportSize(PHONE);

    // Code fields: the browser and password managers may fill a code of digits (an app's, one sent by message); a
    // recovery or invitation code has letters and comes from paper: nothing to offer, and no numeric keyboard.
    if (expect.code) {
      t.equal(facts.code?.autocomplete, expect.code.digits ? 'one-time-code' : 'off', `autocomplete="${expect.code.digits ? 'one-time-code' : 'off'}"`);
      t.equal(facts.code?.inputmode, expect.code.digits ? 'numeric' : null, expect.code.digits ? 'inputmode="numeric"' : 'no numeric keyboard for a code with letters');
    }

    // A code copied from paper shows whole in its field, to be checked against the paper, also at 320 CSS px (the
    // widest letters: W and M). The field's own value is put back.
    if (expect.code?.longest) {
      for (const width of [320, DESKTOP.width]) {
        await page.setViewportSize({ width, height: 640 });
        const hidden = await page.$eval(`#${expect.code.id}`, (e, code) => {
          const input = e as HTMLInputElement;
          const typed = input.value;
          input.value = code;
          const over = input.scrollWidth - input.clientWidth;
          input.value = typed;
          return over;
        }, expect.code.longest);
        t.equal(hidden, 0, `${expect.code.longest} shows whole in #${expect.code.id} at ${width} CSS px`);
      }
      await page.setViewportSize(PHONE);
    }

    // An error is announced and tied to its field; without one, nothing is marked invalid (WCAG 3.3.1, 4.1.3).
    const { errors, invalid } = facts;
    if (expect.errorFor) {
      t.equal(errors.length, 1, 'one error shown');
      t.equal(errors[0]?.role, 'alert', 'announced (role=alert)');
      t.ok(errors[0]?.text, `with a message: ${errors[0]?.text}`);
      t.same(invalid.map((i) => i.id), [expect.errorFor], `#${expect.errorFor} is aria-invalid`);
      t.equal(invalid[0]?.describedBy.split(' ')[0], errors[0]?.id ?? '-', 'the field is described by the error, read first');
    } else {
      t.same(errors, [], 'no error shown');
      t.same(invalid, [], 'no field marked invalid');
    }

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SHOTS, `${name}-phone.png`) });
    if (DOCS && FOR_DOCS.has(name)) copyFileSync(join(SHOTS, `${name}-phone.png`), join(DOCS, `${name}.png`));

    // Reflow (WCAG 1.4.10) is defined at 320 CSS px: a 1280 px window at 400% zoom. Page zoom in Chrome is CSS px
    // getting bigger, so the layout viewport shrinks by the zoom factor: 200% zoom of a 1280×800 window lays the
    // page out in 640×400 CSS px (1.4.4). Setting those viewports gives the same layout as zooming, and
    // deviceScaleFactor would only change how finely it is drawn.
    for (const viewport of [
      { width: 320, height: 640 },
      { width: 640, height: 400 },
    ]) {
      await page.setViewportSize(viewport);
      t.equal(await horizontalOverflow(page), 0, `no horizontal scrolling at ${viewport.width} CSS px`);
    }
    await page.setViewportSize(DESKTOP);
    await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`) });
    await page.setViewportSize(PHONE);

    // Every tabbable element is reached with Tab and shows where focus is (WCAG 2.1.1, 2.4.7, 2.4.11).
    const count = await tabbableCount(page);
    const seen = new Map<number, FocusStop>();
    const faint: string[] = [];
    for (let i = 0; i < 2 * count + 2 && seen.size < count; i++) {
      const stop = await pressTab(page);
      if (stop.index < 0 || seen.has(stop.index)) continue;
      seen.set(stop.index, stop);
      const ratio = await outlineContrast(page);
      if (ratio < 3) faint.push(`${stop.element}: ${ratio.toFixed(2)}:1`);
    }
    t.equal(seen.size, count, `Tab reaches all ${count} tabbable elements`);
    const hidden = [...seen.values()].filter((s) => !s.visible);
    t.same(hidden, [], 'each shows an outline or box-shadow when focused, on screen');
    t.same(faint, [], 'each outline contrasts 3:1 with what is around it (WCAG 1.4.11)');
    await page.evaluate(() => {
      (document.activeElement as HTMLElement | null)?.blur();
      window.scrollTo(0, 0);
    });
  });
}

/**
 * The contrast of the focused element's outline with the background it is drawn on (the nearest ancestor's with one;
 * the outline is outside the element): WCAG 2.x relative luminance.
 */
async function outlineContrast(page: Page): Promise<number> {
  return page.evaluate(() => {
    const rgb = (c: string) => c.match(/[\d.]+/g)!.slice(0, 3).map(Number);
    const luminance = (c: string) => {
      const [r, g, b] = rgb(c).map((v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4));
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const el = document.activeElement!;
    let around = el.parentElement;
    while (around && getComputedStyle(around).backgroundColor === 'rgba(0, 0, 0, 0)') around = around.parentElement;
    const [a, b] = [luminance(getComputedStyle(el).outlineColor), luminance(around ? getComputedStyle(around).backgroundColor : 'rgb(255, 255, 255)')];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  });
}

/**
 * The dates (YYYY-MM-DD) in the page's main content broken across lines at some width of the page from 240 to 480 CSS
 * px, each with the first width it breaks at: laid out in the page by the width of its root, as a window that wide.
 */
async function brokenDates(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const dates: Range[] = [];
    const walker = document.createTreeWalker(document.querySelector('main')!, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent!.matchAll(/\d{4}-\d{2}-\d{2}/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        dates.push(range);
      }
    }
    const broken = new Map<string, number>();
    const root = document.documentElement;
    for (let width = 240; width <= 480; width++) {
      root.style.width = `${width}px`;
      for (const range of dates) {
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1 && !broken.has(range.toString())) broken.set(range.toString(), width);
      }
    }
    root.style.width = '';
    return [...broken].map(([date, width]) => `${date} at ${width} CSS px`);
  });
}

t.test('the checks see problems when there are some', async (t) => {
  const s = await startE2eStack(t);
  const { page } = await newPage(t, browser);
  await page.goto(`${s.base}${P}/nothing`);
  await page.evaluate(() => {
    const main = document.querySelector('main')!;
    main.append(Object.assign(document.createElement('input'), { type: 'text' }));
    const faint = Object.assign(document.createElement('p'), { textContent: 'faint text' });
    faint.style.color = '#bbbbbb';
    const wide = Object.assign(document.createElement('pre'), { textContent: 'x'.repeat(200) });
    const dated = Object.assign(document.createElement('p'), { textContent: 'Added 2026-12-06, last used 2026-12-06' });
    main.append(faint, wide, dated);
    for (const a of document.querySelectorAll<HTMLElement>('a')) {
      a.style.outline = 'none';
      a.style.boxShadow = 'none';
    }
  });
  const ids = (await axeViolations(page)).map((v) => v.id);
  t.ok(ids.includes('label'), 'an unlabelled field');
  t.ok(ids.includes('color-contrast'), 'text with too little contrast');
  t.ok((await horizontalOverflow(page)) > 0, 'a line wider than the window');
  t.ok((await brokenDates(page)).length > 0, 'a date broken across lines');
  let stop: FocusStop;
  do stop = await pressTab(page);
  while (stop.index >= 0 && stop.tag !== 'a');
  t.equal(stop.tag, 'a', 'a link has focus');
  t.equal(stop.visible, false, 'a focused link without outline or shadow');
  await page.evaluate(() => ((document.activeElement as HTMLElement).style.outline = '3px solid #bbbbbb'));
  t.ok((await outlineContrast(page)) < 3, 'an outline too faint on its background');
});

t.test('gateway screens', async (t) => {
  const s: E2eStack = await startE2eStack(t, { patch: invite });
  if (DOCS) mkdirSync(DOCS, { recursive: true });

  t.test('enrolment (invitation code) and the signed-in pages', async (t) => {
    const { context, page } = await newPage(t, browser);
    await addVirtualAuthenticator(context, page);
    const invitation = await s.issueInvite(ALICE.username);
    await submitPassword(page, s);
    t.equal(url(page), `${P}/proof`);
    await screen(t, page, 'proof', { code: { id: 'proof', digits: false, longest: INVITATION } });
    await page.fill('#proof', 'AAAA-BBBB-CCCC');
    await submit(page);
    await screen(t, page, 'proof-error', { errorFor: 'proof', code: { id: 'proof', digits: false, longest: INVITATION } });
    await page.fill('#proof', invitation);
    await submit(page);

    t.equal(url(page), `${P}/enrol`);
    await screen(t, page, 'choose');
    await andWait(page, page.click(`a[href="${P}/enrol/totp"]`));
    await screen(t, page, 'totp-enrol', { code: { id: 'code', digits: true } });
    const secret = await shownSecret(page);
    await page.fill('#code', await wrongTotp(secret, s.clock.now()));
    await submit(page);
    await screen(t, page, 'totp-enrol-error', { errorFor: 'code', code: { id: 'code', digits: true } });
    await page.fill('#code', await totpAt(secret, s.clock.now()));
    await submit(page);

    t.equal(url(page), `${P}/recovery-codes`);
    await screen(t, page, 'recovery-codes');
    // Without the box ticked the browser itself says so (a page sent again could not show the codes again).
    await page.click('button[type=submit]');
    t.equal(url(page), `${P}/recovery-codes`, 'not sent unticked');
    t.equal(await page.$eval('#ack', (e) => (e as HTMLInputElement).validity.valueMissing), true, 'the box is asked for');
    await page.check('#ack');
    await submit(page);
    t.equal(url(page), '/records', 'signed in');

    await page.goto(`${s.base}${P}/security`);
    await screen(t, page, 'security');
    t.same(await brokenDates(page), [], 'each date on one line, at every width from 240 to 480 CSS px');
    // The only factor: a hint where its Remove button would be, as far below Rename as any button is from what it follows.
    const { gap, buttonMargin } = await page.$eval('.factors form.inline', (form) => {
      const rename = form.querySelector('button')!;
      return { gap: form.nextElementSibling!.getBoundingClientRect().top - rename.getBoundingClientRect().bottom, buttonMargin: parseFloat(getComputedStyle(rename).marginTop) };
    });
    t.ok(Math.abs(gap - buttonMargin) < 1, `the hint ${gap.toFixed(1)} CSS px below Rename (${buttonMargin} px above a button)`);
    await andWait(page, page.click(`a[href="${P}/security/totp"]`));
    await screen(t, page, 'add-app', { code: { id: 'code', digits: true } });
    s.clock.advance(30_000);
    await page.fill('#code', await wrongTotp(await shownSecret(page), s.clock.now()));
    await submit(page);
    await screen(t, page, 'add-app-error', { errorFor: 'code', code: { id: 'code', digits: true } });

    await page.goto(`${s.base}${P}/security`);
    await andWait(page, page.click(`a[href="${P}/security/passkey"]`));
    await screen(t, page, 'passkey-setup');
    await andWait(page, page.click('.passkey-start'));
    t.equal(`${url(page)}${new URL(page.url()).search}`, `${P}/security?notice=done`, 'passkey added');
    await screen(t, page, 'security-notice');
    await andWait(page, page.getByRole('button', { name: /^Remove / }).first().click());
    await screen(t, page, 'remove-factor');
    await page.goto(`${s.base}${P}/security`);
    await andWait(page, page.getByRole('button', { name: 'Make new recovery codes' }).click());
    await screen(t, page, 'new-recovery-codes');
    t.equal(await page.getByRole('button', { name: 'Make new recovery codes' }).getAttribute('aria-describedby'), 'recovery-new-warning', 'its warning is the button\'s description');

    await page.goto(`${s.base}${P}/step-up`);
    await screen(t, page, 'step-up', { code: { id: 'code', digits: true } });
    s.clock.advance(30_000);
    await page.fill('#code', await wrongTotp(secret, s.clock.now()));
    await submit(page);
    await screen(t, page, 'step-up-error', { errorFor: 'code', code: { id: 'code', digits: true } });
    await page.fill('#code', await totpAt(secret, s.clock.now()));
    await submit(page);
    await screen(t, page, 'step-up-done');

    await page.goto(`${s.base}${P}/logout`);
    await screen(t, page, 'logout');
    await submit(page);
    await screen(t, page, 'signed-out', { signedOut: true });

    await submitPassword(page, s);
    t.equal(url(page), `${P}/verify`);
    await screen(t, page, 'verify-passkey-totp', { code: { id: 'code', digits: true } });
    await andWait(page, page.click(`a[href="${P}/recovery"]`));
    await screen(t, page, 'recovery', { code: { id: 'code', digits: false, longest: RECOVERY } });
    await page.fill('#code', 'AAAA-BBBB-CCCC-DDDD');
    await submit(page);
    await screen(t, page, 'recovery-error', { errorFor: 'code', code: { id: 'code', digits: false, longest: RECOVERY } });

    const missing = await page.goto(`${s.base}${P}/nothing`);
    t.equal(missing?.status(), 404);
    await screen(t, page, 'not-found', { signingIn: true });
    // The login is at its verify step: the enrolment page of a step already done leads on to it.
    await page.goto(`${s.base}${P}/enrol`);
    t.equal(url(page), `${P}/verify`, 'Back to the enrolment: the step the login is at');
    // Out of time: the page's title and heading say so.
    s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 + 1);
    const expired = await page.goto(`${s.base}${P}/verify`);
    t.equal(expired?.status(), 403);
    t.equal(await page.textContent('h1'), 'Your sign-in has expired. Please sign in again.');
    t.match(await page.title(), /^Your sign-in has expired\./);
    await screen(t, page, 'login-expired', { signingIn: true });
  });

  t.test('signing in with an authenticator app only', async (t) => {
    // Bob enrols over plain HTTP (the screens of that are checked above), then signs in in Chromium.
    const http = s.browser();
    await submitHttpPassword(http, BOB.username, BOB.password);
    const proof = await http.post(`${P}/enrol/proof`, { csrf: inputValue((await http.get(`${P}/proof`)).body, 'csrf'), code: await s.issueInvite(BOB.username) });
    t.equal(proof.location, `${P}/enrol`, 'invitation accepted');
    const { secret } = await enrol(s, http);
    s.clock.advance(30_000);
    const { page } = await newPage(t, browser);
    await submitPassword(page, s, BOB);
    t.equal(url(page), `${P}/verify`);
    t.equal(await page.locator('.passkey').count(), 0, 'no passkey button');
    await screen(t, page, 'verify-totp', { code: { id: 'code', digits: true } });
    await page.fill('#code', await wrongTotp(secret, s.clock.now()));
    await submit(page);
    await screen(t, page, 'verify-totp-error', { errorFor: 'code', code: { id: 'code', digits: true } });
  });
});
