// What operators do to users and keys (the admin CLI): show, reset factors, revoke sessions, export, erase, rotate.
// Never shows a secret; every change also goes through the security events (and so to the audit trail).
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { KNOWN_BROWSER_SECONDS } from '../mechanisms/known-browser.js';
import { newId } from '../mechanisms/random.js';
import { codesLeft } from '../mechanisms/recovery-codes.js';
import { Sealer } from '../mechanisms/sealer.js';
import { TOTP_PERIOD_SECONDS } from '../mechanisms/totp.js';
import { isDeviceBound } from '../mechanisms/webauthn.js';
import type { DeviceRegistry } from '../stores/device-registry.js';
import { deviceBound, type CredentialOwners, type EnrolmentCodes, type Factor, type FactorStore } from '../stores/factor-store.js';
import { isSealedKey, keys } from '../stores/keys.js';
import { keysOnce, type KvStore } from '../stores/kv-store.js';
import type { PendingLogin, Sessions } from '../stores/records.js';
import { UnreadableRecord } from '../stores/sealed-records.js';
import { BestEffort } from './best-effort.js';
import type { Attempts } from './ceremony.js';
import type { EnrolmentService } from './enrolment.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';
import { amrOf, type SessionService } from './sessions.js';

export interface AdminDeps {
  config: Config;
  clock: Clock;
  kv: KvStore;
  sealer: Sealer;
  factors: FactorStore;
  owners: CredentialOwners;
  codes: EnrolmentCodes;
  sessions: SessionService;
  sessionRecords: Sessions;
  devices: DeviceRegistry;
  attempts: Attempts;
  enrolment: EnrolmentService;
  security: SecurityLog;
  notifier: Notifier;
}

/** What the gateway holds about a user, without a secret: for `user show` and the access request export. */
export interface UserSummary {
  pid: string;
  factors: FactorSummary[];
  /** The set made at `addedAt`: how many codes it had, how many are still unused. */
  recoveryCodes: { total: number; left: number; addedAt: string } | null;
  /**
   * The WebAuthn user handle the person's passkeys hold (random, made once, kept when a passkey is removed), null
   * before any passkey was offered: personal data (an identifier of the person), and no secret (see README).
   */
  passkeyUserHandle: string | null;
  /** A passkey that cannot leave its device was bound once: another counts as one only when added with such a key. */
  hadDeviceBoundPasskey: boolean;
  /** `codesTried`: the codes and passkey answers its step-ups checked since the last one passed. */
  sessions: { signedInAt: string; lastSeenAt: string; factor: string; amr: string[]; secondFactorAt: string; codesTried: number; groups: string[] }[];
  devices: { fingerprint: string; name: string; status: string; addedAt: string; revokedAt: string | null }[];
  disabledFactorKinds: string[];
  enrolmentCode: { expiresAt: string } | null;
}

/** A factor as the summary gives it: its record but for the secret, the public key and the ids a key is known by. */
export interface FactorSummary {
  id: string;
  kind: string;
  name: string;
  addedAt: string;
  lastUsedAt: string | null;
  /** A passkey's details, as its authenticator reported them (absent for an authenticator app). */
  passkey?: {
    transports: string[];
    /** It cannot leave its device (not backup eligible). */
    deviceBound: boolean;
    /** It passes rules that take only a key that cannot leave its device (see withPasskey). */
    countsAsDeviceBound: boolean;
    backedUp: boolean;
    userVerifiedAtRegistration: boolean;
    /** The authenticator's signature counter at the last sign-in. */
    signCount: number;
    /** When a copy of it was found answering: refused since. */
    suspectSince: string | null;
  };
}

/**
 * What the access request export adds to the summary: the traces of the user's sign-ins and the limits on them, which
 * an erasure deletes too. Described, never a secret: no cookie, form token, code or key.
 */
export interface SignInTraces {
  /**
   * Sign-ins whose password the portal accepted, the second step outstanding (or expired a few minutes ago): with the
   * groups the portal named, an enrolment proof code sent (until when it works), the second step done (on the recovery
   * codes page), whether a wrong one was reported to the person.
   */
  signInsInProgress: {
    stage: string;
    passwordAcceptedAt: string | null;
    expiresAt: string;
    address: string;
    goingTo: string;
    codesTried: number;
    groups: string[];
    proofCodeExpiresAt: string | null;
    factor: string | null;
    secondFactorAt: string | null;
    failureNotified: boolean;
  }[];
  /** The client addresses (IPv6 by its /64) a wrong password for the account came from lately (the credential-stuffing watch). */
  failedPasswordAddresses: string[];
  /** Consecutive failures counted against the user, by what failed, and when the last one was. */
  failures: { of: string; count: number; lastAt: string | null }[];
  /** When a TOTP code was last accepted (its time step, kept a few minutes against its replay). */
  totpCodeAcceptedAt: string | null;
  /** Recovery codes used, of any set (each kept, against its use again). */
  recoveryCodesUsed: number;
  /** Passkey credential ids registered to the user (each can serve one user only). */
  passkeyCredentialIds: number;
  /** What else is held about the user for a short while, described once each. */
  alsoHeld: string[];
}

export interface KeyUse {
  purpose: 'encryption' | 'signing';
  id: string;
  /** Seals or signs new data (the first key of its list). */
  active: boolean;
  /** When the store first saw this key configured; null before any gateway started with it. */
  firstSeen: number | null;
  /** Records sealed under it (encryption keys only). */
  records?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const SET_UPS_COUNTED = 'how many factors a sign-in in progress or a session tried to set up, and the passkey prompts it fetched (their limits)';
const sessionKey = /^session:\{([^}]+)\}$/;
const pendingKey = /^pending:\{([^}]+)\}$/;
const addressUsernamesKey = /^addr:\{(.+)\}:usernames$/;

export class AdminService {
  constructor(private readonly d: AdminDeps) {}

  async show(pid: string): Promise<UserSummary> {
    const f = await this.d.factors.get(pid);
    const sessions = [];
    for (const sid of await this.d.sessionRecords.listIds(pid)) {
      const s = await this.d.sessionRecords.get(sid);
      if (!s) continue;
      const codesTried = Number((await this.d.kv.get(keys.stepUpAttempts(sid))) ?? 0);
      sessions.push({ signedInAt: iso(s.authTime), lastSeenAt: iso(s.lastSeen), factor: s.factor, amr: amrOf(s), secondFactorAt: iso(s.factorTime), codesTried, groups: s.groups ?? [] });
    }
    const locked = (await this.d.attempts.lockedOut()).filter((l) => l.pid === pid).map((l) => l.kind);
    const code = await this.d.codes.get(pid);
    return {
      pid,
      factors: (f?.factors ?? []).map(factorSummary),
      recoveryCodes: f?.recovery ? { total: f.recovery.hashes.length, left: codesLeft(f.recovery), addedAt: iso(f.recovery.addedAt) } : null,
      passkeyUserHandle: f?.userHandle ?? null,
      hadDeviceBoundPasskey: f?.hadDeviceBoundKey === true,
      sessions,
      devices: (await this.d.devices.list()).filter((x) => x.pid === pid).map((x) => ({ fingerprint: x.fingerprint, name: x.name, status: x.status, addedAt: iso(x.addedAt), revokedAt: x.revokedAt ? iso(x.revokedAt) : null })),
      disabledFactorKinds: locked,
      enrolmentCode: code ? { expiresAt: iso(code.expiresAt) } : null,
    };
  }

  /**
   * Removes every factor, ends every session and turns every kind back on: the next sign-in enrols again, with the
   * enrolment proof. With proof "invite", returns the new enrolment code to hand to the user once their identity is checked.
   * `username`: the account's name, for the notification; `signsIn`: whether the login accepts it (no code otherwise).
   */
  async resetFactors(pid: string, username: string, signsIn = true): Promise<{ factorsRemoved: number | null; sessionsEnded: number; invite: { code: string; expiresAt: number } | null }> {
    // A step that fails does not stop the others (see BestEffort): the sessions end even when the store is full.
    const effort = new BestEffort();
    // First: a first factor a sign-in in progress binds after the factors are gone is taken back (see bind).
    await effort.run(() => this.d.factors.markRemoved(pid, this.d.clock.now()));
    const factorsRemoved = await this.forgetFactors(pid, effort);
    // Before the new invitation: no sign-in begun before the reset can bind a factor or finish with an old one.
    await this.deleteRecordsOf(pid, ['pending:{'], effort);
    await effort.run(() => this.forgetKnownBrowsers(pid));
    const sessionsEnded = await this.d.sessions.endAll(pid, 'factors-reset', undefined, effort);
    // A reset that failed part-way is not one: no event says it was done, and no invitation is issued until it is.
    if (effort.failed) return effort.result({ factorsRemoved, sessionsEnded, invite: null });
    this.d.security('factors_reset', { pid, factors: factorsRemoved ?? 'unreadable' });
    // "Was this you?": a reset is how a caller posing as the person at the help desk takes an account over.
    if (factorsRemoved !== 0) this.d.notifier.notify({ event: 'factors_reset', user: username });
    const invite = this.d.config.enrolment.proof === 'invite' && signsIn ? await this.d.enrolment.issueInvite(pid) : null;
    return { factorsRemoved, sessionsEnded, invite };
  }

  /** Ends every session of the user and every sign-in in progress (its password step is no better than a session). */
  async revokeSessions(pid: string): Promise<number> {
    const effort = new BestEffort();
    await this.deleteRecordsOf(pid, ['pending:{'], effort);
    await effort.run(() => this.forgetKnownBrowsers(pid));
    return effort.result(await this.d.sessions.endAll(pid, 'revoked', undefined, effort));
  }

  /** Ends every session of every user. */
  async revokeAllSessions(): Promise<number> {
    const effort = new BestEffort();
    // First: a step-up moving a session while the keys are gone through starts no new one (Sessions.create), nor does
    // a sign-in in progress. Not written (the store full), it stops nothing: the sessions found are taken all the
    // same, and the sign-ins in progress, which it would have stopped, are ended.
    const marked = await effort.run(async () => (await this.d.sessionRecords.markEnded(null, this.d.clock.now()), true));
    if (!marked) await this.deleteRecordsOf(null, ['pending:{'], effort);
    let ended = 0;
    await effort.run(async () => {
      for await (const batch of this.d.kv.scanKeys('session:{')) {
        for (const key of batch) {
          const sid = sessionKey.exec(key)?.[1];
          const s = sid ? await effort.run(() => this.d.sessionRecords.take(sid)) : null;
          if (!s) continue;
          ended++;
          this.d.security('session_ended', { pid: s.pid, reason: 'revoked' });
        }
      }
    });
    return effort.result(ended);
  }

  /**
   * Everything held about a user, as plain JSON for an access request (secrets are named, never given): what erase
   * deletes, but for the audit trail's pseudonymous records.
   */
  async export(pid: string): Promise<UserSummary & SignInTraces & { exportedAt: string; withheld: string[] }> {
    return {
      exportedAt: iso(this.d.clock.now()),
      ...(await this.show(pid)),
      ...(await this.traces(pid)),
      withheld: [
        'TOTP secrets',
        'passkey public keys',
        'passkey credential ids (a security key may derive its private key from its id)',
        'recovery code hashes',
        'enrolment code hashes',
        'portal session cookies',
        'the ids and form tokens of sessions and sign-ins in progress',
        'recovery codes waiting to be shown once',
      ],
    };
  }

  private async traces(pid: string): Promise<SignInTraces> {
    const alsoHeld = new Set<string>();
    const signInsInProgress: SignInTraces['signInsInProgress'] = [];
    for await (const [key, p] of this.recordsOf<PendingLogin>(pid, 'pending:{')) {
      const id = pendingKey.exec(key)?.[1];
      if (id === undefined) {
        alsoHeld.add('a sign-in just finished, kept for seconds for the same form sent again');
        continue;
      }
      const codesTried = Number((await this.d.kv.get(keys.pendingAttempts(id))) ?? 0);
      signInsInProgress.push({
        stage: p.stage,
        passwordAcceptedAt: p.passwordAt ? iso(p.passwordAt) : null,
        expiresAt: iso(p.expiresAt),
        address: p.ip,
        goingTo: p.continueTo,
        codesTried,
        groups: p.groups ?? [],
        proofCodeExpiresAt: p.proofCode ? iso(p.proofCode.expiresAt) : null,
        factor: p.factor ?? null,
        secondFactorAt: p.factorAt ? iso(p.factorAt) : null,
        failureNotified: p.failureNotified === true,
      });
      if (await this.anyHeld([keys.pendingSetupTries(id), keys.pendingSetupOptions(id), keys.pendingSignInOptions(id)])) alsoHeld.add(SET_UPS_COUNTED);
    }
    for (const sid of await this.d.sessionRecords.listIds(pid)) {
      if (await this.anyHeld([keys.sessionSetupTries(sid), keys.sessionSetupOptions(sid), keys.stepUpOptions(sid)])) alsoHeld.add(SET_UPS_COUNTED);
    }
    for await (const _ of this.recordsOf(pid, 'challenge:{')) alsoHeld.add('a passkey challenge waiting for its answer');
    for await (const _ of this.recordsOf(pid, 'session:{', (k) => k.endsWith(':moved'))) alsoHeld.add('a step-up just done, kept for seconds for the same form sent again');
    const failedPasswordAddresses: string[] = [];
    for await (const key of keysOnce(this.d.kv, keys.addressPrefix())) {
      const address = addressUsernamesKey.exec(key)?.[1];
      if (address !== undefined && (await this.d.kv.setMembers(key)).includes(pid)) failedPasswordAddresses.push(address);
    }
    let passkeyCredentialIds = 0;
    for await (const key of keysOnce(this.d.kv, keys.credentialOwnerPrefix())) if ((await this.d.kv.get(key)) === pid) passkeyCredentialIds++;
    // The user's own keys: each is what held() says it holds.
    const prefix = `user:{${pid}}:`;
    const counters = new Set<string>();
    let totpStep: string | null = null;
    let recoveryCodesUsed = 0;
    for await (const key of keysOnce(this.d.kv, prefix)) {
      const h = held(key.slice(prefix.length));
      if ('failures' in h) counters.add(h.failures);
      else if ('about' in h) alsoHeld.add(h.about);
      else if (h.is === 'totp-step') totpStep = await this.d.kv.get(key);
      else if (h.is === 'recovery-used') recoveryCodesUsed++;
    }
    const failures: SignInTraces['failures'] = [];
    for (const counter of [...counters].sort()) {
      const count = Number((await this.d.kv.get(`${prefix}failures:${counter}`)) ?? 0);
      const last = await this.d.kv.get(`${prefix}failures:${counter}:last`);
      failures.push({ of: counter.startsWith('password:') ? 'password, in a browser the user signed in with' : counter, count, lastAt: last === null ? null : iso(Number(last)) });
    }
    return {
      signInsInProgress,
      failedPasswordAddresses: failedPasswordAddresses.sort(),
      failures,
      totpCodeAcceptedAt: totpStep === null ? null : iso(Number(totpStep) * TOTP_PERIOD_SECONDS * 1000),
      recoveryCodesUsed,
      passkeyCredentialIds,
      alsoHeld: [...alsoHeld],
    };
  }

  /**
   * Right to erasure: factors, sessions, logins in progress, counters, device bindings and every key of the user.
   * The audit trail keeps its pseudonymous records (it cannot be edited without breaking the chain).
   */
  async erase(pid: string): Promise<{ keysDeleted: number; sessionsEnded: number; devicesRevoked: number }> {
    // A step that fails does not stop the others (see BestEffort): the sessions end, and what can be deleted is, even
    // when the store is full.
    const effort = new BestEffort();
    // The marks that retire the user's known-browser tokens, stop sign-ins begun before now and take back a first factor
    // they bind stay throughout (a sign-in finishing meanwhile would find none), and are moved on to now at the end (the same username gets the
    // same pseudonym, so an account made again would inherit what they retired).
    const marks = new Set([keys.userSessionsEnded(pid), keys.knownBrowserEpoch(pid), keys.factorsRemoved(pid)]);
    // The user's keys counted before any is deleted (the factors and their counters go first, not in the sweep below):
    // none, and no other record naming the user, is a name that holds nothing.
    let keysDeleted = 0;
    await effort.run(async () => {
      for await (const _key of keysOnce(this.d.kv, `user:{${pid}}`, (k) => !marks.has(k))) keysDeleted++;
    });
    // First: a first factor a sign-in in progress binds after the factors are gone is taken back (see bind).
    await effort.run(() => this.d.factors.markRemoved(pid, this.d.clock.now()));
    // A factor record no configured key opens (its key already retired) is erased all the same.
    await this.forgetFactors(pid, effort);
    // What names the user by value rather than by key: the passkeys' credential ids (also when the factor record could
    // not be opened to list them), and the usernames an address tried (kept for the credential-stuffing window).
    await effort.run(async () => {
      for await (const batch of this.d.kv.scanKeys(keys.credentialOwnerPrefix())) {
        for (const key of batch) await effort.run(async () => ((await this.d.kv.get(key)) === pid ? this.d.kv.delete(key) : undefined));
      }
    });
    await effort.run(async () => {
      for await (const batch of this.d.kv.scanKeys(keys.addressPrefix())) {
        for (const key of batch) if (key.endsWith(':usernames')) await effort.run(() => this.d.kv.setRemove(key, pid));
      }
    });
    // Sign-ins in progress first: one on its recovery-codes page would otherwise start a session after the sweep.
    keysDeleted += await this.deleteRecordsOf(pid, ['pending:{', 'challenge:{'], effort);
    const sessionsEnded = await this.d.sessions.endAll(pid, 'erased', undefined, effort);
    // What is left under session ids: a step-up's outcome, kept briefly for the same form sent again.
    keysDeleted += await this.deleteRecordsOf(pid, ['session:{'], effort, (key) => key.endsWith(':moved'));
    // A device bound to the user is revoked with the binding gone: unbound, it would count as managed for every account.
    let devicesRevoked = 0;
    for (const device of (await effort.run(() => this.d.devices.list())) ?? []) {
      if (device.pid !== pid) continue;
      const revoked = await effort.run(async () => {
        await this.d.devices.put({ fingerprint: device.fingerprint, name: device.name, wasBound: true, status: 'revoked', addedAt: device.addedAt, revokedAt: device.revokedAt ?? this.d.clock.now() });
        return true;
      });
      if (revoked) devicesRevoked++;
    }
    // Every other key of the user, one written meanwhile too (counted above, or not at all: it came after the command).
    await effort.run(async () => {
      for await (const key of keysOnce(this.d.kv, `user:{${pid}}`, (k) => !marks.has(k))) await effort.run(() => this.d.kv.delete(key));
    });
    await effort.run(() => this.forgetKnownBrowsers(pid));
    await effort.run(() => this.d.sessionRecords.markEnded(pid, this.d.clock.now()));
    await effort.run(() => this.d.factors.markRemoved(pid, this.d.clock.now()));
    // An erasure that failed part-way is not one: no event says it was done (the command run again finishes it).
    if (!effort.failed) this.d.security('user_erased', { pid, keys: keysDeleted });
    return effort.result({ keysDeleted, sessionsEnded, devicesRevoked });
  }

  /**
   * Re-seals every record still sealed under an older encryption key with the first one, and notes when each
   * configured key was first seen. A record changed meanwhile is left to its writer (who seals with the new key).
   */
  async rotateKeys(): Promise<{ resealed: number; current: number; unreadable: number }> {
    await this.noteKeys();
    const out = { resealed: 0, current: 0, unreadable: 0 };
    // Each once: a record re-sealed a moment ago, listed again, would count again as current.
    for await (const key of keysOnce(this.d.kv, '', isSealedKey)) {
      const sealed = await this.d.kv.get(key);
      if (sealed === null) continue;
      // Opened under the active key's id too: a record under that id that it does not open (the id given a new
      // secret in place of a new id) is unreadable, not current.
      let plain: string;
      try {
        plain = this.d.sealer.open(sealed, key);
      } catch {
        out.unreadable++;
        continue;
      }
      if (Sealer.keyIdOf(sealed) === this.d.sealer.activeId) out.current++;
      else if (await this.d.kv.replaceIf(key, sealed, this.d.sealer.seal(plain, key))) out.resealed++;
    }
    return out;
  }

  /** The configured keys: which is active, how old, and (encryption) how many records each still seals. */
  async keyStatus(): Promise<KeyUse[]> {
    const records = new Map<string, number>();
    for await (const key of keysOnce(this.d.kv, '', isSealedKey)) {
      const kid = Sealer.keyIdOf((await this.d.kv.get(key)) ?? '');
      if (kid !== null) records.set(kid, (records.get(kid) ?? 0) + 1);
    }
    const uses: KeyUse[] = [];
    for (const purpose of ['encryption', 'signing'] as const) {
      for (const [i, k] of this.d.config.keys[purpose].entries()) {
        const seen = await this.d.kv.get(keys.keySeen(purpose, k.id));
        uses.push({ purpose, id: k.id, active: i === 0, firstSeen: seen === null ? null : Number(seen), ...(purpose === 'encryption' ? { records: records.get(k.id) ?? 0 } : {}) });
      }
    }
    for (const [kid, n] of records) {
      if (!this.d.config.keys.encryption.some((k) => k.id === kid)) uses.push({ purpose: 'encryption', id: kid, active: false, firstSeen: null, records: n });
    }
    return uses;
  }

  /** Remembers when each configured key was first seen (for key ages); the gateway calls it at start. */
  async noteKeys(): Promise<void> {
    const now = String(this.d.clock.now());
    for (const purpose of ['encryption', 'signing'] as const) {
      for (const k of this.d.config.keys[purpose]) await this.d.kv.setIfAbsent(keys.keySeen(purpose, k.id), now);
    }
  }

  /**
   * Removes the user's factors and what goes with them; how many there were, null for a record no configured key opens
   * (deleted all the same: the person cannot sign in with it).
   */
  private async forgetFactors(pid: string, effort: BestEffort): Promise<number | null> {
    // Taken, not read and deleted: the ids released are those of the passkeys deleted, one added a moment ago too (else
    // no account could ever register that key again).
    const taken = await effort.run(() => this.d.factors.take(pid).then((f) => f ?? { factors: [] }, unreadableAsNone));
    for (const x of taken?.factors ?? []) if (x.kind === 'webauthn') await effort.run(() => this.d.owners.release(x.credential.id));
    await effort.run(() => this.d.attempts.clear(pid));
    await effort.run(() => this.d.kv.delete(keys.totpStep(pid)));
    await effort.run(async () => {
      for await (const batch of this.d.kv.scanKeys(keys.recoveryCodeUsedPrefix(pid))) for (const key of batch) await effort.run(() => this.d.kv.delete(key));
    });
    return taken === null ? null : (taken?.factors.length ?? 0);
  }

  /** Retires the user's known-browser tokens: their password attempts count on the account's count again. */
  private async forgetKnownBrowsers(pid: string): Promise<void> {
    // Tokens work at most KNOWN_BROWSER_SECONDS: so long the epoch that retired the older ones must stay.
    await this.d.kv.set(keys.knownBrowserEpoch(pid), newId(), KNOWN_BROWSER_SECONDS * 1000);
  }

  /**
   * Deletes the user's sealed records under `prefixes` (logins in progress, WebAuthn challenges, a step-up's outcome)
   * that `only` picks by key, which name the user only inside the record: each is opened (not for `pid` null: every
   * user's). Returns how many were deleted. One that cannot be read or deleted is left, its failure kept in `effort`,
   * and the others are still gone through.
   */
  private async deleteRecordsOf(pid: string | null, prefixes: string[], effort: BestEffort, only: (key: string) => boolean = () => true): Promise<number> {
    let deleted = 0;
    for (const prefix of prefixes) {
      await effort.run(async () => {
        for await (const key of keysOnce(this.d.kv, prefix, (k) => isSealedKey(k) && only(k))) {
          await effort.run(async () => {
            if (pid !== null && (await this.opened(key))?.pid !== pid) return;
            await this.d.kv.delete(key);
            deleted++;
          });
        }
      });
    }
    return deleted;
  }

  /** The user's sealed records under `prefix` that `only` picks by key (which name the user only inside), opened. */
  private async *recordsOf<T>(pid: string, prefix: string, only: (key: string) => boolean = () => true): AsyncIterable<[string, T]> {
    for await (const key of keysOnce(this.d.kv, prefix, (k) => isSealedKey(k) && only(k))) {
      const record = await this.opened(key);
      if (record?.pid === pid) yield [key, record as T];
    }
  }

  /** Whether any of the keys `names` is held. */
  private async anyHeld(names: string[]): Promise<boolean> {
    for (const key of names) if ((await this.d.kv.get(key)) !== null) return true;
    return false;
  }

  private async opened(key: string): Promise<{ pid?: unknown } | null> {
    const sealed = await this.d.kv.get(key);
    if (sealed === null) return null;
    try {
      return JSON.parse(this.d.sealer.open(sealed, key)) as { pid?: unknown };
    } catch {
      return null;
    }
  }
}

/**
 * What one of a user's keys holds (`name`: the key after `user:{pid}:`), for the export. `shown`: in the summary
 * already, or no personal data (a mark an erasure keeps, a flag of a moment, which ceremony a TOTP step went to).
 */
function held(name: string): { failures: string } | { is: 'totp-step' | 'recovery-used' | 'shown' } | { about: string } {
  // A failure count and the time of its last failure (`:last`, see FailureCounter), by what failed; a known browser's
  // password count is `password:<browser id>`.
  const failures = /^failures:(password:(?!last$)[^:]+|[a-z-]+)(?::last)?$/.exec(name);
  if (failures) return { failures: failures[1]! };
  if (name === 'totp-step') return { is: 'totp-step' };
  if (name.startsWith('recovery-used:')) return { is: 'recovery-used' };
  if (/^(factors|sessions|enrolment-code|factors-removed|sessions-ended|known-browser-epoch|recovery-codes-making|totp-step-claimant:\d+)$/.test(name)) return { is: 'shown' };
  if (name.startsWith('totp-setup-')) return { about: 'the first code of an authenticator app set up lately, kept a few minutes against its replay' };
  if (name.startsWith('factor-setup:')) return { about: 'an authenticator app being set up from the security page' };
  if (name === 'recovery-codes-made') return { about: 'new recovery codes just made, kept for seconds for the same form sent again' };
  if (name.startsWith('proof-code-sends')) return { about: 'how many enrolment proof codes were sent lately (their limits)' };
  return { about: 'another record of the gateway about the user' };
}

/** What the summary gives of a factor (see FactorSummary). */
function factorSummary(f: Factor): FactorSummary {
  const summary: FactorSummary = { id: f.id, kind: f.kind, name: f.name, addedAt: iso(f.addedAt), lastUsedAt: f.lastUsedAt ? iso(f.lastUsedAt) : null };
  if (f.kind !== 'webauthn') return summary;
  const c = f.credential;
  return {
    ...summary,
    passkey: {
      transports: c.transports ?? [],
      deviceBound: isDeviceBound(c),
      countsAsDeviceBound: deviceBound(f),
      backedUp: c.backedUp,
      userVerifiedAtRegistration: c.uvInitialized,
      signCount: c.counter,
      suspectSince: f.suspectSince === undefined ? null : iso(f.suspectSince),
    },
  };
}

/** A record no configured key opens counts as none (erased all the same). */
function unreadableAsNone(err: unknown): null {
  if (err instanceof UnreadableRecord) return null;
  throw err;
}
