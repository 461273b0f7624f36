// One contract every store backend must pass: memory, and Redis as a single node, a Cluster and a Sentinel set.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { resolveConfig } from '../../src/config/load.js';
import { gcraStep } from '../../src/domain/limits.js';
import { createKvStore } from '../../src/gateway.js';
import { Sealer } from '../../src/mechanisms/sealer.js';
import { ReplayGuard } from '../../src/stores/counters.js';
import { FactorStore, type UserFactors } from '../../src/stores/factor-store.js';
import type { KvStore } from '../../src/stores/kv-store.js';
import { keys } from '../../src/stores/keys.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { BrowserJars, PendingLogins, Sessions } from '../../src/stores/records.js';
import { RedisKvStore, type RedisKvOptions } from '../../src/stores/redis-kv-store.js';
import { FakeClock } from '../helpers/clock.js';
import { rawTestConfig } from '../helpers/config.js';
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

    t.test('nothing in the backend settings weakens the gateway (Redis as it starts: noeviction, on every master)', async (t) => {
      t.same(await b.kv.warnings(), []);
    });

    t.test('onReady: a backend that can take commands is said at once; stopped, nothing more', async (t) => {
      let calls = 0;
      const off = b.kv.onReady(() => calls++);
      t.equal(calls, 1);
      off();
      off();
      t.equal(calls, 1);
    });

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
      await b.kv.set(key, 'v', 1000);
      t.equal(await b.kv.get(key), 'v');
      await b.pass(1500);
      t.equal(await b.kv.get(key), null);
    });

    t.test('setIfAbsent: one winner among parallel callers', async (t) => {
      const key = k('nx');
      const wins = await Promise.all(Array.from({ length: 20 }, () => b.kv.setIfAbsent(key, 'x', 10_000)));
      t.equal(wins.filter(Boolean).length, 1);
    });

    t.test('replaceIf with a TTL: compare-and-set that sets the new TTL and never recreates', async (t) => {
      const key = k('cas-ttl');
      t.notOk(await b.kv.replaceIf(key, 'v1', 'v2', 10_000), 'absent: nothing replaced');
      t.equal(await b.kv.get(key), null, 'absent: not created');
      await b.kv.set(key, 'v1', 2000);
      t.notOk(await b.kv.replaceIf(key, 'other', 'v2', 10_000), 'another value: kept');
      t.ok(await b.kv.replaceIf(key, 'v1', 'v2', 10_000));
      await b.pass(2500);
      t.equal(await b.kv.get(key), 'v2', 'the new TTL holds, not the old one');
      t.ok(await b.kv.replaceIf(key, 'v2', 'v3', 1000));
      await b.pass(1500);
      t.equal(await b.kv.get(key), null, 'a shorter new TTL ends it');
      await b.kv.set(key, 'v4', 10_000);
      await b.kv.delete(key);
      t.notOk(await b.kv.replaceIf(key, 'v4', 'v5', 10_000), 'deleted: stays deleted');
      t.equal(await b.kv.get(key), null);
    });

    t.test('deleteIf: compare-and-delete', async (t) => {
      const key = k('cad');
      t.notOk(await b.kv.deleteIf(key, 'v1'), 'absent: nothing to delete');
      await b.kv.set(key, 'v1', 10_000);
      t.notOk(await b.kv.deleteIf(key, 'other'), 'another value: kept');
      t.equal(await b.kv.get(key), 'v1');
      t.ok(await b.kv.deleteIf(key, 'v1'));
      t.equal(await b.kv.get(key), null, 'deleted');
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
      const results = await Promise.all(Array.from({ length: 50 }, () => b.kv.increment(key, 2000)));
      t.same([...results].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i + 1));
      await b.pass(2500);
      t.equal(await b.kv.increment(key, 2000), 1, 'counter expired and restarts');
    });

    t.test('increment and incrementCapped of a counter at "0": its own TTL is kept, not started again', async (t) => {
      for (const bump of [(key: string) => b.kv.increment(key, 60_000), (key: string) => b.kv.incrementCapped(key, 5, 60_000)]) {
        const key = k('zero');
        await b.kv.set(key, '0', 1000);
        await bump(key);
        await b.pass(1500);
        t.equal(await b.kv.get(key), null, 'gone when its own TTL ran out');
      }
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

    t.test('raiseTo with a note: the note is written in the same step, only when raised, with the same TTL', async (t) => {
      const pid = k('noted');
      const [key, note] = [keys.totpStep(pid), keys.totpStepClaimant(pid, 1)];
      t.ok(await b.kv.raiseTo(key, 5, 10_000, { key: note, value: 'first' }));
      t.equal(await b.kv.get(note), 'first');
      t.notOk(await b.kv.raiseTo(key, 5, 10_000, { key: note, value: 'second' }));
      t.equal(await b.kv.get(note), 'first', 'a refused raise writes no note');
      t.ok(await b.kv.raiseTo(key, 6, 1000, { key: note, value: 'third' }));
      t.equal(await b.kv.get(note), 'third');
      await b.pass(1500);
      t.equal(await b.kv.get(note), null, 'gone with the TTL given');
    });

    t.test('increment: exact under 100 parallel calls, reads back as a number', async (t) => {
      const key = k('inc-many');
      for (let i = 0; i < 5; i++) await b.kv.increment(key, 10_000);
      await Promise.all(Array.from({ length: 100 }, () => b.kv.increment(key, 10_000)));
      t.equal(await b.kv.get(key), '105');
    });

    t.test('incrementCapped: counts to the cap, then stays', async (t) => {
      const key = k('cap');
      t.same(await b.kv.incrementCapped(key, 3, 10_000), { value: 1, capped: false, reached: false });
      t.same(await b.kv.incrementCapped(key, 3, 10_000), { value: 2, capped: false, reached: false });
      t.equal(await b.kv.get(key), '2', 'reads back as a number');
      t.same(await b.kv.incrementCapped(key, 3, 10_000), { value: 3, capped: true, reached: true }, 'this call reached the cap');
      t.same(await b.kv.incrementCapped(key, 3, 10_000), { value: 3, capped: true, reached: false }, 'already at the cap: unchanged');
      t.equal(await b.kv.get(key), '3');
      t.same(await b.kv.incrementCapped(k('cap1'), 1, 10_000), { value: 1, capped: true, reached: true }, 'cap 1: the first call reaches it');
      await t.rejects(b.kv.incrementCapped(key, 0, 10_000), TypeError, 'a cap below 1 is a mistake, not "no limit"');
    });

    t.test('incrementCapped: 50 parallel calls at 99 of 100 end at exactly 100, reached once', async (t) => {
      const key = k('cap-race');
      for (let i = 0; i < 99; i++) await b.kv.increment(key, 10_000);
      const results = await Promise.all(Array.from({ length: 50 }, () => b.kv.incrementCapped(key, 100, 10_000)));
      t.equal(await b.kv.get(key), '100');
      t.equal(results.filter((r) => r.reached).length, 1, 'one call reached the cap');
      t.ok(results.every((r) => r.value === 100 && r.capped), 'every caller sees the cap');
    });

    t.test('incrementCapped: TTL from creation', async (t) => {
      const key = k('cap-ttl');
      await b.kv.incrementCapped(key, 10, 2000);
      await b.pass(1000);
      t.equal((await b.kv.incrementCapped(key, 10, 2000)).value, 2, 'a later call does not push the TTL');
      await b.pass(1500);
      t.equal(await b.kv.get(key), null, 'expired 2 s after creation');
    });

    t.test('incrementCapped: kept until deleted at the cap or with no TTL, in the same step (a TTL it had is dropped)', async (t) => {
      const [reached, atCap, kept, fresh] = [k('cap-reached'), k('cap-at'), k('cap-kept'), k('cap-fresh')];
      await b.kv.incrementCapped(reached, 2, 1000);
      t.same(await b.kv.incrementCapped(reached, 2, 1000), { value: 2, capped: true, reached: true });
      await b.kv.set(atCap, '3', 1000);
      t.same(await b.kv.incrementCapped(atCap, 3, 1000), { value: 3, capped: true, reached: false });
      await b.kv.increment(kept, 1000);
      t.same(await b.kv.incrementCapped(kept, 10, null), { value: 2, capped: false, reached: false });
      t.same(await b.kv.incrementCapped(fresh, 10, null), { value: 1, capped: false, reached: false });
      await b.pass(1500);
      t.equal(await b.kv.get(reached), '2', 'the call that reached the cap dropped the TTL');
      t.equal(await b.kv.get(atCap), '3', 'a call at the cap, too');
      t.equal(await b.kv.get(kept), '2', 'without a TTL: the one it was created with is dropped');
      t.equal(await b.kv.get(fresh), '1', 'without a TTL: created without one');
      t.equal((await b.kv.incrementCapped(reached, 2, 1000)).value, 2, 'still at the cap');
      await b.kv.delete(reached);
      t.same(await b.kv.incrementCapped(reached, 2, 1000), { value: 1, capped: false, reached: false }, 'deleted: counts from zero');
    });

    t.test('gcra: burst at one instant, then one per interval as time moves', async (t) => {
      const key = k('gcra');
      const t0 = b.now();
      const burst = await Promise.all(Array.from({ length: 8 }, () => b.kv.gcra(key, 1000, 5, t0)));
      t.equal(burst.filter((r) => r.allowed).length, 5, 'exactly the burst admitted');
      t.same(burst.filter((r) => r.allowed).map((r) => r.remaining).sort(), [0, 1, 2, 3, 4]);
      t.ok(burst.filter((r) => !r.allowed).every((r) => r.retryAfterMs === 1000 && r.remaining === 0), 'refused: one interval to wait');
      t.same(await b.kv.gcra(key, 1000, 5, t0 + 999), { allowed: false, retryAfterMs: 1, remaining: 0 });
      t.same(await b.kv.gcra(key, 1000, 5, t0 + 1000), { allowed: true, retryAfterMs: 0, remaining: 0 });
      t.same(await b.kv.gcra(key, 1000, 5, t0 + 1000), { allowed: false, retryAfterMs: 1000, remaining: 0 });
      const next = await Promise.all(Array.from({ length: 5 }, () => b.kv.gcra(key, 1000, 5, t0 + 2000)));
      t.equal(next.filter((r) => r.allowed).length, 1, 'one more per interval, also in parallel');
      await t.rejects(b.kv.gcra(key, 0, 5, t0), TypeError);
      await t.rejects(b.kv.gcra(key, 1000, 5, t0 + 0.5), TypeError, 'whole milliseconds only');
    });

    t.test('gcra: the same answers as the pure step for a scripted sequence', async (t) => {
      const key = k('gcra-script');
      const t0 = b.now();
      // [ms after t0, interval, burst]; the interval and burst change midway, as after a config reload.
      const script: [number, number, number][] = [
        [0, 500, 3], [0, 500, 3], [10, 500, 3], [20, 500, 3], [499, 500, 3], [500, 500, 3], [1200, 500, 3],
        [1200, 500, 3], [1201, 500, 3], [5000, 500, 3], [5000, 500, 3], [5001, 700, 2], [5002, 700, 2], [5800, 700, 2],
        [5800, 300, 4], [5900, 300, 4], [5901, 300, 4], [9000, 300, 1], [9000, 300, 1], [9299, 300, 1], [9300, 300, 1],
      ];
      let tat: number | null = null;
      for (const [dt, interval, burst] of script) {
        const step = gcraStep(tat, t0 + dt, interval, burst);
        tat = step.tat;
        t.same(await b.kv.gcra(key, interval, burst, t0 + dt), { allowed: step.allowed, retryAfterMs: step.retryAfterMs, remaining: step.remaining }, `at +${dt} ms`);
      }
    });

    t.test('gcra: the key expires once the TAT is in the past', async (t) => {
      const key = k('gcra-ttl');
      // The TAT is an interval ahead, so the key lives that long: a second, for the read that follows on a busy machine.
      t.equal((await b.kv.gcra(key, 1000, 2, b.now())).allowed, true);
      t.not(await b.kv.get(key), null);
      await b.pass(1500);
      t.equal(await b.kv.get(key), null);
    });

    t.test('sets: add, list, remove', async (t) => {
      const key = k('set');
      t.same(await b.kv.setMembers(key), [], 'none yet');
      t.equal(await b.kv.setAdd(key, 'a', 10_000), 1);
      t.equal(await b.kv.setAdd(key, 'b', 10_000), 2);
      t.equal(await b.kv.setAdd(key, 'a', 10_000), 2, 'a member counts once');
      t.same((await b.kv.setMembers(key)).sort(), ['a', 'b']);
      await b.kv.setRemove(key, 'a');
      await b.kv.setRemove(key, 'absent');
      t.same(await b.kv.setMembers(key), ['b']);
      await b.kv.setRemove(key, 'b');
      t.same(await b.kv.setMembers(key), []);
      t.equal(await b.kv.setAdd(key, 'c', 10_000), 1, 'an emptied set starts again');
      const race = k('set-race');
      const sizes = await Promise.all(Array.from({ length: 30 }, (_, i) => b.kv.setAdd(race, `m${i % 10}`, 10_000)));
      t.equal(Math.max(...sizes), 10, 'parallel adds: distinct members counted exactly');
    });

    t.test('sets: every add pushes the TTL', async (t) => {
      const key = k('set-ttl');
      // Wide margins: on a busy machine a call to Redis can take a few hundred milliseconds.
      await b.kv.setAdd(key, 'a', 2000);
      await b.pass(1200);
      await b.kv.setAdd(key, 'b', 2000);
      await b.pass(1200);
      t.same((await b.kv.setMembers(key)).sort(), ['a', 'b'], 'kept 2 s from the last add');
      await b.kv.setRemove(key, 'b');
      await b.pass(1200);
      t.same(await b.kv.setMembers(key), [], 'a removal does not push it');
      // An add with a shorter TTL (a configured time lowered since) keeps the longer: the index outlives what it lists.
      const kept = k('set-ttl-kept');
      await b.kv.setAdd(kept, 'a', 4000);
      await b.kv.setAdd(kept, 'b', 500);
      await b.pass(1500);
      t.same((await b.kv.setMembers(kept)).sort(), ['a', 'b'], 'a shorter TTL does not shorten it');
    });

    t.test('sets without a TTL: kept until deleted, and an add without one drops the TTL an earlier add gave', async (t) => {
      const key = k('set-kept');
      await b.kv.setAdd(key, 'a', 1000);
      t.equal(await b.kv.setAdd(key, 'b'), 2);
      await b.pass(1500);
      t.same((await b.kv.setMembers(key)).sort(), ['a', 'b'], 'kept past the TTL of the first add');
      await b.kv.setRemove(key, 'a');
      t.same(await b.kv.setMembers(key), ['b'], 'members still leave one by one');
      await b.kv.setRemove(key, 'b');
      t.same(await b.kv.setMembers(key), [], 'and an emptied set is gone');
    });

    t.test('ping', async (t) => {
      await t.resolves(b.kv.ping());
    });

    t.test('records: sealed at rest, typed access', async (t) => {
      const sealer = new Sealer([{ id: 'k', key: randomBytes(32) }]);
      const jars = new BrowserJars(b.kv, sealer, 60_000);
      const id = randomBytes(32).toString('base64url');
      await jars.put(id, [{ name: 'PORTALSESSID', value: 'portal-secret', path: '/' }]);
      const storedJar = await b.kv.get(keys.browserJar(id));
      t.type(storedJar, 'string', 'the jar is stored under its key');
      t.notMatch(storedJar, /portal-secret/, 'jar encrypted at rest');
      const { round: first } = await jars.get(id);
      t.same(await jars.take(id), [{ name: 'PORTALSESSID', value: 'portal-secret', path: '/' }]);
      t.same(await jars.get(id), { cookies: [] }, 'taken once');
      // An answer to a request that began with the jar a login then took does not bring the jar back, nor changes
      // the one a failed login put back; one that began without a jar starts one, and later answers apply to the jar
      // as it is then, keeping its round.
      const add = (name: string) => (jar: readonly { name: string; value: string; path: string }[]) => [...jar, { name, value: '1', path: '/' }];
      await jars.update(id, first, add('late'));
      t.equal(await b.kv.get(keys.browserJar(id)), null, 'a taken jar stays taken');
      await jars.put(id, []);
      const { round: putBack } = await jars.get(id);
      t.not(putBack, first, 'put back: a new round');
      await jars.update(id, first, add('late'));
      t.same((await jars.get(id)).cookies, [], 'not changed by an answer of the round before');
      await jars.take(id);
      await jars.update(id, undefined, add('a'));
      const { round } = await jars.get(id);
      await Promise.all([jars.update(id, undefined, add('b')), jars.update(id, round, add('c'))]);
      const merged = await jars.get(id);
      t.same(merged.cookies.map((c) => c.name).sort(), ['a', 'b', 'c'], 'compared and set: no answer undoes another');
      t.equal(merged.round, round, 'answers keep the round');
      // A jar written before jars had rounds (its cookies alone): read with a round, changed in it and taken, and then
      // an answer of that round does not bring it back.
      const earlier = randomBytes(32).toString('base64url');
      await b.kv.set(keys.browserJar(earlier), sealer.seal(JSON.stringify([{ name: 'OLD', value: '1', path: '/' }]), keys.browserJar(earlier)));
      const before = await jars.get(earlier);
      t.same([typeof before.round, before.cookies], ['string', [{ name: 'OLD', value: '1', path: '/' }]], 'a round, so that a login taking it is seen');
      await jars.update(earlier, before.round, add('new'));
      const upgraded = await jars.get(earlier);
      t.same([upgraded.round, upgraded.cookies.map((c) => c.name)], [before.round, ['OLD', 'new']]);
      t.same(await jars.take(earlier), upgraded.cookies);
      await jars.update(earlier, before.round, add('late'));
      t.equal(await b.kv.get(keys.browserJar(earlier)), null, 'taken, it stays taken');
      // Forty answers at once, each setting a cookie: none lost (each would otherwise lose rounds to the others).
      await Promise.all(Array.from({ length: 40 }, (_, i) => jars.update(id, round, add(`p${i}`))));
      t.equal((await jars.get(id)).cookies.length, 43, 'forty changes at once, all kept');

      const pending = new PendingLogins(b.kv, sealer);
      const now = b.now();
      const rec = { pid: 'p', username: 'alice', jar: [], continueTo: '/', csrf: 'c', stage: 'verify' as const, expiresAt: now + 300_000, ip: '192.0.2.1' };
      const pid = await pending.create(rec, now);
      t.same(await pending.get(pid, now), rec);
      t.equal(await pending.get(pid, now + 300_001), null, 'expired by its own time too');
      t.equal(await pending.countAttempt(pid, 10_000), 1);
      t.equal(await pending.countAttempt(pid, 10_000), 2);
      const taken = await Promise.all([pending.take(pid, now), pending.take(pid, now)]);
      t.equal(taken.filter(Boolean).length, 1, 'one finisher');

      const sessions = new Sessions(b.kv, sealer, 10_000);
      const s = { pid: 'p', username: 'alice', amr: ['pwd', 'otp'], authTime: now, factorTime: now, factor: 'totp' as const, lastSeen: now, jar: [], csrf: 'x' };
      const sid = (await sessions.create(s, 10_000))!;
      const sid2 = (await sessions.create(s, 10_000))!;
      t.not(sid, sid2, 'fresh ids');
      t.same(await sessions.get(sid), s);
      t.same((await sessions.listIds('p')).sort(), [sid, sid2].sort(), "the user's sessions are listed");
      const ttl = () => 10_000;
      await Promise.all([
        sessions.change(sid, (x) => ({ ...x, lastSeen: now + 1 }), ttl),
        sessions.change(sid, (x) => ({ ...x, jar: [...x.jar, { name: 'b', value: '2', path: '/' }] }), ttl),
      ]);
      const changed = (await sessions.get(sid))!;
      t.equal(changed.lastSeen, now + 1, 'changes at once: each applied to the record as it is');
      t.same(changed.jar.map((c) => c.name), [...s.jar.map((c) => c.name), 'b']);
      await sessions.delete(sid, 'p');
      t.same(await sessions.listIds('p'), [sid2], 'an ended session leaves the list');
      t.equal(await sessions.get(sid), null);
      t.equal(await sessions.change(sid, (x) => ({ ...x, lastSeen: now + 2 }), ttl), null, 'an ended session is not brought back by a late change');
      t.equal(await sessions.get(sid), null);
      // Sessions left to expire (browsers closed) leave the list at the user's next sign-in.
      const short = (await sessions.create(s, 300))!;
      t.same((await sessions.listIds('p')).sort(), [sid2, short].sort());
      await b.pass(400);
      const sid3 = (await sessions.create(s, 10_000))!;
      t.same((await sessions.listIds('p')).sort(), [sid2, sid3].sort(), 'an expired session leaves the list at the next sign-in');

      const factors = new FactorStore(b.kv, sealer);
      const totp = { kind: 'totp' as const, id: 'f1', name: 'phone', addedAt: now, secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' };
      await factors.update('p', () => ({ factors: [totp] }));
      const storedFactors = await b.kv.get(keys.factors('p'));
      t.type(storedFactors, 'string', 'the factors are stored under their key');
      t.notMatch(storedFactors, /JBSWY3DP/, 'TOTP secret encrypted at rest');
      t.same((await factors.get('p'))?.factors, [totp]);
      // Changes at once each apply to the factors as they are: none is lost, none undoes another.
      const used = (n: number) => (f: UserFactors | null) => ({ ...f!, factors: f!.factors.map((x) => ({ ...x, lastUsedAt: n })) });
      const added = { ...totp, id: 'f2', name: 'tablet' };
      await Promise.all([factors.update('p', used(now + 5)), factors.update('p', (f) => ({ ...f!, factors: [...f!.factors, added] })), factors.update('p', (f) => ({ ...f!, userHandle: 'h' }))]);
      const after = (await factors.get('p'))!;
      t.same(after.factors.map((f) => f.id).sort(), ['f1', 'f2'], 'the added factor is kept');
      t.equal(after.userHandle, 'h');
      t.ok(await factors.update('p', (f) => f), 'a change that writes nothing');
      const giveUp = () => {
        throw new Error('given up');
      };
      await t.rejects(factors.update('p', giveUp), /given up/, 'a change may give up');
      const fresh = k('fresh');
      const firstFactor = (i: number) => (f: UserFactors | null) => {
        if (f) throw new Error('taken');
        return { factors: [{ ...totp, id: `n${i}` }] };
      };
      const firsts = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => factors.update(fresh, firstFactor(i))));
      t.equal(firsts.filter((r) => r.status === 'fulfilled').length, 1, 'of parallel first factors, one is created');
      await b.kv.set(keys.factors('q'), storedFactors!);
      await t.rejects(factors.get('q'), { code: 'GW_ERR_STORE_UNAVAILABLE' }, "a record copied under another user's key does not open, and is not read as \"no factor\"");
      t.equal(await factors.get('nobody'), null, 'no record: no factor');
    });

    t.test('replay guard and failure counter', async (t) => {
      const replay = new ReplayGuard(b.kv);
      const pid = k('pid');
      const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => replay.claimStep(pid, 1000, `login:${i}`)));
      t.equal(claims.filter((c) => c === 'claimed').length, 1, 'a step is accepted once');
      t.equal(claims.filter((c) => c === 'taken').length, 19, 'and taken for every other ceremony');
      t.equal(await replay.claimStep(pid, 999, 'login:x'), 'taken', 'an older step is refused');
      t.equal(await replay.claimStep(pid, 1001, 'login:y'), 'claimed');
      // The same ceremony sending its code twice at once: one accepted, the other told it is its own.
      const twice = await Promise.all([0, 1].map(() => replay.claimStep(pid, 1002, 'login:z')));
      t.same(twice.sort(), ['claimed', 'repeat']);
      t.equal(await replay.claimStep(pid, 1002, 'session:w'), 'taken', 'another ceremony: taken');
      t.equal(await replay.claimStep(pid, 1002, 'login:z'), 'repeat', 'the first one again: its own');
      // Steps claimed together (a step-up and a sign-in, a moment apart): each keeps its own note.
      t.equal(await replay.claimStep(pid, 1003, 'session:v'), 'claimed');
      t.equal(await replay.claimStep(pid, 1002, 'login:z'), 'repeat', 'a later step taken since: still its own');
      // A step claimed with no note of its ceremony (a set-up): taken, for anyone.
      t.ok(await b.kv.raiseTo(keys.totpStep(pid), 1004, 60_000));
      t.equal(await replay.claimStep(pid, 1004, 'login:z'), 'taken');
      // A session's step-up, typing the code its sign-in took: `earlier`; a code anyone else took: taken.
      t.equal(await replay.claimStep(pid, 1005, 'login:p'), 'claimed');
      t.equal(await replay.claimStep(pid, 1005, 'session:s', 'login:p'), 'earlier');
      t.equal(await replay.claimStep(pid, 1005, 'session:s', 'login:q'), 'taken');
      t.equal(await replay.claimStep(pid, 1004, 'session:s'), 'taken', 'no note, none named: taken');
      // A set-up's step notes the set-up on the user's mark too, when it raised it.
      t.equal(await replay.claimSetupStep(pid, 'setup-a', 1006, 'login:e'), 'claimed');
      t.equal(await replay.claimStep(pid, 1006, 'session:t', 'login:e'), 'earlier', 'the code that set the app up, typed again in the session it began');
      t.equal(await replay.claimStep(pid, 1006, 'login:f'), 'taken');
      t.equal(await replay.claimStep(pid, 1006, 'login:e'), 'earlier', "the set-up's own ceremony: its own code, never its repeat (the set-up was no code of the user's apps)");
      // An app set up in a session, its code typed at a step-up of that session: the person's own, not its repeat.
      t.equal(await replay.claimSetupStep(pid, 'setup-b', 1007, 'session:u'), 'claimed');
      t.equal(await replay.claimStep(pid, 1007, 'session:u'), 'earlier');
      t.equal(await replay.claimStep(pid, 1007, 'session:x', 'login:y'), 'taken');
    });

    t.test('TTLs of 0 or a fraction of a millisecond: the same answers on every store, and the key still expires', async (t) => {
      const [a, c, s] = [k('ttl-a'), k('ttl-c'), k('ttl-s')];
      await b.kv.set(a, 'v', 0);
      t.equal(await b.kv.increment(c, 0.5), 1);
      t.equal(await b.kv.setAdd(s, 'm', 0), 1, 'the set holds its member');
      await b.pass(50);
      for (const key of [a, c]) t.equal(await b.kv.get(key), null, `${key} expired`);
      t.same(await b.kv.setMembers(s), [], 'the set expired');
    });

    t.test('replaceIf: compare-and-set that keeps the TTL and never recreates', async (t) => {
      const key = k('cas');
      t.notOk(await b.kv.replaceIf(key, 'v1', 'v2'), 'absent: nothing replaced');
      t.equal(await b.kv.get(key), null, 'absent: not created');
      await b.kv.set(key, 'v1', 2000);
      t.notOk(await b.kv.replaceIf(key, 'other', 'v2'), 'another value: kept');
      t.equal(await b.kv.get(key), 'v1');
      const wins = await Promise.all(Array.from({ length: 20 }, (_, i) => b.kv.replaceIf(key, 'v1', `v2-${i}`)));
      t.equal(wins.filter(Boolean).length, 1, 'one winner among parallel callers');
      t.match(await b.kv.get(key), /^v2-\d+$/);
      await b.pass(2500);
      t.equal(await b.kv.get(key), null, 'the TTL set before the replacement still ends it');
    });

    t.test('scanKeys: every key under a prefix, across hash slots, nothing else', async (t) => {
      const p = k('scan');
      const wanted = Array.from({ length: 120 }, (_, i) => `${p}:user:{u${i}}:factors`);
      // Glob characters in a prefix are matched literally.
      const glob = `${p}:[x]*?`;
      for (const key of [...wanted, `${glob}:one`, `${p}:[y]*?:other`, `other-${p}:x`]) await b.kv.set(key, 'x', 60_000);
      const seen: string[] = [];
      for await (const batch of b.kv.scanKeys(`${p}:user:`)) seen.push(...batch);
      t.same(seen.sort(), [...wanted].sort());
      const globbed: string[] = [];
      for await (const batch of b.kv.scanKeys(glob)) globbed.push(...batch);
      t.same(globbed, [`${glob}:one`]);
      const none: string[] = [];
      for await (const batch of b.kv.scanKeys(`${p}:nothing:`)) none.push(...batch);
      t.same(none, []);
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

t.test('memory store: beyond maxEntries a new key is refused (fail closed); keys held still change', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock, 3);
  let refused = 0;
  kv.onRefused(() => refused++);
  await kv.set('a', '1', 60_000);
  await kv.increment('b', 60_000);
  await kv.setAdd('c', 'm', 60_000);
  t.equal(refused, 0, 'writes with room are not refusals');
  const full = { code: 'GW_ERR_STORE_UNAVAILABLE', message: /memory store full/ };
  await t.rejects(kv.set('d', '1', 60_000), full, 'set');
  await t.rejects(kv.setIfAbsent('d', '1', 60_000), full, 'setIfAbsent');
  await t.rejects(kv.increment('d', 60_000), full, 'increment');
  await t.rejects(kv.incrementCapped('d', 5, 60_000), full, 'incrementCapped');
  await t.rejects(kv.gcra('d', 1000, 5, clock.now()), full, 'gcra');
  await t.rejects(kv.setAdd('d', 'm', 60_000), full, 'setAdd');
  await t.rejects(kv.raiseTo('d', 5, 60_000), full, 'raiseTo');
  t.equal(kv.size, 3);
  t.equal(refused, 7, 'each refusal is reported (the gateway counts them as store errors)');
  t.equal(await kv.get('d'), null, 'nothing of a refused write is kept');
  // What is held goes on working: a signed-in session is changed, counted, compared and set.
  await kv.set('a', '2', 60_000);
  t.equal(await kv.increment('b', 60_000), 2);
  t.equal(await kv.setAdd('c', 'n', 60_000), 2);
  t.equal(await kv.replaceIf('a', '2', '3', 60_000), true);
  t.equal(await kv.get('a'), '3');
  t.equal(refused, 7, 'changes to held keys are not refusals');
  // A key deleted or taken makes room.
  await kv.delete('b');
  await kv.set('d', '1', 60_000);
  t.equal(await kv.get('d'), '1');
});

t.test('memory store: a claim with a note that a full store refuses keeps neither, as in Redis', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock, 3);
  await kv.set('a', '1', 60_000);
  await kv.set('held-note', 'before', 60_000);
  // One entry free: the note would take it, and the claim then find none.
  await t.rejects(kv.raiseTo('claim', 5, 60_000, { key: 'note', value: 'login:1' }), { code: 'GW_ERR_STORE_UNAVAILABLE' });
  t.equal(await kv.get('note'), null, 'no note left without its claim');
  t.equal(kv.size, 2, 'the free entry is still free');
  await kv.set('b', '1', 60_000);
  await t.rejects(kv.raiseTo('claim', 5, 60_000, { key: 'held-note', value: 'login:2' }), { code: 'GW_ERR_STORE_UNAVAILABLE' });
  t.equal(await kv.get('held-note'), 'before', 'a note already held is left as it was');
  t.equal(await kv.get('claim'), null);
});

t.test('memory store: a counter reaching its cap as it expires is locked or new, never dropped with an error', async (t) => {
  // The system clock moves on while a call runs; this one moves a millisecond at every look.
  const clock = { t: 1_800_000_000_000, ticking: false, now: () => (clock.ticking ? clock.t++ : clock.t) };
  for (let early = 0; early < 20; early++) {
    const kv = new MemoryKvStore(clock);
    clock.ticking = false;
    await kv.incrementCapped('count', 2, 100);
    clock.t += 100 - early;
    clock.ticking = true;
    const r = await kv.incrementCapped('count', 2, 100);
    clock.ticking = false;
    if (r.capped) t.equal(await kv.get('count'), '2', `${early} ms before its expiry: the lock is kept`);
    else t.same(r, { value: 1, capped: false, reached: false }, `${early} ms before its expiry: a new count`);
  }
});

t.test('memory store: a full store makes room from expired entries before it refuses', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock, 100);
  for (let i = 0; i < 100; i++) await kv.set(`old:${i}`, 'x', 1000);
  clock.advance(2000);
  // Nobody read the expired entries; a new key finds them expired and takes their place.
  for (let i = 0; i < 100; i++) await kv.set(`new:${i}`, 'x', 60_000);
  t.equal(kv.size, 100);
  t.equal(await kv.get('new:99'), 'x');
});

t.test('memory store: a full store has room again within a second of a flood expiring, wherever its keys sit', async (t) => {
  // 45,000 signed-in people and a flood of 5,000 jars that filled the store; the flood goes on, refused, for a while
  // (moving along whatever the store looks at), then its jars expire and people sign in again.
  for (const refusedFor of [0, 700, 1100, 2300, 3500]) {
    const clock = new FakeClock();
    const kv = new MemoryKvStore(clock, 50_000);
    for (let i = 0; i < 5_000; i++) await kv.set(`jar:${i}`, 'x', 60_500);
    for (let i = 0; i < 45_000; i++) await kv.set(`session:${i}`, 'x', 8 * 3_600_000);
    for (let ms = 0; ms < refusedFor; ms += 100, clock.advance(100)) await kv.set(`flood:${ms}`, 'x', 60_000).catch(() => {});
    clock.advance(60_500 - refusedFor);
    const expired = clock.now();
    let waited = -1;
    for (let i = 0; waited < 0 && clock.now() - expired <= 60_000; i++) {
      if (await kv.set(`sign-in:${i}`, 'x', 300_000).then(() => true, () => false)) waited = clock.now() - expired;
      else clock.advance(10);
    }
    t.ok(waited >= 0 && waited <= 1000, `flood refused for ${refusedFor} ms: sign-ins resumed ${waited} ms after its jars expired`);
  }
});

t.test('memory store: a clock that jumps forward (a machine that set its time late) does not make a write step through every second between', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock, 10);
  for (const key of ['a', 'b', 'c']) await kv.set(key, '1', 1000);
  await kv.set('kept', '1', 400 * 86_400_000);
  const expiring = (kv as unknown as { expiring: Map<number, unknown> }).expiring;
  let steps = 0;
  const get = expiring.get.bind(expiring);
  expiring.get = (second: number) => (steps++, get(second));
  clock.advance(365 * 86_400_000);
  await kv.set('d', '1', 60_000);
  t.ok(steps < 20, `a year later, the write stepped over ${steps} second(s)`);
  const map = (kv as unknown as { map: Map<string, unknown> }).map;
  t.same([...map.keys()].sort(), ['d', 'kept'], 'what expired is reclaimed by the write, the rest kept');
});

t.test('memory store: a full store with nothing expired refuses new keys without looking through what it holds', async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock, 3);
  for (const key of ['a', 'b', 'c']) await kv.set(key, '1', 1000);
  // Looks at held entries, counted (a flood that filled the store would otherwise pay for a sweep on each write).
  const map = (kv as unknown as { map: Map<string, unknown> }).map;
  let looks = 0;
  const get = map.get.bind(map);
  map.get = (key: string) => (looks++, get(key));
  for (let i = 0; i < 100; i++) await t.rejects(kv.set(`e${i}`, '1', 60_000), { code: 'GW_ERR_STORE_UNAVAILABLE' });
  t.equal(looks, 0, 'the refusals looked at no entry');
  clock.advance(1000);
  await kv.set('d', '1', 60_000);
  t.equal(await kv.get('d'), '1', 'once they expired, the entries make room');
});

t.test('memory store: the gateway takes its cap from store.memory.maxEntries', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.store = { type: 'memory', memory: { maxEntries: 1000 } };
  const kv = createKvStore(resolveConfig(raw), new FakeClock());
  for (let i = 0; i < 1000; i++) await kv.set(`k:${i}`, 'x', 60_000);
  await t.rejects(kv.set('one-more', 'x', 60_000), { code: 'GW_ERR_STORE_UNAVAILABLE' });
  const unset = rawTestConfig('http://127.0.0.1:1');
  t.equal(resolveConfig(unset).store.memory.maxEntries, 1_000_000, 'a million by default');
  raw.store = { type: 'memory', memory: { maxEntries: 10 } };
  t.throws(() => resolveConfig(raw), /maxEntries/, 'a cap below a thousand is refused');
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
