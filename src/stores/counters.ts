// The TOTP replay guard: a time step accepted once per user, across pending logins and instances.
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';

// Long enough to outlive the ±1 step window by far; after it, an old step cannot verify anyway.
const STEP_TTL_MS = 10 * 60_000;

/** A TOTP time step is accepted at most once per user (RFC 6238 §5.2), atomically, and never an older one. */
export class ReplayGuard {
  constructor(private readonly kv: KvStore) {}
  claimStep(pid: string, step: number): Promise<boolean> {
    return this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS);
  }
}
