// Where codes and passkeys are checked (a pending login, a session's step-up or factor set-up) and the limits on
// wrong attempts: per ceremony (5, then the password again or the session ends; set-ups apart: SETUP_TRIES; and the
// passkey options it fetches: PASSKEY_OPTIONS) and per user and kind of factor across ceremonies (a growing wait, then
// the kind is disabled at the cap: NIST SP 800-63B §3.2.2, SECURITY R6–R8).
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { latestEnd } from '../domain/session-times.js';
import { GatewayError } from '../errors.js';
import type { Challenge } from '../stores/factor-store.js';
import { liveMembers, type KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import { FailureCounter } from '../stores/limits.js';
import type { PendingLogin, PendingLogins } from '../stores/records.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession, SessionService } from './sessions.js';

/**
 * Which ceremony a code went to (see ReplayGuard.claimStep): a sign-in in progress, by its pending id, or a session's
 * step-up or set-up, by the session's id.
 */
export const ceremonyId = { login: (id: string): string => `login:${id}`, session: (sid: string): string => `session:${sid}` };

/**
 * `repeat`: the right code, which this ceremony sent a moment ago (see Attempts.repeated); `justUsed`: the person's own
 * code of a moment ago, typed again (see TotpChecks.claim).
 */
export type CodeCheck = { ok: true } | { ok: false; attemptsLeft: number; repeat?: true; justUsed?: true };
export type Refused = Exclude<CodeCheck, { ok: true }>;

/** What is being tried: each kind has its own failure counter per user. */
export type AttemptKind = 'totp' | 'webauthn' | 'recovery' | 'enrolment-code';
export const ATTEMPT_KINDS: readonly AttemptKind[] = ['totp', 'webauthn', 'recovery', 'enrolment-code'];

/** Set-ups a ceremony may try, right or wrong, before it ends (see beginSetup). */
export const SETUP_TRIES = 20;
/** Passkey options of each kind (to register, to sign in) a ceremony may fetch before it ends (see beginOptions). */
export const PASSKEY_OPTIONS = 50;

export interface Ceremony {
  /** Which one: a sign-in in progress or a session (see ceremonyId). */
  id: string;
  /**
   * A session's: the ceremony that verified its factor last, its sign-in or a step-up (SessionRecord.factorBy). A code
   * that one took, typed again here, is the person's own, no one else's replay.
   */
  verifiedBy?: string;
  pid: string;
  username: string;
  /** login: the password was just accepted; session: a signed-in user confirming again. */
  kind: 'login' | 'session';
  /** Counts one check (atomically) and returns the count so far. */
  count(): Promise<number>;
  /** Counts one set-up tried (atomically), for as long as the ceremony can last, never reset; the count so far. */
  countSetup(): Promise<number>;
  /**
   * Counts one fetch of passkey options for the challenge's ceremony (atomically; each ceremony counted apart), kept
   * as the set-up tries are; the count so far.
   */
  countOptions(ceremony: Challenge['ceremony']): Promise<number>;
  /** The checks counted so far, without counting one. */
  tries(): Promise<number>;
  /** A check passed: the count starts again (the next step of a login has its own attempts). */
  reset(): Promise<void>;
  /** Ends the ceremony after too many wrong attempts. */
  end(): Promise<void>;
  /** The first failure of a login is reported to the vendor once ("was this you?"). */
  firstFailure(): Promise<boolean>;
}

/** One counted attempt: its number in the ceremony and the user's consecutive failures of this kind so far. */
export interface Attempt {
  n: number;
  kind: AttemptKind;
  /** Absent while the attempt does not count against the user (a passkey answer not yet judged wrong). */
  failures?: number;
  /** This was the last attempt before the cap: if it is wrong, the kind is disabled. */
  last: boolean;
  /**
   * A factor being set up: it counts in the ceremony only, right or wrong, in its tries (an app at first enrolment) or
   * its set-up tries (see beginSetup).
   */
  setup?: 'tries' | 'setup-tries';
}

export interface AttemptDeps {
  config: Config;
  clock: Clock;
  kv: KvStore;
  pending: PendingLogins;
  sessions: SessionService;
  security: SecurityLog;
  notifier: Notifier;
}

export class Attempts {
  private readonly counters: Record<AttemptKind, FailureCounter>;

  constructor(private readonly d: AttemptDeps) {
    const l = d.config.limits;
    // A user's failures of a kind are never forgotten with time, only by a success or an operator: otherwise 99
    // guesses, a pause until they expire, and 99 more would never reach the cap (R6). These keys exist only for
    // users who passed the password, so they are bounded by the users.
    const counter = (p: { freeAttempts: number; baseSeconds: number; maxSeconds: number; cap?: number }) =>
      new FailureCounter(d.kv, d.clock, { freeAttempts: p.freeAttempts, baseMs: p.baseSeconds * 1000, maxMs: p.maxSeconds * 1000, windowMs: null, ...(p.cap ? { cap: p.cap } : {}) });
    const factors = counter(l.secondFactor);
    this.counters = { totp: factors, webauthn: factors, recovery: counter(l.recoveryCode), 'enrolment-code': counter(l.enrolmentCode) };
  }

  ofLogin(id: string, p: PendingLogin): Ceremony {
    const { pending, clock } = this.d;
    // Kept as long as the login can be given more time: more time never brings back tries already used.
    const lifetimeMs = () => Math.max(1, latestEnd(p, this.d.config.mfa.pendingMaxSeconds * 1000) - clock.now());
    return {
      id: ceremonyId.login(id),
      pid: p.pid,
      username: p.username,
      kind: 'login',
      count: () => pending.countAttempt(id, lifetimeMs()),
      countSetup: () => this.d.kv.increment(keys.pendingSetupTries(id), lifetimeMs()),
      countOptions: (ceremony) => this.d.kv.increment(ceremony === 'register' ? keys.pendingSetupOptions(id) : keys.pendingSignInOptions(id), lifetimeMs()),
      tries: () => pending.attempts(id),
      reset: () => pending.resetAttempts(id),
      end: () => pending.delete(id),
      firstFailure: async () => {
        let first = false;
        const marked = await pending.update(
          id,
          (current) => {
            first = !current.failureNotified;
            return first ? { ...current, failureNotified: true } : current;
          },
          clock.now(),
        );
        return marked !== null && first;
      },
    };
  }

  ofSession(active: ActiveSession): Ceremony {
    const key = keys.stepUpAttempts(active.sid);
    // The count lasts as long as the session can: one that expired sooner would let a stolen session try 4 codes,
    // wait, and try 4 more, never reaching the limit that ends it. A step-up keeps the sign-in time, so its new
    // session ends no later.
    const lifetimeMs = () => Math.max(1, active.record.authTime + this.d.config.session.absoluteTimeoutSeconds * 1000 - this.d.clock.now());
    return {
      id: ceremonyId.session(active.sid),
      ...(active.record.factorBy === undefined ? {} : { verifiedBy: active.record.factorBy }),
      pid: active.record.pid,
      username: active.record.username,
      kind: 'session',
      count: () => this.d.kv.increment(key, lifetimeMs()),
      countSetup: () => this.d.kv.increment(keys.sessionSetupTries(active.sid), lifetimeMs()),
      countOptions: (ceremony) => this.d.kv.increment(ceremony === 'register' ? keys.sessionSetupOptions(active.sid) : keys.stepUpOptions(active.sid), lifetimeMs()),
      tries: async () => Number((await this.d.kv.get(key)) ?? 0),
      reset: () => this.d.kv.delete(key),
      end: () => this.d.sessions.end(active, 'too-many-wrong-codes'),
      firstFailure: async () => false,
    };
  }

  /**
   * Counts an attempt before it is checked, for the user and in the ceremony, so parallel guesses cannot outrun
   * either limit (C-40): the attempt stands as a failure unless succeeded() follows. Throws when the user must wait,
   * this kind of factor is disabled, or the ceremony is used up. A try refused for the wait or the disabled factor
   * checks no code, so it does not count in the ceremony either: else anyone holding the password could put the user
   * into a wait with wrong codes and have their own correct codes at a step-up end their session. Hence the user's
   * attempt first: a wrong code landing between a ceremony's count and the user's attempt would refuse a try already
   * counted. A try the used-up ceremony then refuses checks no code either: the user's attempt is given back.
   */
  async begin(c: Ceremony, ip: string, kind: AttemptKind): Promise<Attempt> {
    const key = keys.factorFailures(c.pid, kind);
    const a = await this.counters[kind].attempt(key);
    if (!a.allowed) return this.refused(c, kind, a);
    let n: number;
    try {
      n = await this.counted(c);
    } catch (e) {
      await this.counters[kind].release(key, a.failure).catch(() => undefined);
      throw e;
    }
    return { n, kind, failures: a.failure.failures, last: a.failure.locked };
  }

  /**
   * A passkey answer: counted in the ceremony only, and refused as begin() refuses while the user must wait or
   * passkeys are disabled. A signature cannot be guessed, so the user's counter only counts a clone's answers
   * (againstUser()): a wrong or junk answer would otherwise let anyone holding the password disable the user's passkeys.
   */
  async beginPasskey(c: Ceremony, ip: string): Promise<Attempt> {
    const a = await this.counters.webauthn.check(keys.factorFailures(c.pid, 'webauthn'));
    if (!a.allowed) return this.refused(c, 'webauthn', a);
    return { n: await this.counted(c), kind: 'webauthn', last: false };
  }

  /**
   * An app's code or a passkey's answer, being set up: counted in the ceremony only. A set-up guesses no secret (the
   * person sees the app's key; a registration's challenge is the gateway's, its origin the browser's, its signatures
   * the authenticator's), so it is neither refused nor counted for the user; nor does its success reset the user's
   * count, which would let a set-up that is never bound (a stale sign-in's) wipe the failures of guesses at the user's
   * real factor. A kind disabled after too many failures comes back when a new one of that kind is bound (see bind in
   * enrolment.ts).
   *
   * An app's code at first enrolment is one of the sign-in's tries, as ever. Any other set-up (a passkey's answer
   * there, an app's code or a passkey's answer on the security page) is one of the ceremony's SETUP_TRIES instead: a
   * key that does not work, or codes mistyped, must not end a session or send a first sign-in back to its password,
   * but a flood of answers (each a store write, a check and an audit record) must end. Counted before it is checked,
   * as tries are, and kept when it is right: whoever holds the session or sign-in can set up a factor that works, so a
   * count a success gave back would bound nothing.
   */
  async beginSetup(c: Ceremony, ip: string, kind: 'totp' | 'webauthn'): Promise<Attempt> {
    if (kind === 'totp' && c.kind === 'login') return { n: await this.counted(c), kind, last: false, setup: 'tries' };
    return { n: await this.counted(c, true), kind, last: false, setup: 'setup-tries' };
  }

  /**
   * Passkey options fetched (`ceremony`: to register a passkey being set up, or to sign in or step up with one): each
   * writes a new challenge to the store, so a ceremony fetches PASSKEY_OPTIONS of each at most, and the one after ends
   * it, as its last try would. Registration options count apart from the set-up tries, and more of them: every answer
   * needs options of its own (see registerPasskey in enrolment.ts), and a browser prompt cancelled or left to time out
   * takes options and sends no answer, so all 20 set-up tries and 30 prompts cancelled besides fit. Sign-in options
   * likewise, and apart from registration's: a prompt cancelled at a step-up must not take one from adding a key.
   * Their answers are the ceremony's tries (5), and one right finishes it (a step-up moves the session to a new id,
   * whose counts start again), so all the tries and 45 prompts cancelled besides fit; nobody cancels that often.
   */
  async beginOptions(c: Ceremony, ip: string, ceremony: Challenge['ceremony']): Promise<void> {
    const n = await c.countOptions(ceremony);
    if (n <= PASSKEY_OPTIONS) return;
    await c.end();
    // Logged once, by the first fetch past the bound: of parallel fetches beyond it, each would log it again.
    if (n === PASSKEY_OPTIONS + 1) this.d.security('mfa_attempts_exhausted', { pid: c.pid, ip });
    throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', `no ${ceremony} options left in the ceremony`);
  }

  /** A passkey answer signed right but by a clone (its counter behind): it counts against the user (R6). */
  async againstUser(c: Ceremony, a: Attempt): Promise<Attempt> {
    const f = await this.counters[a.kind].fail(keys.factorFailures(c.pid, a.kind));
    return { ...a, failures: f.failures, last: f.locked };
  }

  /**
   * The attempt was right: the ceremony's count (but for a set-up try, see beginSetup) and the user's counter of this
   * kind (but for any set-up) start again.
   */
  async succeeded(c: Ceremony, a: Attempt): Promise<void> {
    if (a.setup !== 'setup-tries') await c.reset();
    if (!a.setup) await this.counters[a.kind].succeed(keys.factorFailures(c.pid, a.kind));
  }

  /**
   * A right code this ceremony sent a moment ago (the form sent twice): refused, as a code is accepted once, but no
   * failure. The caller answers with what the first submission started (PendingService.twin, SessionService.twin).
   */
  async repeated(c: Ceremony, a: Attempt): Promise<Refused> {
    await this.succeeded(c, a);
    return { ok: false, attemptsLeft: this.d.config.mfa.maxAttemptsPerLogin, repeat: true };
  }

  /** A wrong code or a refused passkey: logged, reported once per login, and the ceremony ends at its limit. */
  async failed(c: Ceremony, ip: string, a: Attempt, reason: string): Promise<Refused> {
    this.d.security('mfa_failed', { pid: c.pid, ip, factor: a.kind, reason, failures: a.failures });
    if (a.last) await this.locked(c, ip, a.kind);
    const left = this.limit(a.setup === 'setup-tries') - a.n;
    // A set-up at first enrolment that failed (a typo, a key that said no) is no failed second step; set-ups that end
    // the sign-in are (else a password holder could confirm a password unheard, ending the sign-in before it is found
    // abandoned).
    if (c.kind === 'login' && (!a.setup || left <= 0) && (await c.firstFailure())) this.d.notifier.notify({ event: 'second_factor_failed', user: c.username, ip, details: { factor: a.kind } });
    if (left <= 0) await this.exhausted(c, ip);
    return { ok: false, attemptsLeft: left };
  }

  /** Operator: turns a kind back on (or all kinds) for a user; the kinds that were disabled. */
  async clear(pid: string, kind?: AttemptKind): Promise<AttemptKind[]> {
    const kinds = kind ? [kind] : ATTEMPT_KINDS;
    const disabled = await this.disabledKinds(pid, kinds);
    for (const k of kinds) {
      await this.counters[k].clear(keys.factorFailures(pid, k));
      await this.d.kv.setRemove(keys.lockoutIndex(), `${pid}:${k}`);
    }
    return [...disabled];
  }

  /** The kinds of factor (of `kinds`) disabled for a user after too many failures (a wait after failures disables nothing). */
  async disabledKinds(pid: string, kinds: readonly AttemptKind[] = ATTEMPT_KINDS): Promise<Set<AttemptKind>> {
    const disabled = new Set<AttemptKind>();
    for (const kind of kinds) {
      const check = await this.counters[kind].check(keys.factorFailures(pid, kind));
      if (!check.allowed && check.locked) disabled.add(kind);
    }
    return disabled;
  }

  /** Disabled kinds of factor, by user. */
  async lockedOut(): Promise<{ pid: string; kind: AttemptKind }[]> {
    const listed = await liveMembers(this.d.kv, keys.lockoutIndex(), async (member) => {
      const [pid = '', kind] = member.split(':') as [string, AttemptKind];
      // A kind this version does not know (a damaged store, a newer version's kind) has no counter here: it is not
      // shown, and left in the set for a version that knows it.
      if (!ATTEMPT_KINDS.includes(kind)) return { pid, kind: null };
      // Disabled, as disabledKinds() judges it: a listed kind that now only waits (a cap raised again) leaves the list.
      const check = await this.counters[kind].check(keys.factorFailures(pid, kind));
      return !check.allowed && check.locked ? { pid, kind } : null;
    });
    return listed.filter((l): l is { pid: string; kind: AttemptKind } => l.kind !== null);
  }

  /**
   * Refuses a try. A kind found disabled is listed (idempotent): one whose count reached a cap lowered since (on this
   * instance or on another of a rollout) was never listed, and the help desk would not see why the person's right
   * codes are refused. Listing only: a listed kind that is not disabled (an attempt at the cap still in flight that
   * then succeeds, an operator's clear meanwhile) drops out of the list when it is read.
   */
  private async refused(c: Ceremony, kind: AttemptKind, a: { retryAfterMs: number; locked: boolean }): Promise<never> {
    if (!a.locked) {
      // Of parallel tries, those counted first may have used up the ceremony's: then no wait gives this one a try, the
      // password must be entered again (or the session ends, by the try that used the last). Asked only now, as the
      // user's attempt comes first (see begin).
      if ((await c.tries()) >= this.d.config.mfa.maxAttemptsPerLogin) throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', `${kind}: no try left in the ceremony`);
      throw new GatewayError('GW_ERR_RATE_LIMITED', `${kind}: wait after failures`, { retryAfterMs: a.retryAfterMs });
    }
    await this.list(c.pid, kind);
    throw new GatewayError('GW_ERR_FACTOR_LOCKED', `${kind} disabled after too many failures`);
  }

  /**
   * Kept until deleted, as the lock it lists is (no TTL): with one, a list that gained no lockout for that long
   * expired, and every lockout still in force dropped off it. Members whose lock is gone leave when it is read.
   */
  private list(pid: string, kind: AttemptKind): Promise<number> {
    return this.d.kv.setAdd(keys.lockoutIndex(), `${pid}:${kind}`);
  }

  private async locked(c: Ceremony, ip: string, kind: AttemptKind): Promise<void> {
    await this.list(c.pid, kind);
    this.d.security('factor_locked', { pid: c.pid, ip, factor: kind });
    this.d.notifier.notify({ event: 'factor_locked', user: c.username, ip, details: { kind } });
  }

  /**
   * Counts the attempt in the ceremony (in its set-up tries: `setup`); past its limit the ceremony ends. Logged by the
   * try that used the last (see failed), once: of parallel tries, each beyond the limit would log it again, and the
   * report count it again.
   */
  private async counted(c: Ceremony, setup = false): Promise<number> {
    const n = await (setup ? c.countSetup() : c.count());
    if (n > this.limit(setup)) {
      await c.end();
      throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', setup ? 'no set-up try left in the ceremony' : 'no try left in the ceremony');
    }
    return n;
  }

  private limit(setup: boolean): number {
    return setup ? SETUP_TRIES : this.d.config.mfa.maxAttemptsPerLogin;
  }

  private async exhausted(c: Ceremony, ip: string): Promise<never> {
    await c.end();
    this.d.security('mfa_attempts_exhausted', { pid: c.pid, ip });
    throw new GatewayError('GW_ERR_TOO_MANY_ATTEMPTS', 'ceremony ended after too many wrong attempts');
  }
}
