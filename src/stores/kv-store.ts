// The few storage primitives every backend provides; the gateway's stores are built on these alone.

/**
 * A TTL as every backend applies it: whole milliseconds, at least 1 (Redis refuses PX 0 and fractions, and a script
 * that failed on its PEXPIRE would leave a key without one).
 */
export function storeTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs)) throw new TypeError(`ttlMs must be a finite number, got ${ttlMs}`);
  return Math.max(1, Math.ceil(ttlMs));
}

/**
 * What `live` makes of each member of the set at `index` (null: that member's record is gone, and it leaves the set).
 * For index sets whose members can outlive what they point to.
 */
export async function liveMembers<T>(kv: KvStore, index: string, live: (member: string) => Promise<T | null>): Promise<T[]> {
  const out: T[] = [];
  for (const member of await kv.setMembers(index)) {
    const found = await live(member);
    if (found === null) await kv.setRemove(index, member);
    else out.push(found);
  }
  return out;
}

/** A change of the backend's connection: lost or refused (`reason`: why, no password in it), or made again. */
export type ConnectionChange = { up: false; reason: string } | { up: true };

/**
 * The store's connection in the log: one warning when it is lost or cannot be made, with why (nothing more while the
 * client retries), one line when it is back. Returns the function that stops it (when the app closes: a store closed
 * on purpose is no lost connection).
 */
export function logConnection(kv: KvStore, log: { warn(o: object, msg: string): void; info(o: object, msg: string): void }): () => void {
  return kv.onConnection((change) => {
    if (change.up) log.info({ store: 'redis' }, 'store connection back: requests are served again');
    else log.warn({ store: 'redis', reason: change.reason }, 'store connection failed: requests that need the store are refused (503) until it is back');
  });
}

export interface KvStore {
  /** A counter written by increment or incrementCapped reads back as its number in decimal. */
  get(key: string): Promise<string | null>;
  /** Without ttlMs the key is kept until deleted (factor records); everything ephemeral passes one. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** Sets only when absent; true when this call set it. Without ttlMs the key is kept until deleted. */
  setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean>;
  /** Atomic read-and-delete: of many parallel callers, one gets the value. */
  take(key: string): Promise<string | null>;
  delete(key: string): Promise<void>;
  /** Atomic +1; the TTL starts when the counter is created. */
  increment(key: string, ttlMs: number): Promise<number>;
  /**
   * Atomic +1 unless the value is already at `cap` (then unchanged). `capped`: the value is at the cap after this
   * call; `reached`: this call moved it there (exactly one caller sees it). The TTL starts when the counter is created.
   * A counter at the cap, or with ttlMs null, is kept until deleted: the call drops any TTL it had, in the same step.
   */
  incrementCapped(key: string, cap: number, ttlMs: number | null): Promise<{ value: number; capped: boolean; reached: boolean }>;
  /**
   * Atomically stores `value` when it is greater than the stored number (or none); true when it was. With `note`, the
   * same step also sets `note.key` (in the same hash slot as `key`) to `note.value`, with the same TTL.
   */
  raiseTo(key: string, value: number, ttlMs: number, note?: { key: string; value: string }): Promise<boolean>;
  /**
   * One atomic GCRA step (see domain/limits.ts) on the TAT stored at `key`. `nowMs` is the caller's clock, never the
   * store's. The key expires once the TAT is in the past.
   */
  gcra(key: string, emissionIntervalMs: number, burst: number, nowMs: number): Promise<{ allowed: boolean; retryAfterMs: number; remaining: number }>;
  /**
   * Adds to a set, pushes its TTL to `ttlMs` from now (never shortens it: an index outlives what it lists, also after
   * a configured time was lowered), and returns its size, atomically. Without ttlMs the set is kept until deleted (a
   * TTL it had is dropped, in the same step): for an index of what lasts until it is cleared.
   */
  setAdd(key: string, member: string, ttlMs?: number): Promise<number>;
  /** The members of a set, in no particular order; [] when there is none. */
  setMembers(key: string): Promise<string[]>;
  /** Removes one member (the TTL is left as it is); an emptied set is gone. */
  setRemove(key: string, member: string): Promise<void>;
  /** Replaces a string value only while it is still `expected`, keeping its TTL (or setting `ttlMs`); true when it did. */
  replaceIf(key: string, expected: string, value: string, ttlMs?: number): Promise<boolean>;
  /** Deletes a string value only while it is still `expected`; true when it did. */
  deleteIf(key: string, expected: string): Promise<boolean>;
  /**
   * Every key starting with `prefix`, in batches (for admin commands: export, erase, key rotation, reports; never on
   * a request). Keys written during the scan may or may not be listed, and a key may be listed more than once (Redis
   * SCAN, while its table is resized).
   */
  scanKeys(prefix: string): AsyncIterable<string[]>;
  /** Throws when the backend cannot serve requests. */
  ping(): Promise<void>;
  /** Resolves once the backend can take commands (for commands run once, like the CLI); rejects after a while. */
  ready(): Promise<void>;
  /**
   * Calls `listener` each time the backend becomes able to take commands: at once when it already can, and again
   * after every reconnection (Redis started late or restarted, a Sentinel failover, a Cluster that lost every node),
   * however long that takes. For checks of the backend itself. Returns the function that stops the calls.
   */
  onReady(listener: () => void): () => void;
  /**
   * Calls `listener` when the connection to the backend is lost or cannot be made (`up` false, with the reason), and
   * when it is made again (`up` true): once each way, not on every retry in between; at once when it is down already.
   * A backend without a connection (the memory store) never calls it. Returns the function that stops the calls.
   */
  onConnection(listener: (change: ConnectionChange) => void): () => void;
  /** Settings of the backend that weaken what the gateway guarantees, one line each, for the log ([]: none). */
  warnings(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Every key starting with `prefix` that `wanted` picks, each once (scanKeys may list a key twice): for what counts keys,
 * or acts on each once. Remembers the keys given so far (only those picked): for admin commands and reports, as scanKeys.
 */
export async function* keysOnce(kv: KvStore, prefix: string, wanted: (key: string) => boolean = () => true): AsyncIterable<string> {
  const listed = new Set<string>();
  for await (const batch of kv.scanKeys(prefix)) {
    for (const key of batch) {
      if (!wanted(key) || listed.has(key)) continue;
      listed.add(key);
      yield key;
    }
  }
}
