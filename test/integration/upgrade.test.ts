// A rolling upgrade: instances of an earlier release and of this one share one Redis for a while, each reading the
// records the other wrote. Records are written here as the other release would, straight into the store.
import t from 'tap';
import { inputValue, type Browser } from '../helpers/browser.js';
import { keys } from '../../src/stores/keys.js';
import { newRecoveryCodes } from '../../src/mechanisms/recovery-codes.js';
import { SealedRecords } from '../../src/stores/sealed-records.js';
import type { PendingLogin, SessionRecord } from '../../src/stores/records.js';
import { ALICE, atCodePage, signUpAndEnrol, startRedisStack, submitPassword, totpAt, totpEnrolmentForm, type Stack } from '../helpers/stack.js';

// Fields an earlier release's records lack.
const NEWER_PENDING: (keyof PendingLogin)[] = ['passwordAt', 'enrolCodes', 'factorAt', 'factorId', 'browserSetCookies', 'portalSession'];
const NEWER_SESSION: (keyof SessionRecord)[] = ['since', 'portalSession'];
// A field of a later release, unknown to this one.
const LATER = { laterField: { kept: true } };

/** A record in the stack's store as another release would read and write it. */
function recordAt<T extends object>(s: Stack, key: string) {
  const records = new SealedRecords<T>(s.kv, s.app.gateway.stores.sealer);
  return {
    get: async () => (await records.get(key)) as Record<string, unknown> | null,
    /** Writes the record again as `shape` makes it (kept 5 minutes: longer than any test here). */
    rewrite: async (shape: (r: Record<string, unknown>) => Record<string, unknown>) => {
      const cur = (await records.get(key)) as Record<string, unknown>;
      await records.put(key, shape({ ...cur }) as T, 5 * 60_000);
    },
  };
}

/** The browser's pending sign-in. */
function pendingOf(s: Stack, b: Browser) {
  return recordAt<PendingLogin>(s, keys.pendingLogin(b.cookies.get('__Host-mfa-pending')!));
}

/** The browser's session (its id is in the cookie's token). */
function sessionOf(s: Stack, b: Browser) {
  const { sid } = JSON.parse(Buffer.from(b.cookies.get('__Host-mfa-session')!.split('.')[1]!, 'base64url').toString()) as { sid: string };
  return recordAt<SessionRecord>(s, keys.session(sid));
}

const without = (fields: readonly string[]) => (r: Record<string, unknown>) => {
  for (const f of fields) delete r[f];
  return r;
};

const codesOn = (html: string) => [...html.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);

t.test("an earlier release's sign-in at its enrolment: the app is bound, the codes shown work, the sign-in finishes", async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const pending = pendingOf(s, b);
  await pending.rewrite(without(NEWER_PENDING));

  const confirm = await b.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(confirm.location, '/_mfa/recovery-codes', 'bound');
  const codes = codesOn((await b.get('/_mfa/recovery-codes')).body);
  t.equal(codes.length, 10, 'ten codes shown');
  const done = await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  t.equal(done.location, '/records', 'signed in');
  t.match((await b.get('/records')).body, 'Signed in as alice');

  const later = s.browser();
  await submitPassword(later, ALICE.username, ALICE.password);
  const page = await later.get('/_mfa/recovery');
  t.equal((await later.post('/_mfa/recovery', { csrf: inputValue(page.body, 'csrf'), code: codes[0] })).location, '/records', 'a code shown signs in: it is the set stored');
});

t.test("an app an earlier release bound, its move on to the recovery codes lost: the sign-in goes on with codes that work", async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const { factors } = s.app.gateway.stores;
  const pid = s.app.gateway.pidOf(ALICE.username)!;
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes');
  // As the earlier release leaves them: the app bound with a set of its own (never shown), the sign-in still at the
  // enrolment, with no set chosen in it.
  const { stored: unseen } = await newRecoveryCodes();
  await factors.update(pid, (cur) => cur && { ...cur, recovery: { ...unseen, addedAt: s.clock.now() } });
  const pending = pendingOf(s, b);
  await pending.rewrite((r) => ({ ...without([...NEWER_PENDING, 'factor', 'deviceBound', 'recoveryCodes'])(r), stage: 'enrol', totpSecret: secret }));

  t.equal((await b.get('/_mfa/enrol')).location, '/_mfa/recovery-codes', 'a reload goes on');
  const codes = codesOn((await b.get('/_mfa/recovery-codes')).body);
  t.equal(codes.length, 10, 'ten codes shown');
  t.not((await factors.get(pid))!.recovery!.salt, unseen.salt, 'in place of the set never shown');
  t.equal((await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).location, '/records', 'signed in');
  const later = await atCodePage(s, ALICE, 'recovery');
  t.equal((await later.b.post('/_mfa/recovery', { csrf: later.csrf, code: codes[0] })).location, '/records', 'a code shown signs in');
});

t.test("an earlier release's sign-in at its recovery codes (no factor time, no factor id) finishes", async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes');
  const pending = pendingOf(s, b);
  t.match(await pending.get(), { stage: 'acknowledge', factorAt: Number, factorId: String }, 'written by this release with them');
  await pending.rewrite(without(NEWER_PENDING));

  t.equal(codesOn((await b.get('/_mfa/recovery-codes')).body).length, 10, 'the codes shown');
  t.equal((await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).location, '/records', 'signed in');
  t.match((await b.get('/records')).body, 'Signed in as alice');
  const session = sessionOf(s, b);
  t.equal((await session.get())!.factorTime, s.clock.now(), 'its second factor counts from when the codes were acknowledged, as the earlier release did');
});

t.test("an earlier release's session (no since) is signed in, keeps its idle clock, and ends with the user's sessions", async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const session = sessionOf(s, b);
  await session.rewrite(without(NEWER_SESSION));

  t.match((await b.get('/records')).body, 'Signed in as alice');
  s.clock.advance(60_000);
  t.match((await b.get('/records')).body, 'Signed in as alice', 'still signed in a minute later');
  t.equal((await session.get())!.lastSeen, s.clock.now(), 'the idle clock written');
  t.notOk('since' in (await session.get())!, 'not added by the idle clock');

  // Begun at its sign-in (authTime): an ending of the user's sessions after that ends it.
  await s.app.gateway.sessions.endAll(s.app.gateway.pidOf(ALICE.username)!, 'revoked');
  t.equal((await b.get('/records')).location, '/login', 'ended');
});

t.test("a later release's fields are passed over and kept: a sign-in and its session with one go on", async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const pending = pendingOf(s, b);
  await pending.rewrite((r) => ({ ...r, ...LATER }));

  t.equal((await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/records', 'signed in');
  const session = sessionOf(s, b);
  await session.rewrite((r) => ({ ...r, ...LATER }));
  s.clock.advance(60_000);
  t.match((await b.get('/records')).body, 'Signed in as alice');
  t.match(await session.get(), { lastSeen: s.clock.now(), ...LATER }, 'the idle clock written, the field kept');
});
