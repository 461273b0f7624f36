// A pending login (password accepted, second factor outstanding): looked up by the browser's cookie, finished once.
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { FactorStore } from '../stores/factor-store.js';
import type { FinishedLogin, PendingLogin, PendingLogins, PendingStage } from '../stores/records.js';
import { ceremonyId } from './ceremony.js';
import type { SecurityLog } from './security-events.js';
import type { Proof, SessionService } from './sessions.js';

/**
 * A finished login: the session cookie value, where to go, and the portal's cookies (the jar, released in
 * forward-auth mode; the login answer's cookies the browser holds).
 */
export type SignedIn = { ok: true } & FinishedLogin;

/** A pending login that is still alive but at another stage than the one asked for (Back to a step already done). */
export class OtherStage extends GatewayError {
  constructor(asked: PendingStage, at: PendingStage) {
    super('GW_ERR_LOGIN_EXPIRED', `pending login at stage ${at}, not ${asked}`);
  }
}

export class PendingService {
  constructor(private readonly d: { clock: Clock; pending: PendingLogins; sessions: SessionService; factors: FactorStore; security: SecurityLog }) {}

  /** The pending login behind a cookie value, when it exists, has not expired and is at `stage` (else OtherStage). */
  async at(id: string | undefined, stage: PendingStage): Promise<{ id: string; p: PendingLogin }> {
    const p = id ? await this.d.pending.get(id, this.d.clock.now()) : null;
    if (!id || !p) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', `no pending login at stage ${stage}`);
    if (p.stage !== stage) throw new OtherStage(stage, p.stage);
    return { id, p };
  }

  /** The stage of a pending login, or null when there is none (store errors are not swallowed). */
  async stage(id: string | undefined): Promise<PendingStage | null> {
    return id ? ((await this.d.pending.get(id, this.d.clock.now()))?.stage ?? null) : null;
  }

  /** The codes to show, once: they leave the record as they are shown. */
  async takeRecoveryCodes(id: string, p: PendingLogin): Promise<string[]> {
    if (!p.recoveryCodes) return [];
    // Taken from the record as it is, so two pages opened at once do not both show them.
    let taken: string[] = [];
    const left = await this.d.pending.update(
      id,
      (cur) => {
        const { recoveryCodes = [], ...rest } = cur;
        taken = recoveryCodes;
        return recoveryCodes.length ? rest : cur;
      },
      this.d.clock.now(),
    );
    return left ? taken : [];
  }

  /**
   * Ends the pending login and starts the session. Taking the record makes this atomic: of parallel finishers only
   * one starts a session, and only from the stage it was checked at. `verified`: the second factor just proved, logged
   * (mfa_ok) by that one finisher only: a form sent twice at once, or two factors at once, proves one sign-in.
   */
  async finish(id: string, stage: PendingStage, ip: string, verified?: Proof, form?: string): Promise<SignedIn> {
    // A second submission of the form finds this while the session is being started, and waits for it (see twin).
    if (form !== undefined) await this.d.pending.finished.markBusy(id);
    const p = await this.d.pending.take(id, this.d.clock.now());
    // Two submissions of the same form at once: the one that did not take the record gets the other's sign-in.
    const twin = !p && form !== undefined ? await this.twin(id, stage, form) : null;
    if (twin) return twin;
    const proof = verified ?? (p?.factor && { factor: p.factor, deviceBound: p.deviceBound === true });
    if (!p || p.stage !== stage || !proof) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'pending login already finished');
    await this.d.pending.delete(id);
    if (verified) this.d.security('mfa_ok', { pid: p.pid, ip, factor: verified.factor });
    // A factor enrolled at this login proves it only while the user still has it.
    if (!verified && p.factorId && !(await this.d.factors.get(p.pid))?.factors.some((f) => f.id === p.factorId)) {
      throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'the factor enrolled at this login was removed');
    }
    // A login kept from before the password time was recorded counts as begun at once (before any ending).
    const factorAt = verified ? undefined : p.factorAt;
    const { pid, username, jar, groups, portalSession } = p;
    const token = await this.d.sessions.start({ pid, username, proof, factorBy: ceremonyId.login(id), jar, ...(groups ? { groups } : {}), ...(portalSession ? { portalSession } : {}), ...(factorAt ? { factorAt } : {}) }, ip, p.passwordAt ?? 0);
    const finished: FinishedLogin = { pid: p.pid, token, continueTo: p.continueTo, jar: p.jar, ...(p.browserSetCookies ? { browserSetCookies: p.browserSetCookies } : {}) };
    if (form !== undefined) await this.d.pending.finished.put(id, `${stage}\n${form}`, finished);
    return { ok: true, ...finished };
  }

  /**
   * The sign-in a form sent twice gets (a second tap while the first answer is on its way): the browser drops the
   * first answer, which carried the session cookie, and shows the second's. When the same form (`form`: what the
   * person sent, the login's CSRF token with it) finished this pending login in the last seconds, the second
   * submission gets the same sign-in, once. Any other form ends the chance (a double tap sends the same one, so
   * nobody can try codes against it); null then, and whenever no finish is under way or done.
   */
  async twin(id: string | undefined, stage: PendingStage, form: string): Promise<SignedIn | null> {
    const f = id ? await this.d.pending.finished.take(id, `${stage}\n${form}`) : null;
    return f && { ok: true, ...f };
  }
}
