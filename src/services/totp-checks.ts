// Checking a TOTP code: within ±1 step of the server's time, each step accepted once per user (RFC 6238 §5.2); the
// first code of a secret being set up, once per set-up.
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import { matchTotpStep, normaliseTotpInput } from '../mechanisms/totp.js';
import type { ReplayGuard } from '../stores/counters.js';
import type { FactorStore, TotpFactor } from '../stores/factor-store.js';
import type { Attempts, Ceremony, CodeCheck, Refused } from './ceremony.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';

export class TotpChecks {
  constructor(private readonly d: { clock: Clock; replay: ReplayGuard; attempts: Attempts; factors: FactorStore; security: SecurityLog; notifier: Notifier }) {}

  /**
   * A code for one secret (a factor being set up). Its step is claimed for this set-up, not on the user's own mark:
   * the security page asks for a recent second factor, so the user's other app has usually just given its code for the
   * same step, and the new app's code must not be refused for it. The user's mark is raised to the step all the same.
   */
  async checkSecret(c: Ceremony, secret: string, input: string, ip: string): Promise<CodeCheck> {
    const attempt = await this.d.attempts.beginSetup(c, ip, 'totp');
    const step = await this.matchingStep([secret], input);
    if (step === null) return this.d.attempts.failed(c, ip, attempt, 'wrong code');
    const claim = await this.claimSetup(c, secret, step.step, ip);
    if (claim === 'repeat') return this.d.attempts.repeated(c, attempt);
    if (claim === 'taken') return this.d.attempts.failed(c, ip, attempt, 'code already used');
    await this.d.attempts.succeeded(c, attempt);
    return { ok: true };
  }

  /** A code for any of the user's authenticator apps; the one it matched is marked used. */
  async checkUser(c: Ceremony, input: string, ip: string): Promise<{ ok: true; factor: TotpFactor } | Refused> {
    const attempt = await this.d.attempts.begin(c, ip, 'totp');
    const factors = await this.d.factors.get(c.pid);
    const apps = (factors?.factors ?? []).filter((f): f is TotpFactor => f.kind === 'totp');
    const match = await this.matchingStep(apps.map((f) => f.secret), input);
    if (match === null) return this.d.attempts.failed(c, ip, attempt, 'wrong code');
    const claim = await this.claim(c, match.step, ip);
    if (claim === 'repeat') return this.d.attempts.repeated(c, attempt);
    if (claim === 'earlier') return { ...(await this.d.attempts.failed(c, ip, attempt, 'code already used by this session')), justUsed: true };
    if (claim === 'taken') return this.d.attempts.failed(c, ip, attempt, 'code already used');
    const factor = apps[match.index]!;
    const now = this.d.clock.now();
    // On the factors as they are now: an app removed meanwhile stays removed, and opens nothing (a stolen one, say).
    let removed = false;
    await this.d.factors.update(c.pid, (cur) => {
      removed = !cur?.factors.some((f) => f.id === factor.id);
      return cur && !removed ? { ...cur, factors: cur.factors.map((f) => (f.id === factor.id ? { ...f, lastUsedAt: now } : f)) } : cur;
    });
    if (removed) return this.d.attempts.failed(c, ip, attempt, "not one of the user's authenticator apps");
    await this.d.attempts.succeeded(c, attempt);
    return { ok: true, factor };
  }

  private async matchingStep(secrets: string[], input: string): Promise<{ step: number; index: number } | null> {
    const code = normaliseTotpInput(input);
    if (code === null) return null;
    for (const [index, secret] of secrets.entries()) {
      const step = await matchTotpStep(secret, code, this.d.clock.now());
      if (step !== null) return { step, index };
    }
    return null;
  }

  /**
   * A step is accepted at most once per user, also across parallel submissions and across the user's apps. The code
   * that last verified the session (its sign-in or last step-up), or set up an app in it or in that sign-in, typed
   * again (a step-up asked for within its 90 s), is refused as the person's own: no replay to tell them of.
   */
  private async claim(c: Ceremony, step: number, ip: string): Promise<'claimed' | 'repeat' | 'earlier' | 'taken'> {
    const claim = await this.d.replay.claimStep(c.pid, step, c.id, c.verifiedBy);
    if (claim !== 'taken') return claim;
    this.d.security('mfa_replayed', { pid: c.pid, ip, factor: 'totp' });
    // A code already accepted, sent with the password (or in a session) again: someone may have seen it, over a
    // shoulder or through a phishing page that passed it on (R16). Each time, not once per login as a wrong code.
    this.d.notifier.notify({ event: 'second_factor_replayed', user: c.username, ip, details: { factor: 'totp' } });
    return 'taken';
  }

  /**
   * A step of a secret being set up is accepted at most once for that secret, also across parallel submissions (the
   * form sent twice, which is no replay: see awaitOtherSubmission and boundApp in enrolment.ts); the user's mark then
   * covers it too.
   */
  private async claimSetup(c: Ceremony, secret: string, step: number, ip: string): Promise<'claimed' | 'repeat' | 'taken'> {
    const claim = await this.d.replay.claimSetupStep(c.pid, setupId(secret), step, c.id);
    if (claim === 'taken') this.d.security('mfa_replayed', { pid: c.pid, ip, factor: 'totp' });
    return claim;
  }
}

/**
 * Names a set-up in store keys without its secret: each set-up (a pending login's, a session's) has a secret of its
 * own, 160 random bits, so a one-way digest of it names the set-up and tells nothing about it.
 */
function setupId(secret: string): string {
  return createHash('sha256').update('mfa-gateway totp set-up\0').update(secret).digest('hex').slice(0, 32);
}
