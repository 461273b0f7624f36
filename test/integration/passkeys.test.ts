// Passkeys and security keys over HTTP with a software authenticator: enrolment, sign-in, step-up, and one refusal
// per relying-party check that lives in the gateway (challenge binding, ownership, counters, uniqueness).
import t, { type Test } from 'tap';
import { decodeKey } from '../../src/config/load.js';
import { PASSKEY_OPTIONS, SETUP_TRIES } from '../../src/services/ceremony.js';
import { Sealer } from '../../src/mechanisms/sealer.js';
import type { Challenge, UserFactors } from '../../src/stores/factor-store.js';
import { keys } from '../../src/stores/keys.js';
import { SealedRecords } from '../../src/stores/sealed-records.js';
import { inputValue, type Browser } from '../helpers/browser.js';
import { TestCa } from '../helpers/pki.js';
import { freePort } from '../helpers/redis.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { merge } from '../helpers/config.js';
import { ALICE, BOB, jsonCall, passkeyCsrf, signInWithPasskey, signInWithTotp, signUpAndEnrol, signUpWithPasskey, startStack, submitPassword, totpAt, type Stack } from '../helpers/stack.js';

const ORIGIN = 'http://localhost';
const events = (s: Stack, name: string) => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === name);

t.test('first login with a passkey, then signing in with it', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { b, codes } = await signUpWithPasskey(s, auth);
  t.equal(codes.length, 10, 'recovery codes after a passkey enrolment too');
  t.match((await b.get('/records')).body, 'Signed in as alice');
  t.equal(events(s, 'enrolled')[0].factor, 'webauthn');

  const { b: again, answer } = await signInWithPasskey(s, auth);
  t.equal(answer.status, 200);
  t.equal(answer.json.next, '/records');
  t.ok(again.cookies.has('__Host-mfa-session'), 'the JSON answer carries the session cookie');
  t.notOk(again.cookies.has('__Host-mfa-pending'));
  t.match((await again.get('/records')).body, 'Signed in as alice');
  const verify = await (async () => {
    const c = s.browser();
    await submitPassword(c, ALICE.username, ALICE.password);
    return (await c.get('/_mfa/verify')).body;
  })();
  t.match(verify, 'Use your passkey or security key');
  t.notMatch(verify, 'name="code"', 'no code field for a user without an authenticator app');
  t.match(verify, /<script nonce="[^"]+" src="\/_mfa\/assets\/webauthn-browser\.js">/, 'the browser library, from the gateway itself');
  t.equal((await again.get('/_mfa/assets/webauthn-browser.js')).status, 200);
});

t.test('with no webauthn section, passkeys work on a gateway serving TLS on a port other than 443, there (and on 443), nowhere else', async (t) => {
  const serverCa = new TestCa('server');
  const server = serverCa.issue('gateway', { server: true });
  const port = await freePort();
  const s = await startStack({
    ca: serverCa.ca.cert,
    patch: (raw) => {
      raw.server.port = port;
      raw.server.tls = { certFile: server.certFile, keyFile: server.keyFile };
      delete raw.webauthn;
    },
  });
  t.teardown(s.close);
  // Where the browser is: the name (localhost, the rp id), https and the gateway's port.
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: `https://localhost:${port}` }));
  t.match((await b.get('/records')).body, 'Signed in as alice');
  // (https on 443, where a container's port is published, is allowed too: see the unit test of the origins.)
  for (const origin of [`https://localhost:${port + 1}`, `http://localhost:${port}`, `https://127.0.0.1:${port}`]) {
    await t.rejects(signUpWithPasskey(s, new SoftAuthenticator({ origin }), BOB), /passkey enrolment answered 400/, `refused from ${origin}`);
    t.match(events(s, 'mfa_failed').at(-1), { factor: 'webauthn', reason: 'origin' });
  }
});

t.test("the gateway's JSON answers: not sniffed, not cached; a JSON error too", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }));
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/verify')).body);
  const call = (path: string, token: string) => b.send('POST', path, '{}', { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': token });
  const options = await call('/_mfa/verify/passkey/options', csrf);
  t.equal(options.status, 200);
  t.match(options.headers, { 'content-type': /^application\/json/, 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' }, 'the challenge');
  const refused = await call('/_mfa/verify/passkey/options', 'not-the-token');
  t.equal(refused.status, 403);
  t.match(refused.headers, { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' }, 'a refusal');
  const portalPath = await s.browser().send('POST', '/records', '', { accept: 'application/json' });
  t.equal(portalPath.status, 401);
  t.match(portalPath.headers, { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff' }, 'an error on a portal path');
});

t.test('each check the gateway owns refuses, and a refused passkey counts as a wrong attempt', async (t) => {
  // Many refusals in a row for one user, many logins from one address: those limits are tested elsewhere.
  const s = await startStack({
    patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 50 }, password: { addressRate: { perMinute: 600, burst: 100 } } } }),
  });
  t.teardown(s.close);
  const alice = new SoftAuthenticator({ origin: ORIGIN });
  const bob = new SoftAuthenticator({ origin: ORIGIN });
  await signUpWithPasskey(s, alice, ALICE);
  await signUpWithPasskey(s, bob, BOB);

  const start = async (user = ALICE) => {
    const b = s.browser();
    await submitPassword(b, user.username, user.password);
    const csrf = passkeyCsrf((await b.get('/_mfa/verify')).body);
    return { b, csrf, options: (await jsonCall(b, '/_mfa/verify/passkey/options', csrf)).json };
  };
  const finish = (x: Awaited<ReturnType<typeof start>>, credential: unknown) => jsonCall(x.b, '/_mfa/verify/passkey', x.csrf, { credential });
  const lastReason = () => events(s, 'mfa_failed').at(-1)?.reason;

  // A challenge is used once.
  const once = await start();
  const assertion = alice.authenticate(once.options);
  t.equal((await finish(once, assertion)).status, 200, 'the genuine assertion');
  const replay = await start();
  t.equal((await finish(replay, assertion)).status, 400, 'the same assertion replayed on a new login (old challenge)');
  t.equal(lastReason(), 'challenge');
  const reuse = await start();
  const first = alice.authenticate(reuse.options);
  await finish(reuse, alice.authenticate(reuse.options, { origin: 'https://evil.example' }));
  t.equal((await finish(reuse, first)).status, 400, 'a challenge already taken (even by a failed attempt) is gone');
  t.equal(lastReason(), 'no live authentication challenge');

  // A challenge the release before made (in the minutes after an upgrade) lists no credentials: its answer is taken.
  const older = await start();
  const challenges = new SealedRecords<Challenge>(s.kv, new Sealer(s.config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) }))));
  const challengeKey = keys.challenge(`pending:${older.b.cookies.get('__Host-mfa-pending')}`, 'authenticate');
  const { allowed, ...before } = (await challenges.get(challengeKey))!;
  t.same(allowed, [alice.credentials[0]!.id], 'a challenge lists the credentials its options offered');
  await challenges.put(challengeKey, before, 60_000);
  t.equal((await finish(older, alice.authenticate(older.options))).status, 200, 'one of the release before: its answer taken');

  // A challenge belongs to one login, one user, one ceremony.
  const a = await start(ALICE);
  const b = await start(BOB);
  t.equal((await finish(a, alice.authenticate({ ...b.options, allowCredentials: undefined }))).status, 400, "another user's challenge");
  t.equal(lastReason(), 'challenge');
  const enrolChallenge = await start(ALICE);
  t.equal((await finish(enrolChallenge, alice.authenticate(enrolChallenge.options, { type: 'webauthn.create' }))).status, 400, 'a create-type response at sign-in');
  t.equal(lastReason(), 'type');

  // The assertion must come from a credential of the user whose password was just checked (C-44).
  const cross = await start(ALICE);
  t.equal((await finish(cross, bob.authenticate({ ...cross.options, allowCredentials: undefined }))).status, 400, "bob's credential for alice");
  t.equal(lastReason(), "not one of the user's credentials");
  const stolenHandle = await start(ALICE);
  t.equal((await finish(stolenHandle, alice.authenticate(stolenHandle.options, { userHandle: bob.credentials[0]!.userHandle }))).status, 400, 'a user handle of another user');
  t.equal(lastReason(), 'user-handle');
  // A browser that reports a security key's missing user handle as an empty one (Safari): no user named, signed in.
  const emptyHandle = await start(ALICE);
  t.equal((await finish(emptyHandle, alice.authenticate(emptyHandle.options, { userHandle: '' }))).status, 200, 'an empty user handle');

  // Relying-party checks (the mechanism has one unit test per check; these prove the gateway passes its config).
  for (const [what, knobs, reason] of [
    ['a phishing origin', { origin: 'https://evil.example' }, 'origin'],
    ['http vs https origin of the same host', { origin: 'https://localhost' }, 'origin'],
    ['the rp id hash of another domain', { rpId: 'evil.example' }, 'rp-id'],
    ['no user presence', { flags: { up: false, uv: true } }, 'user-presence'],
  ] as const) {
    const x = await start(BOB);
    t.equal((await finish(x, bob.authenticate(x.options, knobs))).status, 400, what);
    t.equal(lastReason(), reason, `${what}: ${reason}`);
  }

  const c = await start(BOB);
  const refused = await finish(c, bob.authenticate(c.options, { origin: 'https://evil.example' }));
  t.match(refused.json, { error: 'refused', attemptsLeft: 4 });
  t.ok(events(s, 'mfa_failed').some((e) => e.factor === 'webauthn' && e.reason === 'origin'), 'the precise reason is in the log');
});

t.test('answers that are no signature, from someone holding only the password, end the sign-in but never lock the passkey', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const alice = new SoftAuthenticator({ origin: ORIGIN });
  await signUpWithPasskey(s, alice);
  const own = alice.credentials[0]!.id;
  for (let round = 0; round < 3; round++) {
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    const csrf = passkeyCsrf((await b.get('/_mfa/verify')).body);
    const post = (credential: unknown) => jsonCall(b, '/_mfa/verify/passkey', csrf, { credential });
    const options = () => jsonCall(b, '/_mfa/verify/passkey/options', csrf);
    const answers = [await post('junk'), await post({ id: own, rawId: own, type: 'public-key', response: {} })];
    await options();
    answers.push(await post({ id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: {} }));
    await options();
    answers.push(await post({ id: own, rawId: own, type: 'public-key', response: { clientDataJSON: 'e30' } }));
    answers.push(await post({}));
    t.same(answers.map((a) => a.status), [400, 400, 400, 400, 429], `round ${round}: the fifth refusal ends the sign-in`);
    t.match(answers[4]!.json, { error: 'GW_ERR_TOO_MANY_ATTEMPTS' });
    t.match((await post('junk')).json, { error: 'GW_ERR_LOGIN_EXPIRED' }, 'the password must be entered again');
  }
  t.notOk(events(s, 'mfa_failed').some((e) => 'failures' in e), 'none counted against alice');
  t.equal((await signInWithPasskey(s, alice)).answer.status, 200, 'the genuine passkey still signs in');
  // A wrong signature (anyone can make one from the options' credential ids) does not count either; a clone's answer
  // (signed right, counter behind) does.
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/verify')).body);
  const options = (await jsonCall(b, '/_mfa/verify/passkey/options', csrf)).json;
  const forged = alice.authenticate(options);
  forged.response.signature = alice.authenticate(options).response.signature;
  t.equal((await jsonCall(b, '/_mfa/verify/passkey', csrf, { credential: forged })).status, 400);
  t.notOk('failures' in events(s, 'mfa_failed').at(-1)!, 'a wrong signature: not counted against alice');
  t.match(events(s, 'mfa_failed').at(-1), { reason: 'signature' });
  t.match((await signInWithPasskey(s, alice.clone(), ALICE, { counter: 1 })).answer, { status: 403, json: { error: 'GW_ERR_LOGIN_EXPIRED' } });
  t.match(events(s, 'mfa_failed').at(-1), { reason: 'counter-regression', failures: 1 });
});

t.test('a sign counter that does not increase: refused, a security event and a notification, and the key is suspect from then on', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: receiver.url, secret: 'n'.repeat(32) }) });
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { codes } = await signUpWithPasskey(s, auth);
  const clone = auth.clone();
  t.equal((await signInWithPasskey(s, auth)).answer.status, 200, 'counter 1');
  t.equal((await signInWithPasskey(s, auth)).answer.status, 200, 'counter 2');
  // The genuine key's next sign-in is at its passkey step (its challenge given) when the copy answers.
  const waiting = s.browser();
  await submitPassword(waiting, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await waiting.get('/_mfa/verify')).body);
  const options = (await jsonCall(waiting, '/_mfa/verify/passkey/options', csrf)).json;
  const cloned = await signInWithPasskey(s, clone);
  // The sign-in it answered has ended: told at once, in a code after which the script opens the page again (which
  // says to sign in again), not as a passkey to try again.
  t.match(cloned.answer, { status: 403, json: { error: 'GW_ERR_LOGIN_EXPIRED' } }, 'a cloned authenticator answering with counter 1');
  t.equal(events(s, 'webauthn_counter_regression').length, 1);
  await receiver.waitFor(2);
  t.ok(receiver.calls.some((c) => c.json.event === 'webauthn_counter_regression' && c.json.user === 'alice'));
  t.equal((await jsonCall(waiting, '/_mfa/verify/passkey', csrf, { credential: auth.authenticate(options) })).status, 400, 'the genuine key is refused too: which of the two is the copy is unknown');
  t.match(events(s, 'mfa_failed').at(-1), { reason: 'suspect-credential' });
  // The copy, its counter now far ahead, gets nowhere either: the key is no longer offered, nor given a challenge.
  clone.credentials[0]!.counter = 1000;
  const later = s.browser();
  await submitPassword(later, ALICE.username, ALICE.password);
  const verify = (await later.get('/_mfa/verify')).body;
  t.notMatch(verify, 'class="passkey"', 'no passkey button');
  t.equal((await jsonCall(later, '/_mfa/verify/passkey/options', inputValue(verify, 'csrf'))).status, 400, 'no passkey to offer');
  // A recovery code still signs alice in; her security page says what happened.
  const recovery = inputValue((await later.get('/_mfa/recovery')).body, 'csrf');
  t.equal((await later.post('/_mfa/recovery', { csrf: recovery, code: codes[0]! })).status, 303);
  t.match((await later.get('/_mfa/security')).body, 'A copy of this key was used to sign in, so it no longer works.');
});

t.test('a passkey found copied at a sign-in ends every session of its user, those it opened (either copy) and the others; another user keeps hers', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: receiver.url, secret: 'n'.repeat(32) }) });
  t.teardown(s.close);
  const { b: app, secret } = await signUpAndEnrol(s);
  const { b: bob } = await signUpAndEnrol(s, BOB);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  await passkeyActions(t, app).add(auth, 'Key');
  // The copy signs in first: nothing tells it from the key yet. Its session could add a key of its own.
  const clone = auth.clone();
  const { b: copied, answer } = await signInWithPasskey(s, clone);
  t.equal(answer.status, 200, 'the copy signs in');
  t.match((await copied.get('/records')).body, 'Signed in as alice');
  t.equal((await copied.get('/_mfa/security/passkey')).status, 200, 'and may add a passkey');
  t.match((await app.get('/records')).body, 'Signed in as alice', "alice's session of her app");
  // The key answers with the counter the copy used: found copied.
  const { b: genuine, answer: refused } = await signInWithPasskey(s, auth);
  t.match(refused, { status: 403, json: { error: 'GW_ERR_LOGIN_EXPIRED' } }, "the key's answer, its counter not ahead, is refused: its sign-in has ended, and the answer says so");
  t.equal((await copied.get('/records')).status, 302, 'the session the copy opened has ended');
  t.equal((await copied.get('/_mfa/security/passkey')).status, 302, 'it adds nothing');
  t.equal((await app.get('/records')).status, 302, 'so has the one her app opened: which sessions the copy reached is not known');
  t.equal((await genuine.get('/_mfa/verify')).status, 403, 'and the sign-in the key answered: the password again');
  t.match((await bob.get('/records')).body, 'Signed in as bob', "another user's session stays");
  t.match(events(s, 'webauthn_counter_regression'), [{ sessionsEnded: 2 }]);
  t.equal(events(s, 'session_ended').filter((e) => e.reason === 'passkey-copied').length, 2);
  await receiver.waitFor(2);
  t.match(receiver.calls.find((c) => c.json.event === 'webauthn_counter_regression')?.json, { user: 'alice', details: { name: 'Key', sessionsEnded: 2 } });
  // She signs in again with her app.
  const { b: again, final } = await signInWithTotp(s, secret);
  t.equal(final.status, 303);
  t.match((await again.get('/records')).body, 'Signed in as alice', 'another factor signs her in again');
});

t.test('a passkey found copied at a step-up ends the session stepping up too, and the one the copy opened', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { b } = await signUpWithPasskey(s, auth);
  const { b: copied } = await signInWithPasskey(s, auth.clone());
  t.match((await copied.get('/records')).body, 'Signed in as alice', 'the copy signs in');
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const options = await jsonCall(b, '/_mfa/step-up/passkey/options', csrf);
  const refused = await jsonCall(b, '/_mfa/step-up/passkey', csrf, { credential: auth.authenticate(options.json) });
  t.match(refused, { status: 401, json: { error: 'GW_ERR_SIGN_IN_REQUIRED' } }, "the key's step-up is refused: its session has ended, and the answer says so");
  t.equal((await b.get('/records')).status, 302, 'the session that stepped up has ended');
  t.equal((await copied.get('/records')).status, 302, 'and the one the copy opened');
  t.match(events(s, 'webauthn_counter_regression'), [{ sessionsEnded: 2 }]);
});

t.test('a passkey marked as copied does not count as the factor left: the app beside it cannot be removed, the passkey can', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b: first, secret } = await signUpAndEnrol(s);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const csrf = passkeyCsrf((await first.get('/_mfa/security/passkey')).body);
  const options = await jsonCall(first, '/_mfa/security/passkey/options', csrf);
  t.equal((await jsonCall(first, '/_mfa/security/passkey', csrf, { credential: auth.register(options.json), name: 'Key' })).status, 200);
  const clone = auth.clone();
  t.equal((await signInWithPasskey(s, auth)).answer.status, 200);
  t.equal((await signInWithPasskey(s, clone)).answer.status, 403, 'the copy: the key is suspect from now on');
  // That ended her sessions: she signs in again with the app.
  const { b } = await signInWithTotp(s, secret);
  const page = await b.get('/_mfa/security');
  const ids = [...new Set([...page.body.matchAll(/name="factor" value="([^"]+)"/g)].map((m) => m[1]!))];
  const appId = ids.find((id) => page.body.indexOf(`value="${id}"`) < page.body.indexOf('Key'))!;
  const keyId = ids.find((id) => id !== appId)!;
  t.match(page.body, 'This is the only second step that works now, so it cannot be removed.', 'the page says so');
  const form = inputValue(page.body, 'csrf');
  t.equal((await b.post('/_mfa/security/remove', { csrf: form, factor: appId })).status, 400, 'the app: refused');
  t.equal((await b.post('/_mfa/security/remove', { csrf: form, factor: keyId })).status, 303, 'the copied key: removed');
  t.ok(await s.app.gateway.factors.list(s.app.gateway.pidOf(ALICE.username)!).then((f) => f.factors.length === 1 && f.factors[0]!.kind === 'totp'), 'the app is left');
});

t.test('a step-up for a device-bound rule whose only security key is marked as copied: no button for it, the note on adding one', async (t) => {
  const s = await startStack({
    patch: (raw) =>
      (raw.policy.rules = [
        { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
        { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['device-bound-passkey'] },
        { name: 'portal', paths: ['/'], decision: 'mfa' },
      ]),
  });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  const key = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const options = await jsonCall(b, '/_mfa/security/passkey/options', csrf);
  t.equal((await jsonCall(b, '/_mfa/security/passkey', csrf, { credential: key.register(options.json), name: 'Key' })).status, 200);
  const stepUp = async () => {
    s.clock.advance(30_000);
    const c = s.browser();
    await submitPassword(c, ALICE.username, ALICE.password);
    const form = inputValue((await c.get('/_mfa/verify')).body, 'csrf');
    t.equal((await c.post('/_mfa/verify', { csrf: form, code: await totpAt(secret, s.clock.now()) })).status, 303);
    const asked = await c.get('/prescriptions/');
    return (await c.get(asked.location!)).body;
  };
  const before = await stepUp();
  t.match(before, 'class="passkey"', 'the key is offered while it works');
  t.notMatch(before, 'This page needs a security key');
  const clone = key.clone();
  t.equal((await signInWithPasskey(s, key)).answer.status, 200);
  t.equal((await signInWithPasskey(s, clone)).answer.status, 403, 'the copy: the key is suspect from now on');
  const after = await stepUp();
  t.notMatch(after, 'class="passkey"', 'no button for a key that opens nothing');
  t.match(after, 'This page needs a security key', 'but the note on adding one');
});

t.test('a cloned authenticator racing the genuine one with the same counter: one gets in, the other is refused', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  await signUpWithPasskey(s, auth);
  const clone = auth.clone();
  const p = s.config.server.prefix;
  // Both logins are at the passkey step, with their challenges, before either answers.
  const logins = [];
  for (const who of [auth, clone]) {
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    const csrf = passkeyCsrf((await b.get(`${p}/verify`)).body);
    logins.push({ b, csrf, who, options: (await jsonCall(b, `${p}/verify/passkey/options`, csrf)).json });
  }
  // Both sign with the same counter, higher than any before (the clone has kept up), sent at once.
  const answers = await Promise.all(logins.map((l) => jsonCall(l.b, `${p}/verify/passkey`, l.csrf, { credential: l.who.authenticate(l.options, { counter: 10 }) })));
  t.same(answers.map((a) => a.json.error ?? a.status).sort(), [200, 'GW_ERR_LOGIN_EXPIRED'], 'exactly one of the two (the other is found copied: its sign-in ends)');
  t.equal(events(s, 'webauthn_counter_regression').length, 1, 'the refusal is a counter regression');
  const later = s.browser();
  await submitPassword(later, ALICE.username, ALICE.password);
  t.notMatch((await later.get(`${p}/verify`)).body, 'class="passkey"', 'and the key is suspect from then on: not offered');
});

t.test('a credential id can belong to one user only', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const alice = new SoftAuthenticator({ origin: ORIGIN });
  await signUpWithPasskey(s, alice, ALICE);
  const attacker = new SoftAuthenticator({ origin: ORIGIN });
  const b = s.browser();
  await submitPassword(b, BOB.username, BOB.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
  const options = await jsonCall(b, '/_mfa/enrol/passkey/options', csrf);
  const dup = await jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential: attacker.register(options.json, { credentialId: alice.credentials[0]!.id }) });
  t.equal(dup.status, 400, "registering alice's credential id for bob is refused");
  t.equal(events(s, 'mfa_failed').at(-1).reason, 'credential id already registered');
  t.equal((await b.get('/_mfa/continue')).location, '/_mfa/enrol', 'bob has no factor');
});

t.test('user verification, when required', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.webauthn.userVerification = 'required') });
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
  const options = await jsonCall(b, '/_mfa/enrol/passkey/options', csrf);
  t.equal(options.json.authenticatorSelection.userVerification, 'required');
  t.equal((await jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential: auth.register(options.json, { flags: { up: true, uv: false } }) })).status, 400, 'UV missing');
  t.equal(events(s, 'mfa_failed').at(-1).reason, 'user-verification');
  const retry = await jsonCall(b, '/_mfa/enrol/passkey/options', csrf);
  t.equal((await jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential: auth.register(retry.json) })).status, 200, 'UV present');
});

t.test('step-up with a passkey, and rules that ask for one', async (t) => {
  const s = await startStack({
    patch: (raw) =>
      (raw.policy.rules = [
        { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
        { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['webauthn'] },
        { name: 'portal', paths: ['/'], decision: 'mfa' },
      ]),
  });
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { b } = await signUpWithPasskey(s, auth);
  s.clock.advance(301_000);
  const asked = await b.get('/prescriptions/');
  t.equal(asked.location, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=webauthn');
  const page = await b.get(asked.location!);
  t.notMatch(page.body, 'name="code"', 'a passkey is asked for, not a code');
  const csrf = passkeyCsrf(page.body);
  const options = await jsonCall(b, '/_mfa/step-up/passkey/options', csrf);
  const before = b.cookies.get('__Host-mfa-session');
  const done = await jsonCall(b, '/_mfa/step-up/passkey?to=%2Fprescriptions%2F', csrf, { credential: auth.authenticate(options.json) });
  t.same(done, { status: 200, json: { next: '/prescriptions/' } });
  t.not(b.cookies.get('__Host-mfa-session'), before, 'a fresh session id');
  t.equal((await b.get('/prescriptions/')).status, 200);
  t.equal(inputValue((await b.get('/_mfa/logout')).body, 'csrf').length, 43);
});

/** Rules where /prescriptions/ needs an authenticator app verified in the last 5 minutes. */
const appStepUpRules = (raw: Record<string, any>) =>
  (raw.policy.rules = [
    { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
    { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['totp'] },
    { name: 'portal', paths: ['/'], decision: 'mfa' },
  ]);

t.test('step-up for a rule that wants an authenticator app: a wrong code keeps to what the rule accepts', async (t) => {
  const s = await startStack({ patch: appStepUpRules });
  t.teardown(s.close);
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }));
  const setup = await b.get('/_mfa/security/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const added = await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Phone', code: await totpAt(secret, s.clock.now()) });
  t.equal(added.location, '/_mfa/security?notice=done', 'she has a passkey and an app');
  s.clock.advance(301_000);
  const asked = await b.get('/prescriptions/');
  t.equal(asked.location, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=totp');
  const page = await b.get(asked.location!);
  t.match(page.body, 'name="code"');
  t.notMatch(page.body, 'class="passkey"', 'the passkey is not offered: the rule does not take it');
  // A word that names no kind of factor is left out, also from the address the passkey script opens again.
  const odd = await b.get(`/_mfa/step-up?to=%2Fprescriptions%2F&factors=${encodeURIComponent('webauthn,x&to=//evil.example')}`);
  t.match(odd.body, 'data-page="/_mfa/step-up?to=%2Fprescriptions%2F&#38;factors=webauthn"');
  // The form as the page has it, with a wrong code.
  const wrong = await b.post('/_mfa/step-up', { csrf: inputValue(page.body, 'csrf'), to: inputValue(page.body, 'to'), factors: inputValue(page.body, 'factors'), code: '000000' });
  t.equal(wrong.status, 400);
  t.match(wrong.body, 'Attempts left: 4.');
  t.notMatch(wrong.body, 'class="passkey"', 'nor after a wrong code');
  t.equal(inputValue(wrong.body, 'factors'), 'totp', 'the restriction goes on with the form');
  const right = await b.post('/_mfa/step-up', { csrf: inputValue(wrong.body, 'csrf'), to: inputValue(wrong.body, 'to'), factors: inputValue(wrong.body, 'factors'), code: await totpAt(secret, s.clock.now()) });
  t.equal(right.location, '/prescriptions/');
  t.equal((await b.get('/prescriptions/')).status, 200);
});

t.test('step-up for a rule that wants an authenticator app, by someone with only a passkey: the page says an app is needed', async (t) => {
  const s = await startStack({ patch: appStepUpRules });
  t.teardown(s.close);
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }));
  s.clock.advance(301_000);
  const page = await b.get((await b.get('/prescriptions/')).location!);
  t.match(page.body, 'This page needs an authenticator app.');
  t.notMatch(page.body, 'This page needs a passkey');
});

/** Rules where /prescriptions/ needs, in the last 5 minutes, a passkey that cannot leave its device (SECURITY R4). */
const deviceBoundRules = (raw: Record<string, any>) =>
  (raw.policy.rules = [
    { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
    { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['device-bound-passkey'] },
    { name: 'portal', paths: ['/'], decision: 'mfa' },
  ]);

t.test('a synced passkey never passes a rule that wants one bound to its device; a security key does', async (t) => {
  const s = await startStack({ patch: deviceBoundRules });
  t.teardown(s.close);
  const synced = new SoftAuthenticator({ origin: ORIGIN, synced: true });
  const { b } = await signUpWithPasskey(s, synced);
  t.same(events(s, 'session_started').at(-1).amr, ['pwd', 'swk'], 'a synced passkey is no hardware-secured key');
  t.equal((await b.get('/records')).status, 200, 'other pages take any factor');

  // Just signed in with a synced passkey: not enough for this page.
  const asked = await b.get('/prescriptions/');
  t.equal(asked.location, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=device-bound-passkey');
  const page = await b.get(asked.location!);
  t.match(page.body, 'This page needs a security key, or a passkey that stays on one device');
  t.notMatch(page.body, 'class="passkey"', 'her synced passkey is not offered');
  // Stepping up with the synced passkey anyway (a page made by hand) does not open the page.
  const csrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const anyPasskey = await jsonCall(b, '/_mfa/step-up/passkey/options', csrf);
  t.equal((await jsonCall(b, '/_mfa/step-up/passkey', csrf, { credential: synced.authenticate(anyPasskey.json) })).status, 200);
  t.equal((await b.get('/prescriptions/')).location, asked.location, 'still asked for a device-bound passkey');
  t.same(events(s, 'step_up_ok').at(-1).amr, ['pwd', 'swk']);

  // She adds a security key; the step-up offers only that one.
  const key = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  const addCsrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const addOptions = await jsonCall(b, '/_mfa/security/passkey/options', addCsrf);
  t.equal((await jsonCall(b, '/_mfa/security/passkey', addCsrf, { credential: key.register(addOptions.json), name: 'Blue key' })).status, 200);
  // A passkey that may be synced but is not yet (BE=1, BS=0) can be synced all the same.
  const eligible = new SoftAuthenticator({ origin: ORIGIN });
  const eligibleOptions = await jsonCall(b, '/_mfa/security/passkey/options', addCsrf);
  const eligibleKey = eligible.register(eligibleOptions.json, { flags: { be: true, bs: false } });
  t.equal((await jsonCall(b, '/_mfa/security/passkey', addCsrf, { credential: eligibleKey, name: 'Green key' })).status, 200);
  const listed = (await b.get('/_mfa/security')).body;
  t.match(listed, 'Test key</bdi></strong> – Passkey that can be synced to your other devices');
  t.match(listed, 'Green key</bdi></strong> – Passkey that can be synced to your other devices');
  t.match(listed, 'Blue key</bdi></strong> – Security key or passkey on one device', 'the security page tells them apart');
  const offered = await b.get(asked.location!);
  t.match(offered.body, 'class="passkey"');
  t.match(offered.body, 'data-options="/_mfa/step-up/passkey/options?only=device-bound"');
  const stepCsrf = passkeyCsrf(offered.body);
  const options = await jsonCall(b, '/_mfa/step-up/passkey/options?only=device-bound', stepCsrf);
  t.same(
    options.json.allowCredentials.map((c: { id: string }) => c.id),
    [key.credentials[0]!.id],
    'only the security key is allowed',
  );
  t.throws(() => synced.authenticate(options.json), 'the synced passkey cannot answer');
  t.throws(() => eligible.authenticate(options.json), 'nor one that could be synced');
  // Made to answer anyway (a script of its own): refused, a credential the options did not list (R23).
  const unlisted = await jsonCall(b, '/_mfa/step-up/passkey', stepCsrf, { credential: synced.authenticate(options.json, { credentialId: synced.credentials[0]!.id }) });
  t.equal(unlisted.status, 400, 'a passkey the options did not list is refused');
  t.equal(events(s, 'step_up_ok').length, 1, 'no step-up done');
  const listedOnly = await jsonCall(b, '/_mfa/step-up/passkey/options?only=device-bound', stepCsrf);
  const done = await jsonCall(b, '/_mfa/step-up/passkey?to=%2Fprescriptions%2F', stepCsrf, { credential: key.authenticate(listedOnly.json) });
  t.same(done, { status: 200, json: { next: '/prescriptions/' } });
  t.same(events(s, 'step_up_ok').at(-1).amr, ['pwd', 'hwk']);
  t.equal((await b.get('/prescriptions/')).status, 200);

  // A later step-up with the synced passkey takes the device-bound proof away again.
  s.clock.advance(301_000);
  const againCsrf = passkeyCsrf((await b.get(asked.location!)).body);
  const again = await jsonCall(b, '/_mfa/step-up/passkey/options', againCsrf);
  t.equal((await jsonCall(b, '/_mfa/step-up/passkey', againCsrf, { credential: synced.authenticate(again.json, { credentialId: synced.credentials[0]!.id }) })).status, 200);
  t.equal((await b.get('/prescriptions/')).location, asked.location);
});

/**
 * A signed-in person adding a passkey on the security page, and stepping up with one (by its first credential). A
 * step-up moves the session to a new id, with a new CSRF token: each call takes the current one.
 */
function passkeyActions(t: Test, b: Browser) {
  const csrf = async () => passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  return {
    csrf,
    async add(auth: SoftAuthenticator, name: string) {
      const token = await csrf();
      const options = await jsonCall(b, '/_mfa/security/passkey/options', token);
      t.equal((await jsonCall(b, '/_mfa/security/passkey', token, { credential: auth.register(options.json), name })).status, 200, `${name} added`);
    },
    async stepUp(auth: SoftAuthenticator) {
      const token = await csrf();
      const options = await jsonCall(b, '/_mfa/step-up/passkey/options', token);
      t.equal((await jsonCall(b, '/_mfa/step-up/passkey', token, { credential: auth.authenticate(options.json, { credentialId: auth.credentials[0]!.id }) })).status, 200);
    },
  };
}

t.test('once an account has a security key, another counts as one only when a security key proved the session adding it', async (t) => {
  const s = await startStack({ patch: deviceBoundRules });
  t.teardown(s.close);
  const keyA = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  const { b } = await signUpWithPasskey(s, keyA);
  const { csrf, add, stepUp } = passkeyActions(t, b);
  const kindOf = async (name: string) => {
    const page = (await b.get('/_mfa/security')).body;
    return new RegExp(`<strong><bdi>${name}</bdi></strong> – ([^<]+)<`).exec(page)![1]!;
  };
  const deviceBoundIds = async () => (await jsonCall(b, '/_mfa/step-up/passkey/options?only=device-bound', await csrf())).json.allowCredentials.map((c: { id: string }) => c.id);
  const phone = new SoftAuthenticator({ origin: ORIGIN, synced: true });
  await add(phone, 'Phone');

  // Proved by the synced passkey (as someone holding the password and a phished app code would be): a key added now
  // is a second factor, not a security key.
  await stepUp(phone);
  const keyB = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  await add(keyB, 'Key B');
  t.equal(await kindOf('Key B'), 'Security key or passkey on one device, added without one of your keys: not accepted where a security key is needed');
  t.equal(await kindOf('Test key'), 'Security key or passkey on one device', 'the key from the enrolment');
  t.same(await deviceBoundIds(), [keyA.credentials[0]!.id], 'only the first key is offered where one is needed');
  await stepUp(keyB);
  t.same(events(s, 'step_up_ok').at(-1).amr, ['pwd', 'swk'], 'it signs in as a passkey, not a security key');
  t.equal((await b.get('/prescriptions/')).location, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=device-bound-passkey');

  // Proved by the first key: the next one counts.
  await stepUp(keyA);
  t.equal((await b.get('/prescriptions/')).status, 200);
  const keyC = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['nfc'] });
  await add(keyC, 'Key C');
  t.equal(await kindOf('Key C'), 'Security key or passkey on one device');
  t.same((await deviceBoundIds()).sort(), [keyA.credentials[0]!.id, keyC.credentials[0]!.id].sort());
  await stepUp(keyC);
  t.same(events(s, 'step_up_ok').at(-1).amr, ['pwd', 'hwk']);

  // Removing the counted keys does not make the account one that never had a key.
  for (const name of ['Test key', 'Key C']) {
    const page = (await b.get('/_mfa/security')).body;
    const factor = /name="factor" value="([^"]+)"/.exec(page.slice(page.indexOf(`<strong><bdi>${name}</bdi></strong>`)))![1]!;
    t.equal((await b.post('/_mfa/security/remove', { csrf: inputValue(page, 'csrf'), factor })).status, 303, `${name} removed`);
  }
  await stepUp(phone);
  const keyD = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  await add(keyD, 'Key D');
  t.match(await kindOf('Key D'), 'added without one of your keys');
});

t.test('an account whose key was bound before the mark was kept: removing the key leaves the mark', async (t) => {
  const s = await startStack({ patch: deviceBoundRules });
  t.teardown(s.close);
  const keyA = new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] });
  const { b } = await signUpWithPasskey(s, keyA);
  // The factor record as an earlier release wrote it: without hadDeviceBoundKey.
  const records = new SealedRecords<UserFactors>(s.kv, new Sealer(s.config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) }))));
  let key = '';
  for await (const batch of s.kv.scanKeys('user:')) key = batch.find((k) => k.endsWith(':factors')) ?? key;
  const { hadDeviceBoundKey, ...earlier } = (await records.get(key))!;
  t.equal(hadDeviceBoundKey, true, 'written at enrolment now');
  await records.put(key, earlier);

  const { add, stepUp } = passkeyActions(t, b);
  const phone = new SoftAuthenticator({ origin: ORIGIN, synced: true });
  await add(phone, 'Phone');
  await stepUp(phone);
  const page = (await b.get('/_mfa/security')).body;
  const factor = /name="factor" value="([^"]+)"/.exec(page.slice(page.indexOf('<strong><bdi>Test key</bdi></strong>')))![1]!;
  t.equal((await b.post('/_mfa/security/remove', { csrf: inputValue(page, 'csrf'), factor })).status, 303, "the person's key removed");
  t.equal((await records.get(key))!.hadDeviceBoundKey, true, 'the removal keeps that the account had one');
  await stepUp(phone);
  await add(new SoftAuthenticator({ origin: ORIGIN, attachment: 'cross-platform', transports: ['usb'] }), 'Key X');
  t.match((await b.get('/_mfa/security')).body, /<strong><bdi>Key X<\/bdi><\/strong> – [^<]*added without one of your keys/);
});

t.test('a first enrolment with a security key is device-bound from the start', async (t) => {
  const s = await startStack({ patch: deviceBoundRules });
  t.teardown(s.close);
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }));
  t.same(events(s, 'session_started').at(-1).amr, ['pwd', 'hwk']);
  t.equal((await b.get('/prescriptions/')).status, 200);
});

t.test('removing a device-bound key takes the device-bound proof from the session; removing a synced passkey does not', async (t) => {
  const s = await startStack({ patch: deviceBoundRules });
  t.teardown(s.close);
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }));
  const addCsrf = passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  const synced = new SoftAuthenticator({ origin: ORIGIN, synced: true });
  const addOptions = await jsonCall(b, '/_mfa/security/passkey/options', addCsrf);
  t.equal((await jsonCall(b, '/_mfa/security/passkey', addCsrf, { credential: synced.register(addOptions.json), name: 'Phone' })).status, 200);
  const removeForm = async (name: string) => {
    const page = (await b.get('/_mfa/security')).body;
    const item = page.slice(page.indexOf(`<strong><bdi>${name}</bdi></strong>`));
    return { csrf: inputValue(page, 'csrf'), factor: /name="factor" value="([^"]+)"/.exec(item)![1]! };
  };

  t.equal((await b.post('/_mfa/security/remove', await removeForm('Phone'))).status, 303);
  t.equal((await b.get('/prescriptions/')).status, 200, 'the key that signed in is still there');
  const synced2 = new SoftAuthenticator({ origin: ORIGIN, synced: true });
  const again = await jsonCall(b, '/_mfa/security/passkey/options', addCsrf);
  t.equal((await jsonCall(b, '/_mfa/security/passkey', addCsrf, { credential: synced2.register(again.json), name: 'Tablet' })).status, 200);
  t.equal((await b.post('/_mfa/security/remove', await removeForm('Test key'))).status, 303);
  t.equal((await b.get('/prescriptions/')).location, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=device-bound-passkey', 'the key that proved it is gone');
  t.equal((await b.get('/records')).status, 200, 'still signed in');
});

t.test('a rule that takes an app or a device-bound passkey, by someone with only a synced passkey: the page names both', async (t) => {
  const s = await startStack({
    patch: (raw) =>
      (raw.policy.rules = [
        { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
        { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['totp', 'device-bound-passkey'] },
        { name: 'portal', paths: ['/'], decision: 'mfa' },
      ]),
  });
  t.teardown(s.close);
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN, synced: true }));
  const page = await b.get((await b.get('/prescriptions/')).location!);
  t.match(page.body, 'This page needs an authenticator app, a security key, or a passkey that stays on one device');
  t.notMatch(page.body, 'class="passkey"');
  t.notMatch(page.body, 'name="code"');
});

t.test('someone with only a passkey, in a browser without JavaScript, is told what can be done instead', async (t) => {
  const s = await startStack({
    patch: (raw) => raw.policy.rules.splice(raw.policy.rules.length - 1, 0, { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 60 }),
  });
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { b } = await signUpWithPasskey(s, auth);
  const noScript = (html: string) => /<noscript><p class="hint">([^<]*)<\/p><\/noscript>/.exec(html)?.[1];
  const c = s.browser();
  await submitPassword(c, ALICE.username, ALICE.password);
  t.equal(noScript((await c.get('/_mfa/verify')).body), 'Passkeys need JavaScript in your browser. Turn it on, or use a recovery code.', 'signing in: no app to offer');
  s.clock.advance(120_000);
  const stepUp = await b.get('/_mfa/step-up?to=%2Fprescriptions%2F');
  t.equal(noScript(stepUp.body), 'Passkeys need JavaScript in your browser. Turn it on, or use another browser.', 'a step-up: recovery codes do not step up');
});

t.test('a passkey the authenticator fails to register at first enrolment is refused, and may be tried again: the sign-in stays; wrong app codes still end it', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
  const options = async () => (await jsonCall(b, '/_mfa/enrol/passkey/options', csrf)).json;
  const finish = (credential: unknown) => jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential, name: 'Key' });
  const broken = new SoftAuthenticator({ origin: ORIGIN });
  for (let i = 0; i < 7; i++) {
    const refused = await finish(broken.register(await options(), { flags: { up: false, uv: false } }));
    t.same(refused, { status: 400, json: { error: 'refused', message: 'That did not work. Try again, or choose another way.' } }, `refusal ${i + 1}: no try used, none said`);
  }
  t.equal(events(s, 'mfa_failed').filter((e) => e.reason === 'user-presence').length, 7, 'each refusal logged with its reason');
  t.equal(events(s, 'mfa_attempts_exhausted').length, 0, 'the sign-in goes on');
  const key = new SoftAuthenticator({ origin: ORIGIN });
  const o = await options();
  t.equal((await finish(key.register(o, { rpId: 'evil.example' }))).status, 400, 'the rp id hash of another domain');
  t.equal(events(s, 'mfa_failed').at(-1).reason, 'rp-id');
  t.equal((await finish(key.register(o))).status, 400, 'a refusal took the challenge');
  t.equal(events(s, 'mfa_failed').at(-1).reason, 'no live registration challenge');

  // The app instead: its wrong codes count, and the fifth ends the sign-in (the password again).
  const page = await b.get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(page.body)![1]!.replaceAll(' ', '');
  const wrong = (await totpAt(secret, s.clock.now())) === '000000' ? '111111' : '000000';
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push((await b.post('/_mfa/enrol/totp', { csrf, code: wrong })).status);
  t.same(answers, [400, 400, 400, 400, 429], 'five wrong codes');

  // A new sign-in: the key that works is bound.
  const again = s.browser();
  await submitPassword(again, ALICE.username, ALICE.password);
  const c = passkeyCsrf((await again.get('/_mfa/enrol')).body);
  const added = await jsonCall(again, '/_mfa/enrol/passkey', c, { credential: key.register((await jsonCall(again, '/_mfa/enrol/passkey/options', c)).json), name: 'Key' });
  t.same(added, { status: 200, json: { next: '/_mfa/recovery-codes' } });
});

t.test(`passkeys that fail to register at first enrolment take none of the sign-in's 5 tries; the ${SETUP_TRIES}th ends it (the password again)`, async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
  const finish = (credential: unknown) => jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential, name: 'Key' });
  const broken = new SoftAuthenticator({ origin: ORIGIN });
  // With options or without: each answer is one of the sign-in's set-up tries.
  const answers = [];
  for (let i = 1; i < SETUP_TRIES; i++) {
    const credential = i % 2 ? broken.register((await jsonCall(b, '/_mfa/enrol/passkey/options', csrf)).json, { flags: { up: false, uv: false } }) : { id: 'x' };
    answers.push((await finish(credential)).status);
  }
  t.same(answers, Array(SETUP_TRIES - 1).fill(400), 'refused, to be tried again');
  // The app's codes still have the sign-in's tries: four wrong ones are said so.
  const page = await b.get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(page.body)![1]!.replaceAll(' ', '');
  const wrong = (await totpAt(secret, s.clock.now())) === '000000' ? '111111' : '000000';
  const left = [];
  for (let i = 0; i < 4; i++) left.push(/Attempts left: (\d+)/.exec((await b.post('/_mfa/enrol/totp', { csrf, code: wrong })).body)?.[1]);
  t.same(left, ['4', '3', '2', '1'], "the sign-in's own tries");
  t.equal(events(s, 'mfa_attempts_exhausted').length, 0, 'the sign-in goes on');

  t.match(await finish({ id: 'x' }), { status: 429, json: { error: 'GW_ERR_TOO_MANY_ATTEMPTS' } }, `the ${SETUP_TRIES}th refusal ends the sign-in`);
  t.equal(events(s, 'mfa_attempts_exhausted').length, 1, 'logged once');
  t.equal(await s.app.gateway.pending.stage(b.cookies.get('__Host-mfa-pending')), null, 'the password again');
  t.match(await finish({ id: 'x' }), { json: { error: /^GW_ERR_/ } }, 'an answer after it is not checked');
  t.equal(events(s, 'mfa_failed').length, SETUP_TRIES + 4, 'each refusal and wrong code logged, none after the end');
});

type Fetching = { b: Browser; options: () => Promise<{ status: number; json: any }> };

/** Prompts cancelled: as many options fetched as a ceremony may, but one, each answered. */
async function cancelAllButOne(t: Test, options: Fetching['options']): Promise<void> {
  const cancelled = [];
  for (let i = 1; i < PASSKEY_OPTIONS; i++) cancelled.push((await options()).status);
  t.same(cancelled, Array(PASSKEY_OPTIONS - 1).fill(200), 'each answered with options');
}

/** A flood of option fetches, sent at once: as many answered as the bound, the rest end the sign-in, with the generic message. */
async function floodEndsSignIn(t: Test, s: Stack, who: Fetching): Promise<void> {
  const flood = await Promise.all(Array.from({ length: PASSKEY_OPTIONS + 10 }, () => who.options()));
  t.equal(flood.filter((r) => r.status === 200).length, PASSKEY_OPTIONS, 'as many answered as the bound');
  t.match(flood.find((r) => r.status !== 200), { status: 429, json: { error: 'GW_ERR_TOO_MANY_ATTEMPTS', message: 'Too many incorrect codes. Please sign in again.' } }, 'the rest refused');
  t.equal(await s.app.gateway.pending.stage(who.b.cookies.get('__Host-mfa-pending')), null, 'the password again');
  t.match(await who.options(), { json: { error: 'GW_ERR_LOGIN_EXPIRED' } }, 'no more options');
  t.equal(events(s, 'mfa_attempts_exhausted').length, 1, 'logged once');
}

t.test(`a first enrolment fetches at most ${PASSKEY_OPTIONS} passkey registration options: a key registered after many prompts cancelled; the fetch after the last ends the sign-in (the password again)`, async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const enrolling = async (user: typeof ALICE) => {
    const b = s.browser();
    await submitPassword(b, user.username, user.password);
    const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
    return { b, csrf, options: () => jsonCall(b, '/_mfa/enrol/passkey/options', csrf) };
  };
  // Prompts cancelled (options, no answer), then a key that works, with the last options the sign-in may fetch.
  const alice = await enrolling(ALICE);
  await cancelAllButOne(t, alice.options);
  const key = new SoftAuthenticator({ origin: ORIGIN });
  t.same(await jsonCall(alice.b, '/_mfa/enrol/passkey', alice.csrf, { credential: key.register((await alice.options()).json), name: 'Key' }), { status: 200, json: { next: '/_mfa/recovery-codes' } }, 'registered');

  const bob = await enrolling(BOB);
  await floodEndsSignIn(t, s, bob);
});

t.test(`a sign-in fetches at most ${PASSKEY_OPTIONS} passkey options: signed in after many prompts cancelled; the fetch after the last ends the sign-in (the password again)`, async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const aliceKey = new SoftAuthenticator({ origin: ORIGIN });
  await signUpWithPasskey(s, aliceKey, ALICE);
  await signUpWithPasskey(s, new SoftAuthenticator({ origin: ORIGIN }), BOB);
  const verifying = async (user: typeof ALICE) => {
    const b = s.browser();
    await submitPassword(b, user.username, user.password);
    const csrf = passkeyCsrf((await b.get('/_mfa/verify')).body);
    return { b, csrf, options: () => jsonCall(b, '/_mfa/verify/passkey/options', csrf) };
  };
  // Prompts cancelled (options, no answer), then the passkey, with the last options the sign-in may fetch.
  const alice = await verifying(ALICE);
  await cancelAllButOne(t, alice.options);
  t.same(await jsonCall(alice.b, '/_mfa/verify/passkey', alice.csrf, { credential: aliceKey.authenticate((await alice.options()).json) }), { status: 200, json: { next: '/records' } }, 'signed in');
  t.equal(events(s, 'mfa_attempts_exhausted').length, 0);

  const bob = await verifying(BOB);
  await floodEndsSignIn(t, s, bob);
});

t.test(`a session fetches at most ${PASSKEY_OPTIONS} passkey step-up options, apart from those to add a key: a step-up after many prompts cancelled; the fetch after the last ends the session`, async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const { b } = await signUpWithPasskey(s, auth);
  const csrf = async () => passkeyCsrf((await b.get('/_mfa/security/passkey')).body);
  let token = await csrf();
  const options = () => jsonCall(b, '/_mfa/step-up/passkey/options', token);
  // Step-up prompts cancelled: all but the last the session may fetch.
  const cancelled = [];
  for (let i = 1; i < PASSKEY_OPTIONS; i++) cancelled.push((await options()).status);
  t.same(cancelled, Array(PASSKEY_OPTIONS - 1).fill(200), 'each answered with options');
  // Adding a key meanwhile, one prompt of it cancelled: its options take none of the step-up's.
  const key = new SoftAuthenticator({ origin: ORIGIN });
  t.equal((await jsonCall(b, '/_mfa/security/passkey/options', token)).status, 200, 'options to add a key');
  t.same(await jsonCall(b, '/_mfa/security/passkey', token, { credential: key.register((await jsonCall(b, '/_mfa/security/passkey/options', token)).json), name: 'Key' }), { status: 200, json: { next: '/_mfa/security?notice=done' } }, 'a key added');
  t.same(await jsonCall(b, '/_mfa/step-up/passkey', token, { credential: auth.authenticate((await options()).json) }), { status: 200, json: { next: '/' } }, 'stepped up with the last options');
  t.equal(events(s, 'mfa_attempts_exhausted').length, 0, 'the session goes on');

  // The session under its new id, flooded with fetches sent at once: as many answered as the bound, the rest end it.
  token = await csrf();
  const flood = await Promise.all(Array.from({ length: PASSKEY_OPTIONS + 10 }, () => options()));
  t.equal(flood.filter((r) => r.status === 200).length, PASSKEY_OPTIONS, 'as many answered as the bound');
  t.match(flood.find((r) => r.status !== 200), { status: 429, json: { error: 'GW_ERR_TOO_MANY_ATTEMPTS', message: 'Too many incorrect codes. Please sign in again.' } }, 'the rest refused, with the generic message');
  t.equal((await b.get('/_mfa/security')).status, 302, 'signed out: sign in again');
  t.equal((await options()).status, 401, 'no more options');
  t.equal(events(s, 'mfa_attempts_exhausted').length, 1, 'logged once');
});
