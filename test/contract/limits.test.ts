// The limiter classes on the memory store and on a real Redis, with a clock the tests move.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import type { KvStore } from '../../src/stores/kv-store.js';
import { DistinctCounter, FailureCounter, RateLimiter } from '../../src/stores/limits.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { FakeClock } from '../helpers/clock.js';
import { startOwnRedis, testRedis } from '../helpers/redis.js';

const DAY = 24 * 60 * 60_000;

/**
 * `make` gives the store and `other`, the store of a second gateway instance on the same data (its own Redis
 * connection; the memory store serves one process, so it is the same one). `memory`: TTLs follow the fake clock
 * too, so expiry can be asserted (Redis keeps TTLs on real time).
 */
function suite(name: string, make: (t: Test, clock: FakeClock) => Promise<{ kv: KvStore; other: KvStore }>, memory: boolean) {
  t.test(name, async (t) => {
    const clock = new FakeClock();
    const { kv, other } = await make(t, clock);
    t.teardown(() => kv.close());
    t.teardown(() => other.close());
    const id = () => randomBytes(6).toString('hex');

    t.test('RateLimiter: the burst at once, then one per interval', async (t) => {
      const rate = new RateLimiter(kv, clock);
      const key = `addr:{${id()}}:login-rate`;
      const first = await Promise.all(Array.from({ length: 10 }, () => rate.take(key, { perMinute: 60, burst: 3 })));
      t.equal(first.filter((r) => r.allowed).length, 3, 'exactly the burst, also in parallel');
      t.same(await rate.take(key, { perMinute: 60, burst: 3 }), { allowed: false, retryAfterMs: 1000 });
      clock.advance(999);
      t.same(await rate.take(key, { perMinute: 60, burst: 3 }), { allowed: false, retryAfterMs: 1 });
      clock.advance(1);
      t.same(await rate.take(key, { perMinute: 60, burst: 3 }), { allowed: true, retryAfterMs: 0 });
      t.equal((await rate.take(`addr:{${id()}}:login-rate`, { perMinute: 60, burst: 3 })).allowed, true, 'another key has its own bucket');
      clock.advance(60_000);
      const again = await Promise.all(Array.from({ length: 10 }, () => rate.take(key, { perMinute: 60, burst: 3 })));
      t.equal(again.filter((r) => r.allowed).length, 3, 'idle for long enough: a full burst again');
    });

    t.test('FailureCounter: free attempts, then a delay from the last failure, doubling', async (t) => {
      const failures = new FailureCounter(kv, clock, { cap: 10 });
      const key = `user:{${id()}}:failures:totp`;
      t.same(await failures.check(key), { allowed: true });
      for (let n = 1; n <= 5; n++) t.same(await failures.fail(key), { failures: n, locked: false, retryAfterMs: 0 }, `free failure ${n}`);
      t.same(await failures.check(key), { allowed: true });
      t.same(await failures.fail(key), { failures: 6, locked: false, retryAfterMs: 1000 });
      t.same(await failures.check(key), { allowed: false, retryAfterMs: 1000, locked: false });
      clock.advance(999);
      t.same(await failures.check(key), { allowed: false, retryAfterMs: 1, locked: false });
      clock.advance(1);
      t.same(await failures.check(key), { allowed: true });
      clock.advance(5000);
      t.same(await failures.fail(key), { failures: 7, locked: false, retryAfterMs: 2000 }, 'doubled');
      clock.advance(500);
      t.same(await failures.check(key), { allowed: false, retryAfterMs: 1500, locked: false }, 'counted from the last failure, not the first');
    });

    t.test('FailureCounter: locked at the cap until cleared; clear and succeed reset only their key', async (t) => {
      const failures = new FailureCounter(kv, clock, { cap: 10 });
      const totp = `user:{${id()}}:failures:totp`;
      const password = `user:{${id()}}:failures:password`;
      for (let n = 1; n < 10; n++) await failures.fail(totp);
      for (let n = 1; n <= 3; n++) await failures.fail(password);
      t.same(await failures.fail(totp), { failures: 10, locked: true, retryAfterMs: 900_000 }, 'the tenth locks');
      t.same(await failures.fail(totp), { failures: 10, locked: true, retryAfterMs: 900_000 }, 'no count past the cap');
      clock.advance(60 * DAY);
      t.same(await failures.check(totp), { allowed: false, retryAfterMs: 900_000, locked: true }, 'still locked long after');
      await failures.succeed(password);
      t.equal((await failures.fail(password)).failures, 1, 'succeed resets its key');
      t.same(await failures.check(totp), { allowed: false, retryAfterMs: 900_000, locked: true }, '... and only its key');
      await failures.clear(totp);
      t.same(await failures.check(totp), { allowed: true }, 'cleared by an operator');
      t.equal((await failures.fail(totp)).failures, 1);
    });

    t.test('FailureCounter: exact under parallel failures', async (t) => {
      const failures = new FailureCounter(kv, clock);
      const many = `user:{${id()}}:failures:totp`;
      const results = await Promise.all(Array.from({ length: 60 }, () => failures.fail(many)));
      t.same(results.map((r) => r.failures).sort((a, b) => a - b), Array.from({ length: 60 }, (_, i) => i + 1), '60 parallel failures: 1..60');
      const key = `user:{${id()}}:failures:totp`;
      for (let n = 1; n < 100; n++) await failures.fail(key);
      const last = await Promise.all(Array.from({ length: 50 }, () => failures.fail(key)));
      t.ok(last.every((r) => r.failures === 100 && r.locked), '50 parallel at 99: exactly 100, locked');
      t.same(await failures.check(key), { allowed: false, retryAfterMs: 900_000, locked: true });
    });

    t.test('FailureCounter without a window: exact across instances, and nothing counted comes back after a clear', async (t) => {
      // Two gateway instances count the same user's failures (R6): each count is one atomic step, so none is lost
      // to another instance's write.
      const mine = new FailureCounter(kv, clock, { windowMs: null });
      const theirs = new FailureCounter(other, clock, { windowMs: null });
      for (let round = 0; round < 10; round++) {
        const key = `user:{${id()}}:failures:webauthn`;
        await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? mine : theirs).fail(key)));
        t.equal(await kv.get(key), '60', `round ${round}: 60 parallel failures, 60 counted`);
      }

      // The other instance clears the key (an operator, or a success) as soon as the first write to it returns,
      // before fail() or attempt() does: the clear must stand.
      const clearedAfterFirstWrite = (key: string): KvStore => {
        let cleared = false;
        return new Proxy(kv, {
          get(target, prop) {
            const value: unknown = Reflect.get(target, prop, target);
            if (typeof value !== 'function') return value;
            return async (...args: unknown[]) => {
              const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
              if (prop !== 'get' && args[0] === key && !cleared) {
                cleared = true;
                await theirs.clear(key);
              }
              return result;
            };
          },
        });
      };
      const policy = { cap: 5, freeAttempts: 10, windowMs: null };
      const counter = new FailureCounter(kv, clock, policy);
      const failed = `user:{${id()}}:failures:totp`;
      for (let n = 1; n <= 4; n++) await counter.fail(failed);
      t.match(await new FailureCounter(clearedAfterFirstWrite(failed), clock, policy).fail(failed), { failures: 5, locked: true });
      t.same(await counter.check(failed), { allowed: true }, 'fail(): the clear stands');
      t.equal((await counter.fail(failed)).failures, 1, 'counting starts again from zero');
      const attempted = `user:{${id()}}:failures:totp`;
      for (let n = 1; n <= 4; n++) await counter.attempt(attempted);
      t.match(await new FailureCounter(clearedAfterFirstWrite(attempted), clock, policy).attempt(attempted), { allowed: true, failure: { failures: 5, locked: true } });
      t.same(await counter.check(attempted), { allowed: true }, 'attempt(): the clear stands');
    });

    t.test('FailureCounter.attempt: parallel guesses never outrun the delays or the cap', async (t) => {
      const failures = new FailureCounter(kv, clock);
      const key = `user:{${id()}}:failures:totp`;
      for (let n = 1; n < 100; n++) await failures.fail(key);
      clock.advance(DAY);
      const attempts = await Promise.all(Array.from({ length: 50 }, () => failures.attempt(key)));
      const allowed = attempts.filter((a) => a.allowed);
      t.equal(allowed.length, 1, 'at 99 of 100, after the delay: one guess of 50 parallel ones runs (C-40)...');
      t.same(allowed[0], { allowed: true, failure: { failures: 100, locked: true, retryAfterMs: 900_000 } }, '... and it already stands as the failure that locks');
      t.equal(await kv.get(key), '100');

      // At one instant, in waves of 50 parallel guesses: the same guesses run as one after the other would, the free
      // attempts and the one the delay allows after them, and then none until the wait is over.
      const fresh = `user:{${id()}}:failures:totp`;
      let ran = 0;
      for (let wave = 0; wave < 20; wave++) {
        const results = await Promise.all(Array.from({ length: 50 }, () => failures.attempt(fresh)));
        ran += results.filter((a) => a.allowed).length;
        const refused = results.filter((a) => !a.allowed);
        t.ok(refused.every((a) => !a.allowed && a.retryAfterMs >= 1000 && !a.locked), 'refused ones wait');
      }
      t.equal(ran, 6, '20 waves of 50 parallel guesses: 6 run (5 free, then 1 before the first delay)');
      t.equal(await kv.get(fresh), '6');
      clock.advance(1000);
      const after = await Promise.all(Array.from({ length: 50 }, () => failures.attempt(fresh)));
      t.equal(after.filter((a) => a.allowed).length, 1, 'after the wait: one more');
      const capped = `user:{${id()}}:failures:totp`;
      const five = new FailureCounter(kv, clock, { cap: 5, freeAttempts: 10 });
      let runs = 0;
      for (let wave = 0; wave < 10; wave++) runs += (await Promise.all(Array.from({ length: 50 }, () => five.attempt(capped)))).filter((a) => a.allowed).length;
      t.equal(runs, 5, 'cap 5: 5 run in all');
      t.same(await five.check(capped), { allowed: false, retryAfterMs: 900_000, locked: true });
      const unjudged = `user:{${id()}}:failures:password`;
      const one = await failures.attempt(unjudged);
      const two = await failures.attempt(unjudged);
      t.ok(one.allowed && two.allowed);
      if (two.allowed) await failures.release(unjudged, two.failure);
      t.equal(await kv.get(unjudged), '1', 'an attempt never judged is taken back');
      if (one.allowed) await failures.release(unjudged, one.failure);
      await failures.attempt(unjudged);
      if (two.allowed) await failures.release(unjudged, two.failure);
      t.equal(await kv.get(unjudged), '1', '... but not once another was counted since');
      const right = `user:{${id()}}:failures:totp`;
      const a = await failures.attempt(right);
      t.ok(a.allowed);
      await failures.succeed(right);
      t.same(await failures.fail(right), { failures: 1, locked: false, retryAfterMs: 0 }, 'a right guess does not stay counted');
    });

    t.test('FailureCounter.turn: within the free failures every attempt goes; after a wait, one at a time', async (t) => {
      const failures = new FailureCounter(kv, clock, { freeAttempts: 2, baseMs: 1000, maxMs: 60_000, cap: 100 });
      const shared = new FailureCounter(other, clock, { freeAttempts: 2, baseMs: 1000, maxMs: 60_000, cap: 100 });
      const key = `addr:{${id()}}:failures:password`;
      const free = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? shared : failures).turn(key, 60_000)));
      t.ok(free.every((c) => c.allowed && c.turn === undefined), 'no wait yet: all at once, no turn taken');
      for (let n = 0; n < 3; n++) await failures.fail(key);
      t.same(await failures.turn(key, 60_000), { allowed: false, retryAfterMs: 1000, locked: false }, 'waiting');
      clock.advance(1000);
      const ended = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? shared : failures).turn(key, 60_000)));
      const going = ended.filter((c) => c.allowed);
      t.equal(going.length, 1, 'the wait ended: one attempt of ten, across instances');
      t.match(going[0], { turn: `${key}:turn:` });
      t.ok(ended.filter((c) => !c.allowed).every((c) => !c.allowed && c.retryAfterMs === 1000), 'the others: try again shortly');
      await failures.endTurn(going[0]!.turn!);
      const next = await shared.turn(key, 60_000);
      t.equal(next.allowed, true, 'given back without a failure (a success): the next goes');
      await shared.endTurn(next.turn!);
      // Another attempt fails (and gives its turn back) between this one's reading the count and taking the turn.
      const failsMeanwhile = new Proxy(kv, {
        get(target, prop) {
          const value: unknown = Reflect.get(target, prop, target);
          if (typeof value !== 'function') return value;
          return async (...args: unknown[]) => {
            if (prop === 'setIfAbsent') await shared.fail(key);
            return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
        },
      });
      const late = new FailureCounter(failsMeanwhile, clock, { freeAttempts: 2, baseMs: 1000, maxMs: 60_000, cap: 100 });
      t.same(await late.turn(key, 60_000), { allowed: false, retryAfterMs: 1000, locked: false }, 'a failure counted meanwhile: no turn on the wait before it');
      t.equal((await failures.turn(key, 60_000)).allowed, false, 'that failure started a new wait');
    });

    t.test('DistinctCounter', async (t) => {
      const distinct = new DistinctCounter(kv);
      const addr = `addr:{${id()}}:usernames`;
      t.equal(await distinct.add(addr, 'pid-a', 60_000), 1);
      t.equal(await distinct.add(addr, 'pid-b', 60_000), 2);
      t.equal(await distinct.add(addr, 'pid-a', 60_000), 2, 'a repeated member counts once');
      const other = `addr:{${id()}}:usernames`;
      const sizes = await Promise.all(Array.from({ length: 40 }, (_, i) => distinct.add(other, `pid-${i % 20}`, 60_000)));
      t.equal(Math.max(...sizes), 20, 'exact in parallel');
    });

    if (memory) {
      t.test('TTLs (memory store, on the fake clock)', async (t) => {
        const failures = new FailureCounter(kv, clock, { cap: 10, windowMs: DAY });
        const soft = `user:{${id()}}:failures:password`;
        for (let n = 1; n <= 7; n++) await failures.fail(soft);
        clock.advance(DAY);
        t.same(await failures.check(soft), { allowed: true }, 'failures are forgotten a window after the first one');
        t.equal((await failures.fail(soft)).failures, 1);

        // Without a window (a user's second factor), a pause resets nothing: 99 guesses, a long wait, and the next one
        // is the hundredth.
        const kept = new FailureCounter(kv, clock, { cap: 5, freeAttempts: 10, windowMs: null });
        const factor = `user:{${id()}}:failures:totp`;
        for (let n = 1; n <= 4; n++) t.equal((await kept.attempt(factor)).allowed, true);
        clock.advance(400 * DAY);
        t.match(await kept.attempt(factor), { allowed: true, failure: { failures: 5, locked: true } }, 'counted on, to the cap');
        t.match(await kept.check(factor), { allowed: false, locked: true });
        await kept.succeed(factor);
        t.same(await kept.check(factor), { allowed: true }, 'a success clears it');
        // Past the free attempts, then back after the time of the last failure has expired: the wait is long over.
        const waited = new FailureCounter(kv, clock, { cap: 100, freeAttempts: 2, windowMs: null });
        const other = `user:{${id()}}:failures:totp`;
        for (let n = 1; n <= 3; n++) await waited.attempt(other);
        t.equal((await waited.check(other)).allowed, false, 'a wait after the free attempts');
        clock.advance(31 * DAY);
        t.match(await waited.attempt(other), { allowed: true, failure: { failures: 4 } }, 'allowed a month later, the count kept');

        const distinct = new DistinctCounter(kv);
        const addr = `addr:{${id()}}:usernames`;
        await distinct.add(addr, 'a', 60_000);
        clock.advance(59_000);
        t.equal(await distinct.add(addr, 'b', 60_000), 2, 'kept while adds keep coming');
        clock.advance(59_000);
        t.equal(await distinct.add(addr, 'c', 60_000), 3);
        clock.advance(60_000);
        t.equal(await distinct.add(addr, 'a', 60_000), 1, 'gone after a quiet window');

        const rate = new RateLimiter(kv, clock);
        const key = `addr:{${id()}}:login-rate`;
        await rate.take(key, { perMinute: 60, burst: 3 });
        t.not(await kv.get(key), null);
        clock.advance(1000);
        t.equal(await kv.get(key), null, 'a rate key is gone once its TAT is past');
      });
    }
  });
}

suite(
  'memory store',
  async (_t, clock) => {
    const kv = new MemoryKvStore(clock);
    return { kv, other: kv };
  },
  true,
);

suite(
  'redis store',
  async (t) => {
    const redis = await testRedis();
    t.teardown(() => redis.stop());
    const keyPrefix = `limits-${randomBytes(4).toString('hex')}:`;
    const [kv, other] = [0, 1].map(() => new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 }));
    await Promise.all([kv!.ready(), other!.ready()]);
    return { kv: kv!, other: other! };
  },
  false,
);

t.test('redis down: every limiter fails closed, none is skipped (C-38)', async (t) => {
  const redis = await startOwnRedis();
  let stopped = false;
  // The helper's stop() must run once: a second call waits for an exit that already happened.
  t.teardown(() => (stopped ? undefined : redis.stop()));
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: 'limits-down:', commandTimeoutMs: 300 });
  t.teardown(() => kv.close());
  await kv.ready();
  await redis.stop();
  stopped = true;
  const clock = new FakeClock();
  const failures = new FailureCounter(kv, clock);
  const down = { code: 'GW_ERR_STORE_UNAVAILABLE' };
  await t.rejects(new RateLimiter(kv, clock).take('addr:{x}:login-rate', { perMinute: 60, burst: 3 }), down);
  await t.rejects(failures.check('user:{x}:failures:totp'), down);
  await t.rejects(failures.attempt('user:{x}:failures:totp'), down);
  await t.rejects(failures.turn('addr:{x}:failures:password', 60_000), down);
  await t.rejects(failures.fail('user:{x}:failures:totp'), down);
  await t.rejects(new DistinctCounter(kv).add('addr:{x}:usernames', 'p', 60_000), down);
});
