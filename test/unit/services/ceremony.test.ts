// The limits on second-factor tries, on the memory store and on a real Redis: the list of disabled kinds of factor
// that `lockouts list` reads.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Attempts } from '../../../src/services/ceremony.js';
import type { Notifier } from '../../../src/services/notifier.js';
import type { ActiveSession, SessionService } from '../../../src/services/sessions.js';
import type { KvStore } from '../../../src/stores/kv-store.js';
import { keys } from '../../../src/stores/keys.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import type { PendingLogins } from '../../../src/stores/records.js';
import { RedisKvStore } from '../../../src/stores/redis-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';
import { merge, testConfig } from '../../helpers/config.js';
import { testRedis } from '../../helpers/redis.js';

const DAY = 24 * 60 * 60_000;
const ip = '192.0.2.1';

/** Attempts on `kv` with the second-factor limits given (`limits.secondFactor`). */
function attemptsOn(kv: KvStore, clock: FakeClock, secondFactor: Record<string, number> = {}) {
  const config = testConfig('http://127.0.0.1:9', (raw) => merge(raw, { limits: { secondFactor } }));
  const sessions = { end: async () => {} } as unknown as SessionService;
  const notifier = { notify: () => {} } as unknown as Notifier;
  return new Attempts({ config, clock, kv, pending: {} as PendingLogins, sessions, security: () => {}, notifier });
}

/** A step-up ceremony of a session of its own, for the user `pid`. */
function stepUp(attempts: Attempts, clock: FakeClock, pid: string) {
  return attempts.ofSession({ sid: randomBytes(8).toString('hex'), record: { pid, username: 'alice', authTime: clock.now() } } as ActiveSession);
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
