// The gateway's own cookies: __Host- prefixed, HttpOnly, Secure, SameSite=Lax, Path=/, never a Domain.
import type { CookieSerializeOptions } from '@fastify/cookie';

export const COOKIE = {
  /** The signed session (a JWT naming the session record). */
  session: '__Host-mfa-session',
  /** A pending login: password accepted, second factor outstanding. */
  pending: '__Host-mfa-pending',
  /** A browser that has not signed in: names its pre-login jar of portal cookies. */
  browser: '__Host-mfa-browser',
  /** A browser that finished a sign-in: its password attempts for that account wait on a count of their own. */
  known: '__Host-mfa-known',
} as const;

export const cookieOptions = (maxAgeSeconds?: number): CookieSerializeOptions => ({
  path: '/',
  httpOnly: true,
  secure: true,
  sameSite: 'lax',
  ...(maxAgeSeconds === undefined ? {} : { maxAge: maxAgeSeconds }),
});

export const clearOptions: CookieSerializeOptions = { path: '/', httpOnly: true, secure: true, sameSite: 'lax' };

/**
 * What a browser forgets at a sign-out, the gateway's or the portal's logout (a shared computer): its cookies of this
 * site (the known-browser token among them), its storage, and its cache (pages kept for Back).
 */
export const CLEAR_SITE_DATA = '"cache", "cookies", "storage"';
