// The security page: list, add (app or passkey), rename, remove (never the last), new recovery codes, sign out
// other devices. Every change needs a recent second factor and the CSRF token, ends other sessions and is notified.
import { createHmac, hkdfSync } from 'node:crypto';
import t from 'tap';
import { decodeKey } from '../../src/config/load.js';
import { Sealer } from '../../src/mechanisms/sealer.js';
import { PASSKEY_OPTIONS, SETUP_TRIES } from '../../src/services/ceremony.js';
import { isSealedKey, keys } from '../../src/stores/keys.js';
import { inputValue, type Browser } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { ALICE, BOB, atCodePage, copyOf, jsonCall, passkeyCsrf, signInWithPasskey, signInWithTotp, signUpAndEnrol, startStack, submitPassword, totpAt, totpEnrolmentForm, type Stack } from '../helpers/stack.js';

const factorIds = (html: string) => [...html.matchAll(/name="factor" value="([^"]+)"/g)].map((m) => m[1]!);
const replayed = (s: Stack) => s.logs.filter((l) => l.includes('"security":"mfa_replayed"')).length;
const shownSecret = (html: string) => /id="secret">([^<]+)</.exec(html)![1]!.replaceAll(' ', '');

async function setUp(t: Tap.Test) {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: receiver.url, secret: 's'.repeat(32), retries: 0 }) });
  t.teardown(s.close);
  return { s, receiver };
}

async function securityPage(b: Browser) {
  const page = await b.get('/_mfa/security');
  if (page.status !== 200) throw new Error(`security page answered ${page.status} ${page.location}`);
  return { page, csrf: inputValue(page.body, 'csrf') };
}

async function addApp(s: Stack, b: Browser, name: string): Promise<string> {
  const setup = await b.get('/_mfa/security/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  s.clock.advance(30_000);
  const r = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name, code: await totpAt(secret, s.clock.now()) });
  if (r.location !== '/_mfa/security?notice=done') throw new Error(`adding an app answered ${r.status}`);
  return secret;
}

t.test('an app being added keeps its key across the step-up its confirmation may need', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const setup = await b.get('/_mfa/security/totp');
  const scanned = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  s.clock.advance(5 * 60_000 + 1);
  const late = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(scanned, s.clock.now()) });
  t.equal(late.status, 401, 'the factor is too old: a step-up first');
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp');
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security/totp', code: await totpAt(secret, s.clock.now()) });
  t.equal(back.location, '/_mfa/security/totp');
  const again = await b.get('/_mfa/security/totp');
  t.equal(/id="secret">([^<]+)</.exec(again.body)![1]!.replaceAll(' ', ''), scanned, 'the key already in the app');
  s.clock.advance(30_000);
  const done = await b.post('/_mfa/security/totp', { csrf: inputValue(again.body, 'csrf'), name: 'Tablet', code: await totpAt(scanned, s.clock.now()) });
  t.equal(done.location, '/_mfa/security?notice=done', 'confirmed with its code');
});

t.test('a first sign-in left at its recovery codes does not finish once the factors were changed elsewhere', async (t) => {
  const { s } = await setUp(t);
  /** A first sign-in up to its recovery codes; in another browser, signed in with its app, a second app added and one removed. */
  const leftAtCodes = async (user: typeof ALICE, removeEnrolled: boolean) => {
    const first = s.browser();
    await submitPassword(first, user.username, user.password);
    const { secret, csrf } = await totpEnrolmentForm(s, first);
    t.equal((await first.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes');
    const { b } = await signInWithTotp(s, secret, user);
    await addApp(s, b, 'Tablet');
    const { page, csrf: c } = await securityPage(b);
    const ids = [...new Set(factorIds(page.body))];
    const tablet = factorIds(page.body.slice(page.body.indexOf('<strong><bdi>Tablet</bdi></strong>')))[0]!;
    t.equal((await b.post('/_mfa/security/remove', { csrf: c, factor: removeEnrolled ? ids.find((id) => id !== tablet)! : tablet })).status, 303);
    return first.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  };
  // A change of factors ends the user's other sessions, and the sign-ins begun before it with them.
  const other = await leftAtCodes(BOB, false);
  t.equal(other.status, 403, 'another factor removed: the sign-in has expired');
  const removed = await leftAtCodes(ALICE, true);
  t.equal(removed.status, 403, 'the enrolled factor removed: the sign-in has expired');
  t.match(removed.body, 'Sign in again');
  t.equal(s.logs.filter((l) => l.includes('"security":"session_started"')).length, 2, 'only the two other browsers');
});

t.test('list, add an app and a passkey, rename, remove; the last factor stays', async (t) => {
  const { s, receiver } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const { page } = await securityPage(b);
  t.match(page.body, '<strong><bdi>Authenticator app</bdi></strong><br>', 'the default name, not followed by the same kind');
  t.match(page.body, /Added <time datetime="(\d{4}-\d\d-\d\d)">\1<\/time>, last used <time datetime="(\d{4}-\d\d-\d\d)">\2<\/time>/);
  t.match(page.body, 'This is your only second step, so it cannot be removed');
  t.equal(factorIds(page.body).length, 1, 'one factor: it can be renamed, not removed');
  t.match(page.body, '10 of 10 recovery codes left.');
  t.match(page.body, 'Making new codes stops the ones you have now from working.', 'what the button does, not that the codes no longer work');
  t.match((await b.get('/_mfa/security?notice=done')).body, 'role="status"', 'a known notice is shown');
  for (const notice of ['constructor', '__proto__', 'toString', 'nonsense']) {
    const odd = await b.get(`/_mfa/security?notice=${notice}`);
    t.equal(odd.status, 200, `?notice=${notice}: the page, without a notice`);
    t.notMatch(odd.body, 'role="status"');
  }

  const second = await addApp(s, b, 'Tablet');
  t.not(second, secret, 'a new secret');
  t.match((await securityPage(b)).page.body, '<strong><bdi>Tablet</bdi></strong> – Authenticator app<br>', 'a name of its own, with its kind');
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  const passkeyPage = await b.get('/_mfa/security/passkey');
  const csrf = passkeyCsrf(passkeyPage.body);
  const options = await jsonCall(b, '/_mfa/security/passkey/options', csrf);
  t.same(options.json.excludeCredentials, [], 'nothing to exclude yet');
  const added = await jsonCall(b, '/_mfa/security/passkey', csrf, { credential: auth.register(options.json), name: 'Blue key <script>' });
  t.same(added, { status: 200, json: { next: '/_mfa/security?notice=done' } });

  const { page: three, csrf: c3 } = await securityPage(b);
  t.match(three.body, 'Blue key &#60;script&#62;', 'names are escaped');
  t.match(three.body, 'Blue key &#60;script&#62;</bdi></strong> – Security key or passkey on one device');
  const ids = factorIds(three.body);
  t.equal(new Set(ids).size, 3);
  t.equal((await b.post('/_mfa/security/rename', { csrf: c3, factor: ids[0]!, name: 'My phone' })).status, 303);
  t.match((await securityPage(b)).page.body, '<strong><bdi>My phone</bdi></strong>');
  const blank = await b.post('/_mfa/security/rename', { csrf: c3, factor: ids[0]!, name: ' \u200e \t ' });
  t.equal(blank.headers.location, '/_mfa/security?notice=name-empty', 'a name of spaces alone: not "saved"');
  const unchanged = (await b.get(blank.headers.location!)).body;
  t.match(unchanged, 'Nothing was changed: the new name was empty.', 'it says so');
  t.match(unchanged, '<strong><bdi>My phone</bdi></strong>', 'the name is kept');
  t.equal((await b.post('/_mfa/security/remove', { csrf: c3, factor: ids[0]! })).status, 303);
  t.equal((await b.post('/_mfa/security/remove', { csrf: c3, factor: ids[0]! })).status, 400, 'gone already');
  const { page: two } = await securityPage(b);
  t.notMatch(two.body, 'My phone');
  const rest = [...new Set(factorIds(two.body))];
  t.equal((await b.post('/_mfa/security/remove', { csrf: c3, factor: rest[0]! })).status, 303);
  const last = [...new Set(factorIds((await securityPage(b)).page.body))];
  t.equal((await b.post('/_mfa/security/remove', { csrf: c3, factor: last[0]! })).status, 400, 'never the last factor');
  t.equal(last.length, 1);

  await receiver.waitFor(5);
  t.same(receiver.calls.map((c) => c.json.event), ['enrolled', 'factor_added', 'factor_added', 'factor_removed', 'factor_removed']);
  t.ok(receiver.calls.every((c) => c.json.user === 'alice' && typeof c.json.time === 'string'));
});

t.test('changes need a second factor in the last 5 minutes and the CSRF token', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const { csrf, page } = await securityPage(b);
  const id = factorIds(page.body)[0]!;
  t.equal((await b.post('/_mfa/security/rename', { csrf: 'x'.repeat(43), factor: id, name: 'x' })).status, 403, 'no CSRF token');
  t.equal((await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'x' }, { origin: 'https://evil.example' })).status, 403, 'cross-site');
  t.equal((await b.post('/_mfa/security/sign-out-others', { csrf }, { 'sec-fetch-site': 'cross-site' })).status, 403, 'cross-site by Sec-Fetch-Site');
  s.clock.advance(5 * 60_000 + 1);
  const stale = await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'x' }, { accept: 'application/json' });
  t.equal(stale.status, 401);
  t.match(JSON.parse(stale.body), { error: 'GW_ERR_STEP_UP_REQUIRED' });
  const late = await b.post('/_mfa/security/recovery-codes', { csrf });
  t.equal(late.status, 401, 'new recovery codes too');
  t.match(late.body, 'href="/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Frecovery-codes"', 'its page leads to a step-up, and back to its question after');

  t.equal((await b.get('/_mfa/security')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity', 'the page itself asks for a step-up first');
  t.equal((await b.get('/_mfa/security/totp')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp');
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
  t.match(step.body, '<p>To go on, confirm it is you again.</p>', 'the step-up says why, in plain words');
  t.match(step.body, '<title>Confirm it is you again – ', 'titled apart from the sign-in\'s code page ("Confirm it is you"), in a list of tabs or in history');
  t.match(step.body, '<h1>Confirm it is you again</h1>');
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, s.clock.now()) });
  t.equal(back.location, '/_mfa/security', 'and comes back');
  const fresh = await securityPage(b);
  t.equal((await b.post('/_mfa/security/rename', { csrf: fresh.csrf, factor: id, name: 'Phone' })).status, 303, 'now it works');
  t.equal((await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Phone' })).status, 403, 'the CSRF token of the old session id is dead');
  // A step-up asked for without a page to come back to: its answer leads on all the same.
  s.clock.advance(30_000);
  const plain = await b.get('/_mfa/step-up');
  const thanks = await b.post('/_mfa/step-up', { csrf: inputValue(plain.body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(thanks.status, 200);
  t.match(thanks.body, '<a href="/">Back to the portal</a>');
});

t.test('the pages that make changes say how long they stay open; a change sent after comes back from its step-up to its form, with what was typed, not yet saved', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  /** The step-up a late change's page leads to, done: where it comes back to. */
  const stepUp = async (late: { status: number; body: string }) => {
    t.equal(late.status, 401, 'a change sent after the five minutes still asks for a step-up first');
    const step = await b.get(/href="(\/_mfa\/step-up[^"]*)"/.exec(late.body)![1]!.replaceAll('&#38;', '&'));
    t.match(step.body, '<p>To go on, confirm it is you again.</p>', 'the step-up for a change sent says why, as for a page');
    s.clock.advance(30_000);
    const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: inputValue(step.body, 'to').replaceAll('&#38;', '&'), code: await totpAt(secret, s.clock.now()) });
    t.equal(back.status, 303);
    return back.location!;
  };
  const { page, csrf } = await securityPage(b);
  t.match(page.body, '<p class="hint">You can make changes here for 5 minutes. After that, confirm it is you again to save a change: what you typed is kept.</p>', 'minutes written out');
  t.match(page.body, /<p class="notice time-warning" role="alert" data-seconds-left="(\d+)" data-warning="Less than a minute left to make changes here\. [^"]+" data-over="The time to make changes here has run out\. [^"]+" hidden><\/p>/, 'warned of a minute before the end, and at the end');
  t.notMatch(page.body, 'I need more time', 'no more time without a step-up');
  const id = factorIds(page.body)[0]!;

  s.clock.advance(4 * 60_000 + 30_000);
  const setup = await b.get('/_mfa/security/totp');
  t.match(setup.body, '<p class="hint">Less than a minute left to make changes here. After that, confirm it is you again to save a change: what you typed is kept.</p>', 'the set-up page too, with the time left: not "1 minutes"');
  t.notMatch(setup.body, /for \d+ min/);
  t.match(setup.body, 'data-seconds-left="30"');

  // Renaming: the new name comes back in its field, with focus, and says it is not saved yet.
  s.clock.advance(31_000);
  const renamed = await stepUp(await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Blue phone & "case"' }));
  t.match(renamed, new RegExp(`^/_mfa/security\\?rename=${id}&name=Blue%20phone%20%26%20%22case%22&kept=[\\w-]{22}$`));
  const again = await b.get(renamed);
  t.match(again.body, `id="rename-${id}" name="name" maxlength="60" required autocomplete="off" value="Blue phone &#38; &#34;case&#34;" autofocus>`);
  t.match(again.body, '<p class="notice" role="status">Your change is not saved yet. What you typed is kept below: check it and send it again.</p>');
  t.notMatch(again.body, '<strong><bdi>Blue phone', 'nothing changed before it is sent again');
  t.match(again.body, '<a href="/" referrerpolicy="no-referrer">Back to the portal</a>', 'the portal is not told the address, with what was typed in it');
  t.equal((await b.post('/_mfa/security/rename', { csrf: inputValue(again.body, 'csrf'), factor: id, name: 'Blue phone' })).status, 303, 'sent again: saved');
  t.match((await securityPage(b)).page.body, '<strong><bdi>Blue phone</bdi></strong>');
  const other = await b.get(`/_mfa/security?rename=nonsense&name=x`);
  t.notMatch(other.body, 'role="status"', 'a factor that is not there: no notice, nothing filled in');
  t.notMatch(other.body, 'value="x"');

  // An app: its name comes back, the code is typed anew (from the same key, scanned already).
  const app = await b.get('/_mfa/security/totp');
  const key = shownSecret(app.body);
  s.clock.advance(5 * 60_000 + 1);
  const appBack = await stepUp(await b.post('/_mfa/security/totp', { csrf: inputValue(app.body, 'csrf'), name: 'Tablet', code: await totpAt(key, s.clock.now()) }));
  t.match(appBack, /^\/_mfa\/security\/totp\?name=Tablet&kept=[\w-]{22}$/);
  const appAgain = await b.get(appBack);
  t.equal(shownSecret(appAgain.body), key, 'the key already in the app');
  t.match(appAgain.body, 'id="name" name="name" maxlength="60" autocomplete="off" value="Tablet"');
  t.match(appAgain.body, 'The app is not added yet. Its name is kept below: type the code your app shows now, and send it again.');
  t.match(appAgain.body, /<input type="text" id="code" name="code" required autofocus/, 'focus on the code, which is not kept');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 1, 'no app added before it is sent again');
  s.clock.advance(30_000);
  t.equal((await b.post('/_mfa/security/totp', { csrf: inputValue(appAgain.body, 'csrf'), name: 'Tablet', code: await totpAt(key, s.clock.now()) })).location, '/_mfa/security?notice=done');

  // Removing: back to the question, asked again.
  const { page: two, csrf: c2 } = await securityPage(b);
  const tablet = factorIds(two.body.slice(two.body.indexOf('<strong><bdi>Tablet</bdi></strong>')))[0]!;
  s.clock.advance(60_000);
  t.match((await b.get(`/_mfa/security/remove?factor=${tablet}`)).body, /data-seconds-left="2\d\d"/, 'the question before a removal says the time too');
  s.clock.advance(4 * 60_000 + 1);
  t.equal(await stepUp(await b.post('/_mfa/security/remove', { csrf: c2, factor: tablet })), `/_mfa/security/remove?factor=${tablet}`);
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'nothing removed before it is sent again');
});

t.test('a page fills in and says kept only what this session sent after the time for changes, never a link from elsewhere', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const { page, csrf } = await securityPage(b);
  const id = factorIds(page.body)[0]!;
  const notice = 'class="notice" role="status"';
  /** Where the step-up a change sent after the time for changes leads to comes back to. */
  const keptAt = async (late: { status: number; body: string }) => {
    t.equal(late.status, 401);
    return decodeURIComponent(/href="\/_mfa\/step-up\?to=([^"&]+)/.exec(late.body)![1]!);
  };

  // Crafted links: the values in the address, without the gateway's mark (or with another's), fill in nothing.
  const crafted = await b.get(`/_mfa/security/totp?name=Call%20us`);
  t.notMatch(crafted.body, notice, 'an app: no notice');
  t.notMatch(crafted.body, 'value="Call us"', 'nor the name');
  t.notMatch(crafted.body, /id="code"[^>]*autofocus/, 'nor focus on the code');
  const craftedKey = await b.get(`/_mfa/security/passkey?name=Call%20us&kept=AAAAAAAAAAAAAAAAAAAAAA`);
  t.notMatch(craftedKey.body, notice, 'a passkey: no notice');
  t.notMatch(craftedKey.body, 'value="Call us"');
  t.notMatch((await b.get(`/_mfa/security?rename=${id}&name=Call%20us`)).body, 'value="Call us"', 'a new name: not filled in');

  s.clock.advance(5 * 60_000 + 1);
  const renamed = await keptAt(await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Blue phone' }));
  const app = await keptAt(await b.post('/_mfa/security/totp', { csrf, name: '', code: '123456' }));
  t.match(app, /^\/_mfa\/security\/totp\?name=&kept=/, 'an empty name is kept too');
  const step = await b.get(`/_mfa/step-up?to=${encodeURIComponent(app)}`);
  s.clock.advance(30_000);
  t.equal((await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: app, code: await totpAt(secret, s.clock.now()) })).location, app);
  const emptyKept = await b.get(app);
  t.match(emptyKept.body, 'The app is not added yet. Its name is kept below: type the code your app shows now, and send it again.', 'kept with an empty name: said');
  t.match(emptyKept.body, /<input type="text" id="code" name="code" required autofocus/, 'focus on the code');
  t.match(emptyKept.body, /<input type="text" id="name" name="name" maxlength="60" autocomplete="off" aria-describedby/, 'the name as typed: empty');
  t.notMatch((await b.get(renamed.replace('Blue%20phone', 'Call%20us'))).body, 'value="Call us"', 'another name with the mark of one sent: not filled in');
  const kept = await b.get(renamed);
  t.match(kept.body, 'value="Blue phone" autofocus', 'the name sent: filled in (the step-up in between replaced the form token)');

  // A passkey's page gives its script the mark to open it again with a name; the first enrolment's, which reads none back, does not.
  const keyPage = await b.get('/_mfa/security/passkey');
  const mark = /data-keep="([\w-]{22})"/.exec(keyPage.body)![1]!;
  const keyKept = await b.get(`/_mfa/security/passkey?name=Red%20key&kept=${mark}`);
  t.match(keyKept.body, 'value="Red key"');
  t.match(keyKept.body, '<p class="notice" role="status">Your change is not saved yet.');
  const first = s.browser();
  await submitPassword(first, BOB.username, BOB.password);
  const enrolPage = await first.get('/_mfa/enrol');
  t.match(enrolPage.body, 'id="passkey-name"', 'first enrolment: a passkey with a name');
  t.notMatch(enrolPage.body, 'data-keep=', 'but no mark');

  // Another sign-in of the same person: the marks of this one fill in nothing.
  const { b: other } = await signInWithTotp(s, secret);
  t.notMatch((await other.get(renamed)).body, 'value="Blue phone"', 'another session: not filled in');
  t.notMatch((await other.get(`/_mfa/security/passkey?name=Red%20key&kept=${mark}`)).body, 'value="Red key"');
});

t.test('the mark of what a change kept is a MAC under a key of its own, derived from the signing key: one under the signing key itself fills in nothing', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const { page, csrf } = await securityPage(b);
  const id = factorIds(page.body)[0]!;
  const { record } = (await s.app.gateway.sessions.authenticate(b.cookies.get('__Host-mfa-session')))!;
  const signingKey = decodeKey(s.config.keys.signing[0]!.secret);
  const markUnder = (key: Uint8Array, ...what: string[]) =>
    createHmac('sha256', key).update(JSON.stringify(['kept', record.pid, record.authTime, ...what])).digest().subarray(0, 16).toString('base64url');
  const derived = Buffer.from(hkdfSync('sha256', signingKey, Buffer.alloc(0), 'mfa-gateway kept-values v1', 32));
  const renameAt = (mark: string) => `/_mfa/security?rename=${id}&name=Call%20us&kept=${mark}`;

  // A MAC under the signing key itself, as the mark once was: nothing filled in, nothing said to be kept.
  for (const [path, filled] of [
    [renameAt(markUnder(signingKey, 'rename', id, 'Call us')), 'value="Call us"'],
    [`/_mfa/security/totp?name=Call%20us&kept=${markUnder(signingKey, 'totp', 'Call us')}`, 'value="Call us"'],
    [`/_mfa/security/passkey?name=Call%20us&kept=${markUnder(signingKey, 'passkey')}`, 'value="Call us"'],
  ] as const) {
    const r = await b.get(path);
    t.equal(r.status, 200);
    t.notMatch(r.body, filled, `${path.split('?', 1)[0]}: a mark under the signing key fills in nothing`);
    t.notMatch(r.body, 'class="notice" role="status"', 'and says nothing is kept');
  }
  t.notMatch((await b.get('/_mfa/security/passkey')).body, `data-keep="${markUnder(signingKey, 'passkey')}"`, 'the passkey page gives no such mark');
  // Under the key derived for marks (HKDF-SHA256, info "mfa-gateway kept-values v1"): filled in.
  t.match((await b.get(renameAt(markUnder(derived, 'rename', id, 'Call us')))).body, 'value="Call us" autofocus');

  // As a change sent after the time for changes keeps it, across its step-up.
  s.clock.advance(5 * 60_000 + 1);
  const late = await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Blue phone' });
  t.equal(late.status, 401);
  const renamed = decodeURIComponent(/href="\/_mfa\/step-up\?to=([^"&]+)/.exec(late.body)![1]!);
  t.equal(renamed, `/_mfa/security?rename=${id}&name=Blue%20phone&kept=${markUnder(derived, 'rename', id, 'Blue phone')}`);
  const step = await b.get(`/_mfa/step-up?to=${encodeURIComponent(renamed)}`);
  s.clock.advance(30_000);
  t.equal((await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: renamed, code: await totpAt(secret, s.clock.now()) })).location, renamed);
  t.match((await b.get(renamed)).body, 'value="Blue phone" autofocus', 'the name sent: filled in');
});

t.test('a change whose time for changes runs out while it is served is judged once: refused, its step-up comes back to what was typed', async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  // Time passes between one reading of the clock and the next, as it does while a request is served.
  const now = s.clock.now.bind(s.clock);
  let ticking = false;
  s.clock.now = () => {
    const at = now();
    if (ticking) s.clock.advance(1);
    return at;
  };
  const seen = new Set<number>();
  for (let ms = 0; ms < 30; ms++) {
    const { b } = await signInWithTotp(s, secret);
    const { page, csrf } = await securityPage(b);
    const id = factorIds(page.body)[0]!;
    // Sent `ms` before the end of the 5 minutes: the end comes while it is served.
    s.clock.advance(5 * 60_000 - ms);
    ticking = true;
    const sent = await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Blue phone' });
    ticking = false;
    seen.add(sent.status);
    if (sent.status === 401) t.match(sent.body, `href="/_mfa/step-up?to=%2F_mfa%2Fsecurity%3Frename%3D${id}%26name%3DBlue%2520phone%26kept%3D`, `${ms} ms before the end: back to the new name`);
    else t.equal(sent.status, 303, `${ms} ms before the end: saved`);
  }
  t.same([...seen].sort(), [303, 401], 'the end came before and after the check');
});

t.test('a kept new name, reloaded after the time for changes, is kept across the step-up', async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const { page, csrf } = await securityPage(b);
  const id = factorIds(page.body)[0]!;
  s.clock.advance(5 * 60_000 + 1);
  const late = await b.post('/_mfa/security/rename', { csrf, factor: id, name: 'Blue phone' });
  const renamed = decodeURIComponent(/href="\/_mfa\/step-up\?to=([^"&]+)/.exec(late.body)![1]!);
  const reload = await b.get(renamed);
  t.equal(reload.status, 303);
  t.equal(reload.location, `/_mfa/step-up?to=${encodeURIComponent(renamed)}`, 'its step-up comes back to the name kept');
  t.equal((await b.get('/_mfa/security?notice=done')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity', 'a notice shown already is not');
});

t.test('an app sent after its set-up ran out comes back from its step-up with a new key, which the page says to add', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const setup = await b.get('/_mfa/security/totp');
  const old = shownSecret(setup.body);
  s.clock.advance(10 * 60_000 + 1);
  const late = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(old, s.clock.now()) });
  const back = decodeURIComponent(/href="\/_mfa\/step-up\?to=([^"&]+)/.exec(late.body)![1]!);
  const step = await b.get(`/_mfa/step-up?to=${encodeURIComponent(back)}`);
  t.equal((await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: back, code: await totpAt(secret, s.clock.now()) })).location, back);
  const again = await b.get(back);
  t.not(shownSecret(again.body), old, 'a new key');
  t.match(again.body, 'The app is not added yet, and its set-up ran out: the key below is new.', 'which the page says to add');
  t.notMatch(again.body, 'type the code your app shows now');
  t.match(again.body, 'value="Tablet"');
});

t.test('a stolen session cookie and its form token, without a recent second factor, change no factor: not removed, not added, no codes, no one signed out', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  await addApp(s, b, 'Tablet');
  const { page, csrf } = await securityPage(b);
  const before = factorIds(page.body);
  const [phone, tablet] = [...new Set(before)] as [string, string];
  // Within the five minutes, a removal still needs the form's token and a same-origin request.
  t.equal((await b.post('/_mfa/security/remove', { csrf: 'x'.repeat(43), factor: tablet })).status, 403, 'removal without the CSRF token');
  t.equal((await b.post('/_mfa/security/remove', { csrf, factor: tablet }, { origin: 'https://evil.example' })).status, 403, 'removal from another site');
  t.equal((await b.post('/_mfa/security/remove', { csrf, factor: tablet }, { 'sec-fetch-site': 'cross-site' })).status, 403, 'removal from another site, by Sec-Fetch-Site');
  // The thief holds a copy of the cookie and the page's token once the owner's second factor is over five minutes old.
  const thief = s.browser();
  for (const [k, v] of b.cookies) thief.cookies.set(k, v);
  s.clock.advance(5 * 60_000 + 30_000);
  const thiefApp = await totpAt('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', s.clock.now());
  const json = { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf };
  for (const [what, answer] of [
    ['remove a factor', await thief.post('/_mfa/security/remove', { csrf, factor: phone }, { accept: 'application/json' })],
    ['remove the other', await thief.post('/_mfa/security/remove', { csrf, factor: tablet }, { accept: 'application/json' })],
    ['add an app', await thief.post('/_mfa/security/totp', { csrf, name: 'Mine', code: thiefApp }, { accept: 'application/json' })],
    ['passkey options', await thief.send('POST', '/_mfa/security/passkey/options', '{}', json)],
    ['add a passkey', await thief.send('POST', '/_mfa/security/passkey', JSON.stringify({ credential: { id: 'x', rawId: 'x', type: 'public-key', response: {} }, name: 'Mine' }), json)],
    ['new recovery codes', await thief.post('/_mfa/security/recovery-codes', { csrf }, { accept: 'application/json' })],
    ['sign out the other devices', await thief.post('/_mfa/security/sign-out-others', { csrf }, { accept: 'application/json' })],
  ] as const) {
    t.equal(answer.status, 401, what);
    t.match(JSON.parse(answer.body), { error: 'GW_ERR_STEP_UP_REQUIRED' }, `${what}: a step-up is asked for`);
  }
  t.equal((await thief.get('/_mfa/security/totp')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp', 'no new secret shown');
  t.equal((await b.get('/records')).status, 200, "the owner's session is still there");
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, s.clock.now()) });
  t.equal(back.location, '/_mfa/security', 'the owner steps up');
  t.same(factorIds((await securityPage(b)).page.body), before, 'the same factors as before');
});

t.test('"Make new recovery codes" asks first, on a page of its own with Cancel: a mis-tap leaves the codes on paper working', async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  s.clock.advance(1000);
  const { page } = await securityPage(b);
  const set = inputValue(page.body, 'replaces');
  t.match(page.body, `<p class="hint" id="recovery-new-hint">Making new codes stops the ones you have now from working.</p>\n<form method="get" action="/_mfa/security/recovery-codes"><input type="hidden" name="replaces" value="${set}"><button type="submit" aria-describedby="recovery-new-hint">Make new recovery codes</button></form>`, 'the warning tied to the button, which only asks');
  const ask = await b.get(`/_mfa/security/recovery-codes?replaces=${set}`);
  t.equal(ask.status, 200);
  t.match(ask.body, '<h1>Make new recovery codes?</h1>');
  t.match(ask.body, '<p id="recovery-new-warning">Making new codes stops the ones you have now from working.</p>');
  t.match(ask.body, /<form method="post" action="\/_mfa\/security\/recovery-codes" novalidate>\n<input type="hidden" name="csrf" value="[^"]+">\n<input type="hidden" name="replaces" value="\d+">\n<button type="submit" aria-describedby="recovery-new-warning">Make new recovery codes<\/button>/, 'the warning tied to the button that makes them');
  t.match(ask.body, '<p><a href="/_mfa/security">Cancel</a></p>');
  t.match(ask.body, /data-seconds-left="\d+"/, 'the time for changes said and warned of, as on the removal question');
  t.notMatch(ask.body, /<li>[A-Z2-9-]{19}<\/li>/, 'asking makes no codes');
  t.equal(inputValue((await securityPage(b)).page.body, 'replaces'), set, 'the set on paper is still the one that works');
  const made = await b.post('/_mfa/security/recovery-codes', { csrf: inputValue(ask.body, 'csrf'), replaces: inputValue(ask.body, 'replaces') });
  t.equal(made.status, 200);
  t.equal([...made.body.matchAll(/<li>[A-Z2-9-]{19}<\/li>/g)].length, 10, 'confirmed: the new codes');
  t.notMatch(made.body, 'href="/_mfa/security"', 'shown once: no link to the settings, which would lead away from them, as at sign-up');
  t.notMatch(made.body, '<nav', 'nor its <nav>');
  const unticked = await b.post('/_mfa/security/recovery-codes/saved', { csrf: inputValue(made.body, 'csrf') });
  t.match(unticked.body, '<nav aria-label="Your sign-in settings"><a href="/_mfa/security">', 'sent unticked, the codes gone: the link is back, to make new ones there');
  s.clock.advance(60_000);
  t.equal((await b.get(`/_mfa/security/recovery-codes?replaces=${set}`)).status, 200, 'the question opened again (Back)');
  t.equal((await b.post('/_mfa/security/recovery-codes', { csrf: inputValue(ask.body, 'csrf'), replaces: set })).location, '/_mfa/security?notice=codes-kept', 'and sent again: no second set');
  // Late: the step-up comes back to the question, for the set it was about.
  s.clock.advance(5 * 60_000 + 1);
  t.equal((await b.get('/_mfa/security/recovery-codes?replaces=1')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Frecovery-codes%3Freplaces%3D1', 'the question itself asks for a step-up first, and comes back to it');
  const late = await b.post('/_mfa/security/recovery-codes', { csrf: inputValue(ask.body, 'csrf'), replaces: '7' });
  t.equal(late.status, 401);
  t.match(late.body, 'href="/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Frecovery-codes%3Freplaces%3D7"', 'sent late: back to the question, for the set it was about');
});

t.test('the new codes kept for a second click are a sealed record like any other (keys rotate re-seals it)', async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const { csrf, page } = await securityPage(b);
  t.equal((await b.post('/_mfa/security/recovery-codes', { csrf, replaces: inputValue(page.body, 'replaces') })).status, 200);
  const sealed: string[] = [];
  for await (const batch of s.kv.scanKeys('')) {
    for (const key of batch) if (Sealer.keyIdOf((await s.kv.get(key).catch(() => null)) ?? '')) sealed.push(key);
  }
  t.ok(sealed.some((k) => k.endsWith(':recovery-codes-made')), 'kept');
  t.same(sealed.filter((k) => !isSealedKey(k)), [], 'every sealed record is known as one');
});

t.test('new recovery codes replace the old; every change ends the other sessions; sign out other devices', async (t) => {
  const { s, receiver } = await setUp(t);
  const { b, secret, codes } = await signUpAndEnrol(s);
  const other = (await signInWithTotp(s, secret)).b;
  const third = (await signInWithTotp(s, secret)).b;
  t.equal((await other.get('/records')).status, 200);
  const { csrf, page } = await securityPage(b);
  const replaces = inputValue(page.body, 'replaces');
  // A double-click: the browser shows the second answer, which has the codes the first one made.
  const [fresh, twin] = await Promise.all([0, 1].map(() => b.post('/_mfa/security/recovery-codes', { csrf, replaces })));
  const shown = (body: string) => [...body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  const newCodes = shown(fresh!.body);
  t.equal(newCodes.length, 10);
  t.notSame(newCodes, codes);
  t.same(shown(twin!.body), newCodes, 'both answers show the one new set');
  // The same form sent again later (Back, then resend): no third set behind the person's back, and no wait for one.
  s.clock.advance(6000);
  const resent = await b.post('/_mfa/security/recovery-codes', { csrf, replaces });
  t.equal(resent.location, '/_mfa/security?notice=codes-kept', 'back to the page, no new codes');
  t.equal(await s.kv.get(`user:{${s.app.gateway.pidOf(ALICE.username)}}:recovery-codes-making`), null, 'answered at once: it waited for no twin');
  t.notMatch(resent.body, /<li>[A-Z2-9-]{19}<\/li>/);
  t.match((await b.get('/_mfa/security?notice=codes-kept')).body, 'The codes you were shown last are the ones that work.');
  // As at enrolment, the person confirms they kept the codes.
  const unsaved = await b.post('/_mfa/security/recovery-codes/saved', { csrf: inputValue(fresh!.body, 'csrf') });
  t.equal(unsaved.status, 400, 'not ticked');
  t.match(unsaved.body, 'Please confirm that you have saved your recovery codes.');
  t.match(unsaved.body, /<input type="checkbox" id="ack"[^>]* aria-invalid="true"/);
  t.match(unsaved.body, 'action="/_mfa/security/recovery-codes/saved"');
  t.notMatch(unsaved.body, /<li>[A-Z2-9-]{19}<\/li>/, 'the codes are not shown again');
  t.equal((await b.post('/_mfa/security/recovery-codes/saved', { csrf: inputValue(unsaved.body, 'csrf'), saved: 'yes' })).location, '/_mfa/security?notice=done');
  t.equal((await other.get('/records')).status, 302, 'the other session ended');
  t.equal((await third.get('/records')).status, 302, 'and the third');
  t.equal((await b.get('/records')).status, 200, 'this one goes on');
  t.match((await securityPage(b)).page.body, '10 of 10 recovery codes left.');
  // The old codes no longer sign in.
  s.clock.advance(30_000);
  const r = s.browser();
  await (await import('../helpers/stack.js')).submitPassword(r, ALICE.username, ALICE.password);
  const old = await r.post('/_mfa/recovery', { csrf: inputValue((await r.get('/_mfa/recovery')).body, 'csrf'), code: codes[0]! });
  t.equal(old.status, 400, 'an old recovery code');
  const ok = await r.post('/_mfa/recovery', { csrf: inputValue((await r.get('/_mfa/recovery')).body, 'csrf'), code: newCodes[0]! });
  t.equal(ok.status, 303, 'a new one');

  const { csrf: c2 } = await securityPage(b);
  t.equal((await b.post('/_mfa/security/sign-out-others', { csrf: c2 })).location, '/_mfa/security?notice=signed-out');
  t.equal((await r.get('/records')).status, 302, 'signed out elsewhere');
  t.equal((await b.get('/records')).status, 200);
  await receiver.waitFor(4);
  t.ok(receiver.calls.some((c) => c.json.event === 'recovery_codes_regenerated'));
  t.ok(receiver.calls.some((c) => c.json.event === 'recovery_code_used' && (c.json.details as Record<string, number>).remaining === 9));
  t.ok(receiver.calls.some((c) => c.json.event === 'other_sessions_signed_out'));
});

t.test('signed out: the security page sends you to sign in; it is linked from every gateway page shown signed in, and none shown signed out', async (t) => {
  const { s } = await setUp(t);
  const settings = 'href="/_mfa/security"';
  const b = s.browser();
  t.equal((await b.get('/_mfa/security')).location, '/login');
  const refused = await b.post('/_mfa/security/rename', { csrf: 'x', factor: 'y', name: 'z' });
  t.equal(refused.status, 401);
  t.match(refused.body, 'href="/login"', 'a change sent signed out links to the sign-in');
  t.notMatch(refused.body, settings, 'and not to the settings it would ask to sign in for');
  t.notMatch((await b.get('/_mfa/nothing')).body, settings, 'nor does a page not found');
  t.notMatch((await b.get('/_mfa/verify')).body, settings, 'nor a sign-in expired');
  const { b: signed } = await signUpAndEnrol(s);
  for (const path of ['/_mfa/security', '/_mfa/logout', '/_mfa/step-up', '/_mfa/security/totp']) {
    t.match((await signed.get(path)).body, settings, `${path} links to it`);
  }
  t.match((await signed.get('/_mfa/nothing')).body, settings, 'error pages too');
  const stale = copyOf(s, signed);
  const logout = await signed.get('/_mfa/logout');
  const out = await signed.post('/_mfa/logout', { csrf: inputValue(logout.body, 'csrf') });
  t.match(out.body, '<h1>You have signed out</h1>');
  t.notMatch(out.body, settings, 'the page once signed out: none');
  const gone = await stale.post('/_mfa/security/rename', { csrf: 'x', factor: 'y', name: 'z' });
  t.equal(gone.status, 401);
  t.notMatch(gone.body, settings, 'nor a change sent with the cookie of a session that has ended');
});

t.test('an app being added: one key per set-up, however many pages are opened at once, and not shared with other sessions', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const keyOf = (html: string) => /id="secret">([^<]+)</.exec(html)![1]!.replaceAll(' ', '');
  const active = (await s.app.gateway.sessions.authenticate(b.cookies.get('__Host-mfa-session')))!;
  const both = await Promise.all([s.app.gateway.enrolment.sessionTotpSecret(active), s.app.gateway.enrolment.sessionTotpSecret(active)]);
  const one = both[0].secret;
  t.equal(both[1].secret, one, 'two pages opened at once show the same key');
  t.same(both.map((x) => x.made).sort(), [false, true], 'made by one of them');
  const pages = [await b.get('/_mfa/security/totp')];
  t.equal(keyOf(pages[0]!.body), one, 'and keep showing it');
  const { b: other } = await signInWithTotp(s, secret);
  const elsewhere = await other.get('/_mfa/security/totp');
  t.equal(elsewhere.status, 200);
  t.not(keyOf(elsewhere.body), keyOf(pages[0]!.body), 'another session of the user gets a key of its own');
  t.equal(keyOf((await b.get('/_mfa/security/totp')).body), keyOf(pages[0]!.body), 'the first session keeps its own');
});

t.test("an app added in the time step the user's other app just signed in with: its code for that step is accepted", async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  // Signed in with the phone's code for step S (the sign-in is the recent second factor the page asks for).
  const { b, final } = await signInWithTotp(s, secret);
  t.equal(final.status, 303, 'signed in with the first app');
  const before = replayed(s);
  const setup = await b.get('/_mfa/security/totp');
  t.equal(setup.status, 200);
  const tablet = shownSecret(setup.body);
  // Still step S: the new app's code for it.
  const added = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(tablet, s.clock.now()) });
  t.equal(added.location, '/_mfa/security?notice=done', 'the new app is added');
  t.equal(replayed(s), before, 'no replay reported');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'two apps');

  // The code that set the tablet up cannot also sign in, nor step up: step S is used.
  const { b: other, csrf } = await atCodePage(s);
  const signIn = await other.post('/_mfa/verify', { csrf, code: await totpAt(tablet, s.clock.now()) });
  t.equal(signIn.status, 400, "the new app's enrolment code does not sign in");
  t.equal(replayed(s), before + 1, 'reported as replayed');
  const step = await b.get('/_mfa/step-up');
  const stepUp = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), code: await totpAt(tablet, s.clock.now()) });
  t.equal(stepUp.status, 400, 'nor steps up');
  // The step this session was signed in with: the person's own code, typed again, not someone else's replay.
  t.match(stepUp.body, /That code was used a moment ago/, 'told to wait for the next code');
  t.equal(replayed(s), before + 1, 'not reported as replayed');

  // The next step: the tablet signs in.
  const { final: later } = await signInWithTotp(s, tablet);
  t.equal(later.status, 303, 'the new app signs in with a fresh code');
});

t.test('the code that set up an app from the security page is consumed: it cannot sign in', async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  const { b } = await signInWithTotp(s, secret);
  // Confirmed in the next step, one the user's other app has not used.
  const tablet = await addApp(s, b, 'Tablet');
  const { b: other, csrf } = await atCodePage(s);
  const signIn = await other.post('/_mfa/verify', { csrf, code: await totpAt(tablet, s.clock.now()) });
  t.equal(signIn.status, 400, 'its step is used for the user');
});

t.test("an app added right after a step-up: the new app's code for the step the step-up used is accepted", async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  s.clock.advance(5 * 60_000 + 1);
  t.equal((await b.get('/_mfa/security/totp')).location, '/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp', 'a step-up first');
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp');
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security/totp', code: await totpAt(secret, s.clock.now()) });
  t.equal(back.location, '/_mfa/security/totp', 'stepped up with the first app');
  const before = replayed(s);
  const setup = await b.get('/_mfa/security/totp');
  const tablet = shownSecret(setup.body);
  const added = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(tablet, s.clock.now()) });
  t.equal(added.location, '/_mfa/security?notice=done', 'the new app is added in the same step');
  t.equal(replayed(s), before, 'no replay reported');
  // The same code again (the form sent once more): the app is bound already, the set-up is gone.
  const again = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(tablet, s.clock.now()) });
  t.not(again.location, '/_mfa/security?notice=done', 'not bound twice');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'two apps');
});

t.test('the code of an app being added, sent twice at once: one app is bound, and neither answer says the sign-in has expired', async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  const { b } = await signInWithTotp(s, secret);
  const setup = await b.get('/_mfa/security/totp');
  const tablet = shownSecret(setup.body);
  const code = await totpAt(tablet, s.clock.now());
  // Through the pages (a double click): one binds the app; the other finds the code used (and waits for the app) or
  // the set-up gone. The browser shows the second answer: the app added, or the settings listing it; never a new key,
  // nor "your sign-in has expired".
  const form = { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code };
  const answers = await Promise.all([b.post('/_mfa/security/totp', form), b.post('/_mfa/security/totp', form)]);
  t.ok(answers.some((a) => a.location === '/_mfa/security?notice=done'), 'one binds the app');
  t.ok(answers.every((a) => a.status === 303 && ['/_mfa/security?notice=done', '/_mfa/security'].includes(a.location!)), 'the other: added, or the settings');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'the first app and one new one');

  // Both past the set-up's secret at once (the service itself): the step of the set-up is claimed once.
  const next = await b.get('/_mfa/security/totp');
  const phone2 = shownSecret(next.body);
  t.not(phone2, tablet, 'a new set-up, a new key');
  const active = (await s.app.gateway.sessions.authenticate(b.cookies.get('__Host-mfa-session')))!;
  const before = replayed(s);
  const again = await totpAt(phone2, s.clock.now());
  const results = await Promise.all([0, 1].map(() => s.app.gateway.enrolment.confirmSessionTotp(active, again, 'Second phone', '192.0.2.1')));
  const bound = (r: (typeof results)[number]) => (r?.ok ? r.factor.id : null);
  t.ok(bound(results[0]!) && bound(results[0]!) === bound(results[1]!), 'one app bound, named in both answers');
  t.equal(replayed(s), before, 'the step claimed once (the second, of the same session, is no replay)');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 3, 'one more app, not two');

  // One set-up confirmed in two tabs at once, each with a code of its own (the last step's and this one's).
  const third = shownSecret((await b.get('/_mfa/security/totp')).body);
  s.clock.advance(30_000);
  const codes = [await totpAt(third, s.clock.now() - 30_000), await totpAt(third, s.clock.now())];
  const settled = await Promise.all(codes.map((code, i) => s.app.gateway.enrolment.confirmSessionTotp(active, code, `Tab ${i}`, '192.0.2.1')));
  t.ok(bound(settled[0]!) && bound(settled[0]!) === bound(settled[1]!), 'one app bound, named in both answers');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 4, 'once');
});

t.test('an app set-up form sent again after its app was added, or after the set-up expired: the settings, the session kept', async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  const { b } = await signInWithTotp(s, secret);
  const setup = await b.get('/_mfa/security/totp');
  const form = { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(shownSecret(setup.body), s.clock.now()) };
  t.equal((await b.post('/_mfa/security/totp', form)).location, '/_mfa/security?notice=done', 'added');
  // Back, then the form sent again: the app is there, and the person still signed in.
  const resent = await b.post('/_mfa/security/totp', form);
  t.equal(resent.status, 303, 'not "your sign-in has expired"');
  t.equal(resent.location, '/_mfa/security', 'the settings');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'added once');

  // A set-up left longer than its ten minutes (a step-up in between, as the change window is five).
  const late = await b.get('/_mfa/security/totp');
  const key = shownSecret(late.body);
  s.clock.advance(10 * 60_000 + 1);
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity%2Ftotp');
  t.equal((await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security/totp', code: await totpAt(secret, s.clock.now()) })).status, 303, 'stepped up');
  const expired = await b.post('/_mfa/security/totp', { csrf: inputValue((await securityPage(b)).page.body, 'csrf'), name: 'Late', code: await totpAt(key, s.clock.now()) });
  t.equal(expired.location, '/_mfa/security', 'the settings, where the app can be added again');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2, 'nothing added');
  t.equal((await b.get('/records')).status, 200, 'still signed in');
});

t.test('an app added while an operator resets the factors does not become the account\'s only factor', async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const { pidOf, stores } = s.app.gateway;
  const pid = pidOf(ALICE.username)!;
  const setup = await b.get('/_mfa/security/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  // The reset has removed the factors and not yet ended the sessions (it goes through the pending logins first).
  await stores.factors.delete(pid);
  s.clock.advance(30_000);
  const r = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Attacker', code: await totpAt(secret, s.clock.now()) });
  t.equal(r.status, 401, 'refused');
  t.equal(await stores.factors.get(pid), null, 'no factor was bound: the next login goes through the enrolment proof');
});

t.test("a passkey added just before a reset takes the factors: its id is released with the others (the key can be registered again)", async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const gw = s.app.gateway;
  const pid = gw.pidOf(ALICE.username)!;
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const credential = auth.register((await jsonCall(b, '/_mfa/security/passkey/options', csrf)).json);
  // The reset has begun (its mark is set), then the passkey is bound, then the reset takes the factors.
  const take = gw.stores.factors.take.bind(gw.stores.factors);
  gw.stores.factors.take = async (p: string) => {
    t.equal((await jsonCall(b, '/_mfa/security/passkey', csrf, { credential, name: 'Key' })).status, 200, 'bound meanwhile');
    gw.stores.factors.take = take;
    return take(p);
  };
  t.equal((await gw.admin.resetFactors(pid, 'alice')).factorsRemoved, 2, 'the app and the passkey');
  t.equal(await gw.stores.factors.get(pid), null, 'every factor gone');
  t.equal(await s.kv.get(`webauthn-credential:{${credential.id}}`), null, "the passkey's id released too");
});

t.test('removing a factor is asked first; the question removes nothing', async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  await addApp(s, b, 'Tablet');
  const { page } = await securityPage(b);
  const tablet = factorIds(page.body.slice(page.body.indexOf('<strong><bdi>Tablet</bdi></strong>')))[0]!;
  t.match(page.body, `<form method="get" action="/_mfa/security/remove"><input type="hidden" name="factor" value="${tablet}"><button type="submit" class="secondary">Remove <bdi>Tablet</bdi></button></form>`);
  const asked = await b.get(`/_mfa/security/remove?factor=${tablet}`);
  t.equal(asked.status, 200);
  t.match(asked.body, '<h1>Remove <bdi>Tablet</bdi>?</h1>');
  t.match(asked.body, '<a href="/_mfa/security">Cancel</a>');
  t.equal(factorIds((await securityPage(b)).page.body).filter((id) => id === tablet).length, 2, 'still there (its rename and remove forms)');
  t.equal((await b.post('/_mfa/security/remove', { csrf: inputValue(asked.body, 'csrf'), factor: inputValue(asked.body, 'factor') })).location, '/_mfa/security?notice=done');
  t.notOk(factorIds((await securityPage(b)).page.body).includes(tablet), 'removed once confirmed');
  t.equal((await b.get(`/_mfa/security/remove?factor=${tablet}`)).location, '/_mfa/security', 'gone: back to the settings');
  const [app] = factorIds((await securityPage(b)).page.body);
  t.equal((await b.get(`/_mfa/security/remove?factor=${app}`)).location, '/_mfa/security', 'the last that works: not offered');
});

t.test('the removal question asked after the five minutes: a step-up, then back to the question', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  await addApp(s, b, 'Tablet');
  const { page } = await securityPage(b);
  const tablet = factorIds(page.body.slice(page.body.indexOf('<strong><bdi>Tablet</bdi></strong>')))[0]!;
  s.clock.advance(5 * 60_000 + 1);
  const asked = await b.get(`/_mfa/security/remove?factor=${tablet}`);
  t.equal(asked.location, `/_mfa/step-up?to=${encodeURIComponent(`/_mfa/security/remove?factor=${tablet}`)}`);
  const step = await b.get(asked.location!);
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: inputValue(step.body, 'to'), code: await totpAt(secret, s.clock.now()) });
  t.equal(back.location, `/_mfa/security/remove?factor=${tablet}`);
  t.match((await b.get(back.location!)).body, '<h1>Remove <bdi>Tablet</bdi>?</h1>');
});

t.test('a factor of a kind disabled after too many failures is shown so, and does not count as the one left: the other cannot be removed', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.limits = { secondFactor: { freeAttempts: 3, baseSeconds: 1, maxSeconds: 1, cap: 3 } }) });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const options = await jsonCall(b, '/_mfa/security/passkey/options', csrf);
  t.equal((await jsonCall(b, '/_mfa/security/passkey', csrf, { credential: auth.register(options.json), name: 'Key' })).status, 200, 'a passkey added');
  const keyOf = (html: string) => factorIds(html.slice(html.indexOf('<strong><bdi>Key</bdi></strong>')))[0]!;
  const { page: before } = await securityPage(b);
  t.notMatch(before.body, 'turned off', 'nothing disabled yet');
  t.match(before.body, 'Remove <bdi>Key</bdi>', 'while the app works, the passkey can be removed');

  // Someone holding the password disables the app with wrong codes.
  for (let i = 0; i < 3; i++) {
    s.clock.advance(2000);
    const { b: x, csrf: c } = await atCodePage(s);
    await x.post('/_mfa/verify', { csrf: c, code: '000000' });
  }
  const { b: owner } = await signInWithPasskey(s, auth);
  const { page, csrf: settingsCsrf } = await securityPage(owner);
  t.match(page.body, 'Too many wrong codes were entered for your app, so it is turned off', 'the app is shown as turned off');
  t.notMatch(page.body, 'Remove <bdi>Key</bdi>', 'the passkey, the one factor that works, offers no removal');
  t.match(page.body, 'This is the only second step that works now, so it cannot be removed', 'and says why');
  t.equal((await owner.get(`/_mfa/security/remove?factor=${keyOf(page.body)}`)).location, '/_mfa/security', 'its removal question leads back to the settings');
  t.equal((await owner.post('/_mfa/security/remove', { csrf: settingsCsrf, factor: keyOf(page.body) })).status, 400, 'its removal is refused');

  // An app added again turns the kind back on: then the passkey can go.
  await addApp(s, owner, 'New phone');
  const { page: after, csrf: afterCsrf } = await securityPage(owner);
  t.notMatch(after.body, 'turned off', 'the app kind works again');
  t.equal((await owner.post('/_mfa/security/remove', { csrf: afterCsrf, factor: keyOf(after.body) })).location, '/_mfa/security?notice=done', 'the passkey can be removed now');
});

t.test('recovery codes turned off after too many wrong ones: the page says so, and a new set turns them back on', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.limits = { recoveryCode: { freeAttempts: 5, baseSeconds: 30, maxSeconds: 3600, cap: 3 } }) });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  // Someone holding the password tries codes until the recovery codes are turned off.
  for (let i = 0; i < 3; i++) {
    const { b: a, csrf } = await atCodePage(s, ALICE, 'recovery');
    t.equal((await a.post('/_mfa/recovery', { csrf, code: 'AAAA-AAAA-AAAA-AAAA' })).status, 400);
  }
  const { b: offered } = await atCodePage(s);
  const signIn = (await offered.get('/_mfa/verify')).body;
  t.notMatch(signIn, 'Use a recovery code', 'the sign-in step no longer offers the codes, only to refuse them');
  t.match(signIn, 'name="code"', 'the app still is');
  t.match(signIn, 'Some of your sign-in methods have been turned off');
  s.clock.advance(30_000);
  const step = await b.get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
  t.equal((await b.post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, s.clock.now()) })).status, 303);
  const { page, csrf } = await securityPage(b);
  t.match(page.body, 'your codes are turned off', 'not only "10 of 10 left"');
  const made = await b.post('/_mfa/security/recovery-codes', { csrf, replaces: inputValue(page.body, 'replaces') });
  const codes = [...made.body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  t.equal(codes.length, 10);
  t.notMatch((await securityPage(b)).page.body, 'your codes are turned off');
  const { b: again } = await atCodePage(s);
  const back = (await again.get('/_mfa/verify')).body;
  t.match(back, 'Use a recovery code', 'offered again');
  t.notMatch(back, 'have been turned off');
  const { b: r, csrf: c } = await atCodePage(s, ALICE, 'recovery');
  t.equal((await r.post('/_mfa/recovery', { csrf: c, code: codes[0]! })).status, 303, 'a code of the new set signs in');
});

t.test('a change sent after the session ended: the sign-in its page links to comes back to the security page', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.portal.login.page = '/login?next={target}') });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const { csrf } = await securityPage(b);
  s.clock.advance(16 * 60_000);
  const refused = await b.post('/_mfa/security/rename', { csrf, factor: 'y', name: 'z' });
  t.equal(refused.status, 401);
  t.match(refused.body, 'href="/login?next=%2F_mfa%2Fsecurity"');
  // A page opened with what a change kept (a name typed), the session ended: the sign-in comes back to the page, and
  // the portal's login page is not told the name.
  for (const kept of ['/_mfa/security?rename=abc&name=Blue%20phone&kept=x', '/_mfa/security/totp?name=Blue%20phone&kept=x', '/_mfa/security/passkey?name=Blue%20phone&kept=x']) {
    const page = await b.get(kept);
    t.equal(page.status, 302);
    t.equal(page.headers.location, `/login?next=${encodeURIComponent(kept.split('?')[0]!)}`, `${kept.split('?')[0]}: its path only`);
  }
});

t.test('a passkey the authenticator fails to register is refused, and may be tried again: the session stays; each refusal uses up its challenge', async (t) => {
  const { s } = await setUp(t);
  const { b, secret } = await signUpAndEnrol(s);
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const options = async () => (await jsonCall(b, '/_mfa/security/passkey/options', csrf)).json;
  const finish = (credential: unknown) => jsonCall(b, '/_mfa/security/passkey', csrf, { credential, name: 'Key' });
  const failed = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed');
  // A key that never reports the person's touch: refused each time, with the message the page shows, never "sign in again".
  const broken = new SoftAuthenticator({ origin: 'http://localhost' });
  for (let i = 0; i < 7; i++) {
    const refused = await finish(broken.register(await options(), { flags: { up: false, uv: false } }));
    t.same(refused, { status: 400, json: { error: 'refused', message: 'That did not work. Try again, or choose another way.' } }, `refusal ${i + 1}: no try used, none said`);
  }
  t.equal(failed().filter((e) => e.factor === 'webauthn' && e.reason === 'user-presence').length, 7, 'each refusal logged with its reason');
  t.equal((await b.get('/records')).status, 200, 'still signed in');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 1, 'nothing added');

  // Every check still holds, and a refusal takes its challenge: the key's genuine answer to it is refused too.
  const key = new SoftAuthenticator({ origin: 'http://localhost' });
  const o = await options();
  t.equal((await finish(key.register(o, { origin: 'https://evil.example' }))).status, 400, 'a phishing origin');
  t.equal(failed().at(-1).reason, 'origin');
  t.equal((await finish(key.register(o))).status, 400, 'the challenge is gone');
  t.equal(failed().at(-1).reason, 'no live registration challenge');
  t.same(await finish(key.register(await options())), { status: 200, json: { next: '/_mfa/security?notice=done' } }, 'a new challenge: added');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 2);

  // Wrong codes still count: five end the session.
  s.clock.advance(30_000);
  const wrong = (await totpAt(secret, s.clock.now())) === '000000' ? '111111' : '000000';
  const step = inputValue((await b.get('/_mfa/step-up')).body, 'csrf');
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push((await b.post('/_mfa/step-up', { csrf: step, code: wrong })).status);
  t.same(answers, [400, 400, 400, 400, 429], 'the fifth wrong code ends the session');
  t.equal((await b.get('/_mfa/security')).status, 302, 'signed out');
});

t.test("an app's set-up form sent twice at once (a double-click) is no replay and uses no try of the session; its code used later elsewhere is", async (t) => {
  const { s } = await setUp(t);
  const { secret } = await signUpAndEnrol(s);
  const { b } = await signInWithTotp(s, secret);
  const failed = () => s.logs.filter((l) => l.includes('"security":"mfa_failed"')).length;
  const active = (await s.app.gateway.sessions.authenticate(b.cookies.get('__Host-mfa-session')))!;
  const tries = () => s.app.gateway.limits.attempts.ofSession(active).tries();
  const setUpTries = async () => Number(await s.kv.get(keys.sessionSetupTries(active.sid)));
  // Two wrong codes first: set-up tries, none of the session's.
  const setup = await b.get('/_mfa/security/totp');
  const tablet = shownSecret(setup.body);
  const wrong = (await totpAt(tablet, s.clock.now())) === '000000' ? '111111' : '000000';
  for (let i = 0; i < 2; i++) t.equal((await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: wrong })).status, 400);
  t.same({ tries: await tries(), setUp: await setUpTries() }, { tries: 0, setUp: 2 });
  const before = { replayed: replayed(s), failed: failed() };
  // Both submissions reach the check of the code (the service itself, as the pages may not meet at that moment).
  const code = await totpAt(tablet, s.clock.now());
  const results = await Promise.all([0, 1].map(() => s.app.gateway.enrolment.confirmSessionTotp(active, code, 'Tablet', '192.0.2.1')));
  t.ok(results.every((r) => r?.ok && r.factor.id === (results[0] as { factor: { id: string } }).factor.id), 'one app, named in both answers');
  t.same({ replayed: replayed(s), failed: failed() }, before, 'no replay, no failure');
  t.same({ tries: await tries(), setUp: await setUpTries() }, { tries: 0, setUp: 4 }, 'no try of the session used; each submission a set-up try');

  // Through the pages, again and again: never a replay, nor a failure.
  for (let round = 0; round < 3; round++) {
    const page = await b.get('/_mfa/security/totp');
    const form = { csrf: inputValue(page.body, 'csrf'), name: `Phone ${round}`, code: await totpAt(shownSecret(page.body), s.clock.now()) };
    const answers = await Promise.all([b, copyOf(s, b)].map((x) => x.post('/_mfa/security/totp', form)));
    t.ok(answers.every((a) => a.status === 303 && ['/_mfa/security?notice=done', '/_mfa/security'].includes(a.location!)), `round ${round}: added, or the settings`);
  }
  t.same({ replayed: replayed(s), failed: failed() }, before, 'no replay, no failure');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 5, 'one app a set-up');

  // The tablet's code, sent in another sign-in: a replay, refused.
  const { b: other, csrf } = await atCodePage(s);
  t.equal((await other.post('/_mfa/verify', { csrf, code })).status, 400, 'refused');
  t.equal(replayed(s), before.replayed + 1, 'reported as replayed');
});

t.test(`a wrong code while adding an app is one of the session's ${SETUP_TRIES} set-up tries, not of its 5: typos leave the session; the last set-up try, an app's code or a passkey's answer, ends it`, async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const logged = (event: string) => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === event);
  // Five typos while adding an app: each said, with the set-up tries left; the session stays.
  const setup = await b.get('/_mfa/security/totp');
  const tablet = shownSecret(setup.body);
  const csrf = inputValue(setup.body, 'csrf');
  const wrong = (await totpAt(tablet, s.clock.now())) === '000000' ? '111111' : '000000';
  const typos = [];
  for (let i = 0; i < 5; i++) {
    const r = await b.post('/_mfa/security/totp', { csrf, name: 'Tablet', code: wrong });
    typos.push(`${r.status} ${/Attempts left: (\d+)/.exec(r.body)?.[1]}`);
  }
  t.same(typos, [19, 18, 17, 16, 15].map((left) => `400 ${left}`), 'each typo said, with the set-up tries left');
  t.equal((await b.get('/records')).status, 200, 'still signed in');
  t.equal(new Set(factorIds((await securityPage(b)).page.body)).size, 1, 'a wrong code adds nothing');
  t.equal((await b.post('/_mfa/security/totp', { csrf, name: 'Tablet', code: await totpAt(tablet, s.clock.now()) })).location, '/_mfa/security?notice=done', 'the right code adds the app');

  // Passkeys that fail to register, with options or without: each a set-up try (the app's right code was one too).
  const pk = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const broken = new SoftAuthenticator({ origin: 'http://localhost' });
  const answers = [];
  for (let i = 7; i <= SETUP_TRIES; i++) {
    const credential = i % 2 ? broken.register((await jsonCall(b, '/_mfa/security/passkey/options', pk)).json, { flags: { up: false, uv: false } }) : { id: 'x' };
    answers.push(await jsonCall(b, '/_mfa/security/passkey', pk, { credential, name: 'Key' }));
  }
  t.same(new Set(answers.slice(0, -1).map((a) => JSON.stringify(a))), new Set([JSON.stringify({ status: 400, json: { error: 'refused', message: 'That did not work. Try again, or choose another way.' } })]), 'refused, to be tried again');
  t.match(answers.at(-1), { status: 429, json: { error: 'GW_ERR_TOO_MANY_ATTEMPTS' } }, `the ${SETUP_TRIES}th ends the session`);
  t.equal(logged('mfa_failed').length, SETUP_TRIES - 1, 'each refusal logged');
  t.equal(logged('mfa_attempts_exhausted').length, 1, 'the end logged once');
  t.equal((await b.get('/_mfa/security')).status, 302, 'signed out: sign in again');
  t.equal((await jsonCall(b, '/_mfa/security/passkey', pk, { credential: { id: 'x' }, name: 'Key' })).status, 401, 'no more answers checked');
  t.equal(logged('mfa_failed').length, SETUP_TRIES - 1);
});

t.test(`a session fetches at most ${PASSKEY_OPTIONS} passkey registration options, each a new challenge: a key added after many prompts cancelled; the fetch after the last ends the session`, async (t) => {
  const { s } = await setUp(t);
  const { b } = await signUpAndEnrol(s);
  const logged = (event: string) => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === event);
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const options = () => jsonCall(b, '/_mfa/security/passkey/options', csrf);
  // Prompts cancelled: options fetched, no answer sent. All but the last the session may fetch.
  const cancelled = [];
  for (let i = 1; i < PASSKEY_OPTIONS; i++) cancelled.push((await options()).status);
  t.same(cancelled, Array(PASSKEY_OPTIONS - 1).fill(200), 'each answered with options');
  const key = new SoftAuthenticator({ origin: 'http://localhost' });
  t.same(await jsonCall(b, '/_mfa/security/passkey', csrf, { credential: key.register((await options()).json), name: 'Key' }), { status: 200, json: { next: '/_mfa/security?notice=done' } }, 'the key then added');
  t.equal(logged('mfa_attempts_exhausted').length, 0, 'the session goes on');

  t.match(await options(), { status: 429, json: { error: 'GW_ERR_TOO_MANY_ATTEMPTS', message: 'Too many incorrect codes. Please sign in again.' } }, 'one more: refused, with the generic message');
  t.equal(logged('mfa_attempts_exhausted').length, 1, 'logged once');
  t.equal((await b.get('/_mfa/security')).status, 302, 'signed out: sign in again');
  t.equal((await options()).status, 401, 'no more options');
  t.equal(logged('mfa_attempts_exhausted').length, 1);
});
