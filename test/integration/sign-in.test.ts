// Sign-in end to end over real sockets: demo portal, gateway, memory store.
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { decodeKey } from '../../src/config/load.js';
import { GatewayError } from '../../src/errors.js';
import { SessionTokens } from '../../src/mechanisms/session-token.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { inputValue, rawRequest } from '../helpers/browser.js';
import { merge } from '../helpers/config.js';
import { ALICE, BOB, atCodePage, copyOf, enrol, portalReceived, signInWithTotp, signUpAndEnrol, startStack, submitPassword, totpAt, totpEnrolmentForm, type Stack, type StackOptions } from '../helpers/stack.js';

t.test("the authenticator app is told the issuer mfa.issuer names, else the portal's name", async (t) => {
  const issuerShown = async (s: Stack) => {
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    const page = await b.get('/_mfa/enrol/totp');
    return new URL(/<a href="(otpauth:[^"]+)"/.exec(page.body)![1]!.replaceAll('&#38;', '&')).searchParams.get('issuer');
  };
  const named = await startStack();
  t.teardown(named.close);
  t.equal(await issuerShown(named), 'Riverbend Health', 'mfa.issuer');
  const unnamed = await startStack({ patch: (raw) => delete raw.mfa.issuer });
  t.teardown(unnamed.close);
  t.equal(await issuerShown(unnamed), 'Riverbend Health Patient Portal', 'none: portal.name');
});

t.test('first login: portal password, mandatory enrolment, recovery codes, then the records', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const loginPage = await b.get('/login');
  t.equal(loginPage.status, 200);
  t.match(loginPage.body, 'Riverbend Health Patient Portal', "the portal's own login page, through the gateway");
  t.notOk(b.cookies.has('PORTALSESSID'), 'the portal session cookie stays in the gateway');
  t.ok(b.cookies.has('__Host-mfa-browser'));
  t.ok(b.cookies.has('XSRF-TOKEN'), 'allow-listed portal cookie reaches the browser');
  const xsrf = b.cookies.get('XSRF-TOKEN');

  const afterPassword = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(loginPage.body, 'csrf') });
  t.equal(afterPassword.status, 303, '303, never 307, after a credential POST');
  t.equal(afterPassword.location, '/_mfa/enrol');
  t.ok(b.cookies.has('__Host-mfa-pending'));
  t.notOk(b.cookies.has('__Host-mfa-session'));
  t.match(String(afterPassword.headers['set-cookie']), /__Host-mfa-pending=[^;]+; Max-Age=300; Path=\/; HttpOnly; Secure; SameSite=Lax/);
  t.equal(b.cookies.get('XSRF-TOKEN'), xsrf, "the portal's new XSRF token waits for the second factor");

  const choice = await b.get('/_mfa/enrol');
  t.equal(choice.status, 200);
  t.match(choice.body, 'A passkey or security key');
  t.match(choice.body, 'href="/_mfa/enrol/totp"', 'or an authenticator app');
  const noSkip = (html: string) => html.replace(/<a class="skip"[^>]*>[^<]*<\/a>/, '');
  t.notMatch(noSkip(choice.body), /skip|later|not now/i, 'no way to skip');
  const links = [...noSkip(choice.body).matchAll(/href="([^"]+)"/g)].map((m) => m[1]).filter((h) => !h!.startsWith('/_mfa/assets/'));
  t.same(links, ['/_mfa/enrol/totp'], 'nothing leads to the portal from here, nor to the sign-in settings a sign-in in progress has none of');
  const enrolPage = await b.get('/_mfa/enrol/totp');
  t.equal(enrolPage.status, 200);
  t.equal(enrolPage.headers['cache-control'], 'no-store');
  t.match(String(enrolPage.headers['content-security-policy']), "frame-ancestors 'none'");
  t.match(String(enrolPage.headers['content-security-policy']), /script-src 'nonce-[A-Za-z0-9+\/=]{24}'(;|$)/, 'the page script (Copy the key) by nonce, none other');
  t.match(String(choice.headers['content-security-policy']), /script-src 'nonce-[A-Za-z0-9+\/=]{24}'/, 'the passkey scripts by nonce');
  t.match(enrolPage.body, /<svg[^>]*>/, 'QR code drawn by the gateway');
  t.match(enrolPage.body, /id="secret">[A-Z2-7]{4}( [A-Z2-7]{4}){7}</, 'the key in groups');
  const secretShown = /id="secret">([^<]+)</.exec(enrolPage.body)![1]!.replaceAll(' ', '');
  t.match(enrolPage.body, new RegExp(`<a href="otpauth://totp/[^"]*secret=${secretShown}[^"]*">Setting up on this phone\\?`), 'the same key as a link for an app on this phone');
  t.match(enrolPage.body, 'autocomplete="one-time-code"');
  t.match(enrolPage.body, 'inputmode="numeric"');
  t.notMatch(enrolPage.body, 'autofocus', 'no field takes focus: the instructions, the QR code and the key come first');
  const wrongCode = await b.post('/_mfa/enrol/totp', { csrf: inputValue(enrolPage.body, 'csrf'), code: '000000' });
  t.equal(wrongCode.status, 400);
  t.match(wrongCode.body, /<input [^>]*id="code"[^>]* autofocus[^>]* aria-invalid="true">/, 'a wrong code: focus on the field to correct');
  t.match(wrongCode.body, '<title>Error: Set up your authenticator app – \u2068Riverbend Health Patient Portal\u2069</title>', 'the title says there is a mistake to correct');
  t.match(wrongCode.body, '<h1>Set up your authenticator app</h1>');
  t.match(enrolPage.body, '<title>Set up your authenticator app – ');
  t.notMatch(noSkip(enrolPage.body), /skip|later|not now/i, 'no way to skip');
  t.same([...enrolPage.body.matchAll(/<(?:form|button) [^>]*action="([^"]+)"/g)].map((m) => m[1]), ['/_mfa/enrol/totp', '/_mfa/more-time'], 'the form and its buttons confirm the code or ask for more time: none skips');

  const { codes, done } = await enrol(s, b);
  t.equal(codes.length, 10, 'ten recovery codes shown');
  t.equal(done.status, 303);
  t.equal(done.location, '/records', 'continues where the portal was sending the user');
  t.notOk(b.cookies.has('__Host-mfa-pending'));
  t.match(String(done.headers['set-cookie']), /__Host-mfa-session=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax/);
  t.match(String(done.headers['set-cookie']), /XSRF-TOKEN=[^;]+; Path=\/; SameSite=Lax/, 'then comes with the session');
  t.not(b.cookies.get('XSRF-TOKEN'), xsrf, 'the token the portal minted at login');

  const records = await b.get('/records');
  t.equal(records.status, 200);
  t.match(records.body, 'Signed in as alice');
  t.notOk(b.cookies.has('PORTALSESSID'));
});

t.test('enrolment page again after confirming shows nothing; the secret is never shown again', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const again = await b.get('/_mfa/enrol');
  t.equal(again.location, '/', 'signed in: on to the portal');
  t.notMatch(again.body, /id="secret"/);
  b.cookies.delete('__Host-mfa-session');
  const signedOut = await b.get('/_mfa/enrol/totp');
  t.equal(signedOut.status, 403);
  t.notMatch(signedOut.body, /id="secret"/);
});

t.test('stray requests during enrolment (a favicon, a reload) do not end the login', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  await b.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal((await b.get('/favicon.ico')).location, '/_mfa/continue');
  t.equal((await b.get('/_mfa/continue')).location, '/_mfa/recovery-codes', 'back to the step the login is at');
  t.equal((await b.send('HEAD', '/_mfa/recovery-codes')).status, 200, 'a HEAD (a prefetch) answers without a body…');
  t.equal((await b.get('/_mfa/recovery-codes', { 'sec-fetch-site': 'cross-site' })).status, 403, '…another site (a window it opens and closes) gets nothing…');
  const first = await b.get('/_mfa/recovery-codes');
  t.equal([...first.body.matchAll(/<li>/g)].length, 10, '…and leaves the codes to be shown, once');
  const again = await b.get('/_mfa/recovery-codes');
  t.equal(again.status, 200);
  t.notMatch(again.body, /<li>/, 'the codes are not shown again');
  t.match(again.body, 'make new ones in your sign-in settings once you are signed in', 'and the page says how to get new ones');
  t.match(again.body, 'name="saved"');
  const back = await b.get('/_mfa/enrol/totp');
  t.equal(back.location, '/_mfa/continue', 'the secret is not shown again: on to the step the login is at');
  t.notMatch(back.body, /id="secret"/);
  const done = await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  t.equal(done.status, 303, 'the login still completes');
  t.equal((await b.get('/records')).status, 200);
});

t.test('the code that confirmed enrolment is consumed: it cannot sign in', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  const { b, csrf } = await atCodePage(s);
  const again = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(again.status, 400);
  t.notOk(b.cookies.has('__Host-mfa-session'));
});

t.test('second login asks for the password, then a code', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const b = s.browser();
  const afterPassword = await submitPassword(b, 'ALICE ', ALICE.password);
  t.equal(afterPassword.location, '/_mfa/verify', 'spelling variants share one identity and its factor');
  const verify = await b.get('/_mfa/verify');
  t.match(verify.body, 'name="code"');
  t.equal((await b.get('/records')).location, '/_mfa/continue', 'pending login cannot reach portal pages');
  const final = await b.post('/_mfa/verify', { csrf: inputValue(verify.body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(final.status, 303);
  t.equal(final.location, '/records');
  t.match((await b.get('/records')).body, 'Signed in as alice');
});

t.test('the pages of a sign-in in progress say how long is left to finish it', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const first = s.browser();
  await submitPassword(first, ALICE.username, ALICE.password);
  const enrolPage = (await first.get('/_mfa/enrol')).body;
  t.match(enrolPage, 'You have 5 minutes left to finish signing in.', 'enrolment');
  t.match(enrolPage, 'I need more time', 'with a button for more, from the start');
  t.match((await first.get('/_mfa/enrol/totp')).body, 'You have 5 minutes left');
  const { secret, csrf } = await totpEnrolmentForm(s, first);
  await first.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) });
  const codesPage = (await first.get('/_mfa/recovery-codes')).body;
  t.match(codesPage, '<p class="hint">You have 5 minutes left to finish signing in. After that, your recovery codes still work: finish saving them, then sign in again.</p>', 'the codes: their own words, as the factor and its codes are saved already');
  t.notMatch(codesPage, 'start again with your password', 'not that all is lost');
  t.match(codesPage, 'data-over="The time to finish signing in has run out. Your recovery codes still work: finish saving them, then sign in again."', 'nor at the end');
  t.match(codesPage, 'data-warning="Less than a minute left to finish signing in. Your recovery codes still work after that: finish saving them, then sign in again."');
  t.notMatch(codesPage, 'more-time', 'no more time at the recovery codes: shown once, they would be gone after it');
  t.equal((await first.post('/_mfa/more-time', { csrf })).location, '/_mfa/recovery-codes?time=more', 'asked anyway: nothing changes, and the page says the time left (not that more may come)');
  await first.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  const { b } = await atCodePage(s);
  s.clock.advance(3 * 60_000 + 10_000);
  t.match((await b.get('/_mfa/verify')).body, 'You have 2 minutes left', 'the code page, later');
  const recovery = (await b.get('/_mfa/recovery')).body;
  t.match(recovery, 'You have 2 minutes left');
  t.notMatch(recovery, 'autofocus', 'read from the top, the time left first');
  t.match(recovery, /<input [^>]*id="code"[^>]* autocomplete="off"/, 'letters from paper: nothing for a phone to offer');
  t.notMatch((await b.get('/_mfa/verify')).body, 'autofocus');
  const security = await first.get('/_mfa/security');
  t.equal(security.status, 200);
  t.notMatch(security.body, 'to finish signing in', 'not on the pages of a session');
});

t.test('a sign-in in progress gets more time from a button on its pages, up to an hour after the password', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  s.clock.advance(4 * 60_000);
  const late = await b.get('/_mfa/verify');
  t.match(late.body, '<p class="hint">Less than a minute left to finish signing in. If you need more time, use the button below.</p>', 'a minute or less: not "1 minutes"');
  t.match(late.body, /<div class="more-time"><button type="submit" form="code-form" formaction="\/_mfa\/more-time" formnovalidate name="back" value="verify" class="secondary">I need more time<\/button><\/div>/);
  t.equal((await b.post('/_mfa/more-time', { csrf: 'forged' })).status, 403, 'the login\'s CSRF token, as every form');
  t.equal((await b.post('/_mfa/more-time', { csrf }, { origin: 'https://evil.example' })).status, 403, 'never from another site');
  t.match((await b.get('/_mfa/verify')).body, 'Less than a minute left to finish signing in.', 'neither gave any');
  const wrong = async () => (await b.post('/_mfa/verify', { csrf, code: '000000' })).body;
  for (let i = 0; i < 3; i++) await wrong();
  const more = await b.post('/_mfa/more-time', { csrf });
  t.equal(more.status, 303);
  t.equal(more.location, '/_mfa/verify?time=more', 'back to the page of its step');
  t.match(String(more.headers['set-cookie']), /__Host-mfa-pending=[^;]+;.*Max-Age=300/, 'the pending cookie lives as long');
  t.match((await b.get(more.location!)).body, '<p class="hint" role="status">You have 5 minutes left to finish signing in.', 'said, to a screen reader too');
  // Asked again at once: nothing more yet, and the page says so.
  const soon = await b.post('/_mfa/more-time', { csrf, back: 'recovery' });
  t.equal(soon.location, '/_mfa/recovery?time=same', 'back to the page it was asked on');
  t.match((await b.get(soon.location!)).body, '<p class="hint" role="status">You still have 5 minutes left to finish signing in: more time can be given nearer the end.');
  t.notMatch((await b.get('/_mfa/verify')).body, 'role="status"', 'only in answer to the button');
  t.equal((await b.post('/_mfa/more-time', { csrf, back: 'enrol/totp' })).location, '/_mfa/verify?time=same', 'never to a page of another step');
  s.clock.advance(4 * 60_000);
  t.match(await wrong(), 'Attempts left: 1.', 'more time is no more tries: the count goes on past the first end');

  // Up to an hour after the password, then no more button.
  for (let i = 0; i < 12; i++) {
    await b.post('/_mfa/more-time', { csrf });
    s.clock.advance(4 * 60_000);
  }
  t.match((await b.get('/_mfa/verify')).body, 'more-time', '56 minutes after the password, a minute left: more time is offered');
  await b.post('/_mfa/more-time', { csrf });
  const last = await b.get('/_mfa/verify');
  t.match(last.body, 'You have 4 minutes left', 'until an hour after the password, not 5 minutes more');
  t.notMatch(last.body, 'more-time', 'and no more after that');
  const after = await b.post('/_mfa/more-time', { csrf });
  t.equal(after.location, '/_mfa/verify?time=more', 'asking anyway changes nothing');
  t.notMatch((await b.get(after.location!)).body, 'more time can be given', 'and promises none');
  t.match((await b.get('/_mfa/verify')).body, 'You have 4 minutes left');
  t.equal((await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/records', 'signed in 56 minutes after the password');

  // An abandoned login is reported at its last end, not its first.
  const { b: other, csrf: otherCsrf } = await atCodePage(s);
  const abandoned = () => s.logs.filter((l) => l.includes('"security":"mfa_abandoned"')).length;
  const before = abandoned();
  s.clock.advance(4 * 60_000);
  await other.post('/_mfa/more-time', { csrf: otherCsrf });
  const settled = () => new Promise((r) => setTimeout(r, 200));
  s.clock.advance(2 * 60_000);
  await settled();
  t.equal(abandoned(), before, 'not at the first end');
  s.clock.advance(4 * 60_000);
  await settled();
  t.equal(abandoned(), before + 1, 'at the new one');
  t.equal((await other.post('/_mfa/more-time', { csrf: otherCsrf })).status, 403, 'an expired login gets no more time');
});

t.test('"I need more time" sends what was typed with it: the page comes back with it in its field, which takes focus', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const first = s.browser();
  await submitPassword(first, ALICE.username, ALICE.password);
  const enrolPage = (await first.get('/_mfa/enrol/totp')).body;
  const button = (back: string) => new RegExp(`<button type="submit" form="code-form" formaction="/_mfa/more-time" formnovalidate name="back" value="${back.replace('/', '\\/')}" class="secondary">I need more time</button>`);
  t.match(enrolPage, button('enrol/totp'), "a button of the page's own form (by its form attribute), which holds the code field");
  t.match(enrolPage, /<form method="post" action="\/_mfa\/enrol\/totp" novalidate id="code-form">/);
  t.notMatch(enrolPage, '<form method="post" action="/_mfa/more-time"', 'no form of its own, which would send nothing typed');
  const csrf = inputValue(enrolPage, 'csrf');
  s.clock.advance(4 * 60_000);
  const enrolKept = await first.post('/_mfa/more-time', { csrf, back: 'enrol/totp', code: '123' });
  t.equal(enrolKept.status, 200, 'the page itself, not a redirect (nothing typed goes in an address)');
  t.match(enrolKept.body, /<input type="text" id="code" name="code" required autofocus [^>]*value="123"/, 'the code typed, in its field, which takes focus');
  t.match(enrolKept.body, '<p class="hint" role="status">You have 5 minutes left to finish signing in.', 'with the whole time again, said');
  t.match(enrolKept.body, button('enrol/totp'), 'and the button again');
  t.notMatch(enrolKept.body, 'class="error"', 'no error: nothing was checked');
  const { secret } = await totpEnrolmentForm(s, first);
  t.equal((await first.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes', 'the code, sent then, counts as always');
  await first.get('/_mfa/recovery-codes');
  await first.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });

  const { b, csrf: login } = await atCodePage(s);
  t.match((await b.get('/_mfa/verify')).body, button('verify'));
  t.match((await b.get('/_mfa/recovery')).body, button('recovery'));
  s.clock.advance(4 * 60_000);
  const half = await b.post('/_mfa/more-time', { csrf: login, back: 'recovery', code: 'ABCD-EFGH-JK' });
  t.equal(half.status, 200);
  t.match(half.body, /<input type="text" id="code" name="code" required autofocus [^>]*value="ABCD-EFGH-JK"/, 'a recovery code half typed, kept');
  t.match(half.body, '<p class="hint" role="status">You have 5 minutes left to finish signing in.');
  t.match(half.body, /<form method="post" action="\/_mfa\/recovery" novalidate id="code-form">/, 'sent on, the form goes where it always does');
  const soon = await b.post('/_mfa/more-time', { csrf: login, back: 'verify', code: '12' });
  t.match(soon.body, /<input type="text" id="code" name="code" required autofocus [^>]*value="12"/, 'asked too soon: kept as well');
  t.match(soon.body, 'more time can be given nearer the end', 'and the page says more can come later');
  t.equal((await b.post('/_mfa/more-time', { csrf: 'forged', back: 'verify', code: '12' })).status, 403, 'the CSRF token, as ever');
  t.equal((await b.post('/_mfa/more-time', { csrf: login, back: 'enrol/totp', code: '12' })).location, '/_mfa/verify?time=same', 'a page of another step: its own page, nothing refilled');
  t.equal((await b.post('/_mfa/more-time', { csrf: login, back: 'verify' })).location, '/_mfa/verify?time=same', 'without a field (a page with no form to type in): back to the page, as before');
});

t.test('"I need more time" on the factor choice sends the passkey\'s name with it: the page comes back with it in its field, escaped and no longer than the field takes', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const choice = (await b.get('/_mfa/enrol')).body;
  t.match(choice, '<form method="post" action="/_mfa/more-time" class="more-time" id="more-time">', 'the button has a form of its own (the name field is in none)');
  t.match(choice, /<input type="text" id="passkey-name" name="name" form="more-time" [^>]*value="Passkey"/, 'which the name field joins');
  t.notMatch(choice, /<input type="text" id="passkey-name"[^>]* autofocus/, 'arriving: read from the top');
  const csrf = inputValue(choice, 'csrf');
  s.clock.advance(4 * 60_000);
  const kept = await b.post('/_mfa/more-time', { csrf, back: 'enrol', name: 'Blue key "for work" <script>alert(1)</script>' });
  t.equal(kept.status, 200, 'the page itself, not a redirect');
  t.match(kept.body, /<input type="text" id="passkey-name" name="name" form="more-time" autofocus [^>]*value="Blue key &#34;for work&#34; &#60;script&#62;alert\(1\)&#60;\/script&#62;"/, 'the name typed, escaped, in its field, which takes focus');
  t.notMatch(kept.body, '<script>alert', 'never as markup');
  t.match(kept.body, '<p class="hint" role="status">You have 5 minutes left to finish signing in.', 'with the whole time again, said');
  t.match(kept.body, 'id="more-time"', 'and the button again');
  t.match(kept.body, 'data-page="/_mfa/enrol"', 'a passkey refusal that opens the page again opens the choice, not this address (POST only)');
  const long = await b.post('/_mfa/more-time', { csrf, back: 'enrol', name: `${'x'.repeat(59)}😀 and more` });
  t.match(long.body, new RegExp(`value="${'x'.repeat(59)}"`), 'at most 60 UTF-16 units, as a name is kept, without the half of a character the cut leaves');
  t.match((await b.post('/_mfa/more-time', { csrf, back: 'enrol', name: '' })).body, /<input type="text" id="passkey-name" name="name" form="more-time" autofocus maxlength="60" autocomplete="off" aria-describedby/, 'a field emptied: empty again, not the default name');
  t.equal((await b.post('/_mfa/more-time', { csrf, back: 'enrol' })).location, '/_mfa/enrol?time=same', 'without the field: back to the page, as before');
  const twice = await b.send('POST', '/_mfa/more-time', `csrf=${encodeURIComponent(csrf)}&back=enrol&name=a&name=b`, { 'content-type': 'application/x-www-form-urlencoded' });
  t.equal(twice.status, 400, 'a name sent twice: refused, as any field');
  t.equal((await b.post('/_mfa/more-time', { csrf: 'forged', back: 'enrol', name: 'Blue key' })).status, 403, 'the CSRF token, as ever');
});

t.test('an error page during a sign-in has no link to the sign-in settings either: it would lead away to the login page', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b: signedIn } = await signUpAndEnrol(s);
  const { b } = await atCodePage(s, ALICE);
  const settings = 'href="/_mfa/security"';
  const refused = await b.post('/_mfa/verify', { csrf: 'not the form token', code: '123456' });
  t.equal(refused.status, 403);
  t.notMatch(refused.body, settings, 'a refused form');
  t.notMatch((await b.get('/_mfa/nothing')).body, settings, 'a page not found');
  t.match((await signedIn.get('/_mfa/nothing')).body, settings, 'signed in, the link is there');
});

t.test('a gateway page not found is no dead end: on to the sign-in in progress, back to the portal, or to sign in', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b: signedIn } = await signUpAndEnrol(s);
  const { b: signingIn } = await atCodePage(s);
  const signedOut = s.browser();
  for (const [method, path] of [['GET', '/_mfa/nothing'], ['TRACE', '/_mfa/verify']] as const) {
    const during = await signingIn.send(method, path);
    t.equal(during.status, method === 'GET' ? 404 : 405);
    t.match(during.body, '<a href="/_mfa/continue">Continue</a>', `${method} ${path} during a sign-in: on to it`);
    t.match((await signedIn.send(method, path)).body, '<a href="/">Back to the portal</a>', `${method} ${path} signed in: back to the portal`);
    const none = await signedOut.send(method, path);
    t.match(none.body, '<a href="/login">Sign in again</a>', `${method} ${path} with neither: to sign in`);
    t.notMatch(none.body, '/_mfa/continue', 'nothing of a sign-in without its cookie');
  }
  t.equal((await signingIn.get('/_mfa/continue')).location, '/_mfa/verify', 'which leads to the step the sign-in is at');
});

t.test('Back to a page of the sign-in once signed in: on to the portal, not "your sign-in has expired"', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  const { b: later } = await signInWithTotp(s, secret);
  for (const [who, browser] of [['after enrolling', b], ['after a code', later]] as const) {
    for (const path of ['/_mfa/verify', '/_mfa/recovery-codes', '/_mfa/enrol', '/_mfa/continue']) {
      const back = await browser.get(path);
      t.equal(back.location, '/', `${who}: ${path}`);
      const head = await browser.send('HEAD', path);
      t.same([head.status, head.location], [303, '/'], `${who}: HEAD ${path}, as its GET`);
    }
  }
  t.equal((await later.get('/records')).status, 200, 'signed in there');
  const stranger = s.browser();
  t.equal((await stranger.get('/_mfa/verify')).status, 403, 'without a session: the sign-in has expired');
  stranger.cookies.set('__Host-mfa-session', 'forged');
  t.equal((await stranger.get('/_mfa/verify')).location, '/', 'a cookie that is no session goes on too…');
  t.equal((await stranger.get('/')).location, '/login', '…and is sent to sign in there');
});

t.test('recovery code works once', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { codes } = await signUpAndEnrol(s);
  const use = async (code: string) => {
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    const page = await b.get('/_mfa/recovery');
    return b.post('/_mfa/recovery', { csrf: inputValue(page.body, 'csrf'), code });
  };
  const first = await use(codes[0]!.toLowerCase());
  t.equal(first.status, 303, 'accepted, typed in lower case');
  const second = await use(codes[0]!);
  t.equal(second.status, 400, 'refused the second time');
  t.match(second.body, 'That code did not work');
  const typed = (body: string) => /<input[^>]* id="code"[^>]* value="([^"]*)"/.exec(body)?.[1];
  t.equal(typed(second.body), codes[0], 'the code sent is on the page again, to correct');
  const misread = `${codes[1]!.slice(0, -1)}${codes[1]!.endsWith('A') ? 'B' : 'A'}`;
  t.equal(typed((await use(` ${misread.toLowerCase()}`)).body), ` ${misread.toLowerCase()}`, 'a typo: as typed');
  // Longer than the field: cut to its 24 characters, not inside one (an emoji is two UTF-16 units).
  t.equal(typed((await use(`${'x'.repeat(23)}😀`)).body), 'x'.repeat(23), 'a character the cut would halve is left out, not halved');
  t.equal((await use(codes[1]!)).status, 303, 'another code still works');
});

t.test('a recovery code whose set is replaced while it is checked signs nothing in', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { codes } = await signUpAndEnrol(s);
  const { stores, pidOf } = s.app.gateway;
  const pid = pidOf(ALICE.username)!;
  const { b, csrf } = await atCodePage(s, ALICE, 'recovery');
  // The person makes a new set on the security page (their old codes were seen) just after the code was looked up.
  const get = stores.factors.get.bind(stores.factors);
  stores.factors.get = async (p: string) => {
    const before = await get(p);
    stores.factors.get = get;
    const { newRecoveryCodes } = await import('../../src/mechanisms/recovery-codes.js');
    const { stored } = await newRecoveryCodes();
    await stores.factors.update(pid, (cur) => cur && { ...cur, recovery: { ...stored, addedAt: s.clock.now() } });
    return before;
  };
  const r = await b.post('/_mfa/recovery', { csrf, code: codes[0]! });
  t.equal(r.status, 400, 'a code of the set replaced is refused');
  t.equal(b.cookies.get('__Host-mfa-session'), undefined, 'no session');
});

t.test('the login replay asks the portal for an uncompressed answer, which the body rule can read', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b: signedIn } = await signUpAndEnrol(s);
  const b = s.browser();
  const page = await b.get('/login');
  const before = s.portalRequests.length;
  await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(page.body, 'csrf') }, { 'accept-encoding': 'gzip, deflate, br' });
  const replay = s.portalRequests.slice(before).find((r) => r.method === 'POST' && r.url === '/login')!;
  t.equal(replay.headers['accept-encoding'], 'identity');
  t.equal((await signedIn.get('/records', { 'accept-encoding': 'gzip, deflate, br' })).status, 200);
  t.equal(s.portalRequests.at(-1)!.headers['accept-encoding'], 'gzip, deflate, br', 'other requests ask as the browser asked');
});

t.test("wrong password: the portal's own error, no pending login", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const res = await submitPassword(b, ALICE.username, 'wrong password');
  t.equal(res.status, 200);
  t.match(res.body, 'Invalid username or password.');
  t.notOk(b.cookies.has('__Host-mfa-pending'));
  t.notOk(b.cookies.has('PORTALSESSID'));
  t.ok(s.logs.some((l) => l.includes('"security":"password_failed"')));
});

t.test('browser-sent portal cookies are never forwarded', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  // An attacker who knows a valid portal session id gets nothing without a gateway session.
  const victim = await signUpAndEnrol(s);
  const echo = JSON.parse((await victim.b.get('/echo', { accept: 'application/json' })).body);
  const portalCookie = /PORTALSESSID=([0-9a-f]+)/.exec(echo.headers.cookie)![1]!;
  const attacker = s.browser();
  attacker.cookies.set('PORTALSESSID', portalCookie);
  const before = s.portalRequests.length;
  const res = await attacker.get('/records');
  t.equal(res.status, 302);
  t.equal(res.location, '/login');
  t.equal(s.portalRequests.length, before, 'nothing reached the portal');
  // With a session, a planted cookie is replaced by the jar's.
  victim.b.cookies.set('PORTALSESSID', 'planted');
  const echoed = JSON.parse((await victim.b.get('/echo', { accept: 'application/json' })).body);
  t.notMatch(echoed.headers.cookie, 'planted');
  t.match(echoed.headers.cookie, `PORTALSESSID=${portalCookie}`);
  t.match(echoed.headers.cookie, `XSRF-TOKEN=${victim.b.cookies.get('XSRF-TOKEN')}`, "the allow-listed cookie is the browser's own");
});

t.test('a pending login reaches no portal page', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const before = s.portalRequests.length;
  for (const path of ['/records', '/messages', '/api/records', '/echo', '/legacy/records']) {
    const res = await b.get(path);
    t.equal(res.status, 303, path);
    t.equal(res.location, '/_mfa/continue');
  }
  // Not a page being opened: told so, with the way on for a person.
  const posted = await b.post('/messages', { body: 'hi' });
  t.equal(posted.status, 401, 'a form sent');
  t.match(posted.body, 'href="/_mfa/continue"');
  const fetched = await b.get('/api/records', { 'sec-fetch-mode': 'cors', accept: '*/*' });
  t.equal(fetched.status, 401, "a script's call");
  t.match(JSON.parse(fetched.body), { error: 'GW_ERR_SIGN_IN_REQUIRED' });
  t.equal(s.portalRequests.length, before, 'nothing reached the portal');
});

t.test('a replayed code is refused; parallel submissions of one code: exactly one succeeds', async (t) => {
  // The per-user wait after failures is tested on its own; here every parallel submission gets checked.
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 50 } } }) });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  const { final } = await signInWithTotp(s, secret);
  t.equal(final.status, 303);
  // The same code again, from another browser, in the same time step.
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const page = await b.get('/_mfa/verify');
  const replay = await b.post('/_mfa/verify', { csrf: inputValue(page.body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(replay.status, 400);
  t.ok(s.logs.some((l) => l.includes('"security":"mfa_replayed"')));

  s.clock.advance(30_000);
  const browsers = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const x = s.browser();
      await submitPassword(x, ALICE.username, ALICE.password);
      return { x, csrf: inputValue((await x.get('/_mfa/verify')).body, 'csrf') };
    }),
  );
  const code = await totpAt(secret, s.clock.now());
  const results = await Promise.all(browsers.map(({ x, csrf }) => x.post('/_mfa/verify', { csrf, code })));
  t.equal(results.filter((r) => r.status === 303).length, 1, 'one success');
  t.equal(results.filter((r) => r.status === 400).length, 7, 'the rest refused');
});

t.test('a sign-in form sent twice (a second tap): both answers carry the same session; nothing else gets it', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret, codes } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  let { b, csrf } = await atCodePage(s);
  const code = await totpAt(secret, s.clock.now());
  // The browser as it was when the form went off the first time; it never sees the first answer.
  const [tap2, other, late] = [copyOf(s, b), copyOf(s, b), copyOf(s, b)];
  const first = await b.post('/_mfa/verify', { csrf, code });
  t.equal(first.status, 303, 'the first submission signs in');
  const second = await tap2.post('/_mfa/verify', { csrf, code });
  t.equal(second.status, 303, 'the second one too');
  t.equal(second.location, first.location, 'to the same page');
  t.equal(tap2.cookies.get('__Host-mfa-session'), b.cookies.get('__Host-mfa-session'), 'with the same session');
  t.notOk(tap2.cookies.has('__Host-mfa-pending'));
  t.equal((await tap2.get('/records')).status, 200);
  t.equal((await other.post('/_mfa/verify', { csrf, code: '123456' })).status, 403, 'another code with the same pending cookie: the sign-in has expired');
  t.notOk(other.cookies.has('__Host-mfa-session'));
  s.clock.advance(31_000);
  t.equal((await late.post('/_mfa/verify', { csrf, code })).status, 403, 'the same form half a minute later: expired');

  // Sent twice at once: both sign in, to one session.
  ({ b, csrf } = await atCodePage(s));
  const next = await totpAt(secret, s.clock.now());
  const again = copyOf(s, b);
  const answers = await Promise.all([b.post('/_mfa/verify', { csrf, code: next }), again.post('/_mfa/verify', { csrf, code: next })]);
  t.same(answers.map((a) => a.status), [303, 303], 'both at once');
  t.equal(again.cookies.get('__Host-mfa-session'), b.cookies.get('__Host-mfa-session'));

  // The second one sent with the cookie the first answer brought (its pending cookie not yet cleared): the session
  // it signs in to is that one, not one held before, and lives on.
  ({ b, csrf } = await atCodePage(s));
  const pendingCookie = b.cookies.get('__Host-mfa-pending')!;
  s.clock.advance(30_000);
  const third = await totpAt(secret, s.clock.now());
  t.equal((await b.post('/_mfa/verify', { csrf, code: third })).status, 303);
  const halfway = copyOf(s, b);
  halfway.cookies.set('__Host-mfa-pending', pendingCookie);
  t.equal((await halfway.post('/_mfa/verify', { csrf, code: third })).status, 303);
  t.equal((await b.get('/records')).status, 200, 'the session lives on');

  // A recovery code, the same.
  ({ b, csrf } = await atCodePage(s, ALICE, 'recovery'));
  const tapped = copyOf(s, b);
  t.equal((await b.post('/_mfa/recovery', { csrf, code: codes[0]! })).status, 303);
  t.equal((await tapped.post('/_mfa/recovery', { csrf, code: codes[0]! })).status, 303, 'a recovery code form sent twice');
  t.equal(tapped.cookies.get('__Host-mfa-session'), b.cookies.get('__Host-mfa-session'));

  // The recovery codes acknowledged twice at the end of enrolment.
  const bob = s.browser();
  await submitPassword(bob, BOB.username, BOB.password);
  const form = await totpEnrolmentForm(s, bob);
  await bob.post('/_mfa/enrol/totp', { csrf: form.csrf, code: await totpAt(form.secret, s.clock.now()) });
  await bob.get('/_mfa/recovery-codes');
  const bob2 = copyOf(s, bob);
  t.equal((await bob.post('/_mfa/recovery-codes', { csrf: form.csrf, saved: 'yes' })).status, 303);
  t.equal((await bob2.post('/_mfa/recovery-codes', { csrf: form.csrf, saved: 'yes' })).status, 303, 'the acknowledgement sent twice');
  t.equal(bob2.cookies.get('__Host-mfa-session'), bob.cookies.get('__Host-mfa-session'));
});

t.test('five wrong codes end the pending login', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  for (let i = 1; i <= 4; i++) {
    const r = await b.post('/_mfa/verify', { csrf, code: '000000' });
    t.equal(r.status, 400);
    t.match(r.body, `Attempts left: ${5 - i}.`);
  }
  const fifth = await b.post('/_mfa/verify', { csrf, code: '000000' });
  t.equal(fifth.status, 429);
  t.match(fifth.body, 'sign in again');
  const late = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(late.status, 403, 'even the right code is refused now: the password is needed again');
});

t.test('a code form sent with nothing typed says so, and uses up no try', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const failures = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed').length;
  const empty = (r: { status: number; body: string }, what: string) => {
    t.equal(r.status, 400, `${what}: answered with the page again`);
    t.match(r.body, 'Enter the code, then try again.', `${what}: says the code is missing`);
    t.notMatch(r.body, 'did not work', `${what}: not a wrong code`);
    t.match(r.body, /<title>Error: /, `${what}: the title says so`);
    t.match(r.body, /<input[^>]* id="code"[^>]* aria-invalid="true"/, `${what}: the field is marked`);
  };
  // At enrolment (a space or two, from a phone keyboard, is nothing typed too).
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf: enrolCsrf } = await totpEnrolmentForm(s, b);
  empty(await b.post('/_mfa/enrol/totp', { csrf: enrolCsrf, code: '  ' }), 'enrolment');
  t.equal((await b.post('/_mfa/enrol/totp', { csrf: enrolCsrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes', 'then the code goes on');
  await b.post('/_mfa/recovery-codes', { csrf: enrolCsrf, saved: 'yes' });
  // At sign-in: five empty forms would have ended the sign-in; none is a try.
  s.clock.advance(30_000);
  const { b: c, csrf } = await atCodePage(s);
  for (let i = 0; i < 5; i++) empty(await c.post('/_mfa/verify', { csrf, code: '' }), 'sign-in');
  empty(await c.post('/_mfa/recovery', { csrf, code: '' }), 'recovery code');
  t.equal(failures(), 0, 'no failure counted');
  t.equal((await c.post('/_mfa/verify', { csrf, code: '000000' })).status, 400);
  t.match((await c.post('/_mfa/verify', { csrf, code: '000000' })).body, 'Attempts left: 3.', 'the first wrong code is the first try');
  const final = await c.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(final.location, '/records');
  // A step-up, and an app added on the security page.
  s.clock.advance(30_000);
  const stepUp = await c.get('/_mfa/step-up?to=%2Frecords');
  empty(await c.post('/_mfa/step-up', { csrf: inputValue(stepUp.body, 'csrf'), to: '/records', code: '' }), 'step-up');
  const setup = await c.get('/_mfa/security/totp');
  empty(await c.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: '' }), 'another app');
  t.equal(failures(), 2, 'still only the two wrong codes');
});

t.test('a code form sent as JSON, or a passkey call as a form, is refused (415) and uses up no try', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const failures = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed').length;
  const code = await totpAt(secret, s.clock.now());
  for (const accept of ['application/json', 'text/html']) {
    for (const body of [{ csrf, code: '000000' }, { csrf, code }]) {
      const r = await b.send('POST', '/_mfa/verify', JSON.stringify(body), { 'content-type': 'application/json', accept });
      t.equal(r.status, 415, `${accept}: refused`);
      t.match(r.body, accept === 'text/html' ? 'The request format is not supported.' : '"error":"GW_ERR_UNSUPPORTED_MEDIA_TYPE"');
    }
  }
  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  for (const path of ['/_mfa/verify/passkey/options', '/_mfa/verify/passkey']) {
    const r = await b.send('POST', path, form({ csrf, credential: '{}' }), { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
    t.equal(r.status, 415, `${path} as a form: refused`);
  }
  t.equal(failures(), 0, 'no failure counted');
  // The same as a form: the wrong code is the first try, the right one signs in.
  t.match((await b.post('/_mfa/verify', { csrf, code: '000000' })).body, 'Attempts left: 4.', 'the wrong code as a form is the first try');
  t.equal((await b.post('/_mfa/verify', { csrf, code })).location, '/records', 'the right code as a form signs in');
});

t.test('wrong codes also count per user across pending logins; a success resets the count', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 10 } } }) });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const failures = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed').map((l) => l.failures);
  for (let login = 0; login < 2; login++) {
    const { b, csrf } = await atCodePage(s);
    for (let i = 0; i < 3; i++) await b.post('/_mfa/verify', { csrf, code: '000000' });
  }
  t.same(failures(), [1, 2, 3, 4, 5, 6], 'entering the password again does not reset the count');
  const { b, csrf } = await atCodePage(s);
  t.equal((await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 303);
  const c = s.browser();
  await submitPassword(c, ALICE.username, ALICE.password);
  await c.post('/_mfa/verify', { csrf: inputValue((await c.get('/_mfa/verify')).body, 'csrf'), code: '000000' });
  t.equal(failures().at(-1), 1, 'reset by the success');
});

t.test("tries refused for the user's wait check no code and use up no tries: someone with the password cannot end a session", async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 6000, burst: 1000 }, perAddress: { freeAttempts: 1000 } } } }) });
  t.teardown(s.close);
  const { b: victim, secret } = await signUpAndEnrol(s);
  // Wrong codes after the password, in fresh sign-ins, until the user must wait.
  let refused = 0;
  for (let i = 0; refused === 0 && i < 20; i++) {
    const { b, csrf } = await atCodePage(s);
    if ((await b.post('/_mfa/verify', { csrf, code: String(100000 + i) })).status === 429) refused++;
  }
  t.equal(refused, 1, 'the user must wait');
  const csrf = inputValue((await victim.get('/_mfa/step-up')).body, 'csrf');
  for (let i = 0; i < s.config.mfa.maxAttemptsPerLogin + 1; i++) {
    s.clock.advance(1000);
    t.equal((await victim.post('/_mfa/step-up', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 429, 'refused while the wait lasts');
  }
  t.equal((await victim.get('/records')).status, 200, 'the session is still there');
  t.notOk(s.logs.some((l) => l.includes('too-many-wrong-codes')), 'not ended for wrong codes never checked');
});

t.test("a try refused as another's wrong code lands in the same instant uses up no try of the step-up either", async (t) => {
  const s = await startStack({
    patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 0, baseSeconds: 1, maxSeconds: 1 }, password: { addressRate: { perMinute: 6000, burst: 1000 }, perAddress: { freeAttempts: 1000 } } } }),
  });
  t.teardown(s.close);
  const { b: victim, secret } = await signUpAndEnrol(s);
  const csrf = inputValue((await victim.get('/_mfa/step-up')).body, 'csrf');
  // The user's per-user attempt is about to be counted when someone holding the password sends a wrong code: that
  // failure is counted first and starts a wait, so the user's try is refused.
  let meanwhile: (() => Promise<unknown>) | undefined;
  const raiseTo = s.kv.raiseTo.bind(s.kv);
  s.kv.raiseTo = async (key, ...rest) => {
    const run = /:failures:totp:last$/.test(key) ? meanwhile : undefined;
    meanwhile = undefined;
    await run?.();
    return raiseTo(key, ...rest);
  };
  const failures = () => s.logs.filter((l) => l.includes('"security":"mfa_failed"')).length;
  for (let i = 0; i < s.config.mfa.maxAttemptsPerLogin + 1; i++) {
    s.clock.advance(31_000);
    const attacker = await atCodePage(s);
    meanwhile = () => attacker.b.post('/_mfa/verify', { csrf: attacker.csrf, code: '000000' });
    t.equal((await victim.post('/_mfa/step-up', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 429, 'refused for the wait');
  }
  t.equal(failures(), s.config.mfa.maxAttemptsPerLogin + 1, "each time the other's wrong code was checked first");
  s.clock.advance(31_000);
  t.equal((await victim.post('/_mfa/step-up', { csrf, to: '/records', code: await totpAt(secret, s.clock.now()) })).location, '/records', 'the right code, once the wait is over, passes');
  t.equal((await victim.get('/records')).status, 200, 'the session is still there');
  t.notOk(s.logs.some((l) => l.includes('too-many-wrong-codes')), 'not ended for codes never checked');
});

t.test('parallel wrong codes cannot outrun the limit of one pending login', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => b.post('/_mfa/verify', { csrf, code: String(100000 + i) })));
  const checked = s.logs.filter((l) => l.includes('"security":"mfa_failed"')).length;
  t.equal(checked, 5, 'exactly five codes were checked');
  t.equal(results.filter((r) => r.status === 400).length, 4);
  t.ok(results.filter((r) => r.status === 429).length >= 1);
  t.equal(results.filter((r) => r.status === 303).length, 0);
});

t.test('a pending login expires after five minutes', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  s.clock.advance(301_000);
  const r = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(r.status, 403);
  t.match(r.body, '<title>Your sign-in has expired. Please sign in again. – \u2068Riverbend Health Patient Portal\u2069</title>', 'the title says what happened');
  t.match(r.body, '<h1>Your sign-in has expired. Please sign in again.</h1>');
  t.match(r.body, '<a href="/login">Sign in again</a>');
  t.equal((await b.get('/_mfa/enrol')).status, 403, 'a page of another step: expired too, no way round');
  const missing = await b.get('/_mfa/nothing');
  t.equal(missing.status, 404);
  t.match(missing.body, '<title>Page not found. – \u2068Riverbend Health Patient Portal\u2069</title>');
  t.notMatch(missing.body, 'Something needs your attention');
});

t.test('Back to a step already done, while the sign-in goes on: on to the step it is at', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const code = await totpAt(secret, s.clock.now());
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code })).location, '/_mfa/recovery-codes', 'the app is set up');
  const back = await b.get('/_mfa/enrol/totp');
  t.equal(back.status, 303, 'Back to the set-up page');
  t.equal(back.location, '/_mfa/continue');
  t.equal(back.headers['cache-control'], 'no-store');
  t.equal((await b.get(back.location!)).location, '/_mfa/recovery-codes', 'which is the recovery codes');
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code })).location, '/_mfa/continue', 'the set-up form sent again');
  t.equal((await b.get('/_mfa/enrol')).location, '/_mfa/continue');
  const json = await b.send('POST', '/_mfa/enrol/passkey/options', '{}', { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf });
  t.equal(json.status, 403, 'a call of the passkey script gets its JSON answer, not a redirect');
  t.match(JSON.parse(json.body), { error: 'GW_ERR_LOGIN_EXPIRED' });
  t.equal((await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).location, '/records', 'the sign-in goes on');
});

t.test('CSRF: gateway forms need the token and a same-origin request', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const code = await totpAt(secret, s.clock.now());
  t.equal((await b.post('/_mfa/verify', { code })).status, 403, 'no token');
  t.equal((await b.post('/_mfa/verify', { csrf: 'x'.repeat(43), code })).status, 403, 'wrong token');
  t.equal((await b.post('/_mfa/verify', { csrf, code }, { 'sec-fetch-site': 'cross-site' })).status, 403, 'cross-site');
  t.equal((await b.post('/_mfa/verify', { csrf, code }, { origin: 'https://evil.example' })).status, 403, 'foreign origin');
  t.equal((await b.post('/_mfa/verify', { csrf, code }, { 'sec-fetch-site': 'same-origin' })).status, 303, 'genuine form');
});

t.test("another site's form posted to a gateway route in a type it does not take is refused as CSRF, not as the type", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b: signedIn } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const refusals = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request refused').map((l) => l.code);
  // A cross-site <form enctype="text/plain">, and the same body sent by a script, from each page of the gateway.
  const text = `csrf=${csrf}&code=000000`;
  for (const [browser, path, type] of [[b, '/_mfa/verify', 'text/plain'], [b, '/_mfa/verify/passkey', 'text/plain'], [signedIn, '/_mfa/step-up', 'text/plain'], [signedIn, '/_mfa/security/remove', 'multipart/form-data; boundary=x'], [signedIn, '/_mfa/logout', 'application/json']] as const) {
    for (const from of [{ 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }, { 'sec-fetch-site': 'same-site' }]) {
      const before = refusals().length;
      const r = await browser.send('POST', path, text, { 'content-type': type, accept: 'application/json', ...from });
      t.equal(r.status, 403, `${path}, ${type}, ${JSON.stringify(from)}: refused`);
      t.match(JSON.parse(r.body), { error: 'GW_ERR_CSRF' }, 'as a cross-site request');
      t.same(refusals().slice(before), ['GW_ERR_CSRF'], 'and logged so');
    }
    // From the gateway's own page (or a client that says nothing of where it came from): the type is what is wrong.
    for (const from of [{ 'sec-fetch-site': 'same-origin' }, {}]) {
      const r = await browser.send('POST', path, text, { 'content-type': type, accept: 'application/json', ...from });
      t.equal(r.status, 415, `${path}, ${type}, ${JSON.stringify(from)}: the type refused`);
    }
  }
  t.equal(s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed').length, 0, 'no code checked');
  t.equal((await signedIn.get('/records')).status, 200, 'still signed in');
});

t.test('a code form whose sign-in a password entered in another tab replaced leads on to the sign-in in progress', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  await signUpAndEnrol(s, BOB);
  s.clock.advance(30_000);
  for (const other of [ALICE, BOB]) {
    const { b, csrf } = await atCodePage(s);
    // The other tab: the password again, or another account's, in the same browser.
    t.equal((await submitPassword(b, other.username, other.password)).location, '/_mfa/verify');
    const stale = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
    t.equal(stale.status, 403, `${other.username}: the old form's token is no longer the sign-in's`);
    t.match(stale.body, '<a href="/_mfa/continue">Continue</a>', `${other.username}: a way on to the sign-in in progress`);
    t.match((await b.get('/_mfa/continue')).location, '/_mfa/verify');
  }
});

t.test('session cookies that are forged, tampered, expired, alg:none, wrong kid or oversized mean signed out', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const signedInAt = s.clock.now();
  const good = b.cookies.get('__Host-mfa-session')!;
  const [h, p, sig] = good.split('.') as [string, string, string];
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  // Each differs from the genuine cookie only in what it is named for, so that is what refuses it: the genuine session
  // and user (someone else's would find no session anyway), the configured secret under the unknown kid, and a
  // signature part (an empty one is refused for its shape before the algorithm is looked at).
  const otherKid = await new SessionTokens([{ id: 'other', key: decodeKey(s.config.keys.signing[0]!.secret) }], 43_200).sign({ sub: claims.sub, sid: claims.sid }, s.clock.now());
  const bad: Record<string, string> = {
    tampered: `${h}.${enc({ ...claims, exp: claims.exp + 86_400 })}.${sig}`,
    forged: `${h}.${p}.${Buffer.alloc(32, 7).toString('base64url')}`,
    'alg none': `${enc({ alg: 'none', typ: 'mfa-session+jwt', kid: 's1' })}.${p}.${sig}`,
    'wrong kid': otherKid,
    oversized: `${h}.${'A'.repeat(6000)}.${sig}`,
    empty: '',
  };
  for (const [name, value] of Object.entries(bad)) {
    const x = s.browser();
    x.cookies.set('__Host-mfa-session', value);
    const r = await x.get('/records');
    t.equal(r.status, 302, name);
    t.equal(r.location, '/login', name);
  }
  t.equal((await b.get('/records')).status, 200, 'the genuine cookie still works');
  // Used every 14 minutes, the session never idles out: only its absolute lifetime (12 hours) can end it.
  const end = signedInAt + 12 * 3600_000;
  const statuses: number[] = [];
  while (s.clock.now() + 14 * 60_000 < end) {
    s.clock.advance(14 * 60_000);
    statuses.push((await b.get('/records')).status);
  }
  t.same([statuses.length, statuses.filter((x) => x !== 200)], [51, []], 'kept alive by its use until the last minutes of the 12 hours');
  s.clock.advance(end - s.clock.now() + 1000);
  t.equal((await b.get('/records')).status, 302, 'expired after the absolute lifetime, in use all along');
});

t.test('idle timeout is enforced from the store', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  s.clock.advance(14 * 60_000);
  t.equal((await b.get('/records')).status, 200, 'activity within 15 minutes');
  s.clock.advance(14 * 60_000);
  t.equal((await b.get('/records')).status, 200, 'the idle clock moved with the last request');
  s.clock.advance(15 * 60_000 + 1000);
  t.equal((await b.get('/records')).status, 302, 'idle for 15 minutes: signed out');
});

t.test('logout through the portal or the gateway ends both sessions; the old cookie is dead', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  const old = b.cookies.get('__Host-mfa-session')!;
  const out = await b.get('/logout');
  t.equal(out.status, 302);
  t.notOk(b.cookies.has('__Host-mfa-session'), 'cookie cleared');
  t.equal(out.headers['clear-site-data'], '"cache", "cookies", "storage"', 'the browser forgets the pages kept for Back, and the known-browser token');
  const replay = s.browser();
  replay.cookies.set('__Host-mfa-session', old);
  t.equal((await replay.get('/records')).status, 302, 'replayed cookie refused');

  const { b: b2 } = await signInWithTotp(s, secret);
  const old2 = b2.cookies.get('__Host-mfa-session')!;
  const portalCookie = /PORTALSESSID=([0-9a-f]+)/.exec(JSON.parse((await b2.get('/echo', { accept: 'application/json' })).body).headers.cookie)![1]!;
  const confirm = await b2.get('/_mfa/logout');
  const done = await b2.post('/_mfa/logout', { csrf: inputValue(confirm.body, 'csrf') });
  t.equal(done.status, 200);
  t.notOk(b2.cookies.has('__Host-mfa-session'));
  const replay2 = s.browser();
  replay2.cookies.set('__Host-mfa-session', old2);
  t.equal((await replay2.get('/records')).status, 302, 'replayed cookie refused');
  t.ok(s.portalRequests.some((r) => r.url === '/logout' && String(r.headers.cookie).includes(portalCookie)), 'the portal session was ended too');
});

t.test("another site's link to the portal's logout ends nothing: the person confirms on the gateway's sign-out page", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const before = s.portalRequests.length;
  // The last: an older browser, which sends neither Fetch Metadata nor Origin on a GET, but a Referer.
  for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }, { referer: 'https://evil.example/page' }]) {
    const out = await b.get('/logout', headers);
    t.equal(out.status, 303, `${JSON.stringify(headers)}: sent to the confirmation`);
    t.equal(out.location, '/_mfa/logout');
  }
  t.equal(s.portalRequests.length, before, 'the portal was not asked to sign out');
  t.equal((await b.get('/records')).status, 200, 'still signed in');
  const confirm = await b.get('/_mfa/logout');
  t.match(confirm.body, 'csrf', 'the sign-out page, with its form');
  t.equal((await b.get('/logout', { 'sec-fetch-site': 'same-origin' })).status, 302, "the portal's own link, from its page: signed out");
  t.equal((await b.get('/records')).status, 302);
});

t.test("the portal's logout under a rule that would not let the person through (a step-up, a network) still signs out", async (t) => {
  for (const rule of [
    { name: 'portal', paths: ['/'], decision: 'step-up', maxAgeSeconds: 600 },
    { name: 'portal', paths: ['/'], decision: 'mfa', networks: ['10.0.0.0/8'] },
  ]) {
    const s = await startStack({ patch: (raw) => (raw.policy.rules[1] = rule) });
    t.teardown(s.close);
    const { b } = await signUpAndEnrol(s);
    const old = b.cookies.get('__Host-mfa-session')!;
    // The second factor is older than the step-up rule allows.
    s.clock.advance(11 * 60_000);
    const out = await b.get('/logout', { 'sec-fetch-site': 'same-origin' });
    t.equal(out.status, 303, `${rule.decision}: no step-up nor refusal to sign out`);
    t.equal(out.location, '/_mfa/logout', "the gateway's sign-out page instead");
    const done = await b.post('/_mfa/logout', { csrf: inputValue((await b.get('/_mfa/logout')).body, 'csrf') });
    t.equal(done.status, 200);
    const replay = s.browser();
    replay.cookies.set('__Host-mfa-session', old);
    t.match((await replay.get('/_mfa/security')).location, /^\/login/, 'the session has ended');
  }
});

/**
 * A stack whose portal's answers say Clear-Site-Data as `saying` gives it for the request's URL (many portals' logouts
 * do). `own`: answers a request itself when it returns true. `kv`: the stack's store.
 */
async function stackBehindClearSiteData(
  t: Tap.Test,
  saying: (url: string) => string | undefined,
  opts: { own?: (req: IncomingMessage, res: ServerResponse) => boolean; kv?: StackOptions['kv'] } = {},
): Promise<Stack> {
  // In front of the demo portal: its answers as they are, with the header added.
  let portalUrl = '';
  const front = createServer((req, res) => {
    if (opts.own?.(req, res)) return;
    const up = httpRequest(new URL(req.url!, portalUrl), { method: req.method, headers: req.headers }, (answer) => {
      const value = saying(req.url!);
      res.writeHead(answer.statusCode!, { ...answer.headers, ...(value === undefined ? {} : { 'clear-site-data': value }) });
      answer.pipe(res);
    });
    req.pipe(up);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => {
    front.closeAllConnections();
    return new Promise((r) => front.close(r));
  });
  const s = await startStack({
    ...(opts.kv ? { kv: opts.kv } : {}),
    patch: (raw) => {
      portalUrl = raw.portal.url;
      raw.portal.url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    },
  });
  t.teardown(s.close);
  return s;
}

const sessionsEnded = (s: Stack) => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'session_ended');

t.test("the portal's logout answered with a Clear-Site-Data of its own: the browser still forgets what the gateway asks", async (t) => {
  const s = await stackBehindClearSiteData(t, (url) => (url.startsWith('/logout') ? '"cache"' : undefined));
  const { b } = await signUpAndEnrol(s);
  const out = await b.get('/logout', { 'sec-fetch-site': 'same-origin' });
  t.equal(out.status, 302);
  t.equal(out.headers['clear-site-data'], '"cache", "cookies", "storage", "cache"', "the gateway's list and the portal's");
});

// The demo portal's /echo, with ?csd= the Clear-Site-Data its answer says: a logout the configuration does not name.
const csd = (url: string) => new URL(url, 'http://x').searchParams.get('csd') ?? undefined;

t.test("a portal answer that has the browser delete its cookies (Clear-Site-Data) ends the gateway session, as the portal's logout", async (t) => {
  const s = await stackBehindClearSiteData(t, csd);
  const { b, secret } = await signUpAndEnrol(s);
  let browser = b;
  for (const [said, sent] of [['"cache","cookies"', '"cache", "cookies", "storage", "cache","cookies"'], ['"*"', '"cache", "cookies", "storage", "*"']] as const) {
    const old = browser.cookies.get('__Host-mfa-session')!;
    const out = await browser.get(`/echo?csd=${encodeURIComponent(said)}`);
    t.equal(out.status, 200, `${said}: the portal's answer`);
    t.equal(out.headers['clear-site-data'], sent, "with what the gateway's sign-out clears, and the portal's list");
    t.notOk(browser.cookies.has('__Host-mfa-session'), 'the session cookie cleared');
    const replay = s.browser();
    replay.cookies.set('__Host-mfa-session', old);
    t.equal((await replay.get('/echo')).status, 302, 'a copy of the old cookie is refused');
    browser = (await signInWithTotp(s, secret)).b;
  }
  t.match(sessionsEnded(s), [{ reason: 'portal-logout' }, { reason: 'portal-logout' }], 'noted as the portal\'s logout');
  t.equal(sessionsEnded(s).length, 2);
});

t.test('ending the session for such an answer fails (the store): an error page, and the portal\'s answer is still read to its end', async (t) => {
  // A store whose session deletes (and takes) fail once `failing` is set (Redis gone at that moment).
  let failing = false;
  class FailingDeletes extends MemoryKvStore {
    override async delete(key: string): Promise<void> {
      if (failing && key.startsWith('session:')) throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', 'store down');
      return super.delete(key);
    }
    override async take(key: string): Promise<string | null> {
      if (failing && key.startsWith('session:')) throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', 'store down');
      return super.take(key);
    }
  }
  // Larger than the socket buffers hold: written to its end only if the gateway reads it.
  const body = Buffer.alloc(8 * 1024 * 1024, 0x61);
  let sent!: Promise<'finished' | 'cut off'>;
  const s = await stackBehindClearSiteData(t, () => undefined, {
    kv: (clock) => new FailingDeletes(clock),
    own: (req, res) => {
      if (req.url !== '/big') return false;
      sent = new Promise((resolve) => {
        res.once('finish', () => resolve('finished'));
        res.once('close', () => resolve(res.writableFinished ? 'finished' : 'cut off'));
      });
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length), 'clear-site-data': '"cookies"' }).end(body);
      return true;
    },
  });
  const { b } = await signUpAndEnrol(s);
  failing = true;
  const out = await b.get('/big');
  t.equal(out.status, 503, 'the store failing: its error page, not the portal\'s answer');
  const waited = new Promise((r) => setTimeout(r, 5000, 'still unread after 5 s'));
  t.equal(await Promise.race([sent, waited]), 'finished', "the portal's answer was read to its end, not left half-read on its connection");
});

t.test('a Clear-Site-Data that deletes no cookies ends nothing; without a session, it passes as it is', async (t) => {
  const s = await stackBehindClearSiteData(t, csd);
  const { b } = await signUpAndEnrol(s);
  // Browsers ignore directives they cannot read: an unquoted or capitalised cookies keeps the cookies.
  for (const said of ['"cache"', '"storage"', '"cache", "storage"', 'cookies', '"Cookies"']) {
    const out = await b.get(`/echo?csd=${encodeURIComponent(said)}`);
    t.equal(out.status, 200);
    t.equal(out.headers['clear-site-data'], said, `${said}: as the portal said it`);
    t.ok(b.cookies.has('__Host-mfa-session'));
    t.equal((await b.get('/echo')).status, 200, 'still signed in');
  }
  t.same(sessionsEnded(s), [], 'no session ended');
  // The login page, public: the answer goes on to the sign-in's jar of portal cookies, as any other.
  const out = await s.browser().get(`/login?csd=${encodeURIComponent('"cookies"')}`);
  t.equal(out.status, 200);
  t.equal(out.headers['clear-site-data'], '"cookies"', 'not signed in: the portal\'s answer as it is');
});

t.test("the portal's refusal of a signed-in browser's password, deleting its cookies (Clear-Site-Data): the gateway session ends too", async (t) => {
  const s = await stackBehindClearSiteData(t, csd);
  const { b } = await signUpAndEnrol(s);
  const old = b.cookies.get('__Host-mfa-session')!;
  // A password sent again while signed in, to a login whose refusal says it: the demo portal refuses it as an expired
  // form (its form's token went to the session's jar, not to the sign-in's).
  const page = await b.get('/login');
  const out = await b.post(`/login?csd=${encodeURIComponent('"cookies"')}`, { username: ALICE.username, password: 'wrong password', csrf: inputValue(page.body, 'csrf') });
  t.equal(out.status, 403, "the portal's own refusal");
  t.ok(s.logs.some((l) => l.includes('"security":"password_failed"')), 'taken for a refusal');
  t.equal(out.headers['clear-site-data'], '"cache", "cookies", "storage", "cookies"', "with what the gateway's sign-out clears");
  t.notOk(b.cookies.has('__Host-mfa-session'), 'the session cookie cleared');
  const replay = s.browser();
  replay.cookies.set('__Host-mfa-session', old);
  t.equal((await replay.get('/echo')).status, 302, 'a copy of the old cookie is refused');
  t.match(sessionsEnded(s), [{ reason: 'portal-logout' }], "noted as the portal's logout");
});

t.test("the portal's logout with the portal down: the 502 page still tells the browser to forget what the session left", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  await s.portal.close();
  const out = await b.get('/logout');
  t.equal(out.status, 502);
  t.equal(out.headers['clear-site-data'], '"cache", "cookies", "storage"');
  t.notOk(b.cookies.has('__Host-mfa-session'), 'and the session cookie goes');
});

t.test('a sign-out form posted from another site clears nothing; from the gateway, with no session, it does', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  // A password typed, the second step not yet done: a cross-site POST (which SameSite keeps the session cookie from)
  // must not wipe this sign-in in progress with Clear-Site-Data.
  await submitPassword(b, ALICE.username, ALICE.password);
  t.ok(b.cookies.has('__Host-mfa-pending'));
  for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }]) {
    const r = await b.post('/_mfa/logout', {}, headers);
    t.equal(r.status, 403, `${Object.keys(headers)[0]}: refused`);
    t.notOk(r.headers['clear-site-data'], 'nothing cleared');
  }
  t.ok(b.cookies.has('__Host-mfa-pending'), 'the sign-in goes on');
  const own = await b.post('/_mfa/logout', {}, { 'sec-fetch-site': 'same-origin' });
  t.equal(own.status, 200, 'the gateway\'s own form, no session: signed out page');
  t.equal(own.headers['clear-site-data'], '"cache", "cookies", "storage"');
});

t.test("the gateway's sign-out ends its own session first: a slow or absent portal does not keep it alive", async (t) => {
  // The portal's logout, as the gateway calls it, takes 1.5 s to answer.
  const s = await startStack({ patch: (raw) => (raw.portal.logoutPaths = ['/slow?ms=1500']) });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  const old = b.cookies.get('__Host-mfa-session')!;
  const confirm = await b.get('/_mfa/logout');
  const signingOut = b.post('/_mfa/logout', { csrf: inputValue(confirm.body, 'csrf') });
  await portalReceived(s, '/slow?ms=1500');
  const replay = s.browser();
  replay.cookies.set('__Host-mfa-session', old);
  t.equal((await replay.get('/records')).status, 302, 'while the portal is still being told, the session is already over');
  t.equal((await signingOut).status, 200, 'signed out');
  // A portal that does not answer at all: still signed out, and the log says the portal could not be told.
  const { b: b2 } = await signInWithTotp(s, secret);
  const confirm2 = await b2.get('/_mfa/logout');
  await s.portal.close();
  t.equal((await b2.post('/_mfa/logout', { csrf: inputValue(confirm2.body, 'csrf') })).status, 200);
  t.equal((await b2.get('/records')).status, 302);
  t.ok(s.logs.some((l) => l.includes('could not end the portal session')));
});

t.test('logout through the portal ends the gateway session even when the portal does not answer', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const old = b.cookies.get('__Host-mfa-session')!;
  await s.portal.close();
  const out = await b.get('/logout');
  t.equal(out.status, 502, "the portal's failure is shown");
  t.notOk(b.cookies.has('__Host-mfa-session'), 'cookie cleared');
  const replay = s.browser();
  replay.cookies.set('__Host-mfa-session', old);
  t.equal((await replay.get('/records')).status, 302, 'the old cookie is dead: signed out at the gateway');
  t.equal((await b.get('/records')).status, 302, 'another page is not a way back in');
});

t.test('a request still in flight at logout does not bring the session back', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const old = b.cookies.get('__Host-mfa-session')!;
  s.clock.advance(31_000); // the idle clock is due to be written back by the next request
  // Its answer sets a cookie: it is saved to the session after the logout.
  const slow = b.get('/slow?ms=400&cookie=late_pref');
  await portalReceived(s, '/slow?ms=400&cookie=late_pref');
  const out = await b.get('/logout');
  t.equal(out.status, 302);
  t.equal((await slow).status, 200);
  const replay = s.browser();
  replay.cookies.set('__Host-mfa-session', old);
  // /echo needs no portal session: only the gateway's answer decides what happens here.
  t.equal((await replay.get('/echo')).status, 302, 'still signed out at the gateway');
});

t.test('a slow request writing back the idle clock keeps the cookies a faster request saved meanwhile', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  s.clock.advance(31_000); // the idle clock is due to be written back by the next requests
  // The slow answer sets a cookie of its own: it is saved to the session after the faster one's.
  const slow = b.get('/slow?ms=400&cookie=late_pref');
  await portalReceived(s, '/slow?ms=400&cookie=late_pref');
  t.equal((await b.get('/set-cookie-test')).status, 200, 'the portal sets portal_pref meanwhile');
  t.equal((await slow).status, 200);
  const echoed = JSON.parse((await b.get('/echo', { accept: 'application/json' })).body).headers.cookie;
  t.match(echoed, 'portal_pref=dark', 'the cookie is still in the jar');
  t.match(echoed, 'late_pref=late', "beside the slow answer's");
  t.match(echoed, /PORTALSESSID=/, 'and so is the portal session');
});

t.test('two users stay apart', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const a = await signUpAndEnrol(s, ALICE);
  const bob = await signUpAndEnrol(s, BOB);
  t.match((await a.b.get('/records')).body, 'Signed in as alice');
  t.match((await bob.b.get('/records')).body, 'Signed in as bob');
  // Bob's code never completes Alice's login.
  s.clock.advance(30_000);
  const { b: x, csrf } = await atCodePage(s);
  t.equal((await x.post('/_mfa/verify', { csrf, code: await totpAt(bob.secret, s.clock.now()) })).status, 400);
});

t.test('pages in the language the browser asks for, from a dropped-in message file; branding from config', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'mfa-ui-'));
  writeFileSync(join(dir, 'mi.json'), JSON.stringify({ chooseTitle: 'Kōwhiria tō hīkoi tuarua' }));
  writeFileSync(join(dir, 'ar.json'), JSON.stringify({ chooseTitle: 'اختر خطوتك الثانية', 'error.GW_ERR_METHOD_NOT_ALLOWED': 'هذه الطريقة غير مسموح بها هنا.' }));
  writeFileSync(join(dir, 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
  const s = await startStack({ patch: (raw) => (raw.ui = { localesDir: dir, logoFile: join(dir, 'logo.svg'), accentColour: '#7a1f5c' }) });
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const mi = await b.get('/_mfa/enrol', { 'accept-language': 'mi-NZ,en;q=0.8' });
  t.match(mi.body, '<html lang="mi" dir="ltr">');
  const ar = await b.get('/_mfa/enrol', { 'accept-language': 'ar-EG' });
  t.match(ar.body, '<html lang="ar" dir="rtl">', 'a language written right to left is laid out so');
  t.match(mi.body, '<h1>Kōwhiria tō hīkoi tuarua</h1>');
  t.equal(mi.headers['content-language'], 'mi');
  const de = await b.get('/_mfa/enrol', { 'accept-language': 'de' });
  t.match(de.body, '<h1>Choose your second step</h1>');
  // The messages the catalogues leave out are in English, marked so for a screen reader (and laid out left to right
  // on a right-to-left page); an English page needs no such marks.
  const intro = 'Each time you sign in, after your password you will confirm it is you with one of these.';
  t.match(mi.body, `<p><span lang="en">${intro}</span></p>`);
  t.match(ar.body, `<p><span lang="en" dir="ltr">${intro}</span></p>`);
  t.notMatch(de.body, '<span lang=');
  // An error page, its title too; the same error as JSON, for a script, says the message's language in its
  // Content-Language, for the script to mark it as the page does.
  const refused = await b.send('TRACE', '/_mfa/enrol', undefined, { 'accept-language': 'mi' });
  t.equal(refused.status, 405);
  t.match(refused.body, '<title lang="en">This method is not allowed here. – ');
  t.match(refused.body, '<h1><span lang="en">This method is not allowed here.</span></h1>');
  const json = await b.send('TRACE', '/_mfa/enrol', undefined, { 'accept-language': 'mi', accept: 'application/json' });
  t.equal(JSON.parse(json.body).message, 'This method is not allowed here.');
  t.equal(json.headers['content-language'], 'en', 'left out: English');
  const translatedJson = await b.send('TRACE', '/_mfa/enrol', undefined, { 'accept-language': 'ar', accept: 'application/json' });
  t.equal(JSON.parse(translatedJson.body).message, 'هذه الطريقة غير مسموح بها هنا.');
  t.equal(translatedJson.headers['content-language'], 'ar', 'translated: the language asked for');
  t.match(mi.body, '<img src="/_mfa/assets/logo" alt="" class="logo">');
  const logo = await b.get('/_mfa/assets/logo');
  t.equal(logo.headers['content-type'], 'image/svg+xml');
  t.match(String(logo.headers['content-security-policy']), "default-src 'none'");
  t.match((await b.get('/_mfa/assets/gateway.css')).body, '--accent: #7a1f5c');
});

t.test('an answer to a request the server could not read: its message in ui.defaultLanguage, its Content-Language said', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'mfa-ui-'));
  const tooLarge = 'طلبك يحتوي على ترويسات كبيرة جدًا.';
  writeFileSync(join(dir, 'ar.json'), JSON.stringify({ 'error.GW_ERR_HEADERS_TOO_LARGE': tooLarge }));
  const s = await startStack({ patch: (raw) => (raw.ui = { localesDir: dir, defaultLanguage: 'ar' }) });
  t.teardown(s.close);
  // Its headers are not read: the language it asks for is not known.
  const large = await rawRequest(s.url, `GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Language: en\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(large, /^HTTP\/1\.1 431 /);
  t.match(large, /\r\ncontent-language: ar\r\n/, 'translated: the default language');
  t.equal(JSON.parse(large.slice(large.indexOf('\r\n\r\n') + 4)).message, tooLarge);
  const malformed = await rawRequest(s.url, 'GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x01b\r\n\r\n');
  t.match(malformed, /^HTTP\/1\.1 400 /);
  t.match(malformed, /\r\ncontent-language: en\r\n/, 'left out by its catalogue: English');
});

t.test('the enrolment form sent twice at once: both go on to the recovery codes, which are there', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const form = { csrf, code: await totpAt(secret, s.clock.now()) };
  const answers = await Promise.all([b.post('/_mfa/enrol/totp', form), b.post('/_mfa/enrol/totp', form)]);
  t.same(answers.map((a) => [a.status, a.location]), [[303, '/_mfa/recovery-codes'], [303, '/_mfa/recovery-codes']], 'neither says the code did not work');
  const shown = await b.get('/_mfa/recovery-codes');
  t.equal([...shown.body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].length, 10, 'the codes are shown');
  const done = await b.post('/_mfa/recovery-codes', { csrf: form.csrf, saved: 'yes' });
  t.equal(done.location, '/records', 'signed in');
});

t.test('a recovery code form sent twice at once logs one mfa_ok: one sign-in, proved once', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { codes } = await signUpAndEnrol(s);
  const events = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_ok' || l.security === 'session_started');
  const since = (n: number) => events().slice(n).map((e) => `${e.security} ${e.factor}`);

  const n = events().length;
  const { b, csrf } = await atCodePage(s, ALICE, 'recovery');
  const tapped = copyOf(s, b);
  const both = await Promise.all([b.post('/_mfa/recovery', { csrf, code: codes[0]! }), tapped.post('/_mfa/recovery', { csrf, code: codes[0]! })]);
  t.same(both.map((a) => a.status), [303, 303], 'a recovery code form sent twice at once: both go on');
  t.same(since(n), ['mfa_ok recovery', 'session_started recovery'], 'one sign-in, proved once');
});
