// TOTP checks against the user's apps: an app removed while its code was checked opens nothing.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { newTotpSecret } from '../../../src/mechanisms/totp.js';
import type { Attempts, Ceremony } from '../../../src/services/ceremony.js';
import { TotpChecks } from '../../../src/services/totp-checks.js';
import { ReplayGuard } from '../../../src/stores/counters.js';
import { FactorStore } from '../../../src/stores/factor-store.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';
import { totpAt } from '../../helpers/stack.js';

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
  const attempts = {
    begin: async () => ({ n: 1, kind: 'totp', failures: 1, last: false }),
    succeeded: async () => void outcomes.push('succeeded'),
    failed: async (_c: Ceremony, _ip: string, _a: unknown, reason: string) => (outcomes.push(reason), { ok: false, attemptsLeft: 4 }),
  } as unknown as Attempts;
  const checks = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors, security: () => {} });
  const c = { pid: 'p1', username: 'alice', kind: 'login' } as Ceremony;
  const result = await checks.checkUser(c, await totpAt(secret, clock.now()), '192.0.2.1');
  t.same(result, { ok: false, attemptsLeft: 4 }, 'refused');
  t.same(outcomes, ["not one of the user's authenticator apps"], 'counted as a failure, never as a success');
  t.same((await read('p1'))?.factors, [], 'the app stays removed');
});
