// Identifiers and tokens from the CSPRNG.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 bits, base64url: session ids, pending-login ids, browser ids, CSRF tokens. */
export function newId(): string {
  return randomBytes(32).toString('base64url');
}

export const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Pseudonymous user id: keyed HMAC of the canonical username, so records at rest and logs never name anyone. */
export function pseudonym(key: Buffer, canonicalUsername: string): string {
  return createHmac('sha256', key).update(canonicalUsername, 'utf8').digest('base64url').slice(0, 22);
}
