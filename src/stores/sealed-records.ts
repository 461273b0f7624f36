// Records sealed at rest (AES-256-GCM) under their own key as associated data; the base of every record store.
import { GatewayError } from '../errors.js';
import type { Sealer } from '../mechanisms/sealer.js';
import type { KvStore } from './kv-store.js';

/** JSON records encrypted under the record's own key, so a record cannot be moved to another key. */
export class SealedRecords<T> {
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

  /** The record with its stored form, the version `replace` compares against. */
  async getVersioned(key: string): Promise<{ value: T; version: string } | null> {
    const version = await this.kv.get(key);
    const value = this.open(key, version);
    return value === null ? null : { value, version: version! };
  }

  /** Replaces the record only while it is still at `version` (keeping its TTL unless given); false when it changed or is gone. */
  replace(key: string, version: string, value: T, ttlMs?: number): Promise<boolean> {
    return this.kv.replaceIf(key, version, this.sealer.seal(JSON.stringify(value), key), ttlMs);
  }

  /** Writes the record only when there is none; false when there is one. */
  create(key: string, value: T, ttlMs?: number): Promise<boolean> {
    return this.kv.setIfAbsent(key, this.sealer.seal(JSON.stringify(value), key), ttlMs);
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
