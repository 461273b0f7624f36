// The privacy guard: an event that could carry a username or a secret never reaches the audit trail.
import { flatEventError } from './record.js';

const FORBIDDEN = new Set(['username', 'user', 'password', 'code', 'token', 'secret', 'cookie']);

/**
 * Why an event must be refused, or null when it may be written. Field names are compared without case, "-"
 * or "_" (User_Name is username); values are never looked at, and never repeated in the reason.
 */
export function refuseEvent(event: unknown): string | null {
  const notFlat = flatEventError(event);
  if (notFlat) return notFlat;
  const bad = Object.keys(event as object).find((k) => FORBIDDEN.has(k.toLowerCase().replace(/[-_]/g, '')));
  return bad === undefined ? null : `event field "${bad}" may hold a username or a secret`;
}
