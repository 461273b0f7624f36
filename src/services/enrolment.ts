// Binding second factors: the enrolment proof at first login, the first factor (TOTP or passkey) with recovery
// codes, and further factors added from the security page.
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { latestEnd, recoveryCodesUntil } from '../domain/session-times.js';
import { GatewayError } from '../errors.js';
import { newId } from '../mechanisms/random.js';
import { matchesCode, newEnrolmentCode, newRecoveryCodes, type RecoveryCodeSet } from '../mechanisms/recovery-codes.js';
import type { Sealer } from '../mechanisms/sealer.js';
import { newTotpSecret } from '../mechanisms/totp.js';
import { newChallenge, registrationOptions, verifyRegistration, WEBAUTHN_TIMEOUT_MS, type RelyingParty } from '../mechanisms/webauthn.js';
import { deviceBound, withPasskey, type Challenges, type CredentialOwners, type EnrolmentCodes, type Factor, type FactorStore, type UserFactors } from '../stores/factor-store.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import { RateLimiter } from '../stores/limits.js';
import type { PendingLogin, PendingLogins } from '../stores/records.js';
import { SealedRecords } from '../stores/sealed-records.js';
import type { Attempts, Ceremony, Refused } from './ceremony.js';
import type { Notifier, Webhooks } from './notifier.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession } from './sessions.js';
import type { TotpChecks } from './totp-checks.js';

export interface EnrolmentDeps {
  config: Config;
  clock: Clock;
  kv: KvStore;
  sealer: Sealer;
  pending: PendingLogins;
  factors: FactorStore;
  owners: CredentialOwners;
  codes: EnrolmentCodes;
  challenges: Challenges;
  attempts: Attempts;
  totp: TotpChecks;
  rp: RelyingParty;
  webhooks: Webhooks;
  notifier: Notifier;
  security: SecurityLog;
}

/**
 * How a factor is bound: the first at first login (`id`: that pending login; `proved`: the salt of the invitation code
 * it showed; `since`: when its password was accepted), or another by a signed-in session (`provenByKey`: a
 * device-bound passkey proved it).
 */
type Binding = { first: true; id: string; proved: string | undefined; since: number } | { first: false; provenByKey: boolean };

/** A factor has been bound: for a first enrolment, the recovery codes to show once. */
export type Bound = { ok: true; factor: Factor; recoveryCodes?: string[] };
/** A passkey registration refused: one of the set-up tries, whose count is not said (see Attempts.beginSetup). */
export type Unregistered = { ok: false };

// A TOTP secret being set up from the security page waits this long for its first code.
const SETUP_TTL_MS = 10 * 60_000;

// Enrolment codes sent through the vendor's channel, per user: three at once, then one a minute; and, since the
// password can be entered again and again, beyond ten one every 144 minutes (about ten a day sustained).
const PROOF_SENDS = { perMinute: 1, burst: 3 };
const PROOF_SENDS_DAILY = { perMinute: 10 / (24 * 60), burst: 10 };

// A first-enrolment form sent twice: the second submission waits at most this long for the first to bind the factor.
const TWIN_WAIT = { rounds: 40, ms: 50 };

export class EnrolmentService {
  /** TOTP secrets being set up from the security page, sealed like every other secret at rest. */
  private readonly setups: SealedRecords<string>;
  private readonly sends: RateLimiter;

  constructor(private readonly d: EnrolmentDeps) {
    this.setups = new SealedRecords(d.kv, d.sealer);
    this.sends = new RateLimiter(d.kv, d.clock);
  }

  /** enrolment.proof invite: a new code for the user (replacing any earlier one), valid `inviteDays`. */
  async issueInvite(pid: string): Promise<{ code: string; expiresAt: number }> {
    const { code, stored } = await newEnrolmentCode('letters');
    const ttl = this.d.config.enrolment.inviteDays * 24 * 60 * 60_000;
    const expiresAt = this.d.clock.now() + ttl;
    await this.d.codes.put(pid, { ...stored, expiresAt }, ttl);
    // A new letter is a new start: wrong codes typed before it no longer lock the user out.
    await this.d.attempts.clear(pid, 'enrolment-code');
    this.d.security('enrolment_code_issued', { pid });
    return { code, expiresAt };
  }

  /**
   * enrolment.proof webhook: a fresh code for this login, sent through the vendor's channel. False when not delivered.
   * At most PROOF_SENDS per user at once, then one a minute: a password alone cannot flood the user with messages.
   */
  async sendProofCode(id: string, p: PendingLogin, ip: string): Promise<boolean> {
    const hook = this.d.config.enrolment.webhook;
    if (!hook) throw new GatewayError('GW_ERR_NOT_FOUND', 'enrolment webhook not configured');
    const rate = await this.sends.take(keys.proofCodeSends(p.pid), PROOF_SENDS);
    if (!rate.allowed) throw new GatewayError('GW_ERR_RATE_LIMITED', 'enrolment codes sent too often', { retryAfterMs: rate.retryAfterMs });
    // Taken only once the per-minute limit let the request through: refused requests do not use up the day.
    const daily = await this.sends.take(keys.proofCodeSendsDaily(p.pid), PROOF_SENDS_DAILY);
    if (!daily.allowed) throw new GatewayError('GW_ERR_RATE_LIMITED', 'daily limit of enrolment codes sent reached', { retryAfterMs: daily.retryAfterMs });
    const { code, stored } = await newEnrolmentCode('digits');
    const now = this.d.clock.now();
    // Never past the latest end the login can be given ("I need more time"); its own end stops the check anyway.
    const expiresAt = Math.min(latestEnd(p, this.d.config.mfa.pendingMaxSeconds * 1000), now + hook.codeMinutes * 60_000);
    await this.changeLive(id, (cur) => ({ ...cur, proofCode: { ...stored, expiresAt } }), now);
    const delivery = await this.d.webhooks.post(hook, { id: newId(), event: 'enrolment_code', user: p.username, code, expiresAt: new Date(expiresAt).toISOString() });
    // A name of its own, not a field: the metrics count events by name, so an alert sees codes not sent.
    if (delivery.delivered) this.d.security('enrolment_code_sent', { pid: p.pid, ip });
    else this.d.security('enrolment_code_not_sent', { pid: p.pid, ip, why: delivery.why });
    // Not delivered (the person is told so): the code sent before, if any, is the one that works, and the page does
    // not say a code was sent when none was. Unless another send has replaced this code meanwhile.
    if (!delivery.delivered) {
      await this.d.pending.update(
        id,
        ({ proofCode: cur, ...rest }) => {
          const kept = cur?.salt === stored.salt ? p.proofCode : cur;
          return kept ? { ...rest, proofCode: kept } : rest;
        },
        this.d.clock.now(),
      );
    }
    return delivery.delivered;
  }

  /** The enrolment proof of a pending login: an invitation code or the code just sent. Then a factor can be chosen. */
  async confirmProof(id: string, p: PendingLogin, input: string, ip: string): Promise<{ ok: true } | Refused> {
    const c = this.d.attempts.ofLogin(id, p);
    const attempt = await this.d.attempts.begin(c, ip, 'enrolment-code');
    const now = this.d.clock.now();
    let ok: boolean;
    let proved: string | undefined;
    if (this.d.config.enrolment.proof === 'webhook') {
      ok = p.proofCode !== undefined && p.proofCode.expiresAt > now && (await matchesCode(p.proofCode, input));
    } else {
      // Checked here, used up when the first factor is bound (bind): a login that runs out of time in between
      // leaves the letter's code for the next try.
      const invite = await this.d.codes.get(p.pid);
      ok = invite !== null && invite.expiresAt > now && (await matchesCode(invite, input));
      proved = invite?.salt;
    }
    if (!ok) return this.d.attempts.failed(c, ip, attempt, 'wrong, expired or used enrolment code');
    await this.d.attempts.succeeded(c, attempt);
    await this.changeLive(id, ({ proofCode: _used, ...rest }) => ({ ...rest, stage: 'enrol', ...(proved ? { invite: proved } : {}) }), now);
    this.d.security('enrolment_proof_ok', { pid: p.pid, ip, proof: this.d.config.enrolment.proof });
    return { ok: true };
  }

  /** The secret being enrolled at first login: made once per pending login, shown until confirmed. */
  async pendingTotpSecret(id: string, p: PendingLogin): Promise<string> {
    if (p.totpSecret) return p.totpSecret;
    const secret = newTotpSecret();
    // Of two pages opened at once, both show the secret that was kept.
    const kept = await this.changeLive(id, (cur) => (cur.totpSecret ? cur : { ...cur, totpSecret: secret }), this.d.clock.now());
    return kept.totpSecret!;
  }

  /** First factor, TOTP: active after one valid code (which is consumed). */
  async confirmPendingTotp(id: string, p: PendingLogin, input: string, name: string, ip: string): Promise<Bound | Refused> {
    if (!p.totpSecret) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'enrolment not started');
    const check = await this.d.totp.checkSecret(this.d.attempts.ofLogin(id, p), p.totpSecret, input, ip);
    if (!check.ok) {
      // The right code, already used by this sign-in: the form was sent twice and the other submission is binding the
      // factor. Its outcome is awaited (briefly), so that this answer can go on to the recovery codes too. Or that
      // submission bound it and then failed (it was answered with an error, and this is the person trying again).
      if (check.repeat) {
        await this.awaitOtherSubmission(id);
        return (await this.resumeEnrolment(id, p, ip)) ?? check;
      }
      return check;
    }
    // A later code after such a failure: the factor is there already.
    const resumed = await this.resumeEnrolment(id, p, ip);
    if (resumed) return resumed;
    const bound = await this.bind(p.pid, this.totpFactor(p.totpSecret, name), p.username, ip, { first: true, id, proved: p.invite, since: p.passwordAt ?? 0 });
    await this.toRecoveryCodes(id, p.pid, bound.factor, ip);
    return bound;
  }

  /**
   * The first factor this sign-in bound, when its move on to the recovery codes was lost (the store failed after the
   * factor was written: the person was told it did not work, and has a factor with codes never shown), or is still
   * under way on another instance: the sign-in goes on to them now, with the set this sign-in chose (see
   * enrolmentCodes), stored again if another took its place. Null when this sign-in bound none. Only the
   * pending login that bound the factor (its enrolmentMark) gets this: one of someone holding only the password,
   * begun after the factor was bound, is past this stage, and one begun before and still here did not bind it.
   */
  async resumeEnrolment(id: string, p: PendingLogin, ip: string): Promise<Bound | null> {
    const mark = enrolmentMark(id);
    const ours = (cur: UserFactors | null) => cur?.factors.find((f) => f.enrolledBy === mark);
    if (!ours(await this.d.factors.get(p.pid))) return null;
    if ((await this.d.pending.get(id, this.d.clock.now()))?.stage !== 'enrol') return null;
    // An operator's reset after the sign-in began takes the factor back (see bind); this sign-in does not go on.
    if (await this.d.factors.removedSince(p.pid, p.passwordAt ?? 0)) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', "the user's factors were reset during the sign-in");
    const made = await this.enrolmentCodes(id);
    if (!made) return null;
    const now = this.d.clock.now();
    let factor: Factor | undefined;
    await this.d.factors.update(p.pid, (cur) => {
      factor = ours(cur);
      return cur && factor && cur.recovery?.salt !== made.stored.salt ? { ...cur, recovery: { ...made.stored, addedAt: now } } : cur;
    });
    // (Set in the update's callback, which the type checker does not follow.)
    const bound = factor as Factor | undefined;
    if (!bound) return null;
    await this.toRecoveryCodes(id, p.pid, bound, ip);
    return { ok: true, factor: bound, recoveryCodes: made.codes };
  }

  /**
   * The recovery codes of this sign-in's first factor: chosen once, in the pending login, before any factor is bound.
   * Bound with the factor, written again by resumeEnrolment, shown from the pending login: every write of the user's
   * set by this sign-in, on any instance and in any order, is this one set, so the codes shown always work. Null once
   * the sign-in has moved on to its codes (their set is no longer kept here) or ended: nothing more is bound nor
   * written for it.
   */
  private async enrolmentCodes(id: string): Promise<{ codes: string[]; stored: RecoveryCodeSet } | null> {
    const now = this.d.clock.now();
    const p = await this.d.pending.get(id, now);
    if (p?.stage !== 'enrol') return null;
    if (p.enrolCodes) return p.enrolCodes;
    const made = await newRecoveryCodes();
    // Of two chosen at once, the one kept.
    const kept = await this.d.pending.update(id, (cur) => (cur.stage !== 'enrol' || cur.enrolCodes ? cur : { ...cur, enrolCodes: made }), now);
    return kept?.stage === 'enrol' ? (kept.enrolCodes ?? null) : null;
  }

  /**
   * A first factor bound: the pending login goes on to its recovery codes, the set it chose (see enrolmentCodes). Once
   * only: a move made meanwhile (another submission, a reload on another instance) already did, with the same set.
   */
  private async toRecoveryCodes(id: string, pid: string, factor: Factor, ip: string): Promise<void> {
    const keyBound = factor.kind === 'webauthn' && deviceBound(factor);
    // The codes come with the stage: the page of that stage never finds it without them. And the time to write them down.
    const now = this.d.clock.now();
    let moved = false;
    await this.d.pending.update(
      id,
      (cur) => {
        if (cur.stage !== 'enrol' || !cur.enrolCodes) return cur;
        moved = true;
        const { totpSecret: _shown, enrolCodes, ...rest } = cur;
        return { ...rest, stage: 'acknowledge', expiresAt: this.codesUntil(rest, now), factor: factor.kind, factorAt: now, factorId: factor.id, ...(keyBound ? { deviceBound: true } : {}), recoveryCodes: enrolCodes.codes };
      },
      now,
    );
    if (moved) this.d.security('enrolled', { pid, ip, factor: factor.kind });
  }

  /** Registration options for a passkey at first login; the challenge is bound to this pending login. */
  async pendingPasskeyOptions(id: string, p: PendingLogin, ip: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    await this.d.attempts.beginOptions(this.d.attempts.ofLogin(id, p), ip, 'register');
    return this.passkeyOptions(`pending:${id}`, p.pid, p.username);
  }

  async confirmPendingPasskey(id: string, p: PendingLogin, response: unknown, name: string, ip: string): Promise<Bound | Unregistered> {
    const how: Binding = { first: true, id, proved: p.invite, since: p.passwordAt ?? 0 };
    const bound = await this.registerPasskey(`pending:${id}`, this.d.attempts.ofLogin(id, p), response, name, ip, how);
    if (!bound.ok) return bound;
    await this.toRecoveryCodes(id, p.pid, bound.factor, ip);
    return bound;
  }

  /**
   * Security page: a new TOTP secret for a signed-in user, kept briefly until its first code. Kept for the session by
   * its sign-in time, which a step-up in between (a new session id) keeps: the key already scanned stays; another
   * session of the user never sees it (R13). Set only when absent: two pages opened at once show the same secret.
   * `made`: set now (none was under way, or its 10 minutes were over), so in no app yet.
   */
  async sessionTotpSecret(active: ActiveSession): Promise<{ secret: string; made: boolean }> {
    let made = false;
    const secret = (await this.setups.change(
      setupKey(active),
      (cur) => {
        made = cur === null;
        return cur ?? newTotpSecret();
      },
      () => SETUP_TTL_MS,
    ))!;
    return { secret, made };
  }

  /**
   * Null when there is no set-up to confirm (the form sent again after its app was added, or the set-up expired): the
   * session is as it was, and the security page shows whether the app is there.
   */
  async confirmSessionTotp(active: ActiveSession, input: string, name: string, ip: string): Promise<Bound | Refused | null> {
    const key = setupKey(active);
    const secret = await this.setups.get(key);
    if (!secret) return null;
    const check = await this.d.totp.checkSecret(this.d.attempts.ofSession(active), secret, input, ip);
    if (!check.ok) {
      // The right code, already used by this session: the form was sent twice, and the other submission is adding this
      // app. Answered as that one is, once the app is there.
      return check.repeat ? this.boundApp(active.record.pid, secret) : check;
    }
    // Taken once: the same set-up confirmed in two tabs at once (each with a code of its own) binds one app.
    if (!(await this.setups.deleteIf(key, (cur) => cur === secret))) return this.boundApp(active.record.pid, secret);
    return this.bind(active.record.pid, this.totpFactor(secret, name), active.record.username, ip, { first: false, provenByKey: active.record.deviceBound === true });
  }

  async sessionPasskeyOptions(active: ActiveSession, ip: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    await this.d.attempts.beginOptions(this.d.attempts.ofSession(active), ip, 'register');
    return this.passkeyOptions(`session:${active.sid}`, active.record.pid, active.record.username);
  }

  confirmSessionPasskey(active: ActiveSession, response: unknown, name: string, ip: string): Promise<Bound | Unregistered> {
    // The session's last proof: a device-bound passkey, or not (see withPasskey).
    return this.registerPasskey(`session:${active.sid}`, this.d.attempts.ofSession(active), response, name, ip, { first: false, provenByKey: active.record.deviceBound === true });
  }

  /** Confirmed by its first code, which counts as its first use. */
  private totpFactor(secret: string, name: string): Factor {
    const now = this.d.clock.now();
    return { id: newId().slice(0, 16), kind: 'totp', name: factorName(name, 'Authenticator app'), addedAt: now, lastUsedAt: now, secret };
  }

  private async passkeyOptions(owner: string, pid: string, username: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    // The user handle is made once and kept, so every credential of a user names the same handle.
    const factors = (await this.d.factors.update(pid, (cur) => (cur?.userHandle ? cur : { ...(cur ?? { factors: [] }), userHandle: newId() })))!;
    const handle = factors.userHandle!;
    const challenge = newChallenge();
    await this.d.challenges.put(owner, { challenge, pid, ceremony: 'register', expiresAt: this.d.clock.now() + WEBAUTHN_TIMEOUT_MS }, WEBAUTHN_TIMEOUT_MS);
    const existing = factors.factors.flatMap((f) => (f.kind === 'webauthn' ? [f.credential] : []));
    return registrationOptions(this.d.rp, { handle, name: username, displayName: username }, existing, challenge);
  }

  private async registerPasskey(
    owner: string,
    c: Ceremony,
    response: unknown,
    name: string,
    ip: string,
    how: Binding,
  ): Promise<Bound | Unregistered> {
    const attempt = await this.d.attempts.beginSetup(c, ip, 'webauthn');
    // The challenge was made for this login or session and for registration, and is used once (R21, C-42): taken
    // before the answer is checked, so each answer, refused or not, needs options of its own.
    const challenge = await this.d.challenges.take(owner, 'register');
    if (!challenge || challenge.pid !== c.pid || challenge.expiresAt <= this.d.clock.now()) return this.d.attempts.failed(c, ip, attempt, 'no live registration challenge');
    const result = await verifyRegistration(this.d.rp, response, challenge.challenge);
    if (!result.ok) return this.d.attempts.failed(c, ip, attempt, result.reason);
    // A credential id belongs to one user only (WA3 §7.1, C-44).
    if (!(await this.d.owners.claim(result.credential.id, c.pid))) return this.d.attempts.failed(c, ip, attempt, 'credential id already registered');
    const factor: Factor = { id: newId().slice(0, 16), kind: 'webauthn', name: factorName(name, 'Passkey'), addedAt: this.d.clock.now(), credential: result.credential };
    try {
      return await this.bind(c.pid, factor, c.username, ip, how);
    } catch (err) {
      // Nothing was bound: the credential id is free again.
      await this.d.owners.release(result.credential.id).catch(() => undefined);
      throw err;
    }
  }

  /** The app another submission of a set-up added with its secret: waited for at most TWIN_WAIT (null: none). */
  private async boundApp(pid: string, secret: string): Promise<Bound | null> {
    for (let round = 0; ; round++) {
      const app = (await this.d.factors.get(pid))?.factors.find((f) => f.kind === 'totp' && f.secret === secret);
      if (app) return { ok: true, factor: app };
      if (round >= TWIN_WAIT.rounds) return null;
      await new Promise((r) => setTimeout(r, TWIN_WAIT.ms));
    }
  }

  /** Waits while the pending login is still at the factor step, at most TWIN_WAIT. */
  private async awaitOtherSubmission(id: string): Promise<void> {
    for (let round = 0; round < TWIN_WAIT.rounds; round++) {
      if ((await this.d.pending.get(id, this.d.clock.now()))?.stage !== 'enrol') return;
      await new Promise((r) => setTimeout(r, TWIN_WAIT.ms));
    }
  }

  /** Until when a pending login moving to the recovery codes runs: its whole time again (see recoveryCodesUntil). */
  private codesUntil(p: PendingLogin, now: number): number {
    const { pendingTimeoutSeconds, pendingMaxSeconds } = this.d.config.mfa;
    return recoveryCodesUntil(p, now, pendingTimeoutSeconds * 1000, pendingMaxSeconds * 1000);
  }

  /** Changes the pending login as it is now; it must not have ended meanwhile. */
  private async changeLive(id: string, change: (p: PendingLogin) => PendingLogin, now: number): Promise<PendingLogin> {
    const p = await this.d.pending.update(id, change, now);
    if (!p) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'pending login ended');
    return p;
  }

  /**
   * Adds a factor; a first factor comes with a new set of recovery codes. Other factors are never overwritten.
   */
  private async bind(pid: string, factor: Factor, username: string, ip: string, how: Binding): Promise<Bound> {
    const { first } = how;
    const proved = how.first ? how.proved : undefined;
    // A first factor needs no proof of a device-bound passkey (see withPasskey).
    const provenByKey = how.first || how.provenByKey;
    const now = this.d.clock.now();
    const made = how.first ? await this.enrolmentCodes(how.id) : undefined;
    if (made === null) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'the sign-in ended or moved on meanwhile');
    // The invitation works once: of two logins that both showed it, only the first to bind a factor has it (taken
    // atomically); the other would bind a second first factor anyway, which the update below refuses too.
    const inviteMode = first && this.d.config.enrolment.proof === 'invite';
    // Only the code this login showed: one issued since (a reset, a new letter) was never shown to it. Checked before
    // the code is taken (taking and putting back would hide it from a proof checked meanwhile), and again after.
    if (inviteMode && (await this.d.codes.get(pid))?.salt !== proved) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'the enrolment code was replaced meanwhile');
    const invite = inviteMode ? await this.d.codes.take(pid) : undefined;
    if (invite === null) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'the enrolment code was used meanwhile');
    // The factor as stored (a passkey may be marked: see withPasskey), and the record as the write found it.
    let bound = factor;
    let found: UserFactors | null = null;
    try {
      if (invite && invite.salt !== proved) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'the enrolment code was replaced meanwhile');
      await this.d.factors.update(pid, (cur) => {
        found = cur;
        const current: UserFactors = cur ?? { factors: [] };
        // A first factor bound meanwhile through another pending login is not followed by a second "first" one.
        if (first && current.factors.length) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'a factor was enrolled meanwhile');
        // An added factor joins the factors the session was signed in with: none left means an operator reset them
        // meanwhile, and the factor of a session being ended must not become the account's only one.
        if (!first && !current.factors.length) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'the factors were reset meanwhile');
        const mine: Factor = how.first ? { ...factor, enrolledBy: enrolmentMark(how.id) } : factor;
        const added = mine.kind === 'webauthn' ? withPasskey(current, mine, provenByKey) : { ...current, factors: [...current.factors, mine] };
        bound = added.factors.at(-1)!;
        return { ...added, ...(made ? { recovery: { ...made.stored, addedAt: now } } : {}) };
      });
    } catch (err) {
      // Nothing was bound: the letter's code is put back for the next try.
      if (invite) await this.d.codes.put(pid, invite, Math.max(1, invite.expiresAt - now)).catch(() => undefined);
      throw err;
    }
    // An operator's reset or erasure marks the factors removed before it removes them. A first factor of a sign-in
    // begun before that mark, written after the removal, is taken back (written, then the mark looked at, as
    // Sessions.create does): the reset is never undone by a sign-in it could not see. The record goes back to what
    // this write found (none: deleted), compared first: a factor bound since by a sign-in after the reset stays.
    if (first && (await this.d.factors.removedSince(pid, how.since))) {
      const ours = (cur: UserFactors | null) => cur?.factors.some((f) => f.id === bound.id) === true;
      // (Set in the update's callback, which the type checker does not follow.)
      const before = found as UserFactors | null;
      if (before === null) await this.d.factors.deleteIf(pid, ours);
      else await this.d.factors.update(pid, (cur) => (ours(cur) ? before : cur));
      throw new GatewayError('GW_ERR_LOGIN_EXPIRED', "the user's factors were reset during the sign-in");
    }
    const recoveryCodes = made?.codes;
    // A kind disabled after too many failures is back once a factor of that kind is bound again (63B §3.2.2).
    await this.d.attempts.clear(pid, factor.kind);
    if (first) await this.d.attempts.clear(pid, 'recovery');
    this.d.security('factor_added', { pid, ip, factor: factor.kind });
    this.d.notifier.notify({ event: first ? 'enrolled' : 'factor_added', user: username, ip, details: { kind: factor.kind, name: factor.name } });
    return { ok: true, factor: bound, ...(recoveryCodes ? { recoveryCodes } : {}) };
  }
}

/** A TOTP set-up of the security page: per session, by sign-in time (kept by a step-up). */
const setupKey = (active: ActiveSession) => keys.factorSetup(active.record.pid, active.record.authTime);

/**
 * What a person called a factor: trimmed, at most 60 UTF-16 units (the field's maxlength), without control characters,
 * nor the bidi embeddings, overrides and isolates that would reorder the page's text around it or end the isolation the
 * page puts it in (joiners, which some scripts and emoji need, stay). A lone surrogate (`\ud800` in a JSON body) is no
 * character and goes too; so does the half of one the limit would cut in two: the page would show either as U+FFFD.
 */
export function factorName(input: string, fallback: string): string {
  const name = input.normalize('NFC').replace(/[\p{Cc}\p{Cs}\u202A-\u202E\u2066-\u2069]/gu, '').trim().slice(0, 60).replace(/\p{Cs}$/u, '').trimEnd();
  // Nothing visible (spaces, a direction mark, a zero-width space alone): no name.
  return /[^\s\p{Default_Ignorable_Code_Point}]/u.test(name) ? name : fallback;
}

/**
 * Names a pending login in the factor it bound without its id (which opens it while it lives): the id is random, so a
 * one-way digest of it names the sign-in and tells nothing about it.
 */
function enrolmentMark(id: string): string {
  return createHash('sha256').update('mfa-gateway first enrolment\0').update(id).digest('hex').slice(0, 32);
}
