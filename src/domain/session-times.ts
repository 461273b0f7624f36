// Session lifetime arithmetic: idle and absolute timeouts, and when the idle clock needs writing back; the time of a
// sign-in in progress.

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

/** A sign-in in progress: until when it runs, from when the portal accepted the password (absent in old records). */
export interface PendingTimes {
  expiresAt: number;
  passwordAt?: number;
  stage: string;
}

/** The latest a sign-in in progress can end, with all the more time it can be given (`maxMs`: from the password). */
export function latestEnd(p: PendingTimes, maxMs: number): number {
  return p.passwordAt === undefined ? p.expiresAt : Math.max(p.expiresAt, p.passwordAt + maxMs);
}

/**
 * The end of a sign-in in progress given more time now (its whole time again, never less than it has), or null when
 * it can get none: expired, at its latest end already, a record without its password time, or at the recovery codes
 * (shown once: the page cannot be shown again to give more time on it).
 */
export function moreTimeUntil(p: PendingTimes, now: number, timeoutMs: number, maxMs: number): number | null {
  const latest = latestEnd(p, maxMs);
  if (p.passwordAt === undefined || p.stage === 'acknowledge' || p.expiresAt <= now || p.expiresAt >= latest) return null;
  return Math.max(p.expiresAt, Math.min(now + timeoutMs, latest));
}
