// The records of a sign-in: browser jars, pending logins and sessions, sealed at rest.
import type { Jar } from '../domain/cookie-jar.js';
import type { FactorKind } from '../domain/policy.js';
import type { HashedCode, RecoveryCodeSet } from '../mechanisms/recovery-codes.js';
import { newId } from '../mechanisms/random.js';
import type { Sealer } from '../mechanisms/sealer.js';
import { liveMembers, type KvStore } from './kv-store.js';
import { keys } from './keys.js';
import { FormTwins } from './form-twins.js';
import { SealedRecords } from './sealed-records.js';

/** Portal cookies of a browser that has not signed in yet (the pre-login jar). */
export class BrowserJars {
  private readonly records: SealedRecords<BrowserJar | Jar>;
  constructor(kv: KvStore, sealer: Sealer, private readonly ttlMs: number) {
    this.records = new SealedRecords(kv, sealer);
  }
  /** The jar, and its round (undefined: there is none). */
  async get(browserId: string): Promise<{ round?: string; cookies: Jar }> {
    return roundOf(await this.records.get(keys.browserJar(browserId)));
  }
  /** A jar put back by a password login that failed: a new round. */
  put(browserId: string, cookies: Jar): Promise<void> {
    return this.records.put(keys.browserJar(browserId), { round: newId(), cookies }, this.ttlMs);
  }
  /**
   * Applies one portal answer's cookies to the jar as it is now (compared and set). A request that began with a jar
   * (`startedIn`, its round) changes only that round's: a password login took it meanwhile, and its portal session
   * belongs to that login alone.
   */
  async update(browserId: string, startedIn: string | undefined, apply: (jar: Jar) => Jar): Promise<void> {
    await this.records.change(
      keys.browserJar(browserId),
      (stored) => {
        const cur = stored && roundOf(stored);
        if (!cur) return startedIn === undefined ? { round: newId(), cookies: apply([]) } : stored;
        return startedIn === undefined || cur.round === startedIn ? { round: cur.round ?? newId(), cookies: apply(cur.cookies) } : stored;
      },
      () => this.ttlMs,
    );
  }
  /** Removes and returns the jar's cookies: after a password login they move to the pending login, never to be reused. */
  async take(browserId: string): Promise<Jar> {
    return roundOf(await this.records.take(keys.browserJar(browserId))).cookies;
  }
}

/**
 * A pre-login jar and its round: made with the jar, kept by the portal's answers (which may change any cookie, as a
 * load balancer's stickiness cookie does on each), new when a password login takes the jar and puts it back.
 */
interface BrowserJar {
  round: string;
  cookies: Jar;
}

/**
 * The round of a jar written before jars had rounds (its cookies alone): a round all the same, which a password login
 * taking the jar ends as any other (an answer to a request that began with it is then withheld).
 */
const BEFORE_ROUNDS = 'before-rounds';

/** A stored jar as { round, cookies }; none: no round. */
function roundOf(stored: BrowserJar | Jar | null): { round?: string; cookies: Jar } {
  if (stored === null) return { cookies: [] };
  return 'cookies' in stored ? stored : { round: BEFORE_ROUNDS, cookies: stored };
}

/** proof: the enrolment proof is due; enrol: choose and set up a first factor; verify: sign in with one; acknowledge: recovery codes shown. */
export type PendingStage = 'proof' | 'enrol' | 'verify' | 'acknowledge';

export interface PendingLogin {
  pid: string;
  username: string;
  jar: Jar;
  continueTo: string;
  csrf: string;
  stage: PendingStage;
  expiresAt: number;
  /** When the portal accepted the password (records from before this was kept have none: they get no more time). */
  passwordAt?: number;
  /** The TOTP secret being enrolled; never shown again once enrolment is confirmed. */
  totpSecret?: string;
  /** enrolment.proof webhook: the code sent to the user (hashed) and until when it works. */
  proofCode?: HashedCode & { expiresAt: number };
  /** enrolment.proof invite: the salt of the letter's code this login showed (bind uses up that one only). */
  invite?: string;
  /**
   * The recovery codes of a first enrolment, chosen before the factor is bound (stage enrol, never shown there): every
   * write of the user's set by this sign-in is this set, so the codes shown are the stored ones.
   */
  enrolCodes?: { codes: string[]; stored: RecoveryCodeSet };
  /** Recovery codes of a first enrolment, held (sealed) only until the page that shows them once. */
  recoveryCodes?: string[];
  /** A failed second step was already reported to the notify webhook for this login. */
  failureNotified?: boolean;
  /** The factor that completed the login (stage 'acknowledge'). */
  factor?: FactorKind;
  /** When it was verified: the session's second-factor time (the recovery codes are acknowledged later). */
  factorAt?: number;
  /** Its id: the login finishes only while the user still has it (removed meanwhile from another browser: not). */
  factorId?: string;
  /** That factor was a passkey that cannot leave its device (see RuleFactor). */
  deviceBound?: true;
  /** Groups the portal named in its login answer (groups.loginHeader). */
  groups?: string[];
  /** The login answer's Set-Cookie lines for cookies the browser holds (portal.browserCookies), given it at the end. */
  browserSetCookies?: string[];
  /** Forward-auth mode: the portal session the sign-in is bound to (portalSessionDigest). */
  portalSession?: string;
  /** The client's address at the password step (for the notification of an abandoned login). */
  ip: string;
}

// A pending login is kept this long past its expiry (unusable), so an abandoned one can still be told apart from one
// that was finished or ended.
const ABANDONED_GRACE_MS = 5 * 60_000;
const kept = (p: PendingLogin, now: number) => p.expiresAt - now + ABANDONED_GRACE_MS;
/** The login when it can still be finished; null when absent or expired. */
const live = (p: PendingLogin | null, now: number) => (p && p.expiresAt > now ? p : null);

/** A finished pending login, kept briefly for the same form sent again: the session it started. */
export interface FinishedLogin {
  pid: string;
  token: string;
  continueTo: string;
  jar: Jar;
  browserSetCookies?: string[];
}

/** A password accepted by the portal, waiting for the second factor. */
export class PendingLogins {
  private readonly records: SealedRecords<PendingLogin>;
  /** Logins just finished, by pending id (see PendingService.twin). */
  readonly finished: FormTwins<FinishedLogin>;
  constructor(private readonly kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer);
    this.finished = new FormTwins(kv, sealer, { outcome: keys.pendingFinished, busy: keys.pendingFinishing });
  }
  async create(p: PendingLogin, now: number): Promise<string> {
    const id = newId();
    await this.records.put(keys.pendingLogin(id), p, kept(p, now));
    return id;
  }
  async get(id: string, now: number): Promise<PendingLogin | null> {
    return live(await this.records.get(keys.pendingLogin(id)), now);
  }
  /**
   * Applies `change` to the record as it is in the store, compared and set (retried a few times): a change never
   * brings back a login that ended meanwhile, nor undoes another request's change. Returns the record as written
   * (`change` may return its argument to write nothing), or null when the login has ended or expired.
   */
  async update(id: string, change: (p: PendingLogin) => PendingLogin, now: number): Promise<PendingLogin | null> {
    const p = await this.records.change(keys.pendingLogin(id), (cur) => (live(cur, now) ? change(cur!) : cur), (next) => kept(next, now));
    return live(p, now);
  }
  /** Atomically ends the pending login: of parallel finishers, only one gets the record. */
  async take(id: string, now: number): Promise<PendingLogin | null> {
    return live(await this.records.take(keys.pendingLogin(id)), now);
  }
  /**
   * Its count of code checks is left to expire with it: a check that found the login before it ended, and is counted
   * after, finds the tries used up, not a count started again (one code more checked, or a wait where none is left).
   */
  async delete(id: string): Promise<void> {
    await this.records.delete(keys.pendingLogin(id));
  }
  /** After its expiry: the login, taken, when it was neither finished nor ended (null otherwise). */
  async takeAbandoned(id: string, now: number): Promise<PendingLogin | null> {
    const key = keys.pendingLogin(id);
    const p = await this.records.get(key);
    // Still live: not abandoned (yet). Expired ones are never changed, so the one taken is the one read.
    if (!p || live(p, now)) return null;
    return this.records.take(key);
  }
  /** Counts one code check against this pending login; returns the count so far. */
  countAttempt(id: string, ttlMs: number): Promise<number> {
    return this.kv.increment(keys.pendingAttempts(id), ttlMs);
  }
  /** The code checks counted against this pending login so far. */
  async attempts(id: string): Promise<number> {
    return Number((await this.kv.get(keys.pendingAttempts(id))) ?? 0);
  }
  resetAttempts(id: string): Promise<void> {
    return this.kv.delete(keys.pendingAttempts(id));
  }
}

export interface SessionRecord {
  pid: string;
  username: string;
  /** Sign-in time: the absolute timeout counts from here. */
  authTime: number;
  /**
   * Since when the session counts for an ending of the user's (or all) sessions (see Sessions.create): when its
   * sign-in began; kept by its step-ups; moved on when the person ended their other sessions from it. Records
   * written before it was kept have authTime.
   */
  since?: number;
  /** When a second factor was last verified (sign-in or step-up), and which. */
  factorTime: number;
  factor: FactorKind;
  /** The ceremony that verified it (see ceremonyId); absent in records of the release before. */
  factorBy?: string;
  /** That factor was a passkey that cannot leave its device (see RuleFactor); absent otherwise. */
  deviceBound?: true;
  lastSeen: number;
  jar: Jar;
  csrf: string;
  /** Groups the portal named in its login answer (groups.loginHeader). */
  groups?: string[];
  /** Forward-auth mode: the only portal session it lets through (portalSessionDigest of the cookies it was signed in with). */
  portalSession?: string;
}

// Decrypting the session record is the largest cost of a proxied request; opened records are remembered.
const SESSION_CACHE_SIZE = 10_000;
// A mark of ended sessions outlives any sign-in begun before it (a pending login lasts at most pendingMaxSeconds).
const ENDED_MARK_TTL_MS = 24 * 60 * 60_000;
// A request begun before a step-up can still be waiting for the portal this long (beyond any portal timeout).
const MOVE_NOTE_TTL_MS = 5 * 60_000;

export class Sessions {
  private readonly records: SealedRecords<SessionRecord>;
  /** Sessions a step-up just moved to a new id, by the old id: the new session's cookie value (see SessionService.twin). */
  readonly moved: FormTwins<{ pid: string; token: string }>;
  /** `indexTtlMs`: how long the list of a user's sessions is kept after the last sign-in (the absolute timeout). */
  constructor(private readonly kv: KvStore, sealer: Sealer, private readonly indexTtlMs: number) {
    this.records = new SealedRecords(kv, sealer, { cacheSize: SESSION_CACHE_SIZE });
    this.moved = new FormTwins(kv, sealer, { outcome: keys.sessionMoved, busy: keys.sessionMoving });
  }
  /**
   * Always a fresh id (`sid`: one the caller made with newId() a moment ago, to note a step-up's move before the
   * record is written): never the pending login's, never one the client chose. Null when the user's sessions (or
   * all) were ended after the session began (`since`): it is ended too.
   */
  async create(s: SessionRecord, ttlMs: number, sid = newId()): Promise<string | null> {
    const begunAt = s.since ?? s.authTime;
    await this.records.put(keys.session(sid), s, ttlMs);
    const index = keys.userSessions(s.pid);
    await this.kv.setAdd(index, sid, this.indexTtlMs);
    // Looked at only once the id is listed: an ending that marked its time after this look lists the id and ends it.
    // (In the same millisecond as the ending, it began after it: a new sign-in at once is not refused.)
    if (Math.max(await this.endedAt(keys.userSessionsEnded(s.pid)), await this.endedAt(keys.allSessionsEnded())) > begunAt) {
      await this.delete(sid, s.pid);
      return null;
    }
    // A session that expired without being ended (a browser closed) leaves its id; each sign-in clears those out, so
    // the list stays the size of the user's live sessions, however often the user signs in. An id is listed only
    // once its record was written, so one without a record has ended.
    await liveMembers(this.kv, index, async (id) => (id === sid || (await this.kv.get(keys.session(id))) !== null ? id : null));
    return sid;
  }
  /**
   * Marks that the user's sessions (pid), or all sessions (null), are being ended now, before they are: a sign-in or
   * step-up that began earlier and lists its session after this starts none (see create).
   */
  async markEnded(pid: string | null, now: number): Promise<void> {
    await this.kv.raiseTo(pid === null ? keys.allSessionsEnded() : keys.userSessionsEnded(pid), now, ENDED_MARK_TTL_MS);
  }
  /** Notes that a step-up moved the session `from` to `to` (see movedTo). */
  noteMove(from: string, to: string): Promise<void> {
    return this.kv.set(keys.sessionMovedTo(from), to, MOVE_NOTE_TTL_MS);
  }
  /** Where a step-up moved the session lately (requests begun before it still name the old id), or null. */
  movedTo(sid: string): Promise<string | null> {
    return this.kv.get(keys.sessionMovedTo(sid));
  }
  /** Notes that the session `sid` was ended (see endedLately). */
  noteEnded(sid: string): Promise<void> {
    return this.kv.set(keys.sessionEnded(sid), '1', MOVE_NOTE_TTL_MS);
  }
  /** Whether the session `sid` was ended in the last minutes. */
  async endedLately(sid: string): Promise<boolean> {
    return (await this.kv.get(keys.sessionEnded(sid))) !== null;
  }
  private async endedAt(key: string): Promise<number> {
    return Number((await this.kv.get(key)) ?? -Infinity);
  }
  get(sid: string): Promise<SessionRecord | null> {
    return this.records.get(keys.session(sid));
  }
  /** Atomically ends a session and returns its record: of parallel callers, one gets it. */
  async take(sid: string): Promise<SessionRecord | null> {
    const s = await this.records.take(keys.session(sid));
    if (s) await this.kv.setRemove(keys.userSessions(s.pid), sid);
    return s;
  }
  /** Changes a live session as it is in the store (see SealedRecords.change); an ended one stays ended. */
  change(sid: string, change: (s: SessionRecord) => SessionRecord, ttlMs: (s: SessionRecord) => number): Promise<SessionRecord | null> {
    return this.records.change(keys.session(sid), (cur) => (cur ? change(cur) : cur), ttlMs);
  }
  async delete(sid: string, pid: string): Promise<void> {
    await this.records.delete(keys.session(sid));
    await this.kv.setRemove(keys.userSessions(pid), sid);
  }
  /** The ids of a user's sessions (some may have expired since). */
  listIds(pid: string): Promise<string[]> {
    return this.kv.setMembers(keys.userSessions(pid));
  }
}
