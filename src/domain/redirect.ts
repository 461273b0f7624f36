// Where a redirect leads, resolved as a browser resolves it, and redirect safety: only paths on the portal's own origin
// or the gateway's hosts are followed; anything else becomes '/'.
import type { Config } from '../config/schema.js';
import { canonicalTarget } from './canonical-path.js';
import { loose, portalPaths } from './portal-paths.js';

/**
 * Where a sign-in or a step-up sends the browser on to (the portal's Location after the password, a step-up's `to`):
 * a path on the portal's origin (the gateway's own pages among them: the security page asks for a step-up and comes
 * back), or on a host the gateway answers to (a portal that builds its redirects from X-Forwarded-Host), but not the
 * portal's logout, which would end the session just proved: another site's link to `/login?next=/logout` or
 * `step-up?to=/logout` would sign the person out without the confirmation a logout from elsewhere gets. That becomes
 * '/'. `from`: the path and query of the request `target` answers, which a relative one (`home.php`) is read from, as a
 * browser does (see followedLocation).
 */
export function returnTarget(target: string | undefined, config: Pick<Config, 'server' | 'portal'>, from = '/'): string {
  const followed = followedLocation(target, config, from);
  // A path on the portal, or '/' for anything that could lead elsewhere (RFC 9700 §4.11).
  const safe = followed?.startsWith('/') && !followed.startsWith('//') ? followed : '/';
  const canonical = canonicalTarget(safe, { pathParameters: config.server.pathParameters === 'allow' });
  if (!canonical) return '/';
  return portalPaths(config.portal.login, config.portal.logoutPaths).isLogout(loose(canonical.matchPath)) ? '/' : safe;
}

/**
 * The portal's login page for a browser on its way to `target` (a path and query): a `{target}` in `portal.login.page`
 * (`/Account/Login?ReturnUrl={target}`) becomes it, percent-encoded, so that a portal that sends the browser on after
 * the password sends it to the page it asked for.
 */
export function loginPageFor(page: string, target = '/'): string {
  return page.replaceAll('{target}', encodeURIComponent(target));
}

/**
 * The gateway's step-up page for a browser on its way to `to` (none: the page's own default), offering only the kinds of
 * factor a rule takes (none listed: any).
 */
export function stepUpPage(prefix: string, to: string | undefined, factors: readonly string[]): string {
  const query = [...(to === undefined ? [] : [`to=${encodeURIComponent(to)}`]), ...(factors.length ? [`factors=${factors.join(',')}`] : [])];
  return `${prefix}/step-up${query.length ? `?${query.join('&')}` : ''}`;
}

/**
 * Where a Location (or a `to`) sends a browser, resolved as a browser resolves it against `from`, the path and query
 * of the request it answers on the portal (`home.jsp`, `../x`, `?a=1`, `//host/x` and absolute URLs alike): on the
 * portal (see onPortal), or on a host the gateway answers to (a portal that builds its redirects from X-Forwarded-Host), its
 * path and query; elsewhere, or with a user or password in it, the absolute URL. Undefined for none, and for one that
 * browsers read differently or not at all.
 */
export function followedLocation(target: string | undefined, config: Pick<Config, 'server' | 'portal'>, from: string): string | undefined {
  if (!target) return undefined;
  // Backslashes, whitespace and control characters are read as '/' or dropped by some browsers.
  if (/[\\\s\p{Cc}]/u.test(target)) return undefined;
  const portal = new URL(config.portal.url).origin;
  let url: URL;
  try {
    url = new URL(target, new URL(from, portal));
  } catch {
    return undefined;
  }
  const ours = onPortal(url, portal) || (/^https?:$/.test(url.protocol) && config.server.hosts.some((h) => h.toLowerCase() === url.hostname));
  return ours && !url.username && !url.password ? `${url.pathname}${url.search}` : url.href;
}

/**
 * Whether a URL names the portal: its origin, or its host and port under the other scheme (http or https). A portal
 * that builds absolute URLs from its Host and the X-Forwarded-Proto the gateway sends (ASP.NET Core's sign-in
 * redirect, Django's absolute URLs) names itself with https, though the gateway reaches it over http.
 */
function onPortal(url: URL, portalOrigin: string): boolean {
  if (url.origin === portalOrigin) return true;
  return (url.protocol === 'https:' || url.protocol === 'http:') && url.host === portalOrigin.slice(portalOrigin.indexOf('//') + 2);
}

/**
 * A URL as a portal's header gave it, each byte a Latin-1 character (as Node and undici read headers), for the URL
 * parser: the raw bytes above 0x7F (UTF-8, as browsers read them) percent-encoded as they are, not as the characters'
 * UTF-8 (`Müller` sent in UTF-8 would turn into `MÃ¼ller`, percent-encoded twice).
 */
export function headerUrl(value: string): string {
  return value.replace(/[\x80-\xff]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * A portal's Location (or Content-Location, or Refresh URL) for the browser: an absolute or scheme-relative URL on
 * the portal (see onPortal) becomes a path on the gateway; anything else passes as sent. The path keeps one leading
 * slash: `http://portal//evil.example/` is harmless on the portal's origin, but as `//evil.example/` a browser would
 * go to another host.
 */
export function browserLocation(location: string, portalOrigin: string): string {
  // `//portal.internal:8080/x` (or with backslashes, which browsers read as slashes) names the portal's host, with
  // the scheme of the request the portal answered: resolved against the portal's origin.
  if (!/^(https?:|[/\\]{2})/i.test(location)) return location;
  let url: URL;
  try {
    url = new URL(headerUrl(location), portalOrigin);
  } catch {
    return location;
  }
  return onPortal(url, portalOrigin) ? `${url.pathname.replace(/^\/+/, '/')}${url.search}${url.hash}` : location;
}
