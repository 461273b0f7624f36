// Lockout and rate-limit arithmetic, table by table.
import t from 'tap';
import { DEFAULT_DELAY, delayAfterFailures, emissionIntervalMs, failureCheck, gcraStep, retryAfterSeconds } from '../../../src/domain/limits.js';

t.test('progressive delay: free attempts, then doubling to the ceiling', async (t) => {
  const table: [failures: number, ms: number][] = [
    [0, 0],
    [1, 0],
    [5, 0],
    [6, 1000],
    [7, 2000],
    [8, 4000],
    [15, 512_000],
    [16, 900_000],
    [17, 900_000],
    [100, 900_000],
    [10_000, 900_000],
  ];
  for (const [failures, ms] of table) t.equal(delayAfterFailures(failures), ms, `${failures} failures`);
  t.same(DEFAULT_DELAY, { freeAttempts: 5, baseMs: 1000, maxMs: 900_000 }, 'the documented defaults');
  const r6 = { freeAttempts: 3, baseMs: 30_000, maxMs: 3_600_000 };
  const custom: [number, number][] = [
    [3, 0],
    [4, 30_000],
    [5, 60_000],
    [10, 1_920_000],
    [11, 3_600_000],
  ];
  for (const [failures, ms] of custom) t.equal(delayAfterFailures(failures, r6), ms, `${failures} failures, 30 s to 1 h`);
});

t.test('Retry-After seconds: rounded up, never negative', async (t) => {
  const table: [number, number][] = [
    [0, 0],
    [-5, 0],
    [1, 1],
    [999, 1],
    [1000, 1],
    [1001, 2],
    [900_000, 900],
  ];
  for (const [ms, s] of table) t.equal(retryAfterSeconds(ms), s, `${ms} ms`);
});

t.test('emission interval from a rate per minute', async (t) => {
  const table: [number, number][] = [
    [60, 1000],
    [1, 60_000],
    [7, 8572],
    [0.5, 120_000],
    [1_000_000, 1],
  ];
  for (const [perMinute, ms] of table) t.equal(emissionIntervalMs(perMinute), ms, `${perMinute}/min`);
  for (const bad of [0, -1, NaN, Infinity]) t.throws(() => emissionIntervalMs(bad), TypeError, `${bad}/min`);
});

t.test('GCRA steps', async (t) => {
  const now = 1_000_000;
  // [stored TAT, now, interval, burst] → expected step
  const table: [number | null, number, number, number, ReturnType<typeof gcraStep>, string][] = [
    [null, now, 1000, 3, { allowed: true, retryAfterMs: 0, remaining: 2, tat: now + 1000 }, 'fresh: admitted, burst - 1 left'],
    [now + 1000, now, 1000, 3, { allowed: true, retryAfterMs: 0, remaining: 1, tat: now + 2000 }, 'second at the same instant'],
    [now + 2000, now, 1000, 3, { allowed: true, retryAfterMs: 0, remaining: 0, tat: now + 3000 }, 'third: the burst is used up'],
    [now + 3000, now, 1000, 3, { allowed: false, retryAfterMs: 1000, remaining: 0, tat: now + 3000 }, 'fourth: refused, TAT unchanged'],
    [now + 3000, now + 999, 1000, 3, { allowed: false, retryAfterMs: 1, remaining: 0, tat: now + 3000 }, '1 ms early'],
    [now + 3000, now + 1000, 1000, 3, { allowed: true, retryAfterMs: 0, remaining: 0, tat: now + 4000 }, 'one interval later: one more'],
    [now - 50_000, now, 1000, 3, { allowed: true, retryAfterMs: 0, remaining: 2, tat: now + 1000 }, 'a TAT in the past counts as now'],
    [null, now, 1000, 1, { allowed: true, retryAfterMs: 0, remaining: 0, tat: now + 1000 }, 'burst 1'],
    [now + 1000, now + 400, 1000, 1, { allowed: false, retryAfterMs: 600, remaining: 0, tat: now + 1000 }, 'burst 1: strictly paced'],
  ];
  for (const [tat, at, interval, burst, want, name] of table) t.same(gcraStep(tat, at, interval, burst), want, name);
  t.throws(() => gcraStep(null, now, 0, 3), TypeError, 'interval 0');
  t.throws(() => gcraStep(null, now, 1000, 0), TypeError, 'burst 0');
  t.throws(() => gcraStep(null, now, 1.5, 3), TypeError, 'fractional interval');
  t.throws(() => gcraStep(null, now + 0.5, 1000, 3), TypeError, 'fractional time');
});

t.test('GCRA over time: exactly `burst` at once, then one per interval', async (t) => {
  let tat: number | null = null;
  const admitted = (at: number) => {
    const s = gcraStep(tat, at, 1000, 5);
    tat = s.tat;
    return s.allowed;
  };
  t.equal(Array.from({ length: 20 }, () => admitted(0)).filter(Boolean).length, 5, 'a burst at one instant');
  let later = 0;
  for (let at = 1; at <= 10_000; at++) if (admitted(at)) later++;
  t.equal(later, 10, 'then one per second over 10 s');
});

t.test('failure decisions', async (t) => {
  const policy = { ...DEFAULT_DELAY, cap: 10 };
  const now = 5_000_000;
  // [failures, last failure, now] → decision
  const table: [number, number | null, number, ReturnType<typeof failureCheck>, string][] = [
    [0, null, now, { allowed: true }, 'no failures'],
    [5, now, now, { allowed: true }, 'free attempts: no wait'],
    [6, now, now, { allowed: false, retryAfterMs: 1000, locked: false }, 'first delay'],
    [6, now - 400, now, { allowed: false, retryAfterMs: 600, locked: false }, 'counted from the last failure'],
    [6, now - 1000, now, { allowed: true }, 'delay over'],
    [8, now - 1000, now, { allowed: false, retryAfterMs: 3000, locked: false }, 'doubling'],
    [9, null, now, { allowed: false, retryAfterMs: 8000, locked: false }, 'no recorded time: counted from now (stricter)'],
    [10, now - 86_400_000, now, { allowed: false, retryAfterMs: 900_000, locked: true }, 'at the cap: locked whatever the wait'],
    [11, null, now, { allowed: false, retryAfterMs: 900_000, locked: true }, 'past the cap'],
  ];
  for (const [failures, last, at, want, name] of table) t.same(failureCheck(failures, last, at, policy), want, name);
});
