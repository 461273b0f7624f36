// Rate-limit and lockout arithmetic: GCRA steps, progressive delays, failure decisions. Pure: the stores hold the state.

/** Caller misuse (a limit that is not a positive whole number) is a TypeError, never a silent "no limit". */
export function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer, got ${value}`);
}

export interface GcraStep {
  allowed: boolean;
  /** 0 when allowed; otherwise how long until one more request would be admitted. */
  retryAfterMs: number;
  /** Requests still admitted at this instant after this one. */
  remaining: number;
  /** The theoretical arrival time to store (unchanged when refused); the key can expire once it is in the past. */
  tat: number;
}

/**
 * One step of the Generic Cell Rate Algorithm: a request is admitted when the stored theoretical arrival time
 * (TAT) is at most `burst` intervals ahead of now. `burst` requests pass at one instant, then one per interval.
 * Whole milliseconds throughout, so the Lua copy in redis-kv-store.ts gives exactly the same answers.
 */
export function gcraStep(storedTat: number | null, nowMs: number, emissionIntervalMs: number, burst: number): GcraStep {
  assertGcraArgs(emissionIntervalMs, burst, nowMs);
  const tat = Math.max(storedTat ?? nowMs, nowMs) + emissionIntervalMs;
  const allowAt = tat - burst * emissionIntervalMs;
  if (nowMs < allowAt) return { allowed: false, retryAfterMs: allowAt - nowMs, remaining: 0, tat: storedTat ?? nowMs };
  return { allowed: true, retryAfterMs: 0, remaining: Math.floor((nowMs - allowAt) / emissionIntervalMs), tat };
}

/** The arguments every GCRA backend accepts. */
export function assertGcraArgs(emissionIntervalMs: number, burst: number, nowMs: number): void {
  assertPositiveInteger('emissionIntervalMs', emissionIntervalMs);
  assertPositiveInteger('burst', burst);
  if (!Number.isSafeInteger(nowMs)) throw new TypeError(`nowMs must be whole milliseconds, got ${nowMs}`);
}

/** The GCRA interval for a rate per minute, rounded up to whole milliseconds (never faster than asked). */
export function emissionIntervalMs(perMinute: number): number {
  if (!(perMinute > 0) || !Number.isFinite(perMinute)) throw new TypeError(`perMinute must be a positive number, got ${perMinute}`);
  return Math.max(1, Math.ceil(60_000 / perMinute));
}

export interface DelayPolicy {
  /** Failures allowed without any wait. */
  freeAttempts: number;
  /** Wait after the first failure beyond the free ones; it doubles with each further failure. */
  baseMs: number;
  maxMs: number;
}

/**
 * 5 failures without a wait, then 1 s after the 6th, doubling to 15 min: a user who mistypes a few times never waits;
 * a guesser reaches the 15 min ceiling at the 16th failure (after about 17 min of waiting in all), then makes 4 guesses
 * an hour.
 * SECURITY.md R6 gives "30 s rising to 1 h" as an example for second factors:
 * pass { freeAttempts: 5, baseMs: 30_000, maxMs: 3_600_000 } there.
 */
export const DEFAULT_DELAY: DelayPolicy = { freeAttempts: 5, baseMs: 1000, maxMs: 15 * 60_000 };

/** The wait before the next attempt after `failures` consecutive failures. */
export function delayAfterFailures(failures: number, policy: DelayPolicy = DEFAULT_DELAY): number {
  if (failures <= policy.freeAttempts) return 0;
  return Math.min(policy.maxMs, policy.baseMs * 2 ** (failures - policy.freeAttempts - 1));
}

/** A Retry-After header value (RFC 9110 §10.2.3): whole seconds, rounded up so a client never retries too early. */
export function retryAfterSeconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

export interface FailurePolicy extends DelayPolicy {
  /** Consecutive failures at which the key is locked until cleared (NIST SP 800-63B §3.2.2: at most 100). */
  cap: number;
}

export type FailureCheck = { allowed: true } | { allowed: false; retryAfterMs: number; locked: boolean };

/**
 * Whether one more attempt may run after `failures` consecutive failures, the last at `lastFailureMs`. A locked key
 * is refused whatever the wait; its retryAfterMs is the longest delay, only as a hint for Retry-After.
 */
export function failureCheck(failures: number, lastFailureMs: number | null, nowMs: number, policy: FailurePolicy): FailureCheck {
  if (failures >= policy.cap) return { allowed: false, retryAfterMs: policy.maxMs, locked: true };
  const wait = (lastFailureMs ?? nowMs) + delayAfterFailures(failures, policy) - nowMs;
  return wait > 0 ? { allowed: false, retryAfterMs: wait, locked: false } : { allowed: true };
}
