// The known-browser cookie (OWASP's "device cookie"): a browser that finished a sign-in to an account carries a token
// naming that account, so its password attempts wait on their own count, not on the one strangers can run up.
import { createHmac } from 'node:crypto';
import { ID_PATTERN, newId, sameToken } from './random.js';
import type { SigningKey } from './session-token.js';

/** How long a token works after the sign-in that gave it (each sign-in gives a new one). */
export const KNOWN_BROWSER_SECONDS = 180 * 24 * 60 * 60;

/**
 * A new token for this account: a random browser id, when it was given, and their MAC with the account's pid and
 * its current epoch (a new epoch, at a factor reset or a revocation, retires every token given before), then the id of
 * the session signing key that made it (the first of keys.signing; any configured one is accepted, by its id: signing
 * keys rotate, and the pseudonym key, which cannot, is not used: whoever learnt it could make tokens).
 */
export function knownBrowserToken(keys: readonly SigningKey[], pid: string, epoch: string, nowMs: number): string {
  const id = newId();
  const issued = Math.floor(nowMs / 1000).toString(36);
  const key = keys[0]!;
  return `${id}.${issued}.${mac(key.key, pid, epoch, id, issued)}.${key.id}`;
}

/** The browser id of a token given for this account in this epoch and not yet expired, or null (absent, another account's, altered, retired, old, of a key no longer configured). */
export function knownBrowserId(keys: readonly SigningKey[], pid: string, epoch: string, token: string | undefined, nowMs: number): string | null {
  // A key id may hold dots: it is the rest.
  const [id, issued, tag, ...kid] = token?.split('.') ?? [];
  const key = keys.find((k) => k.id === kid.join('.'));
  if (!id || !issued || !tag || !key || !ID_PATTERN.test(id) || !/^[0-9a-z]{1,10}$/.test(issued)) return null;
  const age = nowMs / 1000 - parseInt(issued, 36);
  if (age > KNOWN_BROWSER_SECONDS || age < -60) return null;
  return sameToken(tag, mac(key.key, pid, epoch, id, issued)) ? id : null;
}

function mac(key: Uint8Array, pid: string, epoch: string, id: string, issued: string): string {
  // Its own purpose string: the key also signs session tokens (HS256 over their base64url header and claims).
  return createHmac('sha256', key).update(`known-browser\0${pid}\0${epoch}\0${id}\0${issued}`, 'utf8').digest('base64url');
}
