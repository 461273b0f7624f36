// Limits on the password step and on second factors, credential-stuffing detection, and the server's own limits
// (bodies, headers, slow clients, requests in flight), with the demo portal behind the gateway.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { userCommand } from '../../src/cli/admin.js';
import { lockoutsCommand } from '../../src/cli/limits.js';
import { knownBrowserToken } from '../../src/mechanisms/known-browser.js';
import { addressBucket } from '../../src/services/login-limits.js';
import { keys } from '../../src/stores/keys.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { inputValue, rawRequest, type Browser, type Page } from '../helpers/browser.js';
import { merge } from '../helpers/config.js';
import { ALICE, BOB, atCodePage, portalReceived, signInWithTotp, signUpAndEnrol, startStack, submitPassword, totpAt, type Stack } from '../helpers/stack.js';

/** A wrong code on a fresh password step (JSON answer). */
async function wrongCode(s: Stack) {
  const { b, csrf } = await atCodePage(s);
  return b.post('/_mfa/verify', { csrf, code: '000000' }, { accept: 'application/json' });
}

const events = (s: Stack, name: string) => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === name);
/** What an answer says, without what differs on every request anyway (request id, date, fresh tokens). */
const shape = (p: Page) => ({
  status: p.status,
  retryAfter: p.headers['retry-after'],
  body: p.body.replace(/Reference: [\w-]+/, 'Reference: x').replace(/name="csrf" value="[^"]+"/, 'csrf'),
});

t.test('passwords per account: a growing wait, the same for unknown usernames; a success resets only that account', async (t) => {
  // The address limits are out of the way here: they have tests of their own.
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 1000, burst: 1000 }, perAddress: { freeAttempts: 100 } } } }) });
  t.teardown(s.close);
  const b = s.browser();
  const tries = async (username: string, n: number) => {
    const out: Page[] = [];
    for (let i = 0; i < n; i++) out.push(await submitPassword(b, username, 'wrong-password'));
    return out;
  };
  const known = await tries(ALICE.username, 7);
  const unknown = await tries('nobody-here', 7);
  t.same(known.slice(0, 6).map((p) => p.status), [200, 200, 200, 200, 200, 200], 'five free failures, and a sixth attempt: the portal answers');
  t.equal(known[6]!.status, 429, 'after the sixth failure, a wait');
  t.equal(known[6]!.headers['retry-after'], '1');
  t.same(shape(known[6]!), shape(unknown[6]!), 'throttled: the same answer whether or not the account exists');
  t.same(shape(known[0]!), shape(unknown[0]!), 'a wrong password and an unknown user: the same answer');
  t.equal((await b.get('/records')).status, 302);
  s.clock.advance(1000);
  t.equal((await submitPassword(b, ALICE.username, 'wrong-password')).status, 200, 'after the wait');
  t.equal((await submitPassword(b, ALICE.username, 'wrong-password')).headers['retry-after'], '2', 'the wait doubles');
  s.clock.advance(2000);
  t.equal((await submitPassword(b, ALICE.username, ALICE.password)).status, 303, 'the right password after the wait');
  t.equal((await submitPassword(s.browser(), ALICE.username, 'wrong-password')).status, 200, 'a success reset the account');
  t.equal((await submitPassword(s.browser(), 'nobody-here', 'wrong-password')).status, 200, 'another account, after its own wait…');
  const own = await submitPassword(s.browser(), 'nobody-here', 'wrong-password');
  t.equal(own.headers['retry-after'], '2', '…keeps its own count (seven failures: 2 s)');
  t.ok(events(s, 'password_throttled').length >= 2);
  t.match(events(s, 'password_throttled')[0], { reason: 'account failures', ip: '127.0.0.1' });
});

/** Waits per address from the third wrong password, 1 s doubling (no rate or stuffing limit in the way). */
const addressWaits = (raw: Record<string, any>) =>
  merge(raw, {
    limits: {
      password: { addressRate: { perMinute: 1000, burst: 1000 }, globalRate: { perMinute: 1000, burst: 1000 }, perAddress: { freeAttempts: 2, baseSeconds: 1, maxSeconds: 900 } },
      stuffing: { distinctAccounts: 1000 },
    },
  });

t.test('wrong passwords per address: a growing wait, and when it ends one login at a time (a burst sent then does not all pass)', async (t) => {
  const s = await startStack({ patch: addressWaits });
  t.teardown(s.close);
  let n = 0;
  // Each guess at a username of its own (no account's count in the way), from a browser of its own.
  const guess = () => submitPassword(s.browser(), `guess${n++}`, 'wrong-password');
  const posts = () => s.portalRequests.filter((r) => r.method === 'POST').length;
  /** `count` guesses sent at once, their login pages fetched first: their statuses and how many reached the portal. */
  const burst = async (count: number) => {
    const forms = await Promise.all(Array.from({ length: count }, async () => {
      const b = s.browser();
      return { b, csrf: inputValue((await b.get('/login')).body, 'csrf') };
    }));
    const before = posts();
    const pages = await Promise.all(forms.map(({ b, csrf }) => b.post('/login', { username: `guess${n++}`, password: 'wrong-password', csrf })));
    return { statuses: pages.map((p) => p.status).sort(), reached: posts() - before };
  };
  t.same((await burst(2)).statuses, [200, 200], 'within the free failures, logins at once all go to the portal');
  t.equal((await guess()).status, 200, 'the third failure (no wait before it)');
  const waiting = await guess();
  t.equal(waiting.status, 429, 'then the address waits');
  t.equal(waiting.headers['retry-after'], '1');
  t.match(events(s, 'password_throttled').at(-1), { reason: 'address failures' });
  s.clock.advance(1000);
  const after = await burst(6);
  t.equal(after.reached, 1, 'when the wait ends, one of six logins sent at once reaches the portal');
  t.same(after.statuses, [200, 429, 429, 429, 429, 429]);
  t.equal((await guess()).headers['retry-after'], '2', 'its failure doubled the wait');
  s.clock.advance(2000);
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 303, 'a right password after the wait');
  t.equal((await guess()).status, 200, 'gives the turn back at once (the next login goes on)…');
  t.equal((await guess()).headers['retry-after'], '4', "…and does not clear the address's count (an attacker's own login would)");
});

t.test("an address's turn lasts as long as its login can: one whose body comes slowly keeps the others out", async (t) => {
  const s = await startStack({ patch: (raw) => (addressWaits(raw), merge(raw, { portal: { timeoutSeconds: 10 } })) });
  t.teardown(s.close);
  let n = 0;
  const guess = () => submitPassword(s.browser(), `guess${n++}`, 'wrong-password');
  for (let i = 0; i < 3; i++) await guess();
  t.equal((await guess()).status, 429, 'the address waits');
  s.clock.advance(1000);
  // A login that takes the turn and sends its body slowly (a byte at a time, within the body's idle limit).
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const form = new URLSearchParams({ username: `guess${n++}`, password: 'wrong-password', csrf }).toString();
  let release!: () => void;
  const rest = new Promise<void>((resolve) => (release = resolve));
  const slow = request(new URL('/login', s.url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; '), accept: 'text/html' },
    body: (async function* () {
      yield Buffer.from(form.slice(0, 5));
      await rest;
      yield Buffer.from(form.slice(5));
    })(),
  }).then(async (r) => (await r.body.text(), r.statusCode));
  // Once it holds the turn (taken before its body is read).
  const failures = keys.addressFailures(addressBucket('127.0.0.1'));
  const turn = `${failures}:turn:${await s.kv.get(`${failures}:last`)}`;
  for (let i = 0; i < 100 && (await s.kv.get(turn)) === null; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal((await guess()).status, 429, 'another login while it holds the turn');
  // Longer than its browser's turn and its answer (three portal timeouts and 5 s, then one: 45 s): the slow login may
  // still be sending its body.
  s.clock.advance(46_000);
  t.equal((await guess()).status, 429, 'still refused: its request may last server.requestTimeoutSeconds more');
  release();
  t.equal(await slow, 200, 'the slow login reaches the portal');
});

t.test("a browser its owner signed in with is not kept out by strangers' wrong passwords (no lockout by username)", async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 1000, burst: 1000 }, perAddress: { freeAttempts: 100 } } } }) });
  t.teardown(s.close);
  const { b: own } = await signUpAndEnrol(s);
  const token = own.cookies.get('__Host-mfa-known')!;
  t.ok(token, 'a finished sign-in makes the browser known');
  const bobToken = (await signUpAndEnrol(s, BOB)).b.cookies.get('__Host-mfa-known')!;
  const browserWith = (known: string) => {
    const b = s.browser();
    b.cookies.set('__Host-mfa-known', known);
    return b;
  };
  // Someone who knows only the username keeps the account's count at its longest wait.
  const stranger = s.browser();
  for (let i = 0; i < 12; i++) await submitPassword(stranger, ALICE.username, 'wrong-password');
  t.equal((await submitPassword(stranger, ALICE.username, ALICE.password)).status, 429, 'the account waits, even for the right password');
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 429, 'so does a browser never signed in');
  t.equal((await submitPassword(browserWith(bobToken), ALICE.username, ALICE.password)).status, 429, "another account's known browser");
  const [id, issued, tag, kid] = token.split('.') as [string, string, string, string];
  // The MAC altered, the key id left as it is (an unknown key id is refused before the MAC is looked at).
  const alteredTag = `${tag.startsWith('A') ? 'B' : 'A'}${tag.slice(1)}`;
  t.equal((await submitPassword(browserWith(`${id}.${issued}.${alteredTag}.${kid}`), ALICE.username, ALICE.password)).status, 429, 'a token with an altered MAC');
  t.equal((await submitPassword(browserWith(token), ALICE.username, ALICE.password)).status, 303, "the owner's browser signs in");
  // Given a day earlier (well within its 180 days): only the MAC, which covers the time, refuses it.
  const older = knownBrowserToken([{ id: 'k', key: Buffer.alloc(32) }], 'x', '', s.clock.now() - 86_400_000).split('.')[1];
  t.equal((await submitPassword(browserWith(`${id}.${older}.${tag}.${kid}`), ALICE.username, ALICE.password)).status, 429, 'a token with another issue time');
  // The known browser's own count: its wrong passwords wait too, and do not touch the account's.
  const known = browserWith(token);
  const tries = [];
  for (let i = 0; i < 7; i++) tries.push((await submitPassword(known, ALICE.username, 'wrong-password')).status);
  t.same(tries, [200, 200, 200, 200, 200, 200, 429], 'wrong passwords from the known browser wait on its own count');
  s.clock.advance(181 * 24 * 60 * 60_000);
  t.equal((await submitPassword(s.browser(), ALICE.username, 'wrong-password')).status, 200, '(the account is no longer waiting)');
  for (let i = 0; i < 12; i++) await submitPassword(stranger, ALICE.username, 'wrong-password');
  t.equal((await submitPassword(browserWith(token), ALICE.username, ALICE.password)).status, 429, 'a token 180 days old no longer counts');
});

for (const [what, retire] of [
  ['a revocation', (gw: Stack['app']['gateway'], pid: string) => gw.admin.revokeSessions(pid)],
  ['a factor reset', (gw: Stack['app']['gateway'], pid: string) => gw.admin.resetFactors(pid, ALICE.username)],
] as const) {
  t.test(`${what} retires the known-browser tokens given before`, async (t) => {
    const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 1000, burst: 1000 }, perAddress: { freeAttempts: 100 } } } }) });
    t.teardown(s.close);
    const gw = s.app.gateway;
    const pid = gw.pidOf(ALICE.username)!;
    const token = (await signUpAndEnrol(s)).b.cookies.get('__Host-mfa-known')!;
    const known = () => {
      const b = s.browser();
      b.cookies.set('__Host-mfa-known', token);
      return b;
    };
    const stranger = s.browser();
    for (let i = 0; i < 12; i++) await submitPassword(stranger, ALICE.username, 'wrong-password');
    t.equal((await submitPassword(known(), ALICE.username, ALICE.password)).status, 303, 'before: the token has its own count');
    await retire(gw, pid);
    t.equal((await submitPassword(known(), ALICE.username, ALICE.password)).status, 429, `after ${what}: the account's count, which waits`);
  });
}

t.test('a known-browser token given after a revocation works its 180 days, also past those of the revocation itself', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 1000, burst: 1000 }, perAddress: { freeAttempts: 100 } } } }) });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const day = 86_400_000;
  const { secret } = await signUpAndEnrol(s);
  await gw.admin.revokeSessions(gw.pidOf(ALICE.username)!);
  s.clock.advance(100 * day);
  const token = (await signInWithTotp(s, secret)).b.cookies.get('__Host-mfa-known')!;
  t.ok(token, 'a token given 100 days after the revocation');
  s.clock.advance(81 * day);
  const stranger = s.browser();
  for (let i = 0; i < 12; i++) await submitPassword(stranger, ALICE.username, 'wrong-password');
  const known = s.browser();
  known.cookies.set('__Host-mfa-known', token);
  t.equal((await submitPassword(known, ALICE.username, ALICE.password)).status, 303, '181 days after the revocation, the token (81 days old) has its own count');
  const other = s.browser();
  t.equal((await submitPassword(other, ALICE.username, ALICE.password)).status, 429, "another browser: the account's count, which waits");
});

t.test('second factors: a growing wait across logins, the factor disabled at the cap, an operator turns it back on', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 3, baseSeconds: 30, maxSeconds: 120, cap: 8 } } }) });
  t.teardown(s.close);
  const { secret, codes } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const wrong = () => wrongCode(s);
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await wrong()).status);
  t.same(statuses, [400, 400, 400, 400], 'each on a fresh password step: the count goes on');
  const waited = await wrong();
  t.equal(waited.status, 429, 'after the free failures, a wait');
  t.equal(waited.headers['retry-after'], '30');
  t.match(JSON.parse(waited.body), { error: 'GW_ERR_RATE_LIMITED' });
  const { b: wb, csrf: wcsrf } = await atCodePage(s);
  t.match((await wb.post('/_mfa/verify', { csrf: wcsrf, code: '000000' })).body, '<a href="/_mfa/continue">Continue</a>', 'the wait page leads back too');
  for (let i = 5; i <= 8; i++) {
    s.clock.advance(121_000);
    t.equal((await wrong()).status, 400, `failure ${i} after the wait`);
  }
  s.clock.advance(121_000);
  const { b, csrf } = await atCodePage(s);
  const locked = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) }, { accept: 'application/json' });
  t.equal(locked.status, 403, 'at the cap even the right code is refused');
  t.match(JSON.parse(locked.body), { error: 'GW_ERR_FACTOR_LOCKED' });
  t.equal(events(s, 'factor_locked').length, 1);
  // The page says what next: back to the sign-in step, where a recovery code or another factor can be used.
  const lockedPage = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(lockedPage.status, 403);
  t.match(lockedPage.body, '<a href="/_mfa/continue">Continue</a>');
  const onward = await b.get('/_mfa/continue');
  t.equal(onward.location, '/_mfa/verify', 'which leads back to the step, with its recovery link');
  const step = (await b.get('/_mfa/verify')).body;
  t.match(step, 'Use a recovery code');
  t.notMatch(step, 'name="code"', 'the disabled app is not offered, only to be refused');
  t.match(step, 'Some of your sign-in methods have been turned off', 'and the page says why');
  // Another kind of factor still works: the recovery codes have their own counter.
  const rb = s.browser();
  await submitPassword(rb, ALICE.username, ALICE.password);
  const rec = await rb.post('/_mfa/recovery', { csrf: inputValue((await rb.get('/_mfa/recovery')).body, 'csrf'), code: codes[0]! });
  t.equal(rec.status, 303, 'a recovery code signs in');
  // Signed in, the locked app refused at a step-up: the page leads back to the step-up, not to a sign-in.
  const stepUp = await rb.get('/_mfa/step-up');
  t.notMatch(stepUp.body, 'name="code"', 'the step-up page does not offer the disabled app');
  t.match(stepUp.body, 'The sign-in methods you could use here have been turned off', 'nor asks for an app the person already has');
  t.notMatch(stepUp.body, 'Add one in your sign-in settings');
  // A form sent all the same (a page opened before the lock) is refused.
  const lockedStep = await rb.post('/_mfa/step-up', { csrf: inputValue((await rb.get('/_mfa/security')).body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(lockedStep.status, 403);
  t.match(lockedStep.body, '<a href="/_mfa/step-up">');
  // The operator clears the lock (as `mfa-gateway lockouts clear` does).
  const gw = s.app.gateway;
  t.same(await gw.limits.attempts.lockedOut(), [{ pid: gw.pidOf('alice'), kind: 'totp' }]);
  // Members of no known kind (a damaged store, a newer version's kind) are passed over, the lockout still shown.
  for (const member of ['abc:bogus', 'nocolon', `${gw.pidOf('alice')}:constructor`]) await gw.kv.setAdd(keys.lockoutIndex(), member, 60_000);
  t.same(await gw.limits.attempts.lockedOut(), [{ pid: gw.pidOf('alice'), kind: 'totp' }], 'a stray member is passed over');
  t.same(await lockoutsCommand(gw, 'list', {}), [`user ${gw.pidOf('alice')}  totp`], 'lockouts list');
  t.match((await userCommand(gw, 'show', { user: 'alice' })).join('\n'), /^disabled after too many failures: totp$/m, 'user show');
  t.same(await lockoutsCommand(gw, 'clear', { user: 'alice', factor: 'totp' }), ['cleared totp for alice: totp turned back on']);
  t.same(events(s, 'lockout_cleared').map((l) => [l.pid, l.kinds]), [[gw.pidOf('alice'), 'totp']], 'one lockout_cleared, naming the kind');
  t.same(await gw.limits.attempts.lockedOut(), []);
  s.clock.advance(30_000);
  const again = await atCodePage(s);
  t.equal((await again.b.post('/_mfa/verify', { csrf: again.csrf, code: await totpAt(secret, s.clock.now()) })).status, 303, 'back on');
});

/**
 * Two gateways on one store (and keys), as in a rolling deploy: `old` with the second-factor limits given, where Alice
 * has enrolled and sent six wrong codes (`between`: the time before each), and `lowered` with the cap at five, its
 * clock where `old`'s is.
 */
async function capLowered(t: Test, limits: Record<string, number>, between = 0) {
  let kv: MemoryKvStore | undefined;
  const shared = (clock: ConstructorParameters<typeof MemoryKvStore>[0]) => (kv ??= new MemoryKvStore(clock));
  let keys: unknown;
  const old = await startStack({
    kv: shared,
    patch: (raw) => {
      keys = raw.keys;
      merge(raw, { limits: { secondFactor: limits } });
    },
  });
  t.teardown(old.close);
  const { secret } = await signUpAndEnrol(old);
  old.clock.advance(30_000);
  for (let i = 0; i < 6; i++) {
    old.clock.advance(between);
    await wrongCode(old);
  }
  const lowered = await startStack({ kv: shared, patch: (raw) => merge(raw, { keys, limits: { secondFactor: { freeAttempts: 3, cap: 5 } } }) });
  t.teardown(lowered.close);
  lowered.clock.advance(old.clock.now() - lowered.clock.now());
  return { old, lowered, secret };
}

t.test('a cap lowered below standing counts: a kind found disabled at its next try is listed for the help desk', async (t) => {
  // The old config counted six failures, the new cap is five.
  const { lowered, secret } = await capLowered(t, { freeAttempts: 10, cap: 20 });
  const gw = lowered.app.gateway;
  t.same(await gw.limits.attempts.lockedOut(), [], 'not listed before');
  const { b, csrf } = await atCodePage(lowered);
  const refused = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, lowered.clock.now()) }, { accept: 'application/json' });
  t.match(JSON.parse(refused.body), { error: 'GW_ERR_FACTOR_LOCKED' }, 'the right code is refused');
  t.same(await gw.limits.attempts.lockedOut(), [{ pid: gw.pidOf('alice'), kind: 'totp' }], 'listed for the help desk');
  await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, lowered.clock.now()) });
  t.equal(events(lowered, 'factor_locked').length, 0, 'not announced as a lock: no failure reached the cap');
  await gw.limits.attempts.clear(gw.pidOf('alice')!, 'totp');
  const again = await atCodePage(lowered);
  t.equal((await again.b.post('/_mfa/verify', { csrf: again.csrf, code: await totpAt(secret, lowered.clock.now()) })).status, 303, 'cleared, the app signs in');
});

t.test('a kind listed as disabled that now only waits (its cap raised again) is no longer listed as disabled', async (t) => {
  // A rollout that lowered the cap, and its rollback: the kind was found disabled at the lowered cap and listed, and
  // under the cap restored the same count only makes the user wait.
  const { old, lowered, secret } = await capLowered(t, { freeAttempts: 3, baseSeconds: 30, maxSeconds: 3600, cap: 20 }, 3_600_000);
  const { b, csrf } = await atCodePage(lowered);
  t.match(JSON.parse((await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, lowered.clock.now()) }, { accept: 'application/json' })).body), { error: 'GW_ERR_FACTOR_LOCKED' });
  t.same(await lowered.app.gateway.limits.attempts.lockedOut(), [{ pid: lowered.app.gateway.pidOf('alice'), kind: 'totp' }], 'listed at the lowered cap');
  // Back under the old cap: six failures, the last a moment ago, are a wait of two minutes, not a disabled app.
  const gw = old.app.gateway;
  t.same([...(await gw.limits.attempts.disabledKinds(gw.pidOf('alice')!))], [], 'nothing is disabled');
  t.same(await gw.limits.attempts.lockedOut(), [], 'a wait is not listed as disabled');
  t.same(await lockoutsCommand(gw, 'list', {}), ['no disabled factors'], 'lockouts list');
  t.notMatch((await userCommand(gw, 'show', { user: 'alice' })).join('\n'), /disabled after too many failures/, 'user show');
});

t.test('a kind disabled at the cap comes back when the user sets up a new one of that kind', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { secondFactor: { freeAttempts: 3, baseSeconds: 30, maxSeconds: 120, cap: 8 } } }) });
  t.teardown(s.close);
  const { secret, codes } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const wrong = () => wrongCode(s);
  for (let i = 0; i < 4; i++) await wrong();
  for (let i = 5; i <= 8; i++) {
    s.clock.advance(121_000);
    await wrong();
  }
  s.clock.advance(121_000);
  const gw = s.app.gateway;
  t.same(await gw.limits.attempts.lockedOut(), [{ pid: gw.pidOf('alice'), kind: 'totp' }], 'someone with the password disabled the app');
  const rb = s.browser();
  await submitPassword(rb, ALICE.username, ALICE.password);
  t.equal((await rb.post('/_mfa/recovery', { csrf: inputValue((await rb.get('/_mfa/recovery')).body, 'csrf'), code: codes[0]! })).status, 303, 'a recovery code signs in');
  const setup = await rb.get('/_mfa/security/totp');
  const fresh = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const wrongSetup = await rb.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'New phone', code: '000000' }, { accept: 'application/json' });
  t.equal(wrongSetup.status, 400, 'a mistyped set-up code is a mistake to correct, not a lock');
  const added = await rb.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'New phone', code: await totpAt(fresh, s.clock.now()) });
  t.equal(added.status, 303, 'the new app is set up while the kind is disabled');
  t.same(await gw.limits.attempts.lockedOut(), [], 'and the kind is back');
  s.clock.advance(30_000);
  const again = await atCodePage(s);
  t.equal((await again.b.post('/_mfa/verify', { csrf: again.csrf, code: await totpAt(secret, s.clock.now()) })).status, 303, 'the apps sign in again');
});

t.test('step-up: five wrong codes end the session, however slowly they come', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const csrf = inputValue((await b.get('/_mfa/step-up')).body, 'csrf');
  const wrong = () => b.post('/_mfa/step-up', { csrf, code: '000000' }, { accept: 'application/json' });
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await wrong()).status);
  t.same(statuses, [400, 400, 400, 400]);
  // Longer than a sign-in may take, well within the session's idle and absolute limits.
  s.clock.advance(6 * 60_000);
  t.equal((await b.get('/records')).status, 200, 'the session is still live');
  const fifth = await wrong();
  t.equal(fifth.status, 429, 'the fifth wrong code, after the pause');
  t.match(JSON.parse(fifth.body), { error: 'GW_ERR_TOO_MANY_ATTEMPTS' });
  t.equal((await b.get('/records')).status, 302, 'the session has ended');
});

t.test('step-up: a form refused for a field that is not one text value uses up no try, whatever its code', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const pid = s.app.gateway.pidOf(ALICE.username)!;
  const csrf = inputValue((await b.get('/_mfa/step-up')).body, 'csrf');
  // The kinds of factor twice (a form put together by hand, a script's mistake): more than a session's five tries.
  for (const field of ['factors', 'factors', 'to', 'factors', 'to', 'factors']) {
    const refused = await b.send('POST', '/_mfa/step-up', `csrf=${csrf}&code=000000&${field}=totp&${field}=webauthn`, { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
    t.match([refused.status, JSON.parse(refused.body)], [400, { error: 'GW_ERR_BAD_REQUEST' }], `${field} twice: refused`);
  }
  t.equal(await s.kv.get(keys.factorFailures(pid, 'totp')), null, 'no failure of the app counted for the user');
  t.equal((await b.get('/records')).status, 200, 'the session goes on');
  const wrong = await b.post('/_mfa/step-up', { csrf, code: '000000', factors: 'totp' });
  t.match([wrong.status, wrong.body], [400, /Attempts left: 4\./], 'the first wrong code is its first try');
});

t.test('step-up: a try refused while the user must wait leads back to the step-up as it was asked for, its way back and its kinds kept', async (t) => {
  const s = await startStack({
    patch: (raw) => {
      merge(raw, { limits: { secondFactor: { freeAttempts: 0, baseSeconds: 30, maxSeconds: 30, cap: 100 } } });
      raw.policy.rules.splice(raw.policy.rules.length - 1, 0, { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['totp'] });
    },
  });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  s.clock.advance(301_000);
  const page = await b.get((await b.get('/prescriptions/')).location!);
  const form = { csrf: inputValue(page.body, 'csrf'), to: inputValue(page.body, 'to'), factors: inputValue(page.body, 'factors') };
  t.equal((await b.post('/_mfa/step-up', { ...form, code: '000000' })).status, 400);
  const waited = await b.post('/_mfa/step-up', { ...form, code: await totpAt(secret, s.clock.now()) });
  t.equal(waited.status, 429, 'a wait after the failure');
  const link = /<a href="([^"]*)">Confirm it is you again<\/a>/.exec(waited.body)?.[1]?.replaceAll('&#38;', '&');
  t.equal(link, '/_mfa/step-up?to=%2Fprescriptions%2F&factors=totp', 'the page leads back to the step-up for the same page');
  // The form with a token another tab's step-up replaced: its page leads back the same way.
  const stale = await b.post('/_mfa/step-up', { ...form, csrf: 'x'.repeat(43), code: await totpAt(secret, s.clock.now()) });
  t.equal(stale.status, 403);
  t.equal(/<a href="([^"]*)">Confirm it is you again<\/a>/.exec(stale.body)?.[1]?.replaceAll('&#38;', '&'), link, 'a stale form token: back to the same step-up');
  const security = await b.post('/_mfa/security/rename', { csrf: 'x'.repeat(43), factor: 'f', name: 'x' });
  t.same([security.status, /<a href="[^"]*">Confirm it is you again<\/a>/.test(security.body)], [403, false], 'another form: no step-up link');
  s.clock.advance(31_000);
  const again = await b.get(link!);
  const done = await b.post('/_mfa/step-up', { csrf: inputValue(again.body, 'csrf'), to: inputValue(again.body, 'to'), factors: inputValue(again.body, 'factors'), code: await totpAt(secret, s.clock.now()) });
  t.equal(done.location, '/prescriptions/', 'and from there on to it');
});

t.test('credential stuffing from one address (rotating X-Forwarded-For, untrusted): limits hold, the address is blocked', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 100_000, burst: 100_000 }, globalRate: { perMinute: 100_000, burst: 100_000 } } } }) });
  t.teardown(s.close);
  const before = s.portalRequests.filter((r) => r.method === 'POST').length;
  const statuses = new Map<number, number>();
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const attack = Array.from({ length: 2000 }, (_, i) => i);
  for (let i = 0; i < attack.length; i += 25) {
    const batch = await Promise.all(
      attack.slice(i, i + 25).map((n) =>
        b.post('/login', { username: `victim${n}`, password: 'Summer2024!', csrf }, { 'x-forwarded-for': `10.${n % 250}.${(n >> 8) % 250}.1` }),
      ),
    );
    for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  const reached = s.portalRequests.filter((r) => r.method === 'POST').length - before;
  t.ok(reached <= 25 + 20, `the portal saw ${reached} of 2000 attempts`);
  t.ok((statuses.get(429) ?? 0) >= 1900, `refused: ${statuses.get(429)}`);
  t.equal(events(s, 'address_blocked').length, 1, 'one block, not one per attempt');
  t.match(events(s, 'address_blocked')[0], { ip: '127.0.0.1', accounts: 20 });
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 429, 'the blocked address is blocked for everyone');
  const gw = s.app.gateway;
  t.same((await gw.limits.login.blocked()).map((x) => x.address), ['127.0.0.1']);
  s.clock.advance(60 * 60_000 + 1);
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 303, 'the block ends by itself');
});

t.test('new browsers per address: each keeps a portal cookie jar for an hour, so beyond the rate their pages get 429', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { server: { trustedProxies: ['127.0.0.1'] }, limits: { newBrowsers: { perMinute: 1, burst: 3 } } }) });
  t.teardown(s.close);
  const jars = async () => {
    let n = 0;
    for await (const batch of s.kv.scanKeys('jar:')) n += batch.length;
    return n;
  };
  const first = s.browser();
  for (const b of [first, s.browser(), s.browser()]) t.equal((await b.get('/login')).status, 200, 'within the burst');
  t.equal(await jars(), 3, 'a jar each');
  const before = s.portalRequests.length;
  const refused = await s.browser().get('/login');
  t.equal(refused.status, 429, 'one more new browser from the address');
  t.equal(refused.headers['retry-after'], '60');
  t.match(refused.body, 'Too many attempts');
  t.notMatch(String(refused.headers['set-cookie']), 'PORTALSESSID', "none of the portal's cookies");
  t.equal(s.portalRequests.length - before, 1, 'the portal was asked (only its answer shows whether a jar would start)');
  const madeUp = s.browser();
  madeUp.cookies.set('__Host-mfa-browser', 'A'.repeat(43));
  t.equal((await madeUp.get('/login')).status, 429, 'a browser id the client made up is no proof of an earlier visit');
  t.equal(await jars(), 3, 'no jar for either');
  t.equal((await s.browser().get('/static/portal.css')).status, 200, 'a page that sets no portal cookie starts no jar: not counted');
  t.equal((await s.browser().get('/login', { 'x-forwarded-for': '198.51.100.7' })).status, 200, 'another address has its own rate');
  // A browser that has its jar goes on: its login works.
  t.equal((await submitPassword(first, ALICE.username, ALICE.password)).status, 303, 'a browser with its jar signs in');
  s.clock.advance(60_000);
  t.equal((await s.browser().get('/login')).status, 200, 'a minute later, one more');
});

t.test('new browsers across all addresses: a flood from many addresses cannot fill the store with jars', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { server: { trustedProxies: ['127.0.0.1'] }, limits: { newBrowsersOverall: { perMinute: 1, burst: 3 } } }) });
  t.teardown(s.close);
  const from = (i: number) => ({ 'x-forwarded-for': `198.51.100.${i}` });
  const first = s.browser();
  t.equal((await first.get('/login', from(1))).status, 200);
  for (let i = 2; i <= 3; i++) t.equal((await s.browser().get('/login', from(i))).status, 200, `address ${i}: within the burst`);
  const refused = await s.browser().get('/login', from(4));
  t.equal(refused.status, 429, 'a fourth address: the overall rate is used up');
  t.equal(refused.headers['retry-after'], '60');
  let jars = 0;
  for await (const batch of s.kv.scanKeys('jar:')) jars += batch.length;
  t.equal(jars, 3, 'no jar for it');
  t.equal((await submitPassword(first, ALICE.username, ALICE.password)).status, 303, 'a browser with its jar signs in');
  s.clock.advance(60_000);
  t.equal((await s.browser().get('/login', from(5))).status, 200, 'a minute later, one more');
});

t.test('a full memory store: new sign-ins fail closed (503, nothing reaches the portal), signed-in people go on', async (t) => {
  let store!: MemoryKvStore;
  const s = await startStack({ kv: (clock) => (store = new MemoryKvStore(clock, 1000)) });
  t.teardown(s.close);
  const { b: alice } = await signUpAndEnrol(s);
  // What a flood of failing usernames leaves behind: keys for a day, up to the cap.
  for (let i = 0; store.size < 1000; i++) await s.kv.set(`flood:${i}`, 'x', 60_000);
  const bob = s.browser();
  const logged = s.logs.length;
  const page = await bob.get('/login');
  t.equal(page.status, 200, "the login page is the portal's (its cookie jar is not kept)");
  const warnings = s.logs.slice(logged).map((l) => JSON.parse(l)).filter((l) => l.level >= 40);
  t.equal(warnings.length, 1, 'one warning for the page');
  t.match(
    warnings[0],
    { level: 40, msg: 'could not save portal cookies', code: 'GW_ERR_STORE_UNAVAILABLE', detail: /memory store full/, err: undefined },
    'short, no stack: a flood of such pages would write kilobytes each',
  );
  const before = s.portalRequests.length;
  const refused = await bob.post('/login', { username: BOB.username, password: BOB.password, csrf: inputValue(page.body, 'csrf') });
  t.equal(refused.status, 503, 'a new sign-in fails closed');
  t.match(refused.body, 'Sign-in is temporarily unavailable');
  t.notMatch(refused.body, /memory store|maxEntries/, 'the reason stays in the log');
  t.equal(s.portalRequests.length, before, 'the password never reached the portal');
  t.ok(s.logs.some((l) => l.includes('memory store full')), 'the log says why');
  const storeErrors = async () => Number(/^mfa_gateway_store_errors_total (\d+)$/m.exec(await s.app.gateway.metrics.text())![1]);
  const refusals = await storeErrors();
  t.ok(refusals >= 1, `counted as store errors (the alert on them fires): ${refusals}`);
  const records = await alice.get('/records');
  t.equal(records.status, 200, 'a signed-in user keeps browsing');
  t.match(records.body, `Signed in as ${ALICE.username}`);
  // The flood's keys expire and make room again.
  s.clock.advance(61_000);
  t.equal((await submitPassword(s.browser(), BOB.username, BOB.password)).status, 303, 'room again: a sign-in goes on');
  t.equal(await storeErrors(), refusals, 'a store with room counts no error');
});

t.test('a surge of failures across the gateway tightens the global rate and raises an alert', async (t) => {
  const s = await startStack({
    patch: (raw) => {
      raw.server.trustedProxies = ['127.0.0.1'];
      merge(raw, { limits: { password: { globalRate: { perMinute: 6000, burst: 6000 } }, stuffing: { minAttempts: 50, failureRatio: 0.9, tightenedPercent: 1 } } });
    },
  });
  t.teardown(s.close);
  const owner = (await signUpAndEnrol(s)).b.cookies.get('__Host-mfa-known')!;
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  // Password spraying: one password, many accounts, each from its own (trusted, real) address.
  for (let i = 0; i < 60; i++) await b.post('/login', { username: `staff${i}`, password: 'Welcome1', csrf }, { 'x-forwarded-for': `198.51.100.${i}` });
  t.equal(events(s, 'login_failure_surge').length, 1);
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push((await submitPassword(s.browser(), `other${i}`, 'x')).status);
  t.ok(answers.includes(429), `the global rate is tight now: ${answers}`);
  // The flood does not keep out a browser its owner signed in with (its token counts for that account only).
  const known = s.browser();
  known.cookies.set('__Host-mfa-known', owner);
  const drained = [];
  for (let i = 0; i < 3; i++) drained.push((await submitPassword(s.browser(), `more${i}`, 'x')).status);
  t.ok(drained.includes(429), `still tight for others: ${drained}`);
  t.equal((await submitPassword(known, ALICE.username, ALICE.password)).status, 303, 'the known browser signs in');
  const stranger = s.browser();
  stranger.cookies.set('__Host-mfa-known', owner);
  const other = [];
  for (let i = 0; i < 3; i++) other.push((await submitPassword(stranger, `someone${i}`, 'x')).status);
  t.ok(other.includes(429), `the token does not lift the rate for other accounts: ${other}`);
});

t.test('server limits: bodies, headers, slow clients, requests in flight', async (t) => {
  const s = await startStack({
    patch: (raw) => {
      Object.assign(raw.server, { maxBodyBytes: 1024 * 1024, maxHeaderBytes: 8192, headersTimeoutSeconds: 1, maxInFlight: 2 });
      // A place held until the portal timed out is told apart from one given back at once, however slow the machine.
      raw.portal.timeoutSeconds = 30;
    },
  });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const big = await b.send('POST', '/echo', Buffer.alloc(2 * 1024 * 1024, 1), { 'content-type': 'application/octet-stream', accept: 'application/json' });
  t.equal(big.status, 413, 'declared too large');
  const chunked = await request(`${s.url}/echo`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/octet-stream', accept: 'application/json' },
    body: (async function* () {
      for (let i = 0; i < 40; i++) yield Buffer.alloc(64 * 1024, 2);
    })(),
  });
  t.equal(chunked.statusCode, 413, 'streamed past the limit');
  await chunked.body.dump();
  t.equal((await b.send('POST', '/echo', Buffer.alloc(100 * 1024, 1), { 'content-type': 'application/octet-stream', accept: 'application/json' })).status, 200, 'within the limit');
  // The gateway's own forms read bodies of at most 16 KiB, its passkey calls 64 KiB; another type is not read at all.
  const form = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  t.equal((await b.send('POST', '/_mfa/logout', `x=${'a'.repeat(20_000)}`, form)).status, 413, 'a form over 16 KiB to a gateway route');
  const json = { 'content-type': 'application/json', accept: 'application/json' };
  t.equal((await b.send('POST', '/_mfa/security/passkey', JSON.stringify({ x: 'a'.repeat(70_000) }), json)).status, 413, 'a passkey call over 64 KiB');
  for (const type of ['application/json', 'text/plain']) {
    t.equal((await b.send('POST', '/_mfa/logout', `x=${'a'.repeat(20_000)}`, { ...form, 'content-type': type })).status, 415, `${type} to a gateway form`);
  }
  t.ok(b.cookies.has('__Host-mfa-session'), 'and nothing was done');
  const headers = await rawRequest(s.url, `GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`);
  t.match(headers, /^HTTP\/1\.1 431 /, 'headers too large');
  t.match(headers, /\r\nstrict-transport-security: max-age=/, 'with HSTS');
  t.match(headers, /"error":"GW_ERR_HEADERS_TOO_LARGE"/, "the gateway's code");
  const malformed = await rawRequest(s.url, `GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x01b\r\n\r\n`);
  t.match(malformed, /^HTTP\/1\.1 400 [^]*\r\nstrict-transport-security: [^]*"error":"GW_ERR_BAD_REQUEST"/, 'a malformed request: 400, HSTS, the code');

  const slow = await new Promise<string>((resolve) => {
    const sock = connect(Number(new URL(s.url).port), '127.0.0.1', () => sock.write('GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    let data = '';
    sock.on('data', (d) => (data += d));
    sock.on('close', () => resolve(data));
  });
  t.match(slow, /^HTTP\/1\.1 408 [^]*"error":"GW_ERR_REQUEST_TIMEOUT"/, 'headers never finished: a 408, and the connection is closed after headersTimeout');

  const slowPage = () => b.get('/slow?ms=600', { accept: 'application/json' });
  const results = await Promise.all([slowPage(), slowPage(), (async () => (await portalReceived(s, '/slow?ms=600', 2), slowPage()))()]);
  t.same(results.map((r) => r.status).sort(), [200, 200, 503], 'the third request waiting for the portal is refused at once');
  const busy = results.find((r) => r.status === 503)!;
  t.match(JSON.parse(busy.body), { error: 'GW_ERR_PORTAL_BUSY' });
  t.equal(busy.headers['retry-after'], '1');
  t.equal((await b.get('/records')).status, 200, 'and the gateway serves again when they are done');

  // Requests whose clients went away keep their places until the portal has answered them: abandoning requests
  // cannot pile more work on the portal than the cap. Sent by a client of their own, closed after: undici may open a
  // connection again after an aborted request and send nothing on it, and the teardown's close of the gateway would
  // wait for that connection (no request has begun on it) until undici's idle timer closed it, a minute later.
  const leaving = new Agent();
  for (let i = 0; i < 2; i++) {
    const gone = new AbortController();
    const pending = request(`${s.url}/slow?ms=800`, { headers: { cookie, accept: 'application/json' }, signal: gone.signal, dispatcher: leaving }).catch(() => undefined);
    await portalReceived(s, '/slow?ms=800', i + 1);
    gone.abort();
    await pending;
  }
  await leaving.destroy();
  t.equal((await b.get('/records', { accept: 'application/json' })).status, 503, 'the portal is still busy with the abandoned ones');
  t.ok(await servedWithin(b, 5000), 'their places are free once the portal has answered them');

  // Uploads abandoned halfway: the portal request fails with them, and their places come back.
  const echoes = s.portalRequests.filter((r) => r.url === '/echo').length;
  for (let i = 0; i < 2; i++) {
    const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(sock, 'connect');
    sock.write(`POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`);
    await portalReceived(s, '/echo', echoes + i + 1);
    sock.destroy();
  }
  t.ok(await servedWithin(b, 10_000), 'abandoned uploads hold no place (not until the portal times out, after 30 s)');
});

/** Whether the portal page is served (not 503) within `ms`. */
async function servedWithin(b: Browser, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    if ((await b.get('/records', { accept: 'application/json' })).status === 200) return true;
  }
  return false;
}

t.test('graceful shutdown: requests in flight finish, new ones are refused', async (t) => {
  const s = await startStack();
  const { b } = await signUpAndEnrol(s);
  const inFlight = b.get('/slow?ms=500');
  await portalReceived(s, '/slow?ms=500');
  const closing = s.close();
  const answer = await inFlight;
  t.equal(answer.status, 200, 'the request in flight got its answer');
  t.equal(answer.body, 'slow ok');
  await closing;
  await t.rejects(request(`${s.url}/login`), 'closed afterwards');
});

t.test('shutting down: a request that comes on a connection still open gets the gateway\'s 503 and the connection closes', async (t) => {
  const s = await startStack();
  const { b } = await signUpAndEnrol(s);
  const inFlight = b.get('/slow?ms=500');
  // A connection whose request has begun is not idle: the close waits for it.
  const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
  await once(sock, 'connect');
  let received = '';
  sock.on('data', (d: Buffer) => (received += d.toString('latin1')));
  sock.write('GET /records HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  await portalReceived(s, '/slow?ms=500');
  const closing = s.close();
  await new Promise((r) => setTimeout(r, 50));
  sock.write('Accept: application/json\r\n\r\n');
  await once(sock, 'close');
  t.match(received, /^HTTP\/1\.1 503 /, 'refused');
  t.match(received, /\r\nstrict-transport-security: max-age=/i, 'with HSTS');
  t.match(received, /\r\nretry-after: 1\r\n/i);
  t.match(received, /\r\nconnection: close\r\n/i);
  t.match(received, /"error":"GW_ERR_SHUTTING_DOWN"/, "the gateway's own error, not the framework's");
  t.equal((await inFlight).status, 200, 'the request in flight still got its answer');
  await closing;
});

t.test('shutting down: on a connection still open, readiness says 503 and liveness still 200 (the process is alive until it exits)', async (t) => {
  const s = await startStack();
  const { b } = await signUpAndEnrol(s);
  const inFlight = b.get('/slow?ms=500');
  // Each probe's request begun before the stop, ended after it (see the test above).
  const probes = await Promise.all(
    ['ready', 'live'].map(async (name) => {
      const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
      await once(sock, 'connect');
      const probe = { sock, path: `/_mfa/health/${name}`, received: '' };
      sock.on('data', (d: Buffer) => (probe.received += d.toString('latin1')));
      sock.write(`GET ${probe.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
      return probe;
    }),
  );
  await portalReceived(s, '/slow?ms=500');
  const closing = s.close();
  await new Promise((r) => setTimeout(r, 50));
  for (const probe of probes) {
    probe.sock.write('Accept: application/json\r\n\r\n');
    await once(probe.sock, 'close');
  }
  const [ready, live] = probes.map((p) => p.received);
  t.match(ready, /^HTTP\/1\.1 503 [^]*"error":"GW_ERR_SHUTTING_DOWN"/, 'not ready');
  t.match(live, /^HTTP\/1\.1 200 [^]*\r\n\r\n\{"status":"ok"\}$/, 'still live');
  t.match(live, /\r\nconnection: close\r\n/i, 'and its connection closes after the answer');
  t.equal((await inFlight).status, 200, 'the request in flight still got its answer');
  await closing;
});

t.test('a login refused for its address is answered slowly (a flood slows to the pace of its connections)', async (t) => {
  const s = await startStack({ patch: (raw) => merge(raw, { limits: { password: { addressRate: { perMinute: 1, burst: 1 }, refusalDelayMs: 300 } } }) });
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  t.equal((await b.post('/login', { username: 'a', password: 'x', csrf })).status, 200);
  const started = performance.now();
  const refused = await b.post('/login', { username: 'b', password: 'x', csrf });
  t.equal(refused.status, 429);
  t.ok(performance.now() - started >= 280, 'held for the refusal delay before the answer');
  t.equal(refused.headers['retry-after'], '60');
});

t.test("a blocked address is told when the block ends, also by the answers the gateway gives from memory", async (t) => {
  const s = await startStack({
    patch: (raw) =>
      merge(raw, {
        limits: {
          password: { addressRate: { perMinute: 100_000, burst: 100_000 }, globalRate: { perMinute: 100_000, burst: 100_000 }, perAddress: { freeAttempts: 1000 } },
          stuffing: { distinctAccounts: 3, blockMinutes: 60 },
        },
      }),
  });
  t.teardown(s.close);
  for (const user of ['u1', 'u2', 'u3']) await submitPassword(s.browser(), user, 'wrong');
  const waits: string[] = [];
  for (const step of [0, 0, 2000]) {
    s.clock.advance(step);
    const refused = await submitPassword(s.browser(), ALICE.username, ALICE.password);
    t.equal(refused.status, 429);
    waits.push(String(refused.headers['retry-after']));
  }
  t.same(waits, ['3600', '3600', '3598']);
});

t.test("a body its client breaks off is the client's mistake (400, logged as refused), not the portal's or the gateway's fault", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const port = Number(new URL(s.url).port);
  const before = s.logs.length;
  const lines = () => s.logs.slice(before).map((l) => JSON.parse(l) as { level: number; code?: string });
  const brokenOff = async (head: string, sent: string) => {
    const answered = lines().filter((l) => l.code).length;
    const sock = connect(port, '127.0.0.1');
    t.teardown(() => sock.destroy());
    await once(sock, 'connect');
    sock.write(head + sent);
    await new Promise((r) => setTimeout(r, 200));
    sock.destroy();
    // Until the gateway has told what it made of it (a line with its code), at most 10 s.
    for (const deadline = Date.now() + 10_000; lines().filter((l) => l.code).length === answered && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  };
  // An upload to the portal, and a login, each cut off after a few of the bytes they declared.
  await brokenOff(`POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n`, 'hello');
  await brokenOff('POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n', 'username=alice&pa');
  t.same(lines().filter((l) => l.level >= 50), [], 'no error line (and so no portal failure counted)');
  t.same(lines().filter((l) => l.code).map((l) => l.code), ['GW_ERR_BAD_REQUEST', 'GW_ERR_BAD_REQUEST']);
});

t.test('a body cut off by server.requestTimeoutSeconds is one 408, counted and logged as such (not as a body its client broke off)', async (t) => {
  // The request timeout before the portal's (which also bounds a body that stops arriving): 1 s, checked every second,
  // below the headers' timeout (15 s), which Node would otherwise wait out first.
  const s = await startStack({ patch: (raw) => (Object.assign(raw.server, { requestTimeoutSeconds: 1, headersTimeoutSeconds: 15 }), (raw.portal.timeoutSeconds = 30)) });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const requests4xx = async () => {
    const text = await s.app.gateway.metrics.text();
    return [...text.matchAll(/^mfa_gateway_request_duration_seconds_count\{[^}]*status_class="4xx"[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };
  // An upload to the portal, and a login, each stalling after a few of the bytes they declared.
  for (const [what, head] of [
    ['an upload', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nhello`],
    ['a login', 'POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=alice&pa'],
  ]) {
    const before = s.logs.length;
    const counted = await requests4xx();
    const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
    t.teardown(() => sock.destroy());
    await once(sock, 'connect');
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    sock.write(head!);
    const sent = Date.now();
    await once(sock, 'close');
    t.ok(Date.now() - sent < 10_000, `${what}: cut off by the request's timeout, not the headers' (15 s)`);
    const refused = () => s.logs.slice(before).map((l) => JSON.parse(l) as { msg: string; code?: string }).filter((l) => l.msg === 'request refused');
    // Until the gateway has told what it made of it, at most 10 s.
    for (const deadline = Date.now() + 10_000; !refused().length && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    t.match(answer, /^HTTP\/1\.1 408 [^]*"error":"GW_ERR_REQUEST_TIMEOUT"/, `${what}: a 408`);
    t.same(refused().map((l) => l.code), ['GW_ERR_REQUEST_TIMEOUT'], `${what}: logged as the 408 it was`);
    t.equal((await requests4xx()) - counted, 1, `${what}: counted once`);
  }
});

t.test('a request body that stops arriving gives back its place among the requests waiting for the portal', async (t) => {
  const s = await startStack({ patch: (raw) => Object.assign(raw.server, { maxInFlight: 2 }) });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  // Two uploads that send a few bytes of a declared hundred, then nothing (the connections stay open).
  const answers = await Promise.all(
    [0, 1].map(async () => {
      const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
      t.teardown(() => sock.destroy());
      await once(sock, 'connect');
      let answer = '';
      sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      sock.write(`POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\nAccept: application/json\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc`);
      await portalReceived(s, '/echo', 2);
      const busy = await b.get('/records', { accept: 'application/json' });
      // portal.timeoutSeconds (2 s in the tests) without a byte: the upload is cut off, and its connection closed.
      // Waited for up to 10 s, far less than the 120 s of server.requestTimeoutSeconds.
      await Promise.race([once(sock, 'close'), new Promise((r) => setTimeout(r, 10_000).unref())]);
      return { busy: busy.status, answer };
    }),
  );
  t.ok(answers.some((a) => a.busy === 503), 'while they hold their places, the portal is busy for others');
  for (const a of answers) t.match(a.answer, /^HTTP\/1\.1 408 [^]*GW_ERR_REQUEST_TIMEOUT/, 'each stalled upload: 408');
  t.equal((await b.get('/records', { accept: 'application/json' })).status, 200, 'their places are free again');
});
