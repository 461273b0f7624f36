// The second factor: TOTP enrolment at first login, verification with TOTP or a recovery code, then the session.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { matchRecoveryCode, newRecoveryCodes } from '../mechanisms/recovery-codes.js';
import { matchTotpStep, newTotpSecret, normaliseTotpInput } from '../mechanisms/totp.js';
import type { MfaFailures, ReplayGuard } from '../stores/counters.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { FactorStore, PendingLogin, PendingLogins } from '../stores/records.js';
import type { SecurityLog } from './security-events.js';
import type { SessionService } from './sessions.js';

export type CodeCheck = { ok: true } | { ok: false; attemptsLeft: number };

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
    const check = await this.checkTotp(id, p, p.totpSecret, input, ip);
    if (!check.ok) return check;
    // A factor bound meanwhile through another pending login is never overwritten.
    if ((await this.d.factors.get(p.pid))?.totp) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'factor already enrolled');
    const now = this.d.clock.now();
    const { codes, stored } = await newRecoveryCodes();
    await this.d.factors.put(p.pid, { totp: { secret: p.totpSecret, addedAt: now, lastUsedAt: now }, recovery: { ...stored, addedAt: now } });
    const { totpSecret: _dropped, ...rest } = p;
    await this.d.pending.update(id, { ...rest, stage: 'acknowledge', amr: ['pwd', 'otp'] }, now);
    this.d.security('enrolled', { pid: p.pid, ip, factor: 'totp' });
    return { ok: true, codes };
  }

  /** After the recovery codes were acknowledged: the session starts. */
  async acknowledge(id: string, ip: string) {
    return this.finish(id, 'acknowledge', ip);
  }

  async verifyTotp(id: string, p: PendingLogin, input: string, ip: string): Promise<CodeCheck | { ok: true; token: string; continueTo: string }> {
    const factors = await this.d.factors.get(p.pid);
    if (!factors?.totp) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no TOTP factor');
    const check = await this.checkTotp(id, p, factors.totp.secret, input, ip);
    if (!check.ok) return check;
    await this.d.factors.put(p.pid, { ...factors, totp: { ...factors.totp, lastUsedAt: this.d.clock.now() } });
    return this.finishVerified(id, p, ['pwd', 'otp'], ip, 'totp');
  }

  async verifyRecoveryCode(id: string, p: PendingLogin, input: string, ip: string): Promise<CodeCheck | { ok: true; token: string; continueTo: string }> {
    const factors = await this.d.factors.get(p.pid);
    if (!factors?.recovery) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no recovery codes');
    const attempt = await this.countAttempt(id, p, ip);
    const index = await matchRecoveryCode(factors.recovery, input);
    // The claim, kept for good, makes "works once" atomic even for two uses at the same moment; the marks in
    // the factor record only count what is left.
    const claimed = index !== -1 && (await this.d.kv.setIfAbsent(keys.recoveryCodeUsed(p.pid, factors.recovery.salt, index), '1'));
    if (!claimed) return this.failure(id, p, ip, attempt, 'recovery', index === -1 ? 'wrong code' : 'code already used');
    const hashes = factors.recovery.hashes.map((h, i) => (i === index ? null : h));
    await this.d.factors.put(p.pid, { ...factors, recovery: { ...factors.recovery, hashes } });
    this.d.security('recovery_code_used', { pid: p.pid, ip, remaining: hashes.filter(Boolean).length });
    return this.finishVerified(id, p, ['pwd', 'otp'], ip, 'recovery');
  }

  private async checkTotp(id: string, p: PendingLogin, secret: string, input: string, ip: string): Promise<CodeCheck> {
    const attempt = await this.countAttempt(id, p, ip);
    const code = normaliseTotpInput(input);
    const step = code === null ? null : await matchTotpStep(secret, code, this.d.clock.now());
    if (step === null) return this.failure(id, p, ip, attempt, 'totp', 'wrong code');
    // RFC 6238 §5.2: a step is accepted at most once per user, also across parallel submissions.
    if (!(await this.d.replay.claimStep(p.pid, step))) {
      this.d.security('mfa_replayed', { pid: p.pid, ip, factor: 'totp' });
      return this.failure(id, p, ip, attempt, 'totp', 'code already used');
    }
    return { ok: true };
  }

  /**
   * Every code check is counted before it runs, atomically, so parallel guesses cannot outrun the limit: a
   * pending login never has more than maxAttemptsPerLogin codes checked.
   */
  private async countAttempt(id: string, p: PendingLogin, ip: string): Promise<number> {
    const n = await this.d.pending.countAttempt(id, Math.max(1, p.expiresAt - this.d.clock.now()));
    if (n > this.d.config.mfa.maxAttemptsPerLogin) await this.endAfterTooMany(id, p, ip);
    return n;
  }

  private async failure(id: string, p: PendingLogin, ip: string, attempt: number, factor: 'totp' | 'recovery', reason: string): Promise<CodeCheck> {
    const total = await this.d.failures.add(p.pid);
    this.d.security('mfa_failed', { pid: p.pid, ip, factor, reason, failures: total });
    const left = this.d.config.mfa.maxAttemptsPerLogin - attempt;
    if (left <= 0) await this.endAfterTooMany(id, p, ip);
    return { ok: false, attemptsLeft: left };
  }

  private async endAfterTooMany(id: string, p: PendingLogin, ip: string): Promise<never> {
    await this.d.pending.delete(id);
    this.d.security('mfa_attempts_exhausted', { pid: p.pid, ip });
    throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', 'pending login ended after too many wrong codes');
  }

  private async finishVerified(id: string, p: PendingLogin, amr: string[], ip: string, factor: 'totp' | 'recovery') {
    await this.d.failures.reset(p.pid);
    this.d.security('mfa_ok', { pid: p.pid, ip, factor });
    return this.finish(id, 'verify', ip, amr);
  }

  private async finish(id: string, stage: PendingLogin['stage'], ip: string, amr?: string[]): Promise<{ ok: true; token: string; continueTo: string }> {
    const now = this.d.clock.now();
    // Taking the record ends the pending login atomically: parallel finishers cannot both start a session.
    const p = await this.d.pending.take(id, now);
    const methods = amr ?? p?.amr;
    if (!p || p.stage !== stage || !methods) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'pending login already finished');
    await this.d.pending.delete(id);
    const token = await this.d.sessions.start({ pid: p.pid, username: p.username, amr: methods, jar: p.jar }, ip);
    return { ok: true, token, continueTo: p.continueTo };
  }
}
