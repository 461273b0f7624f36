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
// A write of a new key into a full store first checks up to this many entries for expiry, to make room.
const SWEEP_WHEN_FULL = 1000;
// After such a sweep found no room, new keys are refused without sweeping again for this long: a flood that filled
// the store with live keys would otherwise make each of its refused writes cost a thousand checks.
const FULL_RECHECK_MS = 100;

// Every method runs to completion without awaiting, so each one is atomic, as a Lua script is in Redis.
export class MemoryKvStore implements KvStore {
  private readonly map = new Map<string, Entry>();
  private sweep: Iterator<string> = this.map.keys();
  private refused: () => void = () => {};
  /** Until when a full store refuses a new key without looking for expired entries (see FULL_RECHECK_MS). */
  private noRoomUntil = -Infinity;

  /** `maxEntries`: live keys held at most; a new key beyond them is refused (none given: no cap). */
  constructor(
    private readonly clock: Clock,
    private readonly maxEntries = Infinity,
  ) {}

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
    this.map.delete(key);
    return e?.value ?? null;
  }

  async delete(key: string): Promise<void> {
    this.map.delete(key);
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
    if (ttlMs === null || value >= cap) this.map.get(key)!.expiresAt = Infinity;
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
      if (noted) this.map.set(note.key, noted);
      else if (note) this.map.delete(note.key);
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

  async setAdd(key: string, member: string, ttlMs: number): Promise<number> {
    const members = this.members(key) ?? new Set<string>();
    members.add(member);
    this.write(key, members, ttlMs);
    return members.size;
  }

  async setMembers(key: string): Promise<string[]> {
    return [...(this.members(key) ?? [])];
  }

  async setRemove(key: string, member: string): Promise<void> {
    const members = this.members(key);
    members?.delete(member);
    if (members?.size === 0) this.map.delete(key);
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
    this.map.delete(key);
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

  async warnings(): Promise<string[]> {
    return [];
  }

  async close(): Promise<void> {
    this.map.clear();
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
      this.map.delete(key);
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
      const now = this.clock.now();
      if (now >= this.noRoomUntil) this.sweepSome(SWEEP_WHEN_FULL);
      if (this.map.size >= this.maxEntries) {
        if (now >= this.noRoomUntil) this.noRoomUntil = now + FULL_RECHECK_MS;
        this.refused();
        throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `memory store full (store.memory.maxEntries: ${this.maxEntries})`);
      }
    }
    this.map.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : this.clock.now() + storeTtl(ttlMs) });
    this.sweepSome(SWEEP_PER_WRITE);
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
