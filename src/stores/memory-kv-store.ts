// The embedded store for a single gateway instance: a Map with expiry read from the injected clock.
import type { Clock } from '../clock.js';
import type { KvStore } from './kv-store.js';

interface Entry {
  value: string;
  expiresAt: number;
}

// Each write also checks this many other entries for expiry, so memory stays bounded by live state without a
// pause that grows with the number of sessions.
const SWEEP_PER_WRITE = 4;

export class MemoryKvStore implements KvStore {
  private readonly map = new Map<string, Entry>();
  private sweep: Iterator<string> = this.map.keys();

  constructor(private readonly clock: Clock) {}

  async get(key: string): Promise<string | null> {
    return this.live(key)?.value ?? null;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.write(key, value, ttlMs);
  }

  async setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean> {
    if (this.live(key)) return false;
    this.write(key, value, ttlMs);
    return true;
  }

  async setIfPresent(key: string, value: string, ttlMs: number): Promise<boolean> {
    if (!this.live(key)) return false;
    this.write(key, value, ttlMs);
    return true;
  }

  async take(key: string): Promise<string | null> {
    const e = this.live(key);
    this.map.delete(key);
    return e?.value ?? null;
  }

  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    const e = this.live(key);
    const n = (e ? Number(e.value) : 0) + 1;
    if (e) e.value = String(n);
    else this.write(key, String(n), ttlMs);
    return n;
  }

  async raiseTo(key: string, value: number, ttlMs: number): Promise<boolean> {
    const e = this.live(key);
    if (e && Number(e.value) >= value) return false;
    this.write(key, String(value), ttlMs);
    return true;
  }

  async ping(): Promise<void> {}

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.map.clear();
  }

  private live(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e && e.expiresAt <= this.clock.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e;
  }

  private write(key: string, value: string, ttlMs: number | undefined): void {
    this.map.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : this.clock.now() + ttlMs });
    for (let i = 0; i < SWEEP_PER_WRITE; i++) {
      const next = this.sweep.next();
      if (next.done) {
        this.sweep = this.map.keys();
        break;
      }
      this.live(next.value);
    }
  }

  /** Entries held, expired or not (for tests of the sweep). */
  get size(): number {
    return this.map.size;
  }
}
