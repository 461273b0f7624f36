// Limits on the password step, shared by every instance through the store: per account, per client address and
// for the gateway as a whole, and the detection of credential stuffing and password spraying (SECURITY R9, C-01, C-02).
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { FailureCounter, RateLimiter, DistinctCounter, type FailureCount } from '../stores/limits.js';
import { liveMembers, type KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';

export type Admission = { ok: true } | { ok: false; retryAfterMs: number; reason: string };
/** An admitted address; `turn`: it had waited after failures, and this login is the one it lets through now. */
export type AddressAdmission = { ok: true; turn?: string } | Extract<Admission, { ok: false }>;
/** An admitted password, the count it went on and what it counted there (for unjudged() and succeeded()). */
export type AccountAdmission = { ok: true; key: string; counted: FailureCount } | Extract<Admission, { ok: false }>;

const MINUTE = 60_000;

const refused = (retryAfterMs: number, reason: string): Extract<Admission, { ok: false }> => ({ ok: false, retryAfterMs: Math.max(1000, retryAfterMs), reason });

/**
 * The bucket of a client address: IPv6 by its /64 (one subscriber gets a whole /64, so single addresses would give an
 * attacker endless fresh buckets); an unknown address shares one bucket.
 */
export function addressBucket(ip: string | null): string {
  if (ip === null) return 'unknown';
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const full = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${full.slice(0, 4).map((h) => h.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

// A block seen in the store is remembered here for at most this long (or until it ends): under an attack, refusing
// costs no store round trip. Only blocks are remembered, never their absence, so this can only refuse more.
const BLOCK_MEMORY_MS = 5000;

export class LoginLimits {
  /** Blocked address buckets: until when, and when to read the store again (a block cleared meanwhile). */
  private readonly knownBlocks = new Map<string, { until: number; recheckAt: number }>();
  private readonly rate: RateLimiter;
  private readonly accounts: FailureCounter;
  private readonly addresses: FailureCounter;
  private readonly distinct: DistinctCounter;

  constructor(private readonly d: { config: Config; clock: Clock; kv: KvStore; security: SecurityLog; notifier: Notifier }) {
    const l = d.config.limits.password;
    const delay = (p: { freeAttempts: number; baseSeconds: number; maxSeconds: number }) => ({ freeAttempts: p.freeAttempts, baseMs: p.baseSeconds * 1000, maxMs: p.maxSeconds * 1000 });
    this.rate = new RateLimiter(d.kv, d.clock);
    // No cap on the password step: a lockout there is a lockout anyone who knows a username can cause (R9).
    this.accounts = new FailureCounter(d.kv, d.clock, { ...delay(l.perAccount), cap: Number.MAX_SAFE_INTEGER, windowMs: 24 * 60 * MINUTE });
    this.addresses = new FailureCounter(d.kv, d.clock, { ...delay(l.perAddress), cap: Number.MAX_SAFE_INTEGER, windowMs: 24 * 60 * MINUTE });
    this.distinct = new DistinctCounter(d.kv);
  }

  /**
   * Whether a login from this address may be read at all: not blocked, within its rate, not waiting after failures.
   * Checked before the body is read, so a flood from one address costs little and uses none of the global rate. When
   * a wait after failures ends, one login goes first (its `turn`, given back with endTurn() when it is done, or after
   * `holdMs`): a burst sent at that moment would otherwise all pass the same check.
   */
  async admitAddress(ip: string | null, holdMs: number): Promise<AddressAdmission> {
    const blocked = await this.blockOf(ip);
    if (blocked) return blocked;
    const bucket = addressBucket(ip);
    const l = this.d.config.limits.password;
    const rate = await this.rate.take(keys.addressRate(bucket), l.addressRate);
    if (!rate.allowed) return refused(rate.retryAfterMs, 'address rate');
    const failures = await this.addresses.turn(keys.addressFailures(bucket), holdMs);
    return failures.allowed ? { ok: true, turn: failures.turn } : refused(failures.retryAfterMs, 'address failures');
  }

  endTurn(turn: string): Promise<void> {
    return this.addresses.endTurn(turn);
  }

  /**
   * Whether a browser new to the gateway may have its portal cookies kept: each is a cookie jar in the store for an
   * hour, so one address opening pages without the gateway's cookie, or a flood from many, could otherwise fill the
   * store. Per address first: a refused address uses none of the overall rate.
   */
  async admitNewBrowser(ip: string | null): Promise<{ allowed: boolean; retryAfterMs: number; reason: string }> {
    const own = await this.rate.take(keys.newBrowserRate(addressBucket(ip)), this.d.config.limits.newBrowsers);
    if (!own.allowed) return { ...own, reason: 'too many new browsers from this address' };
    return { ...(await this.rate.take(keys.newBrowsersOverall(), this.d.config.limits.newBrowsersOverall)), reason: 'too many new browsers in all' };
  }

  /**
   * Whether this account's password may reach the portal now, and the gateway's overall rate. The answer is the same
   * whether or not the account exists: every canonical username has its counter (the portal alone knows which exist).
   * An admitted password counts as a failure of the account until succeeded(), so parallel guesses cannot all pass
   * one check (failed() does not count it again). A password the account's wait refuses uses none of the overall rate.
   * A known browser of the account (`browser`: its id) has a count of its own: strangers' wrong passwords, which
   * make the account's count wait, never keep out the browsers its owner signed in with (no lockout by username).
   * Nor does the overall rate, which a flood from many addresses drains (tightened, to a trickle): a known browser's
   * token is good for one account only and comes only from a finished sign-in, so it does not help an attack.
   */
  async admitAccount(pid: string, browser: string | null): Promise<AccountAdmission> {
    const key = browser ? keys.knownBrowserFailures(pid, browser) : keys.passwordFailures(pid);
    const waiting = await this.accounts.check(key);
    if (!waiting.allowed) return refused(waiting.retryAfterMs, 'account failures');
    if (!browser) {
      const l = this.d.config.limits.password;
      const tightened = (await this.d.kv.get(keys.loginTightened())) !== null;
      const percent = this.d.config.limits.stuffing.tightenedPercent;
      const global = tightened ? { perMinute: Math.max(1, Math.floor((l.globalRate.perMinute * percent) / 100)), burst: 1 } : l.globalRate;
      const rate = await this.rate.take(keys.globalRate(), global);
      if (!rate.allowed) return refused(rate.retryAfterMs, 'global rate');
    }
    const attempt = await this.accounts.attempt(key);
    return attempt.allowed ? { ok: true, key, counted: attempt.failure } : refused(attempt.retryAfterMs, 'account failures');
  }

  /** A password the portal never judged (it did not answer) does not count against its account. */
  unjudged(admitted: { key: string; counted: FailureCount }): Promise<void> {
    return this.accounts.release(admitted.key, admitted.counted);
  }

  /** A blocked address (remembered briefly, see BLOCK_MEMORY_MS). */
  private async blockOf(ip: string | null): Promise<Exclude<Admission, { ok: true }> | null> {
    const bucket = addressBucket(ip);
    const now = this.d.clock.now();
    let known = this.knownBlocks.get(bucket);
    if (known === undefined || known.recheckAt <= now) {
      this.knownBlocks.delete(bucket);
      const stored = await this.d.kv.get(keys.addressBlock(bucket));
      if (stored === null) return null;
      const until = Number(stored);
      known = { until, recheckAt: Math.min(until, now + BLOCK_MEMORY_MS) };
      if (this.knownBlocks.size < 10_000) this.knownBlocks.set(bucket, known);
    }
    // Retry-After says when the block ends, also when the answer came from memory.
    return { ok: false, retryAfterMs: known.until - now, reason: 'address blocked' };
  }

  async failed(pid: string, ip: string | null): Promise<void> {
    const bucket = addressBucket(ip);
    await this.addresses.fail(keys.addressFailures(bucket));
    await this.count('failures');
    await this.watchAddress(pid, bucket);
    await this.watchRatio();
  }

  /** A right password resets the count it went on only: an attacker's own login cannot clear an address. */
  async succeeded(admitted: { key: string }): Promise<void> {
    await this.accounts.succeed(admitted.key);
    await this.count('successes');
  }

  /** Operator: lifts the block of an address and forgets its failures (`mfa-gateway blocks clear`); whether it was blocked. */
  async unblock(ip: string): Promise<boolean> {
    const bucket = addressBucket(ip);
    this.knownBlocks.delete(bucket);
    const was = await this.d.kv.take(keys.addressBlock(bucket));
    await this.d.kv.delete(keys.addressUsernames(bucket));
    await this.addresses.clear(keys.addressFailures(bucket));
    await this.d.kv.setRemove(keys.blockIndex(), bucket);
    return was !== null;
  }

  /** Blocked addresses with the time each block ends. */
  async blocked(): Promise<{ address: string; until: number }[]> {
    return liveMembers(this.d.kv, keys.blockIndex(), async (bucket) => {
      const until = await this.d.kv.get(keys.addressBlock(bucket));
      return until === null ? null : { address: bucket, until: Number(until) };
    });
  }

  /** Many distinct accounts failing from one address: stuffing or spraying. The address is blocked for a while. */
  private async watchAddress(pid: string, bucket: string): Promise<void> {
    // The shared bucket of unreadable addresses is never blocked (that would block every such client): its set would
    // only grow by one member per username tried.
    if (bucket === 'unknown') return;
    const s = this.d.config.limits.stuffing;
    const windowMs = s.windowMinutes * MINUTE;
    const n = await this.distinct.add(keys.addressUsernames(bucket), pid, windowMs);
    if (n < s.distinctAccounts) return;
    const blockMs = s.blockMinutes * MINUTE;
    const until = this.d.clock.now() + blockMs;
    if (!(await this.d.kv.setIfAbsent(keys.addressBlock(bucket), String(until), blockMs))) return;
    await this.d.kv.setAdd(keys.blockIndex(), bucket, blockMs);
    this.d.security('address_blocked', { ip: bucket, accounts: n, minutes: s.blockMinutes });
    this.d.notifier.alert('address_blocked', { address: bucket, accounts: n, minutes: s.blockMinutes });
  }

  /** Mostly failures across the whole login route (spraying from many addresses): the global rate tightens. */
  private async watchRatio(): Promise<void> {
    const s = this.d.config.limits.stuffing;
    const minute = Math.floor(this.d.clock.now() / MINUTE);
    const minutes = Array.from({ length: s.windowMinutes }, (_, i) => minute - i);
    const sum = async (what: 'successes' | 'failures') => (await Promise.all(minutes.map((m) => this.d.kv.get(keys.loginStats(m, what))))).reduce((a, v) => a + Number(v ?? 0), 0);
    const failures = await sum('failures');
    const attempts = failures + (await sum('successes'));
    if (attempts < s.minAttempts || failures / attempts < s.failureRatio) return;
    if (!(await this.d.kv.setIfAbsent(keys.loginTightened(), '1', s.windowMinutes * MINUTE))) return;
    this.d.security('login_failure_surge', { attempts, failures, percent: s.tightenedPercent });
    this.d.notifier.alert('login_failure_surge', { attempts, failures, tightenedPercent: s.tightenedPercent });
  }

  /** Per-minute counts of failed and accepted passwords. */
  private count(what: 'successes' | 'failures'): Promise<number> {
    const minute = Math.floor(this.d.clock.now() / MINUTE);
    return this.d.kv.increment(keys.loginStats(minute, what), (this.d.config.limits.stuffing.windowMinutes + 1) * MINUTE);
  }
}
