// The second factor: TOTP enrolment at first login, verification with TOTP or a recovery code, step-up in a session.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { FactorKind } from '../domain/policy.js';
import { GatewayError } from '../errors.js';
import { matchRecoveryCode, newRecoveryCodes } from '../mechanisms/recovery-codes.js';
import { matchTotpStep, newTotpSecret, normaliseTotpInput } from '../mechanisms/totp.js';
import type { MfaFailures, ReplayGuard } from '../stores/counters.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { FactorStore, PendingLogin, PendingLogins } from '../stores/records.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession, SessionService } from './sessions.js';

export type CodeCheck = { ok: true } | { ok: false; attemptsLeft: number };
export type SignedIn = { ok: true; token: string; continueTo: string };

export interface SecondFactorDeps {
  config: Config;
  clock: Clock;
  kv: KvStore;
  pending: PendingLogins;
  factors: FactorStore;
  replay: ReplayGuard;
  failures: MfaFailures;
  sessions: SessionService;
  security: SecurityLog;
}

/** Where codes are being checked: a pending login or a session asking for step-up. Attempts are counted per ceremony. */
interface Ceremony {
  pid: string;
  /** Counts one code check (atomically, before it runs) and returns the count so far. */
  count(): Promise<number>;
  /** Ends the ceremony after too many wrong codes. */
  end(): Promise<void>;
}

export class SecondFactorService {
  constructor(private readonly d: SecondFactorDeps) {}

  /** The pending login behind a cookie value, when it exists, has not expired and is at `stage`. */
  async pendingAt(id: string | undefined, stage: PendingLogin['stage']): Promise<PendingLogin> {
    const p = id ? await this.d.pending.get(id, this.d.clock.now()) : null;
    if (!p || p.stage !== stage) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', `no pending login at stage ${stage}`);
    return p;
  }

  /** The stage of a pending login, or null when there is none (store errors are not swallowed). */
  async stage(id: string | undefined): Promise<PendingLogin['stage'] | null> {
    return id ? ((await this.d.pending.get(id, this.d.clock.now()))?.stage ?? null) : null;
  }

  /** The secret being enrolled: made once per pending login and shown only until enrolment is confirmed. */
  async enrolmentSecret(id: string, p: PendingLogin): Promise<string> {
    if (p.totpSecret) return p.totpSecret;
    const secret = newTotpSecret();
    await this.d.pending.update(id, { ...p, totpSecret: secret }, this.d.clock.now());
    return secret;
  }

  /** Activates the TOTP factor after one valid code (which is consumed) and returns the recovery codes to show once. */
  async confirmEnrolment(id: string, p: PendingLogin, input: string, ip: string): Promise<{ ok: true; codes: string[] } | Exclude<CodeCheck, { ok: true }>> {
    if (!p.totpSecret) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'enrolment not started');
    const check = await this.checkTotp(this.pendingCeremony(id, p), p.totpSecret, input, ip);
    if (!check.ok) return check;
    // A factor bound meanwhile through another pending login is never overwritten.
    if ((await this.d.factors.get(p.pid))?.totp) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'factor already enrolled');
    const now = this.d.clock.now();
    const { codes, stored } = await newRecoveryCodes();
    await this.d.factors.put(p.pid, { totp: { secret: p.totpSecret, addedAt: now, lastUsedAt: now }, recovery: { ...stored, addedAt: now } });
    const { totpSecret: _dropped, ...rest } = p;
    await this.d.pending.update(id, { ...rest, stage: 'acknowledge', factor: 'totp' }, now);
    this.d.security('enrolled', { pid: p.pid, ip, factor: 'totp' });
    return { ok: true, codes };
  }

  /** After the recovery codes were acknowledged: the session starts. */
  async acknowledge(id: string, ip: string): Promise<SignedIn> {
    return this.finish(id, 'acknowledge', ip);
  }

  async verifyTotp(id: string, p: PendingLogin, input: string, ip: string): Promise<CodeCheck | SignedIn> {
    const check = await this.checkUserTotp(this.pendingCeremony(id, p), input, ip);
    if (!check.ok) return check;
    return this.finishVerified(id, p, 'totp', ip);
  }

  async verifyRecoveryCode(id: string, p: PendingLogin, input: string, ip: string): Promise<CodeCheck | SignedIn> {
    const factors = await this.d.factors.get(p.pid);
    if (!factors?.recovery) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no recovery codes');
    const ceremony = this.pendingCeremony(id, p);
    const attempt = await this.countAttempt(ceremony, ip);
    const index = await matchRecoveryCode(factors.recovery, input);
    // The claim, kept for good, makes "works once" atomic even for two uses at the same moment; the marks in
    // the factor record only count what is left.
    const claimed = index !== -1 && (await this.d.kv.setIfAbsent(keys.recoveryCodeUsed(p.pid, factors.recovery.salt, index), '1'));
    if (!claimed) return this.failure(ceremony, ip, attempt, 'recovery', index === -1 ? 'wrong code' : 'code already used');
    const hashes = factors.recovery.hashes.map((h, i) => (i === index ? null : h));
    await this.d.factors.put(p.pid, { ...factors, recovery: { ...factors.recovery, hashes } });
    this.d.security('recovery_code_used', { pid: p.pid, ip, remaining: hashes.filter(Boolean).length });
    return this.finishVerified(id, p, 'recovery', ip);
  }

  /** Step-up inside a session: a TOTP code again; the session moves to a fresh id. Too many wrong codes end it. */
  async stepUpTotp(active: ActiveSession, input: string, ip: string): Promise<Exclude<CodeCheck, { ok: true }> | { ok: true; token: string }> {
    const { pid } = active.record;
    const attemptsKey = keys.stepUpAttempts(active.sid);
    const ceremony: Ceremony = {
      pid,
      count: () => this.d.kv.increment(attemptsKey, this.d.config.mfa.pendingTimeoutSeconds * 1000),
      end: () => this.d.sessions.end(active, 'step-up attempts exhausted'),
    };
    const check = await this.checkUserTotp(ceremony, input, ip);
    if (!check.ok) return check;
    await this.d.kv.delete(attemptsKey);
    await this.d.failures.reset(pid);
    const token = await this.d.sessions.reverified(active, 'totp', ip);
    if (!token) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'session ended during step-up');
    return { ok: true, token };
  }

  private pendingCeremony(id: string, p: PendingLogin): Ceremony {
    return {
      pid: p.pid,
      count: () => this.d.pending.countAttempt(id, Math.max(1, p.expiresAt - this.d.clock.now())),
      end: () => this.d.pending.delete(id),
    };
  }

  /** Checks a code against the user's enrolled TOTP factor, and notes its use. */
  private async checkUserTotp(c: Ceremony, input: string, ip: string): Promise<CodeCheck> {
    const factors = await this.d.factors.get(c.pid);
    if (!factors?.totp) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no TOTP factor');
    const check = await this.checkTotp(c, factors.totp.secret, input, ip);
    if (check.ok) await this.d.factors.put(c.pid, { ...factors, totp: { ...factors.totp, lastUsedAt: this.d.clock.now() } });
    return check;
  }

  private async checkTotp(c: Ceremony, secret: string, input: string, ip: string): Promise<CodeCheck> {
    const attempt = await this.countAttempt(c, ip);
    const code = normaliseTotpInput(input);
    const step = code === null ? null : await matchTotpStep(secret, code, this.d.clock.now());
    if (step === null) return this.failure(c, ip, attempt, 'totp', 'wrong code');
    // RFC 6238 §5.2: a step is accepted at most once per user, also across parallel submissions.
    if (!(await this.d.replay.claimStep(c.pid, step))) {
      this.d.security('mfa_replayed', { pid: c.pid, ip, factor: 'totp' });
      return this.failure(c, ip, attempt, 'totp', 'code already used');
    }
    return { ok: true };
  }

  /**
   * Every code check is counted before it runs, atomically, so parallel guesses cannot outrun the limit: a
   * ceremony never has more than maxAttemptsPerLogin codes checked.
   */
  private async countAttempt(c: Ceremony, ip: string): Promise<number> {
    const n = await c.count();
    if (n > this.d.config.mfa.maxAttemptsPerLogin) await this.endAfterTooMany(c, ip);
    return n;
  }

  private async failure(c: Ceremony, ip: string, attempt: number, factor: FactorKind, reason: string): Promise<CodeCheck> {
    const total = await this.d.failures.add(c.pid);
    this.d.security('mfa_failed', { pid: c.pid, ip, factor, reason, failures: total });
    const left = this.d.config.mfa.maxAttemptsPerLogin - attempt;
    if (left <= 0) await this.endAfterTooMany(c, ip);
    return { ok: false, attemptsLeft: left };
  }

  private async endAfterTooMany(c: Ceremony, ip: string): Promise<never> {
    await c.end();
    this.d.security('mfa_attempts_exhausted', { pid: c.pid, ip });
    throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', 'ceremony ended after too many wrong codes');
  }

  private async finishVerified(id: string, p: PendingLogin, factor: FactorKind, ip: string): Promise<SignedIn> {
    await this.d.failures.reset(p.pid);
    this.d.security('mfa_ok', { pid: p.pid, ip, factor });
    return this.finish(id, 'verify', ip, factor);
  }

  private async finish(id: string, stage: PendingLogin['stage'], ip: string, verified?: FactorKind): Promise<SignedIn> {
    const now = this.d.clock.now();
    // Taking the record ends the pending login atomically: parallel finishers cannot both start a session.
    const p = await this.d.pending.take(id, now);
    const factor = verified ?? p?.factor;
    if (!p || p.stage !== stage || !factor) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'pending login already finished');
    await this.d.pending.delete(id);
    const token = await this.d.sessions.start({ pid: p.pid, username: p.username, factor, jar: p.jar, ...(p.groups ? { groups: p.groups } : {}) }, ip);
    return { ok: true, token, continueTo: p.continueTo };
  }
}
