// Gateway sessions: minted after the second factor, checked on every request against the store, ended on logout.
import type { Clock } from '../clock.js';
import { sameJar, type Jar } from '../domain/cookie-jar.js';
import type { FactorKind } from '../domain/policy.js';
import { sessionState, sessionTtlMs, touchDue, type SessionLimits } from '../domain/session-times.js';
import { GatewayError } from '../errors.js';
import { ID_PATTERN, newId } from '../mechanisms/random.js';
import type { SessionTokens } from '../mechanisms/session-token.js';
import type { SessionRecord, Sessions } from '../stores/records.js';
import { BestEffort } from './best-effort.js';
import { ceremonyId } from './ceremony.js';
import type { SecurityLog } from './security-events.js';

export interface ActiveSession {
  sid: string;
  record: SessionRecord;
}

/** The second factor a sign-in or step-up was completed with; a passkey says whether it can leave its device (BE=0). */
export type Proof = { factor: 'webauthn'; deviceBound: boolean } | { factor: Exclude<FactorKind, 'webauthn'> };

const END_ALL_ROUNDS = 5;
// Step-ups a logout follows: moves of the session while the logout was on its way (see SessionService.end).
const FOLLOWED_MOVES = 5;
// How long a portal answer's save waits for a step-up to write the session it moves to (a few store round trips).
const MOVE_WAIT = { rounds: 5, ms: 20 };

/** Why a session ended, as its `session_ended` event says (with `idle-expired` and `expired`, found when it is next used). */
export type EndReason =
  | 'logout'
  | 'portal-logout'
  | 'signed-in-again'
  | 'too-many-wrong-codes'
  | 'signed-out-elsewhere'
  | 'factors-changed'
  | 'factors-reset'
  | 'revoked'
  | 'erased'
  | 'passkey-copied';

export class SessionService {
  constructor(
    private readonly d: { clock: Clock; sessions: Sessions; tokens: SessionTokens; limits: SessionLimits; security: SecurityLog },
  ) {}

  /**
   * Creates the session record and returns the signed cookie value. `passwordAt`: when the sign-in began; the user's
   * sessions ended since (a factor reset, a revocation) end it too, so it never starts.
   */
  async start(s: { pid: string; username: string; proof: Proof; factorBy: string; jar: Jar; groups?: string[]; portalSession?: string; factorAt?: number }, ip: string, passwordAt: number): Promise<string> {
    const now = this.d.clock.now();
    // `factorAt`: when the factor was verified, if not now (at enrolment, before the recovery codes were acknowledged).
    const { proof, factorAt, ...rest } = s;
    const record: SessionRecord = { ...rest, ...proven(proof), authTime: now, since: passwordAt, factorTime: factorAt ?? now, lastSeen: now, csrf: newId() };
    const sid = await this.d.sessions.create(record, sessionTtlMs(record, this.d.limits, now));
    if (!sid) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', "the user's sessions were ended during the sign-in");
    this.d.security('session_started', { pid: s.pid, ip, factor: proof.factor, amr: amrOf(record) });
    return this.d.tokens.sign({ sub: s.pid, sid }, now);
  }

  /**
   * A second factor verified again inside a session (step-up): the session moves to a fresh id with the new factor
   * time (SECURITY R32), keeping its portal cookies; the old id ends. Returns the new cookie value, or null when
   * the session ended meanwhile.
   */
  async reverified(active: ActiveSession, proof: Proof, ip: string, form?: string): Promise<string | null> {
    // A second submission of the form finds this while the session is being moved, and waits for it (see twin).
    if (form !== undefined) await this.d.sessions.moved.markBusy(active.sid);
    const now = this.d.clock.now();
    // Taking first: of two parallel step-ups, or a step-up racing a logout, at most one leaves a live session. The
    // new record starts from the one taken, not the one this request began with: portal cookies saved meanwhile stay.
    const current = await this.d.sessions.take(active.sid);
    if (!current || current.pid !== active.record.pid) return null;
    // Noted at once: a portal answer for the old id saved from now on finds where its cookies go (see save).
    const sid = newId();
    await this.d.sessions.noteMove(active.sid, sid);
    const record: SessionRecord = { ...current, ...proven(proof), factorTime: now, factorBy: ceremonyId.session(active.sid), lastSeen: now, csrf: newId() };
    // The new id continues the session (its `since` too): an ending of the user's sessions since it began ends it,
    // also one whose sweep began before this step-up (it may have found neither id: the old one taken, the new one
    // not yet listed).
    if (!(await this.d.sessions.create(record, sessionTtlMs(record, this.d.limits, now), sid))) return null;
    // A logout of the old session at this moment (see end) ends the new one: here, or there through the note.
    if (await this.d.sessions.endedLately(active.sid)) {
      await this.d.sessions.delete(sid, record.pid);
      return null;
    }
    this.d.security('step_up_ok', { pid: record.pid, ip, factor: proof.factor, amr: amrOf(record) });
    const token = await this.d.tokens.sign({ sub: record.pid, sid }, now);
    if (form !== undefined) await this.d.sessions.moved.put(active.sid, form, { pid: record.pid, token });
    return token;
  }

  /**
   * The step-up a form sent twice gets (a second tap while the first answer, with the new cookie, is on its way): the
   * new session's cookie value when the same form (`form`: what the person sent, with the session's CSRF token) moved
   * the session of `cookie` in the last seconds; once, and only for that form (see FormTwins). Null otherwise.
   */
  async twin(cookie: string | undefined, form: string): Promise<string | null> {
    const claims = cookie ? await this.d.tokens.verify(cookie, this.d.clock.now()) : null;
    if (!claims || !ID_PATTERN.test(claims.sid)) return null;
    const moved = await this.d.sessions.moved.take(claims.sid, form);
    return moved?.pid === claims.sub ? moved.token : null;
  }

  /**
   * The live session behind a cookie value, or null: bad token, unknown, revoked, idle or too old. The request is
   * activity, whoever answers it (the portal, or the gateway: its pages, a step-up asked for, a refusal): the idle
   * clock is written back when due. `seen: false`: not yet, the caller still judges whether the request is the
   * session's (see seen).
   */
  async authenticate(cookie: string | undefined, opts: { seen?: boolean } = {}): Promise<ActiveSession | null> {
    if (!cookie) return null;
    const now = this.d.clock.now();
    // A token seen before is answered without a round through the event loop (the common case: every request).
    const known = this.d.tokens.known(cookie, now);
    const claims = known === undefined ? await this.d.tokens.verify(cookie, now) : known;
    if (!claims || !ID_PATTERN.test(claims.sid)) return null;
    const record = await this.d.sessions.get(claims.sid);
    if (!record || record.pid !== claims.sub) return null;
    const state = sessionState(record, now, this.d.limits);
    if (state.state !== 'active') {
      await this.d.sessions.delete(claims.sid, record.pid);
      this.d.security('session_ended', { pid: record.pid, reason: state.state });
      return null;
    }
    const active = { sid: claims.sid, record };
    if (opts.seen !== false) await this.seen(active);
    return active;
  }

  /** The request counts as activity of the session: its idle clock is written back when due. */
  async seen(active: ActiveSession): Promise<void> {
    if (!touchDue(active.record, this.d.clock.now(), this.d.limits)) return;
    // A write the store refuses (Redis full) does not fail the request: the session then ends at its idle time.
    await this.save(active).catch(() => undefined);
  }

  /**
   * Marks the session seen now and applies `updateJar` (what one portal answer changed) to its jar, both on the record
   * as it is in the store, compared and set: of two answers finishing at once, neither undoes the other's cookies,
   * and a slow request does not write back the jar it started with. A session ended meanwhile stays ended.
   */
  async save(active: ActiveSession, updateJar: (jar: Jar) => Jar = (jar) => jar): Promise<void> {
    const apply = (s: SessionRecord): SessionRecord => {
      if (s.pid !== active.record.pid) return s;
      const jar = updateJar(s.jar);
      const now = this.d.clock.now();
      // The requests of one page load all find the idle clock due: one writes it, the others then write only a
      // changed jar (each write may lose a round of compare-and-set to another, and a jar's must not run out).
      if (sameJar(jar, s.jar) && !touchDue(s, now, this.d.limits)) return s;
      return { ...s, jar, lastSeen: now };
    };
    const ttl = (s: SessionRecord) => sessionTtlMs(s, this.d.limits, this.d.clock.now());
    if ((await this.d.sessions.change(active.sid, apply, ttl)) !== null) return;
    // Gone: ended, or moved by a step-up while this request waited for the portal (its cookies belong to the new id).
    // A step-up takes the old record, notes the move, then writes the new one: in those moments this waits a little
    // (not moved: one more look, for a step-up between its take and its note; moved: until the new one is written).
    for (let round = 0; ; round++) {
      const to = await this.d.sessions.movedTo(active.sid);
      if (to !== null && (await this.d.sessions.change(to, apply, ttl)) !== null) return;
      if (round >= (to === null ? 1 : MOVE_WAIT.rounds) || (await this.d.sessions.endedLately(to ?? active.sid))) return;
      await new Promise((r) => setTimeout(r, MOVE_WAIT.ms));
    }
  }

  /**
   * The session no longer counts as proven with a passkey that cannot leave its device: one was removed, and it may
   * have been the one that proved it. A page that wants such a passkey asks again.
   */
  async forgetDeviceBound(active: ActiveSession): Promise<void> {
    await this.d.sessions.change(
      active.sid,
      (s) => (s.pid === active.record.pid ? { ...s, deviceBound: undefined } : s),
      (s) => sessionTtlMs(s, this.d.limits, this.d.clock.now()),
    );
  }

  /**
   * Ends the session, and the ones step-ups moved it to while this request was on its way (a logout in one tab, a
   * step-up in another): the step-up took the record first, so deleting it alone would leave the person signed in.
   * Noted before the move is looked for, as the step-up notes its move before it looks at this: one of the two sees
   * the other. Logged by the request that ended it: one that found it live and ends it again (a logout sent twice, a
   * step-up code counted after the one that used the last try) does not log it again, nor the report count it again.
   */
  async end(active: ActiveSession, reason: EndReason): Promise<void> {
    if (await this.endFrom(active.sid)) this.d.security('session_ended', { pid: active.record.pid, reason });
  }

  /** Whether the session of a cookie value was moved by a step-up lately (see SessionRecords.movedTo). */
  async movedLately(cookie: string): Promise<boolean> {
    const claims = await this.d.tokens.verify(cookie, this.d.clock.now());
    return claims !== null && ID_PATTERN.test(claims.sid) && (await this.d.sessions.movedTo(claims.sid)) !== null;
  }

  /**
   * Ends the session of a cookie value (see end), also one that leads to no session any more: a step-up in another tab
   * may have taken it a moment ago, its new session not yet noted as a move. The cookie's session is noted as ended all
   * the same, and what it moved to is ended: otherwise that step-up's session would outlive a logout.
   */
  async endByCookie(cookie: string | undefined, reason: EndReason): Promise<void> {
    const claims = cookie ? await this.d.tokens.verify(cookie, this.d.clock.now()) : null;
    if (!claims || !ID_PATTERN.test(claims.sid)) return;
    if (await this.endFrom(claims.sid)) this.d.security('session_ended', { pid: claims.sub, reason });
  }

  /**
   * Ends the session and each one step-ups moved it to, a few at most (each a second factor verified again); whether
   * one of them was live until now (taken: of parallel endings, one ends it).
   */
  private async endFrom(sid: string): Promise<boolean> {
    let next: string | null = sid;
    let ended = false;
    for (let hop = 0; next !== null && hop < FOLLOWED_MOVES; hop++) {
      if (await this.d.sessions.take(next)) ended = true;
      await this.d.sessions.noteEnded(next);
      next = await this.d.sessions.movedTo(next);
    }
    return ended;
  }

  /** Ends every other session of the same user; returns how many were live. */
  async endOthers(active: ActiveSession, reason: EndReason): Promise<number> {
    return this.endAll(active.record.pid, reason, active.sid);
  }

  /**
   * Ends all sessions of a user (but `keep`); returns how many were live. Listed again after each round that ended
   * one, or found one gone (a step-up moving it to a new id), so a sign-in or step-up finishing while the list was
   * being gone through is ended too (a few rounds at most: each new session needs a whole sign-in). Ids whose
   * session already expired leave the list.
   *
   * A step that fails does not stop the others (see BestEffort): a mark the store refuses (full) still leaves every
   * listed session taken. The first failure is thrown at the end; with `effort`, it is kept there instead, for the
   * caller to go on with its own steps.
   */
  async endAll(pid: string, reason: EndReason, keep?: string, effort?: BestEffort): Promise<number> {
    const steps = effort ?? new BestEffort();
    // First: a sign-in or step-up finishing while the list is gone through starts no session (Sessions.create). The
    // session kept counts from now on, so its own step-ups go on (one at this very moment may end it: it fails safe).
    const now = this.d.clock.now();
    await steps.run(() => this.d.sessions.markEnded(pid, now));
    if (keep !== undefined) await steps.run(() => this.d.sessions.change(keep, (s) => (s.pid === pid ? { ...s, since: now } : s), (s) => sessionTtlMs(s, this.d.limits, this.d.clock.now())));
    let ended = 0;
    for (let round = 0; round < END_ALL_ROUNDS; round++) {
      const listed = await steps.run(() => this.d.sessions.listIds(pid));
      let changed = false;
      for (const sid of listed ?? []) {
        if (sid === keep) continue;
        changed = true;
        const taken = await steps.run(() => this.d.sessions.take(sid));
        if (taken) {
          ended++;
          this.d.security('session_ended', { pid, reason });
        } else if (taken === null) {
          await steps.run(() => this.d.sessions.delete(sid, pid));
        }
      }
      if (!changed) break;
    }
    if (!effort) steps.rethrow();
    return ended;
  }
}

/** A session record's factor fields; `deviceBound` replaces (or, undefined, removes) the one the session had. */
function proven(proof: Proof): Pick<SessionRecord, 'factor' | 'deviceBound'> {
  return { factor: proof.factor, deviceBound: proof.factor === 'webauthn' && proof.deviceBound ? true : undefined };
}

/**
 * RFC 8176 methods of a session: the portal's password, then a one-time code, or a key: `hwk` (hardware-secured) for a
 * passkey that cannot leave its device by its authenticator's word, `swk` for one that can be synced.
 */
export function amrOf(s: Pick<SessionRecord, 'factor' | 'deviceBound'>): string[] {
  if (s.factor !== 'webauthn') return ['pwd', 'otp'];
  return ['pwd', s.deviceBound ? 'hwk' : 'swk'];
}
