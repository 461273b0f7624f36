// The limits on second-factor tries, on the memory store and on a real Redis: what parallel codes beyond a ceremony's
// tries are answered, and the list of disabled kinds of factor that `lockouts list` reads.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { newTotpSecret } from '../../../src/mechanisms/totp.js';
import { Attempts, SETUP_TRIES, type Ceremony } from '../../../src/services/ceremony.js';
import type { Notifier } from '../../../src/services/notifier.js';
import type { ActiveSession, SessionService } from '../../../src/services/sessions.js';
import { TotpChecks } from '../../../src/services/totp-checks.js';
import { ReplayGuard } from '../../../src/stores/counters.js';
import { FactorStore } from '../../../src/stores/factor-store.js';
import type { KvStore } from '../../../src/stores/kv-store.js';
import { keys } from '../../../src/stores/keys.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { PendingLogins, type PendingLogin } from '../../../src/stores/records.js';
import { RedisKvStore } from '../../../src/stores/redis-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';
import { merge, testConfig } from '../../helpers/config.js';
import { testRedis } from '../../helpers/redis.js';

const DAY = 24 * 60 * 60_000;
const ip = '192.0.2.1';

const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
const notifier = { notify: () => {} } as unknown as Notifier;

/** Attempts on `kv` with the second-factor limits given (`limits.secondFactor`); `security` gets each event's name. */
function attemptsOn(kv: KvStore, clock: FakeClock, secondFactor: Record<string, number> = {}, security: (event: string) => void = () => {}) {
  const config = testConfig('http://127.0.0.1:9', (raw) => merge(raw, { limits: { secondFactor } }));
  const sessions = { end: async () => {} } as unknown as SessionService;
  return new Attempts({ config, clock, kv, pending: new PendingLogins(kv, sealer), sessions, security, notifier });
}

/** A step-up ceremony of a session of its own (or of the session `sid`), for the user `pid`. */
function stepUp(attempts: Attempts, clock: FakeClock, pid: string, sid = randomBytes(8).toString('hex')) {
  return attempts.ofSession({ sid, record: { pid, username: 'alice', authTime: clock.now() } } as ActiveSession);
}

/** Wrong app codes for `pid`, each in a step-up of its own, until the app is disabled at the cap. */
async function lockOut(attempts: Attempts, clock: FakeClock, pid: string, cap: number) {
  for (let i = 0; i < cap; i++) {
    const c = stepUp(attempts, clock, pid);
    await attempts.failed(c, ip, await attempts.begin(c, ip, 'totp'), 'wrong code');
  }
}

t.test('memory store: a lockout stays listed for as long as it is in force, however long no other lockout comes', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const attempts = attemptsOn(kv, clock, { freeAttempts: 3, cap: 3 });
  await lockOut(attempts, clock, 'p-alice', 3);
  t.same(await attempts.lockedOut(), [{ pid: 'p-alice', kind: 'totp' }]);
  clock.advance(3 * 365 * DAY);
  t.same([...(await attempts.disabledKinds('p-alice'))], ['totp'], 'three years on, the app is still disabled');
  t.same(await attempts.lockedOut(), [{ pid: 'p-alice', kind: 'totp' }], '... and still listed');
  await lockOut(attempts, clock, 'p-bob', 3);
  clock.advance(3 * 365 * DAY);
  t.same((await attempts.lockedOut()).map((l) => l.pid).sort(), ['p-alice', 'p-bob'], 'a later lockout takes nothing from an earlier one');
  // The list holds no more than the locks in force: a cleared lock leaves it.
  await attempts.clear('p-alice');
  t.same(await attempts.lockedOut(), [{ pid: 'p-bob', kind: 'totp' }], 'cleared: no longer listed');
  t.same(await kv.setMembers(keys.lockoutIndex()), ['p-bob:totp']);
});

t.test('redis store: the list of lockouts has no TTL, also one an earlier release gave it', async (t) => {
  const redis = await testRedis();
  t.teardown(() => redis.stop());
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: `ceremony-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 1000 });
  t.teardown(() => kv.close());
  await kv.ready();
  const clock = new FakeClock();
  const attempts = attemptsOn(kv, clock, { freeAttempts: 3, cap: 3 });
  // As an earlier release listed a lockout: with a TTL of a year.
  await kv.setAdd(keys.lockoutIndex(), 'p-carol:totp', 365 * DAY);
  await lockOut(attempts, clock, 'p-alice', 3);
  t.equal(await kv.client.pttl(keys.lockoutIndex()), -1, 'kept until deleted');
  t.same((await kv.setMembers(keys.lockoutIndex())).sort(), ['p-alice:totp', 'p-carol:totp']);
});

/** A ceremony (a sign-in in progress, or a session's step-up) of a user with an app, and the checks of its codes. */
async function ceremonyOn(kv: KvStore, clock: FakeClock, ceremony: 'login' | 'session', secondFactor: Record<string, number> = {}) {
  const events = { checked: 0, exhausted: 0 };
  const attempts = attemptsOn(kv, clock, secondFactor, (event) => {
    if (event === 'mfa_failed') events.checked++;
    if (event === 'mfa_attempts_exhausted') events.exhausted++;
  });
  const factors = new FactorStore(kv, sealer);
  const pid = `p-${randomBytes(4).toString('hex')}`;
  await factors.update(pid, () => ({ factors: [{ id: 'phone', kind: 'totp', name: 'Phone', addedAt: clock.now(), secret: newTotpSecret() }] }));
  const checks = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors, security: () => {}, notifier });
  let c: Ceremony;
  if (ceremony === 'session') c = stepUp(attempts, clock, pid);
  else {
    const p = { pid, username: 'alice', continueTo: '/', csrf: 'c', stage: 'verify', expiresAt: clock.now() + 300_000, passwordAt: clock.now() } as PendingLogin;
    c = attempts.ofLogin(await new PendingLogins(kv, sealer).create(p, clock.now()), p);
  }
  /** What a wrong code is answered: a wrong code (the page again), or the error thrown. */
  const wrong = (i: number) => checks.checkUser(c, String(100000 + i), ip).then((r) => (r.ok ? 'signed in' : 'wrong code'), (e: { code: string }) => e.code);
  /** Likewise, a wrong code for a new app being set up (`secret`: its key). */
  const secret = newTotpSecret();
  const wrongSetUp = (i: number) => checks.checkSecret(c, secret, String(100000 + i), ip).then((r) => (r.ok ? 'added' : 'wrong code'), (e: { code: string }) => e.code);
  return { events, wrong, wrongSetUp, c };
}

/** `n` wrong app codes sent at once in one ceremony: how many were checked, and how many times each answer came. */
async function flood(kv: KvStore, clock: FakeClock, ceremony: 'login' | 'session', n: number, secondFactor: Record<string, number> = {}) {
  const { events, wrong } = await ceremonyOn(kv, clock, ceremony, secondFactor);
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => wrong(i)));
  const count: Record<string, number> = {};
  for (const a of answers) count[a] = (count[a] ?? 0) + 1;
  return { checked: events.checked, exhausted: events.exhausted, count };
}

function floods(name: string, make: (t: Test, clock: FakeClock) => Promise<KvStore>) {
  t.test(`${name}: parallel codes beyond a ceremony's tries are told to start again, never to wait; no more are checked`, async (t) => {
    const clock = new FakeClock();
    const kv = await make(t, clock);
    for (const ceremony of ['login', 'session'] as const) {
      for (const n of [6, 30, 100]) {
        const { checked, exhausted, count } = await flood(kv, clock, ceremony, n);
        // Four wrong codes answered as such, the fifth ends the ceremony: every answer after it says so.
        t.equal(checked, 5, `${ceremony}, ${n} at once: exactly five checked`);
        t.equal(exhausted, 1, `${ceremony}, ${n} at once: the end logged once (the report counts it)`);
        t.same(count, { 'wrong code': 4, GW_ERR_TOO_MANY_ATTEMPTS: n - 4 }, `${ceremony}, ${n} at once: the rest told the tries are used up`);
      }
    }
  });

  t.test(`${name}: a code that found the sign-in before it ended and is counted after finds no try left, not a count started again`, async (t) => {
    const clock = new FakeClock();
    const kv = await make(t, clock);
    const { events, wrong } = await ceremonyOn(kv, clock, 'login');
    for (let i = 0; i < 4; i++) t.equal(await wrong(i), 'wrong code');
    t.equal(await wrong(4), 'GW_ERR_TOO_MANY_ATTEMPTS', 'the fifth ends the sign-in');
    // The user's own count has a free failure left (five free), so only the sign-in's tries can refuse it.
    t.equal(await wrong(5), 'GW_ERR_TOO_MANY_ATTEMPTS', 'a code sent before the end, counted after it');
    t.equal(events.checked, 5, 'and not checked');
    t.equal(events.exhausted, 1, 'the end logged once');
  });

  t.test(`${name}: parallel codes the user's wait stops while the ceremony has tries left are told to wait`, async (t) => {
    const clock = new FakeClock();
    const kv = await make(t, clock);
    for (const ceremony of ['login', 'session'] as const) {
      // Three failures free, the fourth starts a wait: the ceremony still has a try, which the wait gives back.
      const { checked, exhausted, count } = await flood(kv, clock, ceremony, 30, { freeAttempts: 3 });
      t.equal(exhausted, 0, `${ceremony}: the ceremony not ended`);
      t.equal(checked, 4, `${ceremony}: exactly the user's free failures and one more checked`);
      t.same(count, { 'wrong code': 4, GW_ERR_RATE_LIMITED: 26 }, `${ceremony}: the rest told to wait`);
    }
  });

  t.test(`${name}: a session's set-ups are its own ${SETUP_TRIES} tries, however many are sent at once; a first enrolment's app codes are the sign-in's 5`, async (t) => {
    const clock = new FakeClock();
    const kv = await make(t, clock);
    for (const [ceremony, tries] of [['session', SETUP_TRIES], ['login', 5]] as const) {
      for (const n of [SETUP_TRIES + 1, 100]) {
        const { events, wrongSetUp } = await ceremonyOn(kv, clock, ceremony);
        const count: Record<string, number> = {};
        for (const a of await Promise.all(Array.from({ length: n }, (_, i) => wrongSetUp(i)))) count[a] = (count[a] ?? 0) + 1;
        t.equal(events.checked, tries, `${ceremony}, ${n} at once: exactly ${tries} checked`);
        t.equal(events.exhausted, 1, `${ceremony}, ${n} at once: the end logged once`);
        t.same(count, { 'wrong code': tries - 1, GW_ERR_TOO_MANY_ATTEMPTS: n - tries + 1 }, `${ceremony}, ${n} at once: the rest told to start again`);
      }
    }
    // Five wrong codes for a new app leave the session's tries for codes untouched: the sixth is still answered.
    const { wrong, wrongSetUp, c } = await ceremonyOn(kv, clock, 'session');
    for (let i = 0; i < 5; i++) t.equal(await wrongSetUp(i), 'wrong code');
    t.equal(await c.tries(), 0, 'no try of the session used');
    for (let i = 0; i < 4; i++) t.equal(await wrong(i), 'wrong code');
    t.equal(await wrong(4), 'GW_ERR_TOO_MANY_ATTEMPTS', "five wrong step-up codes still end it");
  });
}

floods('memory store', async (_t, clock) => new MemoryKvStore(clock));

floods('redis store', async (t) => {
  const redis = await testRedis();
  t.teardown(() => redis.stop());
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: `flood-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 2000 });
  t.teardown(() => kv.close());
  await kv.ready();
  return kv;
});

t.test("redis store, two gateway instances: a session's set-up tries are counted in the store, across both", async (t) => {
  const redis = await testRedis();
  t.teardown(() => redis.stop());
  const keyPrefix = `setups-${randomBytes(4).toString('hex')}:`;
  const clock = new FakeClock();
  const instances = [0, 1].map(() => new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 2000 }));
  for (const kv of instances) {
    t.teardown(() => kv.close());
    await kv.ready();
  }
  const pid = `p-${randomBytes(4).toString('hex')}`;
  const sid = randomBytes(8).toString('hex');
  const secret = newTotpSecret();
  let exhausted = 0;
  const checks = instances.map((kv) => {
    const attempts = attemptsOn(kv, clock, {}, (event) => void (event === 'mfa_attempts_exhausted' && exhausted++));
    const c = stepUp(attempts, clock, pid, sid);
    const totp = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors: new FactorStore(kv, sealer), security: () => {}, notifier });
    return (i: number) => totp.checkSecret(c, secret, String(100000 + i), ip).then((r) => (r.ok ? 'added' : `left ${r.attemptsLeft}`), (e: { code: string }) => e.code);
  });
  const answers = [];
  for (let i = 0; i < SETUP_TRIES; i++) answers.push(await checks[i % 2]!(i));
  t.same(answers.slice(0, 3), [`left ${SETUP_TRIES - 1}`, `left ${SETUP_TRIES - 2}`, `left ${SETUP_TRIES - 3}`], 'one count, whichever instance checks');
  t.equal(answers.at(-1), 'GW_ERR_TOO_MANY_ATTEMPTS', `the ${SETUP_TRIES}th, on the other instance, ends the session`);
  t.equal(await checks[0]!(SETUP_TRIES), 'GW_ERR_TOO_MANY_ATTEMPTS', 'and none is checked after, on either');
  t.equal(exhausted, 1);
});
