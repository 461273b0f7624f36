// One contract every store backend must pass: memory, and Redis as a single node, a Cluster and a Sentinel set.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../src/mechanisms/sealer.js';
import { MfaFailures, ReplayGuard } from '../../src/stores/counters.js';
import type { KvStore } from '../../src/stores/kv-store.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { BrowserJars, FactorStore, PendingLogins, Sessions } from '../../src/stores/records.js';
import { RedisKvStore, type RedisKvOptions } from '../../src/stores/redis-kv-store.js';
import { FakeClock } from '../helpers/clock.js';
import { testRedis } from '../helpers/redis.js';
import { startCluster, startSentinel } from '../helpers/redis-topologies.js';

interface Backend {
  kv: KvStore;
  /** Lets `ms` pass for TTLs: the fake clock moves, or the test waits for Redis. */
  pass(ms: number): Promise<void>;
  now(): number;
}

/** `make` registers the teardown of any servers it starts on the `t` it is given, before it waits for them. */
function contract(name: string, make: (t: Test) => Promise<Backend>) {
  t.test(name, async (t) => {
    const b = await make(t);
    t.teardown(() => b.kv.close());
    const k = (s: string) => `${s}:${randomBytes(6).toString('hex')}`;

    t.test('get / set / delete', async (t) => {
      const key = k('a');
      t.equal(await b.kv.get(key), null);
      await b.kv.set(key, 'v1', 10_000);
      t.equal(await b.kv.get(key), 'v1');
      await b.kv.set(key, 'v2');
      t.equal(await b.kv.get(key), 'v2', 'overwrite');
      await b.kv.delete(key);
      t.equal(await b.kv.get(key), null);
    });

    t.test('TTL expiry', async (t) => {
      const key = k('ttl');
      await b.kv.set(key, 'v', 150);
      t.equal(await b.kv.get(key), 'v');
      await b.pass(400);
      t.equal(await b.kv.get(key), null);
    });

    t.test('setIfAbsent: one winner among parallel callers', async (t) => {
      const key = k('nx');
      const wins = await Promise.all(Array.from({ length: 20 }, () => b.kv.setIfAbsent(key, 'x', 10_000)));
      t.equal(wins.filter(Boolean).length, 1);
    });

    t.test('setIfPresent: updates, never recreates', async (t) => {
      const key = k('xx');
      t.notOk(await b.kv.setIfPresent(key, 'v', 10_000), 'absent: not created');
      t.equal(await b.kv.get(key), null);
      await b.kv.set(key, 'v1', 10_000);
      t.ok(await b.kv.setIfPresent(key, 'v2', 10_000));
      t.equal(await b.kv.get(key), 'v2');
      await b.kv.delete(key);
      t.notOk(await b.kv.setIfPresent(key, 'v3', 10_000), 'deleted: stays deleted');
      t.equal(await b.kv.get(key), null);
    });

    t.test('setIfAbsent without a TTL keeps the key', async (t) => {
      const key = k('nx-keep');
      t.ok(await b.kv.setIfAbsent(key, 'x'));
      await b.pass(400);
      t.equal(await b.kv.get(key), 'x');
      await b.kv.delete(key);
    });

    t.test('take: atomic read-and-delete', async (t) => {
      const key = k('take');
      await b.kv.set(key, 'once', 10_000);
      const got = await Promise.all(Array.from({ length: 20 }, () => b.kv.take(key)));
      t.same(got.filter((v) => v !== null), ['once']);
      t.equal(await b.kv.get(key), null);
    });

    t.test('increment: exact under concurrency, TTL from creation', async (t) => {
      const key = k('inc');
      const results = await Promise.all(Array.from({ length: 50 }, () => b.kv.increment(key, 300)));
      t.same([...results].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i + 1));
      await b.pass(600);
      t.equal(await b.kv.increment(key, 300), 1, 'counter expired and restarts');
    });

    t.test('raiseTo: compare-and-set upwards only', async (t) => {
      const key = k('raise');
      t.ok(await b.kv.raiseTo(key, 5, 10_000));
      t.notOk(await b.kv.raiseTo(key, 5, 10_000), 'same value refused');
      t.notOk(await b.kv.raiseTo(key, 4, 10_000), 'lower value refused');
      t.ok(await b.kv.raiseTo(key, 6, 10_000));
      const parallel = await Promise.all(Array.from({ length: 20 }, () => b.kv.raiseTo(key, 7, 10_000)));
      t.equal(parallel.filter(Boolean).length, 1, 'one of many parallel claims');
    });

    t.test('ping', async (t) => {
      await t.resolves(b.kv.ping());
    });

    t.test('records: sealed at rest, typed access', async (t) => {
      const sealer = new Sealer([{ id: 'k', key: randomBytes(32) }]);
      const jars = new BrowserJars(b.kv, sealer, 60_000);
      const id = randomBytes(32).toString('base64url');
      await jars.put(id, [{ name: 'PORTALSESSID', value: 'portal-secret', path: '/' }]);
      t.notMatch((await b.kv.get(`jar:{${id}}`)) ?? '', /portal-secret/, 'jar encrypted at rest');
      t.same(await jars.take(id), [{ name: 'PORTALSESSID', value: 'portal-secret', path: '/' }]);
      t.same(await jars.get(id), [], 'taken once');

      const pending = new PendingLogins(b.kv, sealer);
      const now = b.now();
      const rec = { pid: 'p', username: 'alice', jar: [], continueTo: '/', csrf: 'c', stage: 'verify' as const, expiresAt: now + 300_000 };
      const pid = await pending.create(rec, now);
      t.same(await pending.get(pid, now), rec);
      t.equal(await pending.get(pid, now + 300_001), null, 'expired by its own time too');
      t.equal(await pending.countAttempt(pid, 10_000), 1);
      t.equal(await pending.countAttempt(pid, 10_000), 2);
      const taken = await Promise.all([pending.take(pid, now), pending.take(pid, now)]);
      t.equal(taken.filter(Boolean).length, 1, 'one finisher');

      const sessions = new Sessions(b.kv, sealer);
      const s = { pid: 'p', username: 'alice', amr: ['pwd', 'otp'], authTime: now, factorTime: now, factor: 'totp' as const, lastSeen: now, jar: [], csrf: 'x' };
      const sid = await sessions.create(s, 10_000);
      const sid2 = await sessions.create(s, 10_000);
      t.not(sid, sid2, 'fresh ids');
      t.same(await sessions.get(sid), s);
      t.ok(await sessions.update(sid, { ...s, lastSeen: now + 1 }, 10_000));
      await sessions.delete(sid);
      t.equal(await sessions.get(sid), null);
      t.notOk(await sessions.update(sid, s, 10_000), 'an ended session is not brought back by a late update');
      t.equal(await sessions.get(sid), null);

      const factors = new FactorStore(b.kv, sealer);
      await factors.put('p', { totp: { secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', addedAt: now } });
      t.notMatch((await b.kv.get('user:{p}:factors')) ?? '', /JBSWY3DP/, 'TOTP secret encrypted at rest');
      t.equal((await factors.get('p'))?.totp?.secret, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP');
      await b.kv.set('user:{q}:factors', (await b.kv.get('user:{p}:factors'))!);
      await t.rejects(factors.get('q'), { code: 'GW_ERR_STORE_UNAVAILABLE' }, "a record copied under another user's key does not open, and is not read as \"no factor\"");
      t.equal(await factors.get('nobody'), null, 'no record: no factor');
    });

    t.test('replay guard and failure counter', async (t) => {
      const replay = new ReplayGuard(b.kv);
      const pid = k('pid');
      const claims = await Promise.all(Array.from({ length: 20 }, () => replay.claimStep(pid, 1000)));
      t.equal(claims.filter(Boolean).length, 1, 'a step is accepted once');
      t.notOk(await replay.claimStep(pid, 999), 'an older step is refused');
      t.ok(await replay.claimStep(pid, 1001));
      const failures = new MfaFailures(b.kv);
      await Promise.all(Array.from({ length: 10 }, () => failures.add(pid)));
      t.equal(await failures.add(pid), 11);
      await failures.reset(pid);
      t.equal(await failures.add(pid), 1);
    });
  });
}

contract('memory store', async () => {
  const clock = new FakeClock();
  return { kv: new MemoryKvStore(clock), now: () => clock.now(), pass: async (ms) => clock.advance(ms) };
});

t.test('memory store: expired entries nobody reads are swept as writes go on', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  for (let i = 0; i < 1000; i++) await kv.set(`old:${i}`, 'x', 1000);
  clock.advance(2000);
  for (let i = 0; i < 1000; i++) await kv.set(`new:${i}`, 'x', 60_000);
  t.ok(kv.size < 1100, `held ${kv.size} entries, not 2000`);
});

/** A RedisKvStore on servers a backend started; real time passes for TTLs. */
async function redisBackend(opts: Omit<RedisKvOptions, 'keyPrefix' | 'commandTimeoutMs'>): Promise<Backend> {
  const kv = new RedisKvStore({ ...opts, keyPrefix: `contract-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 1000 });
  await kv.ready().catch(async (err) => {
    await kv.close();
    throw err;
  });
  return { kv, now: () => Date.now(), pass: (ms) => new Promise((r) => setTimeout(r, ms)) };
}

contract('redis store: single node', async (t) => {
  const redis = await testRedis();
  t.teardown(() => redis.stop());
  return redisBackend({ url: redis.url });
});

contract('redis store: cluster', async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  return redisBackend({ mode: 'cluster', nodes: cluster.nodes });
});

contract('redis store: sentinel', async (t) => {
  const sentinel = await startSentinel();
  t.teardown(() => sentinel.stop());
  return redisBackend({ mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName });
});
