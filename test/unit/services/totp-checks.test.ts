// TOTP checks against the user's apps: an app removed while its code was checked opens nothing. The first code of an
// app being set up: once per set-up, whatever the user's other apps used, and never again to sign in.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { KvStore } from '../../../src/stores/kv-store.js';
import { isSealedKey } from '../../../src/stores/keys.js';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { newTotpSecret } from '../../../src/mechanisms/totp.js';
import type { Attempts, Ceremony } from '../../../src/services/ceremony.js';
import type { Notifier } from '../../../src/services/notifier.js';
import { TotpChecks } from '../../../src/services/totp-checks.js';
import { ReplayGuard } from '../../../src/stores/counters.js';
import { FactorStore } from '../../../src/stores/factor-store.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { RedisKvStore } from '../../../src/stores/redis-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';
import { testRedis } from '../../helpers/redis.js';
import { totpAt } from '../../helpers/stack.js';

const silent = { notify: () => {} } as unknown as Notifier;

t.test('an app removed between the check of its code and the mark of its use: refused', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const factors = new FactorStore(kv, new Sealer([{ id: 'e1', key: randomBytes(32) }]));
  const secret = newTotpSecret();
  await factors.update('p1', () => ({ factors: [{ id: 'app', kind: 'totp', name: 'Phone', addedAt: clock.now(), secret }] }));
  // The app is removed (the security page, or an operator) right after the check read it.
  const read = factors.get.bind(factors);
  factors.get = async (pid) => {
    const f = await read(pid);
    await factors.update(pid, (cur) => (cur ? { ...cur, factors: [] } : cur));
    return f;
  };
  const outcomes: string[] = [];
  const attempts = recordingAttempts(outcomes);
  const checks = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors, security: () => {}, notifier: silent });
  const c = { id: 'login:1', pid: 'p1', username: 'alice', kind: 'login' } as Ceremony;
  const result = await checks.checkUser(c, await totpAt(secret, clock.now()), '192.0.2.1');
  t.same(result, { ok: false, attemptsLeft: 4 }, 'refused');
  t.same(outcomes, ["not one of the user's authenticator apps"], 'counted as a failure, never as a success');
  t.same((await read('p1'))?.factors, [], 'the app stays removed');
});

/** Attempts that always allow, recording each outcome (a success, or the reason of a failure) in `outcomes`. */
function recordingAttempts(outcomes: string[]): Attempts {
  return {
    begin: async () => ({ n: 1, kind: 'totp', failures: 1, last: false }),
    beginSetup: async () => ({ n: 1, kind: 'totp', last: false }),
    succeeded: async () => void outcomes.push('succeeded'),
    failed: async (_c: Ceremony, _ip: string, _a: unknown, reason: string) => (outcomes.push(reason), { ok: false, attemptsLeft: 4 }),
    repeated: async () => (outcomes.push('repeated'), { ok: false, attemptsLeft: 4 }),
  } as unknown as Attempts;
}

/** Checks on `kv` for one user with one app ("Phone"), recording the outcome of every attempt and security event. */
async function setUpChecks(kv: KvStore, clock: FakeClock) {
  const factors = new FactorStore(kv, new Sealer([{ id: 'e1', key: randomBytes(32) }]));
  const pid = `p-${randomBytes(4).toString('hex')}`;
  const phone = newTotpSecret();
  await factors.update(pid, () => ({ factors: [{ id: 'phone', kind: 'totp', name: 'Phone', addedAt: clock.now(), secret: phone }] }));
  const outcomes: string[] = [];
  const events: string[] = [];
  const attempts = recordingAttempts(outcomes);
  const checks = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors, security: (event) => void events.push(event), notifier: silent });
  const c = { id: 'session:1', pid, username: 'alice', kind: 'session' } as Ceremony;
  /** Binds a set-up secret as the user's second app (what enrolment does once its code was accepted). */
  const bind = (secret: string) => factors.update(pid, (cur) => ({ ...cur!, factors: [...cur!.factors, { id: 'tablet', kind: 'totp', name: 'Tablet', addedAt: clock.now(), secret }] }));
  return { checks, c, pid, phone, bind, outcomes, events };
}

function setUpTests(name: string, make: (t: Tap.Test, clock: FakeClock) => Promise<KvStore>) {
  t.test(name, async (t) => {
    const ip = '192.0.2.1';

    t.test("a new app's first code for the step the user's app just used: accepted; then it cannot sign in", async (t) => {
      const clock = new FakeClock();
      const kv = await make(t, clock);
      const { checks, c, phone, bind, outcomes, events } = await setUpChecks(kv, clock);
      t.match(await checks.checkUser(c, await totpAt(phone, clock.now()), ip), { ok: true }, 'the phone, step S (a step-up)');
      const tablet = newTotpSecret();
      const code = await totpAt(tablet, clock.now());
      t.same(await checks.checkSecret(c, tablet, code, ip), { ok: true }, "the tablet's code for step S sets it up");
      t.same(events, [], 'nothing reported');
      t.same(await checks.checkSecret(c, tablet, code, ip), { ok: false, attemptsLeft: 4 }, 'the same code for the same set-up again (the form sent twice): refused');
      t.same(events, [], 'by the same session: no replay');
      t.same(await checks.checkSecret({ ...c, id: 'session:2' }, tablet, code, ip), { ok: false, attemptsLeft: 4 }, 'by another session: refused');
      t.same(events, ['mfa_replayed'], 'a replay');
      await bind(tablet);
      t.same(await checks.checkUser(c, code, ip), { ok: false, attemptsLeft: 4 }, 'the code that set the tablet up does not sign in');
      t.same(await checks.checkUser(c, await totpAt(phone, clock.now()), ip), { ok: false, attemptsLeft: 4 }, "nor the phone's, used already");
      // In this session, which used the step: its own (no failure); in a sign-in: taken, and a replay.
      t.same(await checks.checkUser({ ...c, id: 'login:2', kind: 'login' }, code, ip), { ok: false, attemptsLeft: 4 }, 'nor in a sign-in');
      t.same(outcomes, ['succeeded', 'succeeded', 'repeated', 'code already used', 'repeated', 'repeated', 'code already used']);
      t.same(events, ['mfa_replayed', 'mfa_replayed']);
      clock.advance(30_000);
      t.match(await checks.checkUser(c, await totpAt(tablet, clock.now()), ip), { ok: true }, 'the next step: the tablet signs in');
    });

    t.test("a set-up code for a step the user has not used: the user's mark is raised to it", async (t) => {
      const clock = new FakeClock();
      const kv = await make(t, clock);
      const { checks, c, phone, bind } = await setUpChecks(kv, clock);
      t.match(await checks.checkUser(c, await totpAt(phone, clock.now()), ip), { ok: true }, 'the phone, step S');
      clock.advance(30_000);
      const tablet = newTotpSecret();
      const code = await totpAt(tablet, clock.now());
      t.same(await checks.checkSecret(c, tablet, code, ip), { ok: true }, 'the tablet, step S+1');
      await bind(tablet);
      // In the session that set it up, its step is the person's own, just used (see ReplayGuard.claimStep).
      t.same(await checks.checkUser(c, code, ip), { ok: false, attemptsLeft: 4, justUsed: true }, 'the code that set it up does not sign in');
      t.same(await checks.checkUser(c, await totpAt(phone, clock.now()), ip), { ok: false, attemptsLeft: 4, justUsed: true }, 'step S+1 is used for the user');
    });

    t.test('a set-up code for the step before the one the user used: accepted, and the mark of the user stays', async (t) => {
      const clock = new FakeClock();
      const kv = await make(t, clock);
      const { checks, c, phone, bind } = await setUpChecks(kv, clock);
      t.match(await checks.checkUser(c, await totpAt(phone, clock.now()), ip), { ok: true }, 'the phone, step S');
      const tablet = newTotpSecret();
      t.same(await checks.checkSecret(c, tablet, await totpAt(tablet, clock.now() - 30_000), ip), { ok: true }, 'the tablet, step S-1');
      await bind(tablet);
      t.same(await checks.checkUser(c, await totpAt(tablet, clock.now()), ip), { ok: false, attemptsLeft: 4 }, 'step S: still used, the mark was not lowered');
    });

    t.test('two set-ups at once: each has its own mark; parallel submissions of one code: one accepted', async (t) => {
      const clock = new FakeClock();
      const kv = await make(t, clock);
      const { checks, c, pid } = await setUpChecks(kv, clock);
      const [one, two] = [newTotpSecret(), newTotpSecret()];
      const codeOne = await totpAt(one, clock.now());
      const results = await Promise.all(Array.from({ length: 8 }, () => checks.checkSecret(c, one, codeOne, ip)));
      t.equal(results.filter((r) => r.ok).length, 1, 'one of eight parallel submissions');
      t.same(await checks.checkSecret(c, two, await totpAt(two, clock.now()), ip), { ok: true }, 'another set-up, the same step: its own');
      // The marks are named by the user and a digest, never by the secret; plain numbers, not sealed records.
      const found: string[] = [];
      for await (const batch of kv.scanKeys(`user:{${pid}}`)) found.push(...batch);
      const setupKeys = found.filter((k) => k.startsWith(`user:{${pid}}:totp-setup-step:`));
      t.equal(setupKeys.length, 2, 'one mark per set-up, found with the user\'s keys (erase)');
      t.ok(setupKeys.every((k) => !k.includes(one) && !k.includes(two) && !isSealedKey(k)), 'no secret in the key names; not sealed');
    });
  });
}

setUpTests('memory store', async (_t, clock) => new MemoryKvStore(clock));

setUpTests('redis store', async (t, _clock) => {
  const redis = await testRedis();
  t.teardown(() => redis.stop());
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: `totp-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 1000 });
  t.teardown(() => kv.close());
  await kv.ready();
  return kv;
});
