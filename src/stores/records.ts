// The gateway's records (browser jars, pending logins, sessions, factors), sealed at rest with the key as AAD.
import type { Jar } from '../domain/cookie-jar.js';
import type { FactorKind } from '../domain/policy.js';
import { GatewayError } from '../errors.js';
import type { RecoveryCodeSet } from '../mechanisms/recovery-codes.js';
import { newId } from '../mechanisms/random.js';
import type { Sealer } from '../mechanisms/sealer.js';
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';

/** JSON records encrypted under the record's own key, so a record cannot be moved to another key. */
class SealedRecords<T> {
  /** Records already opened, by key and ciphertext (bounded): a changed record is a new ciphertext, so a miss. */
  private readonly opened = new Map<string, { sealed: string; value: T }>();

  constructor(
    private readonly kv: KvStore,
    private readonly sealer: Sealer,
    private readonly opts: { cacheSize?: number; unreadable?: 'absent' | 'fail' } = {},
  ) {}

  async get(key: string): Promise<T | null> {
    return this.open(key, await this.kv.get(key));
  }

  async take(key: string): Promise<T | null> {
    return this.open(key, await this.kv.take(key));
  }

  put(key: string, value: T, ttlMs?: number): Promise<void> {
    return this.kv.set(key, this.sealer.seal(JSON.stringify(value), key), ttlMs);
  }

  /** Updates a record that still exists; false when it is gone (never recreates it). */
  update(key: string, value: T, ttlMs: number): Promise<boolean> {
    return this.kv.setIfPresent(key, this.sealer.seal(JSON.stringify(value), key), ttlMs);
  }

  delete(key: string): Promise<void> {
    this.opened.delete(key);
    return this.kv.delete(key);
  }

  private open(key: string, sealed: string | null): T | null {
    if (sealed === null) return null;
    const hit = this.opened.get(key);
    if (hit?.sealed === sealed) return hit.value;
    try {
      const value = Object.freeze(JSON.parse(this.sealer.open(sealed, key))) as T;
      if (this.opts.cacheSize) {
        if (this.opened.size >= this.opts.cacheSize) this.opened.delete(this.opened.keys().next().value!);
        this.opened.set(key, { sealed, value });
      }
      return value;
    } catch (cause) {
      // Altered, foreign or unreadable records: absent where that means "signed out" (fail closed), an error
      // where absent would mean something weaker (a factor record read as "not enrolled").
      if (this.opts.unreadable === 'fail') throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `record ${key} cannot be opened`, { cause });
      return null;
    }
  }
}

/** Portal cookies of a browser that has not signed in yet (the pre-login jar). */
export class BrowserJars {
  private readonly records: SealedRecords<Jar>;
  constructor(kv: KvStore, sealer: Sealer, private readonly ttlMs: number) {
    this.records = new SealedRecords(kv, sealer);
  }
  async get(browserId: string): Promise<Jar> {
    return (await this.records.get(keys.browserJar(browserId))) ?? [];
  }
  put(browserId: string, jar: Jar): Promise<void> {
    return this.records.put(keys.browserJar(browserId), jar, this.ttlMs);
  }
  /** Removes and returns the jar: after a password login it moves to the pending login, never to be reused. */
  async take(browserId: string): Promise<Jar> {
    return (await this.records.take(keys.browserJar(browserId))) ?? [];
  }
}

export type PendingStage = 'enrol' | 'verify' | 'acknowledge';

export interface PendingLogin {
  pid: string;
  username: string;
  jar: Jar;
  continueTo: string;
  csrf: string;
  stage: PendingStage;
  expiresAt: number;
  /** The TOTP secret being enrolled; never shown again once enrolment is confirmed. */
  totpSecret?: string;
  /** The factor that completed the login (stage 'acknowledge'). */
  factor?: FactorKind;
  /** Groups the portal named in its login answer (groups.loginHeader). */
  groups?: string[];
}

/** A password accepted by the portal, waiting for the second factor. */
export class PendingLogins {
  private readonly records: SealedRecords<PendingLogin>;
  constructor(private readonly kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer);
  }
  async create(p: PendingLogin, now: number): Promise<string> {
    const id = newId();
    await this.records.put(keys.pendingLogin(id), p, p.expiresAt - now);
    return id;
  }
  async get(id: string, now: number): Promise<PendingLogin | null> {
    const p = await this.records.get(keys.pendingLogin(id));
    return p && p.expiresAt > now ? p : null;
  }
  update(id: string, p: PendingLogin, now: number): Promise<void> {
    return this.records.put(keys.pendingLogin(id), p, Math.max(1, p.expiresAt - now));
  }
  /** Atomically ends the pending login: of parallel finishers, only one gets the record. */
  async take(id: string, now: number): Promise<PendingLogin | null> {
    const p = await this.records.take(keys.pendingLogin(id));
    return p && p.expiresAt > now ? p : null;
  }
  async delete(id: string): Promise<void> {
    await this.records.delete(keys.pendingLogin(id));
    await this.kv.delete(keys.pendingAttempts(id));
  }
  /** Counts one code check against this pending login; returns the count so far. */
  countAttempt(id: string, ttlMs: number): Promise<number> {
    return this.kv.increment(keys.pendingAttempts(id), ttlMs);
  }
}

export interface SessionRecord {
  pid: string;
  username: string;
  amr: string[];
  /** Sign-in time: the absolute timeout counts from here. */
  authTime: number;
  /** When a second factor was last verified (sign-in or step-up), and which. */
  factorTime: number;
  factor: FactorKind;
  lastSeen: number;
  jar: Jar;
  csrf: string;
  /** Groups the portal named in its login answer (groups.loginHeader). */
  groups?: string[];
}

// Decrypting the session record is the largest cost of a proxied request; opened records are remembered.
const SESSION_CACHE_SIZE = 10_000;

export class Sessions {
  private readonly records: SealedRecords<SessionRecord>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer, { cacheSize: SESSION_CACHE_SIZE });
  }
  /** Always a fresh id: never the pending login's, never one the client chose. */
  async create(s: SessionRecord, ttlMs: number): Promise<string> {
    const sid = newId();
    await this.records.put(keys.session(sid), s, ttlMs);
    return sid;
  }
  get(sid: string): Promise<SessionRecord | null> {
    return this.records.get(keys.session(sid));
  }
  /** Atomically ends a session and returns its record: of parallel callers, one gets it. */
  take(sid: string): Promise<SessionRecord | null> {
    return this.records.take(keys.session(sid));
  }
  /** Updates a live session; a session ended meanwhile (logout, expiry) stays ended. */
  update(sid: string, s: SessionRecord, ttlMs: number): Promise<boolean> {
    return this.records.update(keys.session(sid), s, ttlMs);
  }
  delete(sid: string): Promise<void> {
    return this.records.delete(keys.session(sid));
  }
}

export interface UserFactors {
  totp?: { secret: string; addedAt: number; lastUsedAt?: number };
  recovery?: RecoveryCodeSet & { addedAt: number };
}

/** A user's second factors, kept until removed. A record that cannot be opened is an error, never "no factor". */
export class FactorStore {
  private readonly records: SealedRecords<UserFactors>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer, { unreadable: 'fail' });
  }
  get(pid: string): Promise<UserFactors | null> {
    return this.records.get(keys.factors(pid));
  }
  put(pid: string, f: UserFactors): Promise<void> {
    return this.records.put(keys.factors(pid), f);
  }
}

export interface DeviceRecord {
  fingerprint: string;
  name: string;
  /** The user the device belongs to (pseudonymous id), when it is bound to one. */
  pid?: string;
  status: 'active' | 'revoked';
  addedAt: number;
  revokedAt?: number;
}

/** Registered device certificates (by SHA-256 fingerprint): read on every request a rule about devices sees. */
export class DeviceRegistry {
  private readonly records: SealedRecords<DeviceRecord>;
  private readonly index: SealedRecords<string[]>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer, { cacheSize: 1000, unreadable: 'fail' });
    this.index = new SealedRecords(kv, sealer, { unreadable: 'fail' });
  }
  get(fingerprint: string): Promise<DeviceRecord | null> {
    return this.records.get(keys.device(fingerprint));
  }
  /** Adds or replaces a device (operators only: the index is not updated atomically with the record). */
  async put(d: DeviceRecord): Promise<void> {
    await this.records.put(keys.device(d.fingerprint), d);
    const list = (await this.index.get(keys.deviceIndex())) ?? [];
    if (!list.includes(d.fingerprint)) await this.index.put(keys.deviceIndex(), [...list, d.fingerprint]);
  }
  async list(): Promise<DeviceRecord[]> {
    const list = (await this.index.get(keys.deviceIndex())) ?? [];
    const all = await Promise.all(list.map((fp) => this.get(fp)));
    return all.filter((d): d is DeviceRecord => d !== null);
  }
}
