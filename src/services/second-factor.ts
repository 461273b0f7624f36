// Proving a second factor: at sign-in (TOTP, passkey or a recovery code) and as a step-up inside a session.
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { codesLeft, matchRecoveryCode } from '../mechanisms/recovery-codes.js';
import { authenticationOptions, counterMoved, newChallenge, verifyAuthentication, WEBAUTHN_TIMEOUT_MS, type RelyingParty } from '../mechanisms/webauthn.js';
import { deviceBound, usable, type Challenges, type FactorStore, type WebAuthnFactor } from '../stores/factor-store.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { PendingLogin } from '../stores/records.js';
import { BestEffort } from './best-effort.js';
import type { Attempts, Ceremony, Refused } from './ceremony.js';
import type { Notifier } from './notifier.js';
import type { PendingService, SignedIn } from './pending.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession, Proof, SessionService } from './sessions.js';
import type { TotpChecks } from './totp-checks.js';

export interface SecondFactorDeps {
  config: Config;
  clock: Clock;
  kv: KvStore;
  factors: FactorStore;
  challenges: Challenges;
  attempts: Attempts;
  totp: TotpChecks;
  pending: PendingService;
  sessions: SessionService;
  rp: RelyingParty;
  notifier: Notifier;
  security: SecurityLog;
}

export type SteppedUp = { ok: true; token: string };

export interface FactorKinds {
  totp: boolean;
  webauthn: boolean;
  deviceBoundPasskey: boolean;
  recovery: boolean;
  locked: ('totp' | 'webauthn' | 'recovery')[];
}

/** The form a second submission must repeat to get the same sign-in or step-up: the page's CSRF token and the code as typed. */
export function twinForm(csrf: string, code: string): string {
  return `${csrf}\n${code}`;
}

export class SecondFactorService {
  constructor(private readonly d: SecondFactorDeps) {}

  /**
   * Which kinds of factor the user can sign in with (the verify and step-up pages offer these), and those the user has
   * but that are disabled after too many failures (`locked`): offered, they would only be refused.
   */
  async kindsOf(pid: string): Promise<FactorKinds> {
    const [f, disabled] = await Promise.all([this.d.factors.get(pid), this.d.attempts.disabledKinds(pid, ['totp', 'webauthn', 'recovery'])]);
    const held = {
      totp: Boolean(f?.factors.some((x) => x.kind === 'totp')),
      webauthn: Boolean(f?.factors.some((x) => x.kind === 'webauthn' && usable(x))),
      recovery: f?.recovery ? codesLeft(f.recovery) > 0 : false,
    };
    const on = (kind: keyof typeof held) => held[kind] && !disabled.has(kind);
    return {
      totp: on('totp'),
      webauthn: on('webauthn'),
      deviceBoundPasskey: on('webauthn') && Boolean(f?.factors.some((x) => x.kind === 'webauthn' && usable(x) && deviceBound(x))),
      recovery: on('recovery'),
      locked: (['totp', 'webauthn', 'recovery'] as const).filter((kind) => held[kind] && disabled.has(kind)),
    };
  }

  async verifyTotp(id: string, p: PendingLogin, input: string, ip: string): Promise<SignedIn | Refused> {
    const check = await this.d.totp.checkUser(this.d.attempts.ofLogin(id, p), input, ip);
    return check.ok ? this.signedIn(id, p, { factor: 'totp' }, ip, input) : check;
  }

  async verifyRecoveryCode(id: string, p: PendingLogin, input: string, ip: string): Promise<SignedIn | Refused> {
    const factors = await this.d.factors.get(p.pid);
    if (!factors?.recovery) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no recovery codes');
    const c = this.d.attempts.ofLogin(id, p);
    const attempt = await this.d.attempts.begin(c, ip, 'recovery');
    const index = await matchRecoveryCode(factors.recovery, input);
    // The claim, kept for good, makes "works once" atomic even for two uses at the same moment; the marks in
    // the factor record only count what is left.
    const claimed = index !== -1 && (await this.claimRecoveryCode(c, factors.recovery.salt, index));
    if (!claimed) return this.d.attempts.failed(c, ip, attempt, index === -1 ? 'wrong code' : 'code already used');
    // Marked on the set as it is now. Already marked: the same form sent twice, and the other submission tells the
    // use. A set replaced (or removed) meanwhile is left alone, and its code opens nothing: new codes are made because
    // the old ones may have been seen.
    let again = false;
    let replaced = false;
    const after = await this.d.factors.update(p.pid, (cur) => {
      const set = cur?.recovery;
      again = false;
      replaced = !cur || !set || set.salt !== factors.recovery!.salt;
      if (!cur || !set || replaced) return cur;
      again = set.hashes[index] === null;
      return again ? cur : { ...cur, recovery: { ...set, hashes: set.hashes.map((h, i) => (i === index ? null : h)) } };
    });
    if (replaced) return this.d.attempts.failed(c, ip, attempt, 'code of a replaced set');
    await this.d.attempts.succeeded(c, attempt);
    if (!again) {
      const remaining = after?.recovery ? codesLeft(after.recovery) : 0;
      this.d.security('recovery_code_used', { pid: p.pid, ip, remaining });
      this.d.notifier.notify({ event: 'recovery_code_used', user: p.username, ip, details: { remaining } });
    }
    return this.signedIn(id, p, { factor: 'recovery' }, ip, input);
  }

  /**
   * A recovery code is accepted once, for good, and its claim notes the ceremony it went to (as ReplayGuard.claimStep
   * does for a TOTP step). A claim found already there is this ceremony's own when the store applied it but its
   * answer was lost (the connection cut, the command timed out): the same code sent again goes on, where it would
   * otherwise be refused as used and be lost to the person while still counted as unused. Any other ceremony is refused.
   */
  private async claimRecoveryCode(c: Ceremony, salt: string, index: number): Promise<boolean> {
    const key = keys.recoveryCodeUsed(c.pid, salt, index);
    return (await this.d.kv.setIfAbsent(key, c.id)) || (await this.d.kv.get(key)) === c.id;
  }

  /** Authentication options for a passkey at sign-in; the challenge is bound to this pending login. */
  async pendingPasskeyOptions(id: string, p: PendingLogin, ip: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    await this.d.attempts.beginOptions(this.d.attempts.ofLogin(id, p), ip, 'authenticate');
    return this.passkeyOptions(`pending:${id}`, p.pid);
  }

  async verifyPasskey(id: string, p: PendingLogin, response: unknown, ip: string): Promise<SignedIn | Refused> {
    const check = await this.checkPasskey(`pending:${id}`, this.d.attempts.ofLogin(id, p), response, ip);
    return check.ok ? this.signedIn(id, p, { factor: 'webauthn', deviceBound: check.deviceBound }, ip) : check;
  }

  /** Step-up with a TOTP code: the session moves to a fresh id. Too many wrong codes end it. */
  async stepUpTotp(active: ActiveSession, input: string, ip: string): Promise<SteppedUp | Refused> {
    const check = await this.d.totp.checkUser(this.stepUpCeremony(active), input, ip);
    return check.ok ? this.steppedUp(active, { factor: 'totp' }, ip, twinForm(active.record.csrf, input)) : check;
  }

  /** `deviceBoundOnly`: for a rule that takes only a passkey that cannot leave its device, only those are offered. */
  async stepUpPasskeyOptions(active: ActiveSession, deviceBoundOnly: boolean, ip: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    await this.d.attempts.beginOptions(this.stepUpCeremony(active), ip, 'authenticate');
    return this.passkeyOptions(`session:${active.sid}`, active.record.pid, deviceBoundOnly);
  }

  async stepUpPasskey(active: ActiveSession, response: unknown, ip: string): Promise<SteppedUp | Refused> {
    const check = await this.checkPasskey(`session:${active.sid}`, this.stepUpCeremony(active), response, ip);
    return check.ok ? this.steppedUp(active, { factor: 'webauthn', deviceBound: check.deviceBound }, ip) : check;
  }

  private stepUpCeremony(active: ActiveSession): Ceremony {
    return this.d.attempts.ofSession(active);
  }

  private async passkeyOptions(owner: string, pid: string, deviceBoundOnly = false): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const factors = await this.d.factors.get(pid);
    const credentials = (factors?.factors ?? []).flatMap((f) =>
      f.kind === 'webauthn' && usable(f) && (!deviceBoundOnly || deviceBound(f)) ? [f.credential] : [],
    );
    if (!credentials.length) throw new GatewayError('GW_ERR_BAD_REQUEST', 'no passkey registered');
    const challenge = newChallenge();
    const allowed = credentials.map((c) => c.id);
    await this.d.challenges.put(owner, { challenge, pid, ceremony: 'authenticate', expiresAt: this.d.clock.now() + WEBAUTHN_TIMEOUT_MS, allowed }, WEBAUTHN_TIMEOUT_MS);
    return authenticationOptions(this.d.rp, credentials, challenge);
  }

  /** WA3 §7.2 around the mechanism: the challenge of this ceremony, a credential of this user, the counter stored. */
  private async checkPasskey(owner: string, c: Ceremony, response: unknown, ip: string): Promise<{ ok: true; deviceBound: boolean } | Refused> {
    const attempt = await this.d.attempts.beginPasskey(c, ip);
    // The challenge was made for this login or session, for authentication, and is used once (R21, C-42).
    const challenge = await this.d.challenges.take(owner, 'authenticate');
    if (!challenge || challenge.pid !== c.pid || challenge.expiresAt <= this.d.clock.now()) {
      return this.d.attempts.failed(c, ip, attempt, 'no live authentication challenge');
    }
    const factors = await this.d.factors.get(c.pid);
    const id = typeof (response as { id?: unknown } | null)?.id === 'string' ? (response as { id: string }).id : '';
    // The assertion comes from a credential of the user whose password was just checked (R23, C-44).
    const factor = factors?.factors.find((f): f is WebAuthnFactor => f.kind === 'webauthn' && f.credential.id === id);
    if (!factors || !factor) return this.d.attempts.failed(c, ip, attempt, "not one of the user's credentials");
    // And one the options listed (R23): a step-up that offered only the passkeys bound to their device is answered by
    // one of them, or by none; a passkey added since the options were made waits for the next ones. (A challenge made by
    // the release before, in the minutes after an upgrade, lists none: not held against the person.)
    if (challenge.allowed !== undefined && !challenge.allowed.includes(id)) return this.d.attempts.failed(c, ip, attempt, 'a credential the options did not list');
    // A copy of it answered before: neither the copy nor the original opens anything (which is which is unknown).
    if (!usable(factor)) return this.d.attempts.failed(c, ip, attempt, 'suspect-credential');
    const result = await verifyAuthentication(this.d.rp, response, challenge.challenge, factor.credential, factors.userHandle);
    const regressed = async () => {
      const now = this.d.clock.now();
      await this.d.factors.update(c.pid, (cur) =>
        cur ? { ...cur, factors: cur.factors.map((f) => (f.id === factor.id && f.kind === 'webauthn' && usable(f) ? { ...f, suspectSince: now } : f)) } : cur,
      );
      // What either copy opened ends with it: every session of the user (this one too, when the copy answered a
      // step-up) and every sign-in under way (this one included); the person signs in again with another factor. All
      // of them, not only those this passkey proved: a session records only its latest factor, so one signed in with
      // the copy and stepped up with an app since would be missed, and one more sign-in for the person is cheap beside
      // an attacker left signed in. The sessions end before the refusal is counted (a ceremony's last try throws); a
      // step that fails stops neither the other steps nor the event and the notification (see BestEffort).
      const effort = new BestEffort();
      const sessionsEnded = await this.d.sessions.endAll(c.pid, 'passkey-copied', undefined, effort);
      this.d.security('webauthn_counter_regression', { pid: c.pid, ip, factor: 'webauthn', credential: factor.id, sessionsEnded });
      this.d.notifier.notify({ event: 'webauthn_counter_regression', user: c.username, ip, details: { name: factor.name, sessionsEnded } });
      await this.d.attempts.failed(c, ip, await this.d.attempts.againstUser(c, attempt), 'counter-regression');
      // The sign-in itself ends last: its first failed second step is notified as any other, and that reads the sign-in.
      if (c.kind === 'login') await effort.run(() => c.end());
      effort.rethrow();
      // Answered as what has ended, not as a passkey to try again: the person is told at once (the passkey script
      // opens the page again, which says to sign in again), not at the next press.
      throw c.kind === 'login'
        ? new GatewayError('GW_ERR_LOGIN_EXPIRED', 'sign-in ended: passkey found copied')
        : new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'session ended: passkey found copied');
    };
    if (!result.ok && result.reason === 'counter-regression') return regressed();
    // Only a clone's answer (above: its signature right, its counter behind) counts against the user. A wrong
    // signature cannot be a guess, and anyone holding the password can make one from the options' credential ids.
    if (!result.ok) return this.d.attempts.failed(c, ip, attempt, result.reason);
    // The counter and backup state are stored only after every check passed (WA3 §7.2), on the factors as they are
    // now, and the counter is checked again there: of two assertions with the same counter checked at once (a cloned
    // authenticator racing the real one), the second is refused.
    const now = this.d.clock.now();
    let behind = false;
    let removed = false;
    let suspect = false;
    await this.d.factors.update(c.pid, (cur) => {
      const stored = cur?.factors.find((f): f is WebAuthnFactor => f.id === factor.id && f.kind === 'webauthn');
      removed = stored === undefined;
      suspect = stored?.suspectSince !== undefined;
      behind = stored !== undefined && !counterMoved(result.counter, stored.credential.counter);
      if (!cur || !stored || suspect || behind) return cur;
      const used: WebAuthnFactor = { ...stored, lastUsedAt: now, credential: { ...stored.credential, counter: result.counter, backedUp: result.backedUp } };
      return { ...cur, factors: cur.factors.map((f) => (f === stored ? used : f)) };
    });
    // A passkey removed while its assertion was checked (a stolen one, say) opens nothing.
    if (removed) return this.d.attempts.failed(c, ip, attempt, "not one of the user's credentials");
    if (suspect) return this.d.attempts.failed(c, ip, attempt, 'suspect-credential');
    if (behind) return regressed();
    await this.d.attempts.succeeded(c, attempt);
    // Its backup eligibility is the stored one (verifyAuthentication checked the assertion's against it).
    return { ok: true, deviceBound: deviceBound(factor) };
  }

  /** `code`: what the person typed, for a second submission of the same form (see PendingService.twin). */
  private signedIn(id: string, p: PendingLogin, proof: Proof, ip: string, code?: string): Promise<SignedIn> {
    return this.d.pending.finish(id, 'verify', ip, proof, code === undefined ? undefined : twinForm(p.csrf, code));
  }

  /** `form`: the step-up form as sent, for a second submission of it (see SessionService.twin). */
  private async steppedUp(active: ActiveSession, proof: Proof, ip: string, form?: string): Promise<SteppedUp> {
    const token = await this.d.sessions.reverified(active, proof, ip, form);
    if (!token) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'session ended during step-up');
    return { ok: true, token };
  }
}
