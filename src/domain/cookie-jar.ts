// The server-side cookie jar that holds the portal's cookies for one browser: merge Set-Cookie, build Cookie.
import { createHash } from 'node:crypto';
import { parse as parseSetCookie } from 'set-cookie-parser';

export interface JarCookie {
  name: string;
  value: string;
  path: string;
  /** Milliseconds since the epoch; absent for a session cookie. */
  expiresAt?: number;
  /** Set without HttpOnly: the portal's scripts read it (an XSRF token), so in the browser it stays readable. */
  scriptable?: true;
}

export type Jar = readonly JarCookie[];

/**
 * Which portal cookies the browser holds: the allow-list (`portal.browserCookies`; all others stay in the jar), or
 * 'all' in forward-auth mode, where the browser talks to the portal through another proxy.
 */
export type BrowserCookies = readonly string[] | 'all';

/** The gateway's own cookies: never the portal's, never forwarded. */
const GATEWAY_COOKIE = /^__Host-mfa-/;

export function heldByBrowser(name: string, policy: BrowserCookies): boolean {
  return policy === 'all' ? !GATEWAY_COOKIE.test(name) : policy.includes(name);
}

// RFC 6265 §4.1.1 cookie-value: cookie-octets, or cookie-octets in double quotes.
const COOKIE_VALUE = /^("?)[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*\1$/;

// What RFC 6265 §6.1 says a portal can count on, and no more: 50 cookies of 4096 bytes each. A jar is decrypted and
// sealed again on every change, and a portal that sets a cookie without a Path on a public page would otherwise add
// one per folder a client asks for. Beyond 50, such a flood goes first (see evictee): it never pushes out the session
// cookie, set on the portal's root or on its context path (a servlet's `JSESSIONID; Path=/portal`), however long ago.
const MAX_COOKIES = 50;
const MAX_COOKIE_BYTES = 4096;

/**
 * Applies the portal's Set-Cookie headers (RFC 6265 §5.3, one host: Domain is ignored). Cookies named in
 * `browserOwned` are left to the browser (they are allow-listed to reach it) and never enter the jar.
 */
export function applySetCookies(jar: Jar, setCookies: readonly string[], requestPath: string, now: number, browserOwned: BrowserCookies = []): Jar {
  if (setCookies.length === 0) return jar;
  // Browser-owned cookies are skipped before parsing: a portal re-setting only those costs nothing.
  const forJar = setCookies.filter((sc) => !heldByBrowser(cookieName(sc), browserOwned));
  if (forJar.length === 0) return jar;
  const next = jar.filter((c) => c.expiresAt === undefined || c.expiresAt > now);
  for (const raw of forJar) {
    const sc = parseSetCookie(raw, { decodeValues: false })[0];
    if (!sc?.name || sc.name.length + sc.value.length > MAX_COOKIE_BYTES) continue;
    const path = sc.path?.startsWith('/') ? sc.path : defaultPath(requestPath);
    const expiresAt = expiresAtOf(sc, raw, now);
    const at = next.findIndex((c) => c.name === sc.name && c.path === path);
    const cookie: JarCookie = { name: sc.name, value: sc.value, path, ...(expiresAt === undefined ? {} : { expiresAt }), ...(sc.httpOnly ? {} : { scriptable: true as const }) };
    const gone = expired(expiresAt, now);
    // A replaced cookie keeps its place, so the Cookie header order stays stable (RFC 6265 §5.3 step 11.3).
    if (at !== -1) next.splice(at, 1, ...(gone ? [] : [cookie]));
    else if (!gone) next.push(cookie);
  }
  while (next.length > MAX_COOKIES) next.splice(evictee(next), 1);
  return next;
}

/**
 * Where the cookie a full jar lets go is: the oldest of the name set at the most paths (a page that sets a cookie
 * without a Path, in every folder asked for), else the oldest of the narrowest (longest) path.
 */
function evictee(jar: Jar): number {
  const seen = new Map<string, number>();
  for (const c of jar) seen.set(c.name, (seen.get(c.name) ?? 0) + 1);
  let flood: string | undefined;
  let most = 1;
  for (const [name, count] of seen) if (count > most) [flood, most] = [name, count];
  if (flood !== undefined) return jar.findIndex((c) => c.name === flood);
  let at = 0;
  jar.forEach((c, i) => {
    if (c.path.length > jar[at]!.path.length) at = i;
  });
  return at;
}

/**
 * The Cookie header for a request to `path`: the jar's cookies, longest paths first (RFC 6265 §5.4), then the
 * browser's own copies of the allow-listed cookies (`browserOwned`) and no other browser cookie.
 */
export function cookieHeader(jar: Jar, path: string, now: number, browserHeader?: string, browserOwned: BrowserCookies = []): string | undefined {
  const matching = jar.filter((c) => (c.expiresAt === undefined || c.expiresAt > now) && pathMatches(path, c.path));
  if (matching.length > 1) matching.sort((a, b) => b.path.length - a.path.length);
  let header = '';
  for (const c of matching) header += `${header ? '; ' : ''}${c.name}=${c.value}`;
  if (browserHeader && (browserOwned === 'all' || browserOwned.some((name) => browserHeader.includes(name)))) {
    // Pair by pair without splitting the header: most of it is the gateway's own cookies, on every request.
    for (let start = 0, end = 0; start < browserHeader.length; start = end + 1) {
      end = browserHeader.indexOf(';', start);
      if (end === -1) end = browserHeader.length;
      const eq = browserHeader.indexOf('=', start);
      if (eq === -1 || eq > end) continue;
      const name = browserHeader.slice(start, eq).trim();
      if (!heldByBrowser(name, browserOwned)) continue;
      const value = browserHeader.slice(eq + 1, end).trim();
      // Only a well-formed value (RFC 6265 cookie-octets, quoted or not): "a, SESSION=x" would smuggle a second cookie to
      // portals that also split on commas.
      if (COOKIE_VALUE.test(value)) header += `${header ? '; ' : ''}${name}=${value}`;
    }
  }
  return header || undefined;
}

/**
 * Every value a Cookie header gives the cookie `name`, in order (name=value pairs apart by `;`, spaces and tabs around
 * them). Null when the header also holds the name in another form, which some portal's parser reads as that cookie:
 * in another case (ASP.NET), percent-encoded (PHP), quoted, or after a comma, a space or another character that is
 * not a cookie name's, also inside another cookie's value (Python and Tomcat split on commas and spaces, Django
 * strips Unicode spaces: `x=1, NAME=v`, `\u0085NAME=v`), or as PHP renames it (`app.session`, `app session` and
 * `app[session` are its `app_session`, and the first of two wins).
 */
export function cookieValues(header: string | undefined, name: string): string[] | null {
  if (!header) return [];
  const values: string[] = [];
  const lower = name.toLowerCase();
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && trimSpaces(pair.slice(0, eq)) === name) values.push(trimSpaces(pair.slice(eq + 1)));
    else if (looseNames(pair).includes(lower)) return null;
  }
  return values;
}

const trimSpaces = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');

/**
 * The cookie names a lenient parser could find in a pair: percent-decoded, in lower case, at any separator, and the
 * pair's name as PHP reads it (phpNames).
 */
function looseNames(pair: string): string[] {
  const decoded = pair.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))).toLowerCase();
  const names = decoded.split(/[^\x21\x23-\x2b\x2d-\x3a\x3c\x3e-\x7e]+/).map((part) => part.replace(/^\$/, ''));
  const eq = decoded.indexOf('=');
  // Older PHP decoded a `+` in a name as a space too.
  if (eq !== -1) for (const name of new Set([decoded.slice(0, eq), decoded.slice(0, eq).replaceAll('+', ' ')])) names.push(...phpNames(name));
  return names;
}

/**
 * The names a cookie's name can have in PHP's $_COOKIE (php_register_variable_ex): white space before it dropped, `.`
 * and spaces in it made `_`, cut where an array's `[…]` begins; a `[` never closed made `_`, and what follows it read
 * as it is (PHP 7) or as the rest (PHP 8).
 */
function phpNames(name: string): string[] {
  const n = name.replace(/^[\t\n\v\f\r ]+/, '');
  const plain = (part: string) => part.replace(/[. []/g, '_');
  const open = n.indexOf('[');
  if (open === -1) return [plain(n)];
  const base = plain(n.slice(0, open));
  if (n.includes(']', open)) return [base];
  const rest = n.slice(open + 1);
  return [`${base}_${rest}`, `${base}_${plain(rest)}`];
}

/**
 * The portal's session as one digest (forward-auth mode, where the browser holds the portal's cookies): the values of
 * the named cookies, `valuesOf` giving each name's. Null when none has a value, or when one has two different values
 * (held for two paths, or a second one added by the client) or cannot be read for certain (see cookieValues): which
 * one the portal reads cannot be told.
 */
export function portalSessionDigest(names: readonly string[], valuesOf: (name: string) => readonly string[] | null): string | null {
  const held: [string, string][] = [];
  for (const name of names) {
    const read = valuesOf(name);
    if (read === null) return null;
    const values = new Set(read);
    if (values.size > 1) return null;
    for (const value of values) held.push([name, value]);
  }
  return held.length ? createHash('sha256').update(JSON.stringify(held)).digest('base64url') : null;
}

/**
 * Each value of the named cookies, `valuesOf` giving each name's, as a digest of its name and value (forward-auth mode:
 * a password login sent with one marks it, see LoginService). Null when one cannot be read for certain (see cookieValues).
 */
export function portalCookieIds(names: readonly string[], valuesOf: (name: string) => readonly string[] | null): string[] | null {
  const ids: string[] = [];
  for (const name of names) {
    const values = valuesOf(name);
    if (values === null) return null;
    for (const value of new Set(values)) ids.push(createHash('sha256').update(JSON.stringify([name, value])).digest('base64url'));
  }
  return ids;
}

/** The name of a `name=value` pair or of a Set-Cookie header. */
export function cookieName(pairOrSetCookie: string): string {
  return pairOrSetCookie.slice(0, pairOrSetCookie.indexOf('=')).trim();
}

export function sameJar(a: Jar, b: Jar): boolean {
  return a === b || (a.length === b.length && a.every((c, i) => c.name === b[i]!.name && c.value === b[i]!.value && c.path === b[i]!.path && c.expiresAt === b[i]!.expiresAt && c.scriptable === b[i]!.scriptable));
}

/**
 * The names of the cookies that Set-Cookie headers set: not those they delete (an empty value, `Max-Age=0`, an
 * `Expires` in the past), which many portals send with a refused login.
 */
export function setCookieNames(setCookies: readonly string[], now: number): string[] {
  return setCookies.flatMap((raw) => {
    const c = parseSetCookie(raw, { decodeValues: false })[0];
    return c && c.value !== '' && !expired(expiresAtOf(c, raw, now), now) ? [c.name] : [];
  });
}

/**
 * When a cookie expires: Max-Age first (RFC 6265 §5.3), else its last Expires read as browsers read dates
 * (cookieDate); undefined for a session cookie, also when Expires cannot be read (§5.2.1: the attribute is ignored).
 */
function expiresAtOf(sc: { maxAge?: number }, raw: string, now: number): number | undefined {
  if (sc.maxAge !== undefined) return now + sc.maxAge * 1000;
  const expires = [...raw.matchAll(/;\s*expires\s*=([^;]*)/gi)].at(-1)?.[1];
  return expires === undefined ? undefined : cookieDate(expires);
}

function expired(expiresAt: number | undefined, now: number): boolean {
  return expiresAt !== undefined && expiresAt <= now;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/** RFC 6265 §5.1.1, the date format of cookies: `Expires=0` or `-1` is no date (JavaScript's Date reads years). */
function cookieDate(text: string): number | undefined {
  let time: number[] | undefined;
  let day: number | undefined;
  let month: number | undefined;
  let year: number | undefined;
  for (const token of text.split(/[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+/).filter(Boolean)) {
    const hms = time === undefined ? /^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\D|$)/.exec(token) : null;
    if (hms) time = hms.slice(1, 4).map(Number);
    else if (day === undefined && /^\d{1,2}(?:\D|$)/.test(token)) day = parseInt(token, 10);
    else if (month === undefined && MONTHS.includes(token.slice(0, 3).toLowerCase())) month = MONTHS.indexOf(token.slice(0, 3).toLowerCase());
    else if (year === undefined && /^\d{2,4}(?:\D|$)/.test(token)) year = parseInt(token, 10);
  }
  if (time === undefined || day === undefined || month === undefined || year === undefined) return undefined;
  if (year >= 70 && year <= 99) year += 1900;
  else if (year >= 0 && year <= 69) year += 2000;
  const [h, m, s] = time as [number, number, number];
  if (day < 1 || day > 31 || year < 1601 || h > 23 || m > 59 || s > 59) return undefined;
  const at = Date.UTC(year, month, day, h, m, s);
  // No 30 February.
  return new Date(at).getUTCDate() === day ? at : undefined;
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/**
 * A Set-Cookie line to be sent in answer to another request than the one it answered: its path made explicit, the
 * default path of `requestPath` when it names none (or its last Path does not start with "/", RFC 6265 §5.2.4).
 */
export function withExplicitPath(setCookie: string, requestPath: string): string {
  // `; Path` without a value is one too (empty: the default).
  const last = [...setCookie.matchAll(/;\s*path\s*(?:=([^;]*))?(?=;|$)/gi)].at(-1)?.[1]?.trim() ?? undefined;
  return last?.startsWith('/') ? setCookie : `${setCookie}; Path=${defaultPath(requestPath)}`;
}

/** RFC 6265 §5.1.4: the path a cookie set without one (or with one not starting with "/") gets, from its request's. */
export function defaultPath(requestPath: string): string {
  const i = requestPath.lastIndexOf('/');
  return i <= 0 ? '/' : requestPath.slice(0, i);
}

