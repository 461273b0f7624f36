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

// Compare-and-set rounds of one attempt before it is refused (each lost round means another attempt was counted).
const ATTEMPT_ROUNDS = 5;

/** 100 is the most NIST SP 800-63B §3.2.2 allows; pass a lower cap where fewer guesses suffice. */
export const DEFAULT_FAILURE_POLICY: FailurePolicy = { ...DEFAULT_DELAY, cap: 100 };

// Consecutive failures are forgotten this long after the first one (it bounds the keys that guesses at unknown
// usernames leave behind); a lock, once reached, is kept until cleared. The time of the last failure is kept as
// long: every delay is far shorter.
const DEFAULT_WINDOW_MS = 30 * 24 * 60 * 60_000;

/**
 * Consecutive failures of one thing (the password of an account, one factor of a user, enrolment or recovery codes)
 * with a progressive delay and a hard cap. `key` holds the count and `key:last` the time of the last failure, so the
 * caller's hash tag puts both in one Cluster slot. A success resets only its own key (63B §3.2.2, SECURITY.md R8).
 */
export class FailureCounter {
  private readonly policy: FailurePolicy;
  /** How long the count lasts after its first failure; null: until a success or an operator clears it. */
  private readonly windowMs: number | null;
  /** How long the time of the last failure is kept (as long as the count, or the default window). */
  private readonly lastTtlMs: number;

  constructor(
    private readonly kv: KvStore,
    private readonly clock: Clock,
    opts: Partial<FailurePolicy> & { windowMs?: number | null } = {},
  ) {
    const { windowMs = DEFAULT_WINDOW_MS, ...policy } = opts;
    this.policy = { ...DEFAULT_FAILURE_POLICY, ...policy };
    this.windowMs = windowMs;
    this.lastTtlMs = windowMs ?? DEFAULT_WINDOW_MS;
    assertPositiveInteger('cap', this.policy.cap);
  }

  /** Whether an attempt may run now. Read-only: for guesses that may come in parallel, use attempt(). */
  async check(key: string): Promise<FailureCheck> {
    const { failures, last } = await this.read(key);
    return failureCheck(failures, last, this.clock.now(), this.policy);
  }

  /**
   * Counts one failure, in one atomic step: the store itself keeps the lock (or a count without a window) until it is
   * cleared. Nothing is written back afterwards, which, from another instance, could undo newer counts or a clear().
   */
  async fail(key: string): Promise<FailureCount> {
    await this.kv.raiseTo(lastKey(key), this.clock.now(), this.lastTtlMs);
    const { value, capped } = await this.kv.incrementCapped(key, this.policy.cap, this.windowMs);
    return { failures: value, locked: capped, retryAfterMs: this.delayAfter(value) };
  }

  /**
   * check() and fail() before the guess is verified: the attempt stands as a failure unless succeed() (or release())
   * follows. The count moves from the number checked to the next only if no other attempt was counted in between
   * (compare and set); an attempt that loses checks again against the new count. So parallel guesses run exactly
   * as many as consecutive ones would: neither the delays nor the cap can be outrun by sending them at once (C-40,
   * R6), and a double-submitted form within the free attempts still goes through.
   */
  async attempt(key: string): Promise<Attempt> {
    for (let round = 0; round < ATTEMPT_ROUNDS; round++) {
      const { failures, last, stored } = await this.read(key);
      const now = this.clock.now();
      const c = failureCheck(failures, last, now, this.policy);
      if (!c.allowed) return c;
      // The time first: an attempt that then loses the count only makes the next wait stricter.
      await this.kv.raiseTo(lastKey(key), now, this.lastTtlMs);
      const next = failures + 1;
      const counted = stored === null ? await this.kv.setIfAbsent(key, String(next), this.windowMs ?? undefined) : await this.kv.replaceIf(key, stored, String(next));
      if (!counted) continue;
      const locked = next >= this.policy.cap;
      // A lock outlives the window. Without one the count already has no TTL, and a late write could only bring
      // back a lock cleared in that instant.
      if (locked && this.windowMs !== null) await this.kv.set(key, String(next));
      return { allowed: true, failure: { failures: next, locked, retryAfterMs: this.delayAfter(next) } };
    }
    return { allowed: false, retryAfterMs: 1000, locked: false };
  }

  /**
   * check(), and once failures have made attempts wait, one attempt at a time: when a wait ends, the first attempt
   * takes the turn and the others are refused until it is given back with endTurn() (or `holdMs` has passed). A
   * failure it adds starts a new wait, with a turn of its own. For a count that many people share (an address), where
   * counting every attempt up front as attempt() does would count their parallel successes as failures.
   */
  async turn(key: string, holdMs: number): Promise<FailureCheck & { turn?: string }> {
    const { failures, last } = await this.read(key);
    const c = failureCheck(failures, last, this.clock.now(), this.policy);
    if (!c.allowed || delayAfterFailures(failures, this.policy) === 0) return c;
    const turn = `${key}:turn:${last}`;
    if (!(await this.kv.setIfAbsent(turn, '1', holdMs))) return { allowed: false, retryAfterMs: 1000, locked: false };
    // A failure counted since the count was read (its attempt then gave this turn back) started a new wait.
    const now = await this.read(key);
    if (now.failures === failures && now.last === last) return { allowed: true, turn };
    await this.kv.delete(turn);
    return { allowed: false, retryAfterMs: 1000, locked: false };
  }

  endTurn(turn: string): Promise<void> {
    return this.kv.delete(turn);
  }

  /** Takes back an attempt that was never judged (the portal did not answer), unless another was counted since. */
  async release(key: string, counted: FailureCount): Promise<void> {
    await this.kv.replaceIf(key, String(counted.failures), String(counted.failures - 1));
  }

  /** After a success: this key starts again from zero. */
  succeed(key: string): Promise<void> {
    return this.reset(key);
  }

  /** Operator unlock, after the authenticator was bound again (63B §3.2.2). */
  clear(key: string): Promise<void> {
    return this.reset(key);
  }

  /**
   * The count and the time of the last failure. The count is read first (the writers set the time first), so a
   * failure landing in between makes the answer stricter, never looser.
   */
  private async read(key: string): Promise<{ failures: number; last: number | null; stored: string | null }> {
    const stored = await this.kv.get(key);
    const last = await this.kv.get(lastKey(key));
    // A count kept for good outlives the time of its last failure (kept 30 days): its wait is long over by then.
    const since = last !== null ? Number(last) : stored !== null && this.windowMs === null ? 0 : null;
    return { failures: Number(stored ?? 0), last: since, stored };
  }

  private delayAfter(failures: number): number {
    return failures >= this.policy.cap ? this.policy.maxMs : delayAfterFailures(failures, this.policy);
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
