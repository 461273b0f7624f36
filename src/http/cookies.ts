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
