// Stuffing detection per client address: what the shared bucket of unreadable addresses leaves in the store.
import t from 'tap';
import pino from 'pino';
import { Metrics } from '../../../src/metrics/metrics.js';
import { LoginLimits } from '../../../src/services/login-limits.js';
import { Notifier, Webhooks } from '../../../src/services/notifier.js';
import { keys } from '../../../src/stores/keys.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';
import { testConfig } from '../../helpers/config.js';

t.test('failures from unreadable addresses add nothing to a set of usernames (that bucket is never blocked)', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const config = testConfig('http://127.0.0.1:9');
  const limits = new LoginLimits({ config, clock, kv, security: () => {}, notifier: new Notifier(new Webhooks({ clock, log: pino({ level: 'silent' }), metrics: new Metrics({ defaultMetrics: false }), timeoutMs: 1000, retries: 0, retryDelayMs: 0 }), null, clock) });
  const accounts = config.limits.stuffing.distinctAccounts + 5;
  for (let i = 0; i < accounts; i++) await limits.failed(`pid-${i}`, null);
  t.same(await kv.setMembers(keys.addressUsernames('unknown')), [], 'no usernames kept for the unknown bucket');
  t.equal(await kv.get(keys.addressBlock('unknown')), null, 'and it is not blocked');
  for (let i = 0; i < 3; i++) await limits.failed(`pid-${i}`, '192.0.2.7');
  t.equal((await kv.setMembers(keys.addressUsernames('192.0.2.7'))).length, 3, 'a readable address is still watched');
});
