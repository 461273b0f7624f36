// The few storage primitives every backend provides; the gateway's stores are built on these alone.

export interface KvStore {
  get(key: string): Promise<string | null>;
  /** Without ttlMs the key is kept until deleted (factor records); everything ephemeral passes one. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** Sets only when absent; true when this call set it. Without ttlMs the key is kept until deleted. */
  setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean>;
  /** Sets only when present (an update never recreates a deleted record); true when this call set it. */
  setIfPresent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /** Atomic read-and-delete: of many parallel callers, one gets the value. */
  take(key: string): Promise<string | null>;
  delete(key: string): Promise<void>;
  /** Atomic +1; the TTL starts when the counter is created. */
  increment(key: string, ttlMs: number): Promise<number>;
  /** Atomically stores `value` when it is greater than the stored number (or none); true when it was. */
  raiseTo(key: string, value: number, ttlMs: number): Promise<boolean>;
  /** Throws when the backend cannot serve requests. */
  ping(): Promise<void>;
  /** Resolves once the backend can take commands (for commands run once, like the CLI); rejects after a while. */
  ready(): Promise<void>;
  close(): Promise<void>;
}
