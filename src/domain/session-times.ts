// Session lifetime arithmetic: idle and absolute timeouts, and when the idle clock needs writing back.

export interface SessionTimes {
  authTime: number;
  lastSeen: number;
}

export interface SessionLimits {
  idleMs: number;
  absoluteMs: number;
}

/** Idle bookkeeping is written back at most this often per session, not on every request. */
export const TOUCH_INTERVAL_MS = 30_000;

export type SessionState = { state: 'active'; touch: boolean } | { state: 'idle-expired' } | { state: 'expired' };

export function sessionState(s: SessionTimes, now: number, limits: SessionLimits): SessionState {
  if (now - s.authTime >= limits.absoluteMs) return { state: 'expired' };
  if (now - s.lastSeen >= limits.idleMs) return { state: 'idle-expired' };
  return { state: 'active', touch: now - s.lastSeen >= Math.min(TOUCH_INTERVAL_MS, limits.idleMs / 4) };
}

/** How long the store should keep the record: until the earlier of the two timeouts. */
export function sessionTtlMs(s: SessionTimes, limits: SessionLimits): number {
  return Math.max(1, Math.min(s.authTime + limits.absoluteMs, s.lastSeen + limits.idleMs) - s.lastSeen);
}
