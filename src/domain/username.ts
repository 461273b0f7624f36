// Canonical usernames: spelling variants of one account share one identity, one factor set and one limit.

export type UsernameCase = 'lower' | 'preserve';

const MAX_LENGTH = 256;

/** Trim, Unicode NFC, optional lower-casing; null when nothing usable is left or control characters appear. */
export function canonicalUsername(raw: string, rule: UsernameCase): string | null {
  const trimmed = raw.normalize('NFC').trim();
  if (trimmed.length === 0 || trimmed.length > MAX_LENGTH) return null;
  // Control characters never belong in a username and would smuggle line breaks into logs.
  if (/\p{Cc}/u.test(trimmed)) return null;
  return rule === 'lower' ? trimmed.toLowerCase() : trimmed;
}
