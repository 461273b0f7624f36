// A user's second factors and what binds them: factor records, credential ownership, enrolment codes, challenges.
import type { HashedCode, RecoveryCodeSet } from '../mechanisms/recovery-codes.js';
import type { Sealer } from '../mechanisms/sealer.js';
import { isDeviceBound, type StoredCredential } from '../mechanisms/webauthn.js';
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';
import { FormTwins } from './form-twins.js';
import { SealedRecords } from './sealed-records.js';

interface FactorBase {
  /** Random, names the factor in forms (rename, remove) and in counters. */
  id: string;
  name: string;
  addedAt: number;
  lastUsedAt?: number;
  /**
   * A first factor: the sign-in that bound it (a digest of its pending login's id), which can still go on to the
   * recovery codes when its own move there was lost (see EnrolmentService.resumeEnrolment).
   */
  enrolledBy?: string;
}
export type TotpFactor = FactorBase & { kind: 'totp'; secret: string };
export type WebAuthnFactor = FactorBase & {
  kind: 'webauthn';
  credential: StoredCredential;
  /**
   * When an answer with its sign counter behind showed that a copy of it exists (WA3 §6.1.1): refused from then on,
   * the copy's answers and the original's alike, until the user removes it and registers a key again.
   */
  suspectSince?: number;
  /**
   * A passkey that cannot leave its device, added by a session that no such passkey proved, to an account that had
   * one already: it does not count as device-bound (see withPasskey).
   */
  boundWithoutKey?: true;
};
export type Factor = TotpFactor | WebAuthnFactor;

/** Whether a factor can still prove anything: not a passkey a copy of which answered. */
export function usable(f: Factor): boolean {
  return !(f.kind === 'webauthn' && f.suspectSince !== undefined);
}

/** Whether a passkey passes rules that take only one that cannot leave its device. */
export function deviceBound(f: WebAuthnFactor): boolean {
  return isDeviceBound(f.credential) && !f.boundWithoutKey;
}

/**
 * The factors with a passkey added (NIST SP 800-63B §6.1.2.1: binding an authenticator at a level needs a proof at
 * that level). Once an account has had a device-bound passkey, another one counts as device-bound only when added
 * by a session such a passkey proved (`provenByKey`): someone holding the password and an app code or a recovery
 * code cannot add a security key of their own that passes where the person's key is needed. The first one counts
 * however the session was proved, as at enrolment: the person has no such key to prove it with.
 */
export function withPasskey(current: UserFactors, factor: WebAuthnFactor, provenByKey: boolean): UserFactors {
  if (!isDeviceBound(factor.credential)) return { ...current, factors: [...current.factors, factor] };
  const had = current.hadDeviceBoundKey || current.factors.some((f) => f.kind === 'webauthn' && deviceBound(f));
  if (had && !provenByKey) return { ...current, factors: [...current.factors, { ...factor, boundWithoutKey: true }] };
  return { ...current, factors: [...current.factors, factor], hadDeviceBoundKey: true };
}

/**
 * Whether removing the factor `id` leaves the person a second factor that works: usable, and not of a kind disabled
 * for them after too many failures (`disabled`, see Attempts.disabledKinds), which anyone holding the password can cause.
 */
export function removable(factors: readonly Factor[], id: string, disabled: ReadonlySet<string>): boolean {
  return factors.some((f) => f.id !== id && usable(f) && !disabled.has(f.kind));
}

export interface UserFactors {
  factors: Factor[];
  recovery?: RecoveryCodeSet & { addedAt: number };
  /** The WebAuthn user handle: random, made once per user (WA3 §14.6.1). */
  userHandle?: string;
  /** A device-bound passkey was bound (and counted): kept when it is removed (see withPasskey). */
  hadDeviceBoundKey?: true;
}

// Longer than any sign-in in progress can last (mfa.pendingMaxSeconds is at most an hour).
const REMOVED_MARK_TTL_MS = 24 * 60 * 60_000;

/** A user's second factors, kept until removed. A record that cannot be opened is an error, never "no factor". */
export class FactorStore {
  private readonly records: SealedRecords<UserFactors>;
  /** Recovery codes just made, by user: a double-click on "make new codes" shows the second answer the same codes. */
  readonly codesMade: FormTwins<{ codes: string[] }>;
  constructor(
    private readonly kv: KvStore,
    sealer: Sealer,
  ) {
    this.records = new SealedRecords(kv, sealer, { unreadable: 'fail' });
    this.codesMade = new FormTwins(kv, sealer, { outcome: keys.recoveryCodesMade, busy: keys.recoveryCodesMaking });
  }
  get(pid: string): Promise<UserFactors | null> {
    return this.records.get(keys.factors(pid));
  }
  /**
   * Applies `change` to the user's factors as they are in the store (null: none yet; see SealedRecords.change): a
   * sign-in marking a factor used cannot write back a factor or a recovery set removed meanwhile.
   */
  update(pid: string, change: (current: UserFactors | null) => UserFactors | null): Promise<UserFactors | null> {
    return this.records.change(keys.factors(pid), change);
  }
  delete(pid: string): Promise<void> {
    return this.records.delete(keys.factors(pid));
  }
  /** Deletes the user's factors and returns them as they were (gone even when no configured key opens them). */
  take(pid: string): Promise<UserFactors | null> {
    return this.records.take(keys.factors(pid));
  }
  /** Deletes the user's factors while they are as `holds` wants them (not changed since); whether it did. */
  deleteIf(pid: string, holds: (current: UserFactors) => boolean): Promise<boolean> {
    return this.records.deleteIf(keys.factors(pid), holds);
  }
  /** Marks that an operator is removing the user's factors now, before they are (see removedSince). */
  async markRemoved(pid: string, now: number): Promise<void> {
    await this.kv.raiseTo(keys.factorsRemoved(pid), now, REMOVED_MARK_TTL_MS);
  }
  /** Whether an operator removed the user's factors after `since`. */
  async removedSince(pid: string, since: number): Promise<boolean> {
    return Number((await this.kv.get(keys.factorsRemoved(pid))) ?? -Infinity) > since;
  }
}

/** Which user a WebAuthn credential id belongs to: claimed once, so an id can never serve two users (WA3 §7.1). */
export class CredentialOwners {
  constructor(private readonly kv: KvStore) {}
  /** True when the id was free and is now this user's. */
  claim(credentialId: string, pid: string): Promise<boolean> {
    return this.kv.setIfAbsent(keys.credentialOwner(credentialId), pid);
  }
  release(credentialId: string): Promise<void> {
    return this.kv.delete(keys.credentialOwner(credentialId));
  }
}

export interface EnrolmentCode extends HashedCode {
  expiresAt: number;
}

/** Invitation codes issued ahead of enrolment (enrolment.proof: invite): one live code per user, used once. */
export class EnrolmentCodes {
  private readonly records: SealedRecords<EnrolmentCode>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer, { unreadable: 'fail' });
  }
  get(pid: string): Promise<EnrolmentCode | null> {
    return this.records.get(keys.enrolmentCode(pid));
  }
  put(pid: string, code: EnrolmentCode, ttlMs: number): Promise<void> {
    return this.records.put(keys.enrolmentCode(pid), code, ttlMs);
  }
  /** Atomically takes the code: of two parallel uses, one gets it. */
  take(pid: string): Promise<EnrolmentCode | null> {
    return this.records.take(keys.enrolmentCode(pid));
  }
}

export interface Challenge {
  challenge: string;
  pid: string;
  ceremony: 'register' | 'authenticate';
  expiresAt: number;
  /**
   * authenticate: the ids of the credentials the options listed (allowCredentials), the only ones that may answer
   * (absent from a challenge the release before made).
   */
  allowed?: string[];
}

/**
 * WebAuthn challenges, stored server-side and bound to where they were asked for (a pending login or a session)
 * and to the ceremony type; each is taken once (SECURITY R21).
 */
export class Challenges {
  private readonly records: SealedRecords<Challenge>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer);
  }
  put(owner: string, c: Challenge, ttlMs: number): Promise<void> {
    return this.records.put(keys.challenge(owner, c.ceremony), c, ttlMs);
  }
  take(owner: string, ceremony: Challenge['ceremony']): Promise<Challenge | null> {
    return this.records.take(keys.challenge(owner, ceremony));
  }
}
