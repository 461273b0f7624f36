// The embedded store for a single gateway instance: a Map with expiry read from the injected clock.
import type { Clock } from '../clock.js';
import { assertPositiveInteger, gcraStep } from '../domain/limits.js';
import { GatewayError } from '../errors.js';
import { storeTtl, type KvStore } from './kv-store.js';

interface Entry {
  /** A string, or the members of a set (setAdd); each method reads only its own kind, as Redis does. */
  value: string | Set<string>;
  expiresAt: number;
}

// Each write also checks this many other entries for expiry, so memory stays bounded by live state without a
// pause that grows with the number of sessions.
const SWEEP_PER_WRITE = 4;
// Entries are also filed by the second they expire in, so a full store finds its expired entries first, however
// many live ones were written before them: room comes back within a second of a flood's keys expiring.
const FILE_MS = 1000;
// A write of a new key into a full store first reclaims up to this many expired entries, to make room; with nothing
// expired, a flood's refused writes each look at nothing.
const RECLAIM_WHEN_FULL = 1000;

// Every method runs to completion without awaiting, so each one is atomic, as a Lua script is in Redis.
export class MemoryKvStore implements KvStore {
  private readonly map = new Map<string, Entry>();
  private sweep: Iterator<string> = this.map.keys();
  private refused: () => void = () => {};
  /** The keys of entries with an expiry, by the second it falls in (see FILE_MS). */
  private readonly expiring = new Map<number, Set<string>>();
  /** The first second whose entries have not all been reclaimed yet. */
  private reclaimFrom: number;

  /**
   * `maxEntries`: keys held at most, expired ones counted until reclaimed (a full store reclaims them first); a new
   * key beyond them is refused (none given: no cap).
   */
  constructor(
    private readonly clock: Clock,
    private readonly maxEntries = Infinity,
  ) {
    this.reclaimFrom = Math.floor(clock.now() / FILE_MS);
  }

  /** Calls `listener` on each write refused because the store is full (the gateway counts them as store errors). */
  onRefused(listener: () => void): void {
    this.refused = listener;
  }

  async get(key: string): Promise<string | null> {
    return this.text(key)?.value ?? null;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.write(key, value, ttlMs);
  }

  async setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean> {
    if (this.live(key)) return false;
    this.write(key, value, ttlMs);
    return true;
  }

  async take(key: string): Promise<string | null> {
    const e = this.text(key);
    this.drop(key);
    return e?.value ?? null;
  }

  async delete(key: string): Promise<void> {
    this.drop(key);
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    return this.bump(key, ttlMs);
  }

  async incrementCapped(key: string, cap: number, ttlMs: number | null): Promise<{ value: number; capped: boolean; reached: boolean }> {
    assertPositiveInteger('cap', cap);
    const n = Number(this.text(key)?.value ?? 0);
    const value = n < cap ? this.bump(key, ttlMs ?? undefined) : n;
    // Kept until deleted, as PERSIST does in Redis. The entry just read or written, without asking the clock again: a
    // counter expiring in the meantime (the clock moves on while the call runs; Redis stops its clock for a script)
    // would be dropped, the failure that locked it with it.
    if (ttlMs === null || value >= cap) this.put(key, { ...this.map.get(key)!, expiresAt: Infinity });
    return { value, capped: value >= cap, reached: n < cap && value >= cap };
  }

  async raiseTo(key: string, value: number, ttlMs: number, note?: { key: string; value: string }): Promise<boolean> {
    const e = this.text(key);
    if (e && Number(e.value) >= value) return false;
    // The note first: a full store refusing it refuses the whole step, never leaves a claim without its note.
    const noted = note && this.map.get(note.key);
    if (note) this.write(note.key, note.value, ttlMs);
    try {
      this.write(key, String(value), ttlMs);
    } catch (err) {
      // Nor a note without its claim: the note may have taken the last free entry and the claim been refused, and a
      // refused step keeps nothing of itself, as a Redis script refused at its first write does.
      if (noted) this.put(note.key, noted);
      else if (note) this.drop(note.key);
      throw err;
    }
    return true;
  }

  async gcra(key: string, emissionIntervalMs: number, burst: number, nowMs: number): Promise<{ allowed: boolean; retryAfterMs: number; remaining: number }> {
    const stored = this.text(key)?.value;
    const { tat, ...decision } = gcraStep(stored === undefined ? null : Number(stored), nowMs, emissionIntervalMs, burst);
    if (decision.allowed) this.write(key, String(tat), tat - nowMs);
    return decision;
  }

  async setAdd(key: string, member: string, ttlMs?: number): Promise<number> {
    const members = this.members(key) ?? new Set<string>();
    members.add(member);
    // A TTL is never shortened (a set without one is given it, as in Redis).
    const left = (this.live(key)?.expiresAt ?? Infinity) - this.clock.now();
    this.write(key, members, ttlMs === undefined ? undefined : Number.isFinite(left) ? Math.max(ttlMs, left) : ttlMs);
    return members.size;
  }

  async setMembers(key: string): Promise<string[]> {
    return [...(this.members(key) ?? [])];
  }

  async setRemove(key: string, member: string): Promise<void> {
    const members = this.members(key);
    members?.delete(member);
    if (members?.size === 0) this.drop(key);
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs?: number): Promise<boolean> {
    const e = this.text(key);
    if (e?.value !== expected) return false;
    if (ttlMs === undefined) e.value = value;
    else this.write(key, value, ttlMs);
    return true;
  }

  async deleteIf(key: string, expected: string): Promise<boolean> {
    if (this.text(key)?.value !== expected) return false;
    this.drop(key);
    return true;
  }

  async *scanKeys(prefix: string): AsyncIterable<string[]> {
    const now = this.clock.now();
    yield [...this.map].filter(([k, e]) => k.startsWith(prefix) && e.expiresAt > now).map(([k]) => k);
  }

  async ping(): Promise<void> {}

  async ready(): Promise<void> {}

  onReady(listener: () => void): () => void {
    listener();
    return () => {};
  }

  onConnection(): () => void {
    return () => {};
  }

  async warnings(): Promise<string[]> {
    return [];
  }

  async close(): Promise<void> {
    this.map.clear();
    this.expiring.clear();
  }

  /** +1 on a string counter; the TTL is set only when the counter is created (none without ttlMs). */
  private bump(key: string, ttlMs: number | undefined): number {
    const e = this.text(key);
    const n = (e ? Number(e.value) : 0) + 1;
    if (e) e.value = String(n);
    else this.write(key, String(n), ttlMs);
    return n;
  }

  private live(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e && e.expiresAt <= this.clock.now()) {
      this.drop(key);
      return undefined;
    }
    return e;
  }

  private text(key: string): { value: string } | undefined {
    const e = this.live(key);
    if (e && typeof e.value !== 'string') throw new TypeError(`${key} holds a set, not a string`);
    return e as { value: string } | undefined;
  }

  private members(key: string): Set<string> | undefined {
    const e = this.live(key);
    if (e && typeof e.value === 'string') throw new TypeError(`${key} holds a string, not a set`);
    return e?.value as Set<string> | undefined;
  }

  private write(key: string, value: string | Set<string>, ttlMs: number | undefined): void {
    // Full: a new key is refused (the request fails closed, as with Redis down) instead of memory growing until
    // the process dies; keys already held can still change, so signed-in people keep working.
    if (this.map.size >= this.maxEntries && !this.map.has(key)) {
      this.reclaim(RECLAIM_WHEN_FULL);
      if (this.map.size >= this.maxEntries) {
        this.refused();
        throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `memory store full (store.memory.maxEntries: ${this.maxEntries})`);
      }
    }
    this.put(key, { value, expiresAt: ttlMs === undefined ? Infinity : this.clock.now() + storeTtl(ttlMs) });
    this.reclaim(SWEEP_PER_WRITE);
    this.sweepSome(SWEEP_PER_WRITE);
  }

  /** Sets an entry, filed under the second it expires in. */
  private put(key: string, e: Entry): void {
    const before = this.map.get(key);
    this.map.set(key, e);
    if (before && second(before) === second(e)) return;
    if (before) this.unfile(key, before);
    if (e.expiresAt === Infinity) return;
    const keys = this.expiring.get(second(e));
    if (keys) keys.add(key);
    else this.expiring.set(second(e), new Set([key]));
  }

  private drop(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.unfile(key, e);
  }

  private unfile(key: string, e: Entry): void {
    const keys = this.expiring.get(second(e));
    keys?.delete(key);
    if (keys?.size === 0) this.expiring.delete(second(e));
  }

  /**
   * Reclaims up to `n` expired entries in the order they expired, second by second up to the last one wholly passed.
   * Each second is stepped over once, so that costs one step per second of uptime. An entry that outlives its second
   * (only when the system clock is set back) is left to the sweep.
   */
  private reclaim(n: number): void {
    const passed = Math.floor(this.clock.now() / FILE_MS);
    while (this.reclaimFrom <= passed) {
      for (const key of this.expiring.get(this.reclaimFrom) ?? []) {
        if (n-- <= 0) return;
        this.live(key);
      }
      // More seconds to step over than there are seconds holding entries (the clock jumped forward: a machine that
      // started near 1970, then set its time): on to the next second that holds any, not through every one between,
      // which would hold up every request for about a second per year skipped.
      this.reclaimFrom = passed - this.reclaimFrom > this.expiring.size ? this.nextFiled(this.reclaimFrom, passed) : this.reclaimFrom + 1;
    }
  }

  /** The first second after `from` that holds entries, up to `upTo`; `upTo` + 1 when none does. */
  private nextFiled(from: number, upTo: number): number {
    let next = upTo + 1;
    for (const sec of this.expiring.keys()) if (sec > from && sec < next) next = sec;
    return next;
  }

  /** Checks up to `n` entries for expiry, going round the map. */
  private sweepSome(n: number): void {
    for (let i = 0; i < n; i++) {
      const next = this.sweep.next();
      if (next.done) this.sweep = this.map.keys();
      else this.live(next.value);
    }
  }

  /** Entries held, expired or not (for tests of the sweep). */
  get size(): number {
    return this.map.size;
  }
}

/** The second an entry's expiry falls in: by its end the entry has expired. */
function second(e: Entry): number {
  return Math.ceil(e.expiresAt / FILE_MS);
}
