// The mark that says an address holds what a change kept for one sign-in (the security page's, see security-routes).
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Marks over `what` (a sign-in and what it kept), under a key of their own derived from `signingKey` (HKDF, RFC 5869,
 * with this use as its info): the signing key itself signs session tokens, and a MAC under it could be taken for one.
 */
export function keptMarks(signingKey: Buffer): { mark(what: readonly (string | number)[]): string; isMark(given: string, what: readonly (string | number)[]): boolean } {
  const key = Buffer.from(hkdfSync('sha256', signingKey, Buffer.alloc(0), 'mfa-gateway kept-values v1', 32));
  const mark = (what: readonly (string | number)[]) => createHmac('sha256', key).update(JSON.stringify(['kept', ...what])).digest().subarray(0, 16).toString('base64url');
  return {
    mark,
    isMark(given, what) {
      const [a, b] = [Buffer.from(given), Buffer.from(mark(what))];
      return a.length === b.length && timingSafeEqual(a, b);
    },
  };
}
