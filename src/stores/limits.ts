// Rate limits, failure lockouts and per-user sets on the KvStore primitives; callers build the keys with keys.ts.
import type { Clock } from '../clock.js';
import { assertPositiveInteger, DEFAULT_DELAY, delayAfterFailures, emissionIntervalMs, failureCheck, type FailureCheck, type FailurePolicy } from '../domain/limits.js';
import type { KvStore } from './kv-store.js';

/** Login velocity per client address, per account or global (GCRA: `burst` at once, then `perMinute`). */
export class RateLimiter {
  constructor(
    private readonly kv: KvStore,
    private readonly clock: Clock,
  ) {}

  async take(key: string, rate: { perMinute: number; burst: number }): Promise<{ allowed: boolean; retryAfterMs: number }> {
    const { allowed, retryAfterMs } = await this.kv.gcra(key, emissionIntervalMs(rate.perMinute), rate.burst, this.clock.now());
    return { allowed, retryAfterMs };
  }
}

export interface FailureCount {
  failures: number;
  /** At the cap: refused until succeed() or clear(). */
  locked: boolean;
  /** The wait before the next attempt (when locked, the longest delay, only as a hint). */
  retryAfterMs: number;
}

export type Attempt = { allowed: true; failure: FailureCount } | Extract<FailureCheck, { allowed: false }>;

/** 100 is the most NIST SP 800-63B §3.2.2 allows; pass a lower cap where fewer guesses suffice. */
export const DEFAULT_FAILURE_POLICY: FailurePolicy = { ...DEFAULT_DELAY, cap: 100 };

// Consecutive failures are forgotten this long after the first one (it bounds the keys that guesses at unknown
// usernames leave behind); a lock, once reached, is kept until cleared.
const DEFAULT_WINDOW_MS = 30 * 24 * 60 * 60_000;

/**
 * Consecutive failures of one thing (the password of an account, one factor of a user, enrolment or recovery codes)
 * with a progressive delay and a hard cap. `key` holds the count and `key:last` the time of the last failure, so the
 * caller's hash tag puts both in one Cluster slot. A success resets only its own key (63B §3.2.2, SECURITY.md R8).
 */
export class FailureCounter {
  private readonly policy: FailurePolicy;
  private readonly windowMs: number;

  constructor(
    private readonly kv: KvStore,
    private readonly clock: Clock,
    opts: Partial<FailurePolicy> & { windowMs?: number } = {},
  ) {
    const { windowMs = DEFAULT_WINDOW_MS, ...policy } = opts;
    this.policy = { ...DEFAULT_FAILURE_POLICY, ...policy };
    this.windowMs = windowMs;
    assertPositiveInteger('cap', this.policy.cap);
  }

  /** Whether an attempt may run now. Read-only: for guesses that may come in parallel, use attempt(). */
  async check(key: string): Promise<FailureCheck> {
    // The count is read before the time (fail() writes them the other way round): a failure landing in between makes
    // the answer stricter, never looser.
    const failures = Number((await this.kv.get(key)) ?? 0);
    const last = await this.kv.get(lastKey(key));
    return failureCheck(failures, last === null ? null : Number(last), this.clock.now(), this.policy);
  }

  /** Counts one failure, atomically. */
  async fail(key: string): Promise<FailureCount> {
    return (await this.count(key)).failure;
  }

  /**
   * check() and fail() before the guess is verified: the attempt stands as a failure unless succeed() follows. Of
   * parallel guesses none gets past the cap, so at most `cap` are ever verified (C-40); check-then-fail lets every
   * guess already in flight through.
   */
  async attempt(key: string): Promise<Attempt> {
    const c = await this.check(key);
    if (!c.allowed) return c;
    const { failure, counted } = await this.count(key);
    return counted ? { allowed: true, failure } : { allowed: false, retryAfterMs: failure.retryAfterMs, locked: true };
  }

  /** After a success: this key starts again from zero. */
  succeed(key: string): Promise<void> {
    return this.reset(key);
  }

  /** Operator unlock, after the authenticator was bound again (63B §3.2.2). */
  clear(key: string): Promise<void> {
    return this.reset(key);
  }

  private async count(key: string): Promise<{ failure: FailureCount; counted: boolean }> {
    await this.kv.raiseTo(lastKey(key), this.clock.now(), this.windowMs);
    const { value, capped, reached } = await this.kv.incrementCapped(key, this.policy.cap, this.windowMs);
    // Without a TTL the lock outlives the window. A late write at most re-locks a key cleared in that instant.
    if (reached) await this.kv.set(key, String(value));
    const failure = { failures: value, locked: capped, retryAfterMs: capped ? this.policy.maxMs : delayAfterFailures(value, this.policy) };
    return { failure, counted: !capped || reached };
  }

  private async reset(key: string): Promise<void> {
    await this.kv.delete(key);
    await this.kv.delete(lastKey(key));
  }
}

const lastKey = (key: string) => `${key}:last`;

/**
 * Distinct members seen under one key (usernames tried from one client address). The set lives until `windowMs`
 * passes without an add, so the count is of that busy stretch, never less than any window's. Members are stored as
 * given: pass pseudonyms, never usernames; stop adding once the key is flagged (every new member is kept).
 */
export class DistinctCounter {
  constructor(private readonly kv: KvStore) {}

  add(key: string, member: string, windowMs: number): Promise<number> {
    return this.kv.setAdd(key, member, windowMs);
  }
}
