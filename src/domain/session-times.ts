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

export type SessionState = { state: 'active' } | { state: 'idle-expired' } | { state: 'expired' };

export function sessionState(s: SessionTimes, now: number, limits: SessionLimits): SessionState {
  if (now - s.authTime >= limits.absoluteMs) return { state: 'expired' };
  if (now - s.lastSeen >= limits.idleMs) return { state: 'idle-expired' };
  return { state: 'active' };
}

/** Whether the idle clock is due to be written back. */
export function touchDue(s: SessionTimes, now: number, limits: SessionLimits): boolean {
  return now - s.lastSeen >= Math.min(TOUCH_INTERVAL_MS, limits.idleMs / 4);
}

/**
 * How long the store should keep the record written at `now`: until the earlier of the two timeouts. From `now`, not
 * from lastSeen: a record written without moving the idle clock would otherwise be kept past its end.
 */
export function sessionTtlMs(s: SessionTimes, limits: SessionLimits, now: number): number {
  return Math.max(1, Math.min(s.authTime + limits.absoluteMs, s.lastSeen + limits.idleMs) - now);
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

/** The least more time given at once: each extension is a write, and a check planned at its end. */
export const MIN_MORE_TIME_MS = 60_000;

/**
 * The end of a sign-in in progress given more time now (its whole time again), or null when that would not be at
 * least a minute more: asked too soon, expired, near its latest end, a record without its password time, or at the
 * recovery codes (shown once: the page cannot be shown again to give more time on it).
 */
export function moreTimeUntil(p: PendingTimes, now: number, timeoutMs: number, maxMs: number): number | null {
  if (!extensible(p) || p.expiresAt <= now) return null;
  const until = wholeTimeFrom(p, now, timeoutMs, maxMs);
  return until - p.expiresAt >= MIN_MORE_TIME_MS ? until : null;
}

/**
 * The end of a sign-in in progress as it reaches the recovery codes: its whole time again from now, as "more time"
 * gives (never less than it had). That page cannot offer more time, and writing ten codes down takes a while: the
 * factor is already bound, so running out there would only send the person back to the password for nothing.
 */
export function recoveryCodesUntil(p: PendingTimes, now: number, timeoutMs: number, maxMs: number): number {
  return Math.max(p.expiresAt, wholeTimeFrom(p, now, timeoutMs, maxMs));
}

/** Its whole time again from now, up to its latest end. */
function wholeTimeFrom(p: PendingTimes, now: number, timeoutMs: number, maxMs: number): number {
  return Math.min(now + timeoutMs, latestEnd(p, maxMs));
}

/**
 * Whether the pages of a sign-in in progress offer more time: when asking before it ends can give some. From the
 * start, as a page is not drawn again by itself (asked too soon, it gives nothing yet, and the page says how long is left).
 */
export function offersMoreTime(p: PendingTimes, now: number, timeoutMs: number, maxMs: number): boolean {
  return extensible(p) && p.expiresAt > now && Math.min(timeoutMs, latestEnd(p, maxMs) - p.expiresAt) > MIN_MORE_TIME_MS;
}

function extensible(p: PendingTimes): boolean {
  return p.passwordAt !== undefined && p.stage !== 'acknowledge';
}
