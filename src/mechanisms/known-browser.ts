// The known-browser cookie (OWASP's "device cookie"): a browser that finished a sign-in to an account carries a token
// naming that account, so its password attempts wait on their own count, not on the one strangers can run up.
import { createHmac } from 'node:crypto';
import { ID_PATTERN, newId, sameToken } from './random.js';

/** How long a token works after the sign-in that gave it (each sign-in gives a new one). */
export const KNOWN_BROWSER_SECONDS = 180 * 24 * 60 * 60;

/**
 * A new token for this account: a random browser id, when it was given, and their MAC with the account's pid and
 * its current epoch (a new epoch, at a factor reset or a revocation, retires every token given before).
 */
export function knownBrowserToken(key: Buffer, pid: string, epoch: string, nowMs: number): string {
  const id = newId();
  const issued = Math.floor(nowMs / 1000).toString(36);
  return `${id}.${issued}.${mac(key, pid, epoch, id, issued)}`;
}

/** The browser id of a token given for this account in this epoch and not yet expired, or null (absent, another account's, altered, retired, old). */
export function knownBrowserId(key: Buffer, pid: string, epoch: string, token: string | undefined, nowMs: number): string | null {
  const [id, issued, tag, ...rest] = token?.split('.') ?? [];
  if (!id || !issued || !tag || rest.length || !ID_PATTERN.test(id) || !/^[0-9a-z]{1,10}$/.test(issued)) return null;
  const age = nowMs / 1000 - parseInt(issued, 36);
  if (age > KNOWN_BROWSER_SECONDS || age < -60) return null;
  return sameToken(tag, mac(key, pid, epoch, id, issued)) ? id : null;
}

function mac(key: Buffer, pid: string, epoch: string, id: string, issued: string): string {
  // Its own purpose string: the key also makes pseudonyms, which are MACs of usernames alone.
  return createHmac('sha256', key).update(`known-browser\0${pid}\0${epoch}\0${id}\0${issued}`, 'utf8').digest('base64url');
}
