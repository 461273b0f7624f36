// The server-side cookie jar that holds the portal's cookies for one browser: merge Set-Cookie, build Cookie.
import { parse as parseSetCookie } from 'set-cookie-parser';

export interface JarCookie {
  name: string;
  value: string;
  path: string;
  /** Milliseconds since the epoch; absent for a session cookie. */
  expiresAt?: number;
}

export type Jar = readonly JarCookie[];

/** Applies the portal's Set-Cookie headers (RFC 6265 §5.3, one host: Domain is ignored). */
export function applySetCookies(jar: Jar, setCookies: readonly string[], requestPath: string, now: number): Jar {
  const next = jar.filter((c) => c.expiresAt === undefined || c.expiresAt > now);
  for (const sc of parseSetCookie([...setCookies], { decodeValues: false })) {
    if (!sc.name) continue;
    const path = sc.path?.startsWith('/') ? sc.path : defaultPath(requestPath);
    const expiresAt = sc.maxAge !== undefined ? now + sc.maxAge * 1000 : sc.expires?.getTime();
    const at = next.findIndex((c) => c.name === sc.name && c.path === path);
    const cookie: JarCookie = expiresAt === undefined ? { name: sc.name, value: sc.value, path } : { name: sc.name, value: sc.value, path, expiresAt };
    const gone = expiresAt !== undefined && (Number.isNaN(expiresAt) || expiresAt <= now);
    // A replaced cookie keeps its place, so the Cookie header order stays stable (RFC 6265 §5.3 step 11.3).
    if (at !== -1) next.splice(at, 1, ...(gone ? [] : [cookie]));
    else if (!gone) next.push(cookie);
  }
  return next;
}

/** The Cookie header value for a request to `path`, longest paths first (RFC 6265 §5.4); undefined when empty. */
export function cookieHeader(jar: Jar, path: string, now: number): string | undefined {
  const sent = jar
    .filter((c) => (c.expiresAt === undefined || c.expiresAt > now) && pathMatches(path, c.path))
    .sort((a, b) => b.path.length - a.path.length);
  return sent.length ? sent.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
}

export function setCookieNames(setCookies: readonly string[]): string[] {
  return parseSetCookie([...setCookies], { decodeValues: false }).map((c) => c.name);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function defaultPath(requestPath: string): string {
  const i = requestPath.lastIndexOf('/');
  return i <= 0 ? '/' : requestPath.slice(0, i);
}
