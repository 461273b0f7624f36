// The pages' HTML: English shown in a language whose catalogue leaves messages out is marked as English; what a page puts
// first.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Messages } from '../../../src/ui/i18n.js';
import en from '../../../src/ui/locales/en.json' with { type: 'json' };
import { choosePage, logoutPage, messagePage, passkeySetupPage, proofPage, recoveryCodesPage, securityPage, totpSetupPage, verifyPage, type PageContext, type TimeLimit } from '../../../src/ui/pages.js';

/** Catalogues dropped in as an operator does (a folder of `<language>.json` files, ui.localesDir). */
function catalogues(files: Record<string, Record<string, string>>): Messages {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-pages-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(content));
  return new Messages(dir);
}

// Māori and Arabic with a few messages each.
const messages = catalogues({ 'mi.json': { verifyTitle: 'Whakaū ko koe tēnei', verifySubmit: 'Takiuru', errorPageTitle: 'Hapa: {title}' }, 'ar.json': { verifyTitle: 'تأكيد هويتك' } });

function context(acceptLanguage: string, from = messages): PageContext {
  return { ...from.forRequest(acceptLanguage), portalName: 'Patient Portal', prefix: '/_mfa', nonce: 'n', hasLogo: false };
}

const verify = (ctx: PageContext, error?: string) => verifyPage(ctx, { title: 'verifyTitle', action: '/verify', csrf: 'c', totp: true, recoveryLink: true, ...(error ? { error } : {}) });

t.test('a message left out is in an element marked as English; a translated one is not', async (t) => {
  const ctx = context('mi');
  const html = verify(ctx, ctx.t('wrongCode', { left: 2 }));
  t.match(html, '<html lang="mi" dir="ltr">');
  t.match(html, `<label for="code"><span lang="en">${en.verifyCodeLabel}</span></label>`, 'a label');
  t.match(html, `<p id="code-error" class="error" role="alert"><span lang="en">That code did not work. Check it and try again. Attempts left: 2.</span></p>`, "a route's error, with its value");
  t.match(html, `<a href="/_mfa/recovery"><span lang="en">${en.useRecovery}</span></a>`, 'a link');
  t.match(html, '<h1>Whakaū ko koe tēnei</h1>', 'a translated heading: the page language');
  t.match(html, '<button type="submit">Takiuru</button>', 'a translated button');
  t.match(html, '<title>Hapa: Whakaū ko koe tēnei – ', 'nor its title');
  t.match(html, `<a class="skip" href="#main"><span lang="en">${en.skipLink}</span></a>`);
});

t.test('a field with an error is described by the error first, then its hint: what went wrong is read first', async (t) => {
  const html = verify(context('en'), 'That code did not work.');
  t.match(html, /<input type="text" id="code" [^>]* aria-describedby="code-error code-hint" aria-invalid="true">/);
  t.match(verify(context('en')), /<input type="text" id="code" [^>]* aria-describedby="code-hint">/, 'without an error, the hint alone');
});

t.test('on a right-to-left page, English is also laid out left to right', async (t) => {
  const html = verify(context('ar'));
  t.match(html, '<html lang="ar" dir="rtl">');
  t.match(html, `<label for="code"><span lang="en" dir="ltr">${en.verifyCodeLabel}</span></label>`);
  t.match(html, '<h1>تأكيد هويتك</h1>');
});

t.test('the title, which holds no markup, is marked as English when all its messages are', async (t) => {
  const ctx = context('mi');
  const error = messagePage(ctx, { title: 'error.GW_ERR_METHOD_NOT_ALLOWED', reference: 'r-1' });
  t.match(error, `<title lang="en">${en['error.GW_ERR_METHOD_NOT_ALLOWED']} – `, "an error page's");
  t.match(error, `<h1><span lang="en">${en['error.GW_ERR_METHOD_NOT_ALLOWED']}</span></h1>`);
  t.match(error, `<p class="hint"><span lang="en">${en.reference}</span>: r-1</p>`, 'the reference itself is no message');
  const mixed = messagePage(ctx, { title: 'verifyTitle' });
  t.match(mixed, '<title>Whakaū ko koe tēnei – ');
  const wrong = verify(context('ar'), 'x');
  t.match(wrong, '<title>Error: تأكيد هويتك – ', 'an English frame around a translated title: the page language, as most of it is');
});

t.test("the settings link's <nav>, named by the link's text, is marked as a whole: its aria-label too", async (t) => {
  const nav = (ctx: PageContext) => securityPage({ ...ctx, signedIn: true }, { csrf: 'c', factors: [], recoveryLeft: 10, recoverySet: 's' }).match(/<nav[^]*?<\/nav>/)![0];
  t.equal(nav(context('mi')), `<nav aria-label="${en.securityLink}" lang="en"><a href="/_mfa/security" aria-current="page">${en.securityLink}</a></nav>`);
  t.equal(nav(context('ar')), `<nav aria-label="${en.securityLink}" lang="en" dir="ltr"><a href="/_mfa/security" aria-current="page">${en.securityLink}</a></nav>`, 'left to right on a right-to-left page');
  const translated = catalogues({ 'mi.json': { securityLink: 'Ō tautuhinga takiuru' } });
  t.equal(nav(context('mi', translated)), '<nav aria-label="Ō tautuhinga takiuru"><a href="/_mfa/security" aria-current="page">Ō tautuhinga takiuru</a></nav>', 'translated: the page language');
});

t.test('the settings link says so on the settings themselves (aria-current), and on no other page; the dot between links is not read', async (t) => {
  const ctx = { ...context('en'), signedIn: true };
  const settings = securityPage(ctx, { csrf: 'c', factors: [], recoveryLeft: 10, recoverySet: 's' });
  t.match(settings, `<nav aria-label="${en.securityLink}"><a href="/_mfa/security" aria-current="page">${en.securityLink}</a></nav>`, 'the current page');
  t.match(logoutPage(ctx, { csrf: 'c' }), `<nav aria-label="${en.securityLink}"><a href="/_mfa/security">${en.securityLink}</a></nav>`, 'elsewhere, a link like any other');
  t.match(settings, `${en.backToPortal}</a> <span aria-hidden="true">·</span> <a href="/_mfa/logout">`, 'the "·" between the links is hidden from a screen reader');
});

t.test("the QR code's label in English is marked on its image, which holds no text: without dir, which would move it", async (t) => {
  const qr = (ctx: PageContext) => totpSetupPage(ctx, { action: '/enrol/totp', csrf: 'c', qrSvg: '<svg></svg>', uri: 'otpauth://totp/x', groupedSecret: 'ABCD', nameField: false }).match(/<div class="qr"[^>]*>/)![0];
  t.equal(qr(context('mi')), `<div class="qr" role="img" aria-label="${en.enrolQrAlt}" lang="en">`);
  t.equal(qr(context('ar')), `<div class="qr" role="img" aria-label="${en.enrolQrAlt}" lang="en">`, 'on a right-to-left page too');
  const translated = catalogues({ 'mi.json': { enrolQrAlt: 'Waehere QR mō tō taupānga' } });
  t.equal(qr(context('mi', translated)), '<div class="qr" role="img" aria-label="Waehere QR mō tō taupānga">', 'translated: the page language');
});

t.test("the script's texts come with their language where it is English, for the script to mark them so", async (t) => {
  const translated = catalogues({ 'mi.json': { passkeyCancelled: 'Kua whakakorea.' } });
  const passkey = passkeySetupPage(context('mi', translated), { passkey: { ceremony: 'register', optionsUrl: '/o', finishUrl: '/f', csrf: 'c', label: 'passkeyCreate' } });
  t.match(passkey, `data-failed="${en.passkeyFailed}" data-failed-lang="en"`);
  t.match(passkey, `data-already="${en.passkeyAlreadyThere}" data-already-lang="en"`);
  t.match(passkey, `data-unsupported="${en.passkeyUnsupported}" data-unsupported-lang="en"`);
  t.match(passkey, /data-cancelled="Kua whakakorea\." data-/, 'translated: no language, the page\'s');
  t.notMatch(passkey, 'data-cancelled-lang');
  const codes = recoveryCodesPage(context('mi'), { codes: ['AAAA-BBBB-CCCC-DDDD'], csrf: 'c', action: '/recovery-codes' });
  t.match(codes, `<div class="save-codes" data-copied="${en.recoveryCopied}" data-copied-lang="en" data-copy-failed="${en.recoveryCopyFailed}" data-copy-failed-lang="en">`);
  const key = totpSetupPage(context('mi'), { action: '/enrol/totp', csrf: 'c', qrSvg: '<svg></svg>', uri: 'otpauth://totp/x', groupedSecret: 'ABCD', nameField: false });
  t.match(key, `<div class="copy-key" data-copied="${en.enrolKeyCopied}" data-copied-lang="en" data-copy-failed="${en.enrolKeyCopyFailed}" data-copy-failed-lang="en">`, "the app key's Copy");
});

t.test('an English page, and a fully translated one, have no such marks', async (t) => {
  for (const lang of ['en', 'de']) {
    const ctx = context(lang);
    t.equal(ctx.lang, 'en');
    for (const html of [verify(ctx, ctx.t('wrongCode', { left: 2 })), messagePage(ctx, { title: 'error.GW_ERR_METHOD_NOT_ALLOWED' }), securityPage(ctx, { csrf: 'c', factors: [], recoverySet: 's', recoveryLeft: 3 })]) {
      t.notMatch(html, /<span lang=|<title lang=/, lang);
    }
  }
  const whole = catalogues({ 'mi.json': Object.fromEntries(Object.entries(en).map(([key, text]) => [key, `${text} (mi)`])) });
  const ctx = context('mi', whole);
  t.notMatch(verify(ctx, ctx.t('wrongCode', { left: 2 })), /lang="en"/, 'every message translated');
});

t.test('a code sent by email or text message: its field first, then "Send a new code", the lesser button', async (t) => {
  const ctx = context('en');
  const sent = proofPage(ctx, { csrf: 'c', mode: 'webhook', sent: { minutes: 10 } });
  const [field, resend] = [sent.indexOf('<input type="text" id="proof"'), sent.indexOf(en.proofResend)];
  t.ok(field > 0 && resend > field, 'the code field comes before the button that replaces the code');
  t.match(sent, `<button type="submit" class="secondary">${en.proofResend}</button>`);
  t.match(sent, `<button type="submit">${en.proofSubmit}</button>`, 'Confirm: the main button');
  const before = proofPage(ctx, { csrf: 'c', mode: 'webhook' });
  t.match(before, `<button type="submit">${en.proofSend}</button>`, 'none sent yet: "Send me a code" is the main button');
  t.notMatch(before, 'id="proof"', 'and there is no field yet');
});

t.test('the enrolment-code page is titled for what it asks, not as the sign-in code and step-up pages are', async (t) => {
  const ctx = context('en');
  for (const mode of ['invite', 'webhook'] as const) {
    const html = proofPage(ctx, { csrf: 'c', mode, sent: { minutes: 10 } });
    t.match(html, '<title>Enter your enrolment code – ', `${mode}: the title`);
    t.match(html, '<h1>Enter your enrolment code</h1>', `${mode}: the heading`);
    t.notMatch(html, en.verifyTitle, `${mode}: not the sign-in code page's`);
  }
  const wrong = proofPage(ctx, { csrf: 'c', mode: 'invite', error: ctx.t('proofWrong', { left: 2 }), typed: 'ABCD' });
  t.match(wrong, '<title>Error: Enter your enrolment code – ', 'a wrong code: said first in the title');
});

t.test("choosing a second step: each option's button says what it sets up", async (t) => {
  const html = choosePage(context('en'), { csrf: 'c', passkey: { ceremony: 'register', optionsUrl: '/o', finishUrl: '/f', csrf: 'c', label: 'passkeyCreate', nameField: true } });
  t.match(html, '<button type="button" class="passkey-start" disabled>Create passkey</button>');
  t.match(html, '<p><a class="button" href="/_mfa/enrol/totp">Set up an authenticator app</a></p>', 'the app: not a bare "Continue"');
  t.notMatch(html, />Continue</);
  t.notMatch(html, 'form="more-time"', 'no time limit: no form of "I need more time" for the name field to join');
});

t.test('the recovery codes sent unticked: what to do if they were not saved, at enrolment and on the sign-in settings', async (t) => {
  const unticked = (ctx: PageContext, action: string) => recoveryCodesPage(ctx, { codes: [], csrf: 'c', action, error: ctx.t('recoveryAckRequired') });
  const enrolling = unticked(context('en'), '/recovery-codes');
  t.match(enrolling, en.recoveryShownOnce, 'at enrolment: the second step is set up; new codes once signed in');
  const settings = unticked({ ...context('en'), signedIn: true }, '/security/recovery-codes/saved');
  t.match(settings, en.recoveryShownOnceSignedIn, 'signed in: new codes in the sign-in settings, now');
  t.notMatch(settings, /second step is set up|once you are signed in/, 'not the words for someone still signing in');
});

t.test('signing out, asked to confirm, can be cancelled: back to the portal', async (t) => {
  const html = logoutPage({ ...context('en'), signedIn: true }, { csrf: 'c' });
  t.match(html, `<button type="submit">${en.logoutSubmit}</button>`);
  t.match(html, `<p><a href="/">${en.cancel}</a></p>`);
});

t.test('a step-up done says so as the page\'s text, not as an alert', async (t) => {
  const ctx = { ...context('en'), signedIn: true };
  const html = messagePage(ctx, { title: 'stepUpDoneTitle', message: ctx.t('stepUpDone'), action: { href: '/', label: 'backToPortal' } });
  t.match(html, `<p>${en.stepUpDone}</p>`);
  t.notMatch(html, 'role="alert"');
});

t.test('the time left is said in minutes written out, and with a minute or less left as less than a minute', async (t) => {
  const top = (ctx: PageContext) => verify(ctx).match(/<main id="main">\n<h1>[^]*?<\/h1>\n(.*)/)![1]!;
  const signingIn = (secondsLeft: number, more: Partial<TimeLimit> = {}) => top({ ...context('en'), timeLimit: { secondsLeft, ...more } });
  const moreTime = { moreTime: { csrf: 'c', back: 'verify' } };
  t.equal(signingIn(4 * 60), `<p class="hint">${en.minutesLeft.replace('{minutes}', '4')}</p>`);
  t.match(signingIn(4 * 60), 'You have 4 minutes left to finish signing in.');
  t.match(signingIn(61), 'You have 2 minutes left', 'a part of a minute counts as one');
  t.match(signingIn(5 * 60, { ...moreTime, asked: 'same' }), '<p class="hint" role="status">You still have 5 minutes left to finish signing in: more time can be given nearer the end.');
  t.equal(signingIn(60), `<p class="hint">${en.timeAlmostUpNoMore}</p>`, 'a minute or less: as the warning says it, not "1 minutes"');
  t.equal(signingIn(30, moreTime), `<p class="hint">${en.timeAlmostUp}</p>`, 'with the button for more time on the page');
  t.equal(signingIn(0), `<p class="hint">${en.timeAlmostUpNoMore}</p>`);
  const changes = (secondsLeft: number) => top({ ...context('en'), signedIn: true, timeLimit: { secondsLeft, of: 'changes' } });
  t.match(changes(4 * 60), 'You can make changes here for 4 minutes.', 'the time for changes alike');
  t.equal(changes(60), `<p class="hint">${en.changesAlmostUp}</p>`);
  const codes = (secondsLeft: number) => top({ ...context('en'), timeLimit: { secondsLeft, of: 'codes' } });
  t.equal(codes(4 * 60), `<p class="hint">${en.codesMinutesLeft.replace('{minutes}', '4')}</p>`, 'the recovery codes: their own words');
  t.equal(codes(60), `<p class="hint">${en.codesAlmostUp}</p>`);
  t.match(codes(60), 'Your recovery codes still work', 'which say the codes shown are not lost');
  const limits = [{}, moreTime, { ...moreTime, asked: 'same' as const }, { of: 'changes' as const }, { of: 'codes' as const }];
  const lines = [0, 1, 59, 60, 61, 119, 120, 121, 300, 3600].flatMap((secondsLeft) => limits.map((limit) => top({ ...context('en'), timeLimit: { secondsLeft, ...limit } })));
  t.notMatch(lines.join('\n'), /\bmin\b|\b1 minutes/, 'never "min", nor "1 minutes"');
  const translated = catalogues({ 'mi.json': { minutesLeft: 'E {minutes} meneti e toe ana.', timeAlmostUpNoMore: 'Kei raro iho i te meneti kotahi e toe ana.' } });
  t.equal(top({ ...context('mi', translated), timeLimit: { secondsLeft: 4 * 60 } }), '<p class="hint">E 4 meneti e toe ana.</p>', "another language: its catalogue's words");
  t.equal(top({ ...context('mi', translated), timeLimit: { secondsLeft: 60 } }), '<p class="hint">Kei raro iho i te meneti kotahi e toe ana.</p>');
});
