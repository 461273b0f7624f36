// Where codes and passkeys are checked (a pending login, a session's step-up or factor set-up) and the limit on
// wrong attempts there: each check is counted before it runs, and too many end the ceremony.
import type { Clock } from '../clock.js';
import type { FactorKind } from '../domain/policy.js';
import { GatewayError } from '../errors.js';
import type { MfaFailures } from '../stores/counters.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { PendingLogin, PendingLogins } from '../stores/records.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession, SessionService } from './sessions.js';

export type CodeCheck = { ok: true } | { ok: false; attemptsLeft: number };
export type Refused = Exclude<CodeCheck, { ok: true }>;

export interface Ceremony {
  pid: string;
  username: string;
  /** login: the password was just accepted; session: a signed-in user confirming again. */
  kind: 'login' | 'session';
  /** Counts one check (atomically) and returns the count so far. */
  count(): Promise<number>;
  /** Ends the ceremony after too many wrong attempts. */
  end(): Promise<void>;
  /** The first failure of a login is reported to the vendor once ("was this you?"). */
  firstFailure(): Promise<boolean>;
}

export interface AttemptDeps {
  clock: Clock;
  kv: KvStore;
  pending: PendingLogins;
  sessions: SessionService;
  failures: MfaFailures;
  security: SecurityLog;
  notifier: Notifier;
  maxAttempts: number;
}

export class Attempts {
  constructor(private readonly d: AttemptDeps) {}

  ofLogin(id: string, p: PendingLogin): Ceremony {
    const { pending, clock } = this.d;
    return {
      pid: p.pid,
      username: p.username,
      kind: 'login',
      count: () => pending.countAttempt(id, Math.max(1, p.expiresAt - clock.now())),
      end: () => pending.delete(id),
      firstFailure: async () => {
        const now = clock.now();
        const current = await pending.get(id, now);
        if (!current || current.failureNotified) return false;
        await pending.update(id, { ...current, failureNotified: true }, now);
        return true;
      },
    };
  }

  ofSession(active: ActiveSession, ttlMs: number): Ceremony {
    const key = keys.stepUpAttempts(active.sid);
    return {
      pid: active.record.pid,
      username: active.record.username,
      kind: 'session',
      count: () => this.d.kv.increment(key, ttlMs),
      end: () => this.d.sessions.end(active, 'too many wrong codes'),
      firstFailure: async () => false,
    };
  }

  /**
   * Counts a check before it runs, so parallel guesses cannot outrun the limit: a ceremony never has more than
   * `maxAttempts` checks. Returns the attempt number.
   */
  async begin(c: Ceremony, ip: string): Promise<number> {
    const n = await c.count();
    if (n > this.d.maxAttempts) await this.exhausted(c, ip);
    return n;
  }

  /** A wrong code or a refused passkey: counted per user across ceremonies, reported, and the ceremony ends at the limit. */
  async failed(c: Ceremony, ip: string, attempt: number, factor: FactorKind | 'enrolment-code', reason: string): Promise<Refused> {
    const total = await this.d.failures.add(c.pid);
    this.d.security('mfa_failed', { pid: c.pid, ip, factor, reason, failures: total });
    if (c.kind === 'login' && (await c.firstFailure())) this.d.notifier.notify({ event: 'second_factor_failed', user: c.username, ip, details: { factor } });
    const left = this.d.maxAttempts - attempt;
    if (left <= 0) await this.exhausted(c, ip);
    return { ok: false, attemptsLeft: left };
  }

  private async exhausted(c: Ceremony, ip: string): Promise<never> {
    await c.end();
    this.d.security('mfa_attempts_exhausted', { pid: c.pid, ip });
    throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', 'ceremony ended after too many wrong attempts');
  }
}
