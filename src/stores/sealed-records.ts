// Records sealed at rest (AES-256-GCM) under their own key as associated data; the base of every record store.
import { GatewayError } from '../errors.js';
import type { Sealer } from '../mechanisms/sealer.js';
import type { KvStore } from './kv-store.js';

/** A record no configured key opens (its key retired, or altered): a 503 where it is read on a request. */
export class UnreadableRecord extends GatewayError {
  constructor(key: string, cause: unknown) {
    super('GW_ERR_STORE_UNAVAILABLE', `record ${key} cannot be opened`, { cause });
  }
}

/**
 * Compare-and-set rounds of one change before it gives up (each lost round means another write landed). Changes of
 * one record in this process go one after another, so only other instances' writes can cost a round; with a page
 * load spread over several instances, each keeps losing to the others unless it waits: a random while, longer after
 * each round lost (at most about 0.8 s in all).
 */
const CHANGE_ATTEMPTS = 20;
const afterLostRound = (attempt: number) => new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));

/** JSON records encrypted under the record's own key, so a record cannot be moved to another key. */
export class SealedRecords<T> {
  /** Records already opened, by key and ciphertext (bounded): a changed record is a new ciphertext, so a miss. */
  private readonly opened = new Map<string, { sealed: string; value: T }>();
  /** The last change of each record under way in this process, which the next one waits for. */
  private readonly changing = new Map<string, Promise<unknown>>();

  constructor(
    private readonly kv: KvStore,
    private readonly sealer: Sealer,
    private readonly opts: { cacheSize?: number; unreadable?: 'absent' | 'fail' } = {},
  ) {}

  async get(key: string): Promise<T | null> {
    return this.open(key, await this.kv.get(key));
  }

  /** Deletes the record and returns it (of parallel callers, one gets it); its opened copy is not kept. */
  async take(key: string): Promise<T | null> {
    const value = this.open(key, await this.kv.take(key));
    this.opened.delete(key);
    return value;
  }

  put(key: string, value: T, ttlMs?: number): Promise<void> {
    return this.kv.set(key, this.sealer.seal(JSON.stringify(value), key), ttlMs);
  }

  /**
   * Applies `change` to the record as it is in the store (null: none), compared and set, retried a few times: of
   * changes at once none undoes another, and a late one never brings back a record deleted meanwhile unless it
   * means to create one (from null). `change` may throw to give up, or return its argument to write nothing.
   * `ttlMs` gives the TTL of the record written (none: kept, or none for a new one). Returns the record as it then is.
   */
  change(key: string, change: (current: T | null) => T | null, ttlMs?: (next: T) => number): Promise<T | null> {
    // Forty answers of one session setting cookies at once would otherwise each lose rounds to the others, and some
    // run out of them: their cookies lost.
    const run = (this.changing.get(key) ?? Promise.resolve()).then(() => this.changeNow(key, change, ttlMs));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.changing.set(key, settled);
    void settled.then(() => {
      if (this.changing.get(key) === settled) this.changing.delete(key);
    });
    return run;
  }

  private async changeNow(key: string, change: (current: T | null) => T | null, ttlMs?: (next: T) => number): Promise<T | null> {
    for (let attempt = 0; attempt < CHANGE_ATTEMPTS; attempt++) {
      const version = await this.kv.get(key);
      const current = this.open(key, version);
      // There, but no configured key opens it (read as none): no round can write over it.
      if (version !== null && current === null) throw new Error(`a ${kindOf(key)} record that cannot be opened cannot be changed`);
      const next = change(current);
      if (next === current) return next;
      if (next === null) throw new TypeError(`a change cannot delete a ${kindOf(key)} record`);
      const sealed = this.sealer.seal(JSON.stringify(next), key);
      const written = current === null ? await this.kv.setIfAbsent(key, sealed, ttlMs?.(next)) : await this.kv.replaceIf(key, version!, sealed, ttlMs?.(next));
      if (written) return next;
      if (attempt < CHANGE_ATTEMPTS - 1) await afterLostRound(attempt);
    }
    throw new Error(`a ${kindOf(key)} record changed ${CHANGE_ATTEMPTS} times while being changed`);
  }

  delete(key: string): Promise<void> {
    this.opened.delete(key);
    return this.kv.delete(key);
  }

  /** Deletes the record while it is as `holds` wants it (compared and deleted: not one written since); whether it did. */
  async deleteIf(key: string, holds: (current: T) => boolean): Promise<boolean> {
    const version = await this.kv.get(key);
    const current = this.open(key, version);
    if (version === null || current === null || !holds(current)) return false;
    this.opened.delete(key);
    return this.kv.deleteIf(key, version);
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
      if (this.opts.unreadable === 'fail') throw new UnreadableRecord(key, cause);
      return null;
    }
  }
}

/** What kind of record a key names (`jar`, `pending`, `session`…), for messages: keys hold ids that are credentials. */
function kindOf(key: string): string {
  return key.split(':', 1)[0]!;
}
