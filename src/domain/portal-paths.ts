// Which requests are the portal's login and logout: the gateway intercepts the one and ends its session at the other.
import { foldCase } from './canonical-path.js';

/** The methods `portal.methods` may name; the gateway refuses any other (405) before any rule. */
export const PORTAL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * The methods the gateway passes to the portal, as written (Node refuses `post`): those of `portal.methods` (which
 * holds GET), and HEAD with GET, as servers answer HEAD with the GET handler.
 */
export const passedMethods = (methods: readonly string[]): readonly string[] => [...new Set([...methods, 'HEAD'])];

/** The path of the portal's login page (`portal.login.page` without its query and any {target}). */
export const loginPagePath = (page: string): string => page.replaceAll('{target}', '').split('?', 1)[0]!;

/** Login and logout paths match regardless of case and a trailing slash, as legacy portals treat them. */
export function loose(path: string): string {
  const lowered = foldCase(path).toLowerCase();
  return (lowered.endsWith('/') ? lowered.replace(/\/+$/, '') : lowered) || '/';
}

/**
 * Whether a path as `loose` gives it lies in the gateway's reserved prefix (lower case): those are never the
 * portal's, in any spelling.
 */
export function inPrefix(lowered: string, prefix: string): boolean {
  return lowered === prefix || lowered.startsWith(`${prefix}/`);
}

/**
 * Whether a request is for the portal's login page (`portal.login.page`, its query and any {target} aside): a GET or
 * HEAD of its path, as the portal serves it (in its case), with or without a trailing slash (a portal that adds one
 * sends the browser on to it).
 */
export function loginPageMatcher(page: string): (path: string, method: string) => boolean {
  const trimmed = (path: string) => path.replace(/\/+$/, '') || '/';
  const own = trimmed(loginPagePath(page));
  return (path, method) => (method === 'GET' || method === 'HEAD') && trimmed(path) === own;
}

/** Both take a request's canonical match path as `loose` gives it (worked out once per request). */
export interface PortalPaths {
  /** The configured login path a request is a login at, or undefined; never for GET or HEAD (the login page). */
  loginPathOf(lowered: string, method: string): string | undefined;
  isLogout(lowered: string): boolean;
}

/**
 * Each spelling of a login path is that path. So is everything below a login path that names a script
 * (`/login.php/x`, `/Login.aspx/x`: PHP and ASP.NET run the script there, with path info), and for servlet form login
 * any path with a `/j_security_check` segment (Jetty signs a session in at each, whatever the method). Forwarded with
 * a signed-in session's jar, such a request would sign that session in as whoever's password came with it: in any
 * method but GET and HEAD (the login page) it is the login, and a method the login does not take gets 405.
 */
export function portalPaths(login: { paths: readonly string[] }, logoutPaths: readonly string[]): PortalPaths {
  const spellings = login.paths.map((p) => ({ path: p, loose: loose(p), script: /\.[^/]*$/.test(p) }));
  const formLogin = spellings.find((s) => s.loose.endsWith('/j_security_check'))?.path;
  // A logout path is its path whatever the query (the gateway's sign-out calls it as configured, query and all), and
  // everything below it when it names a script: the portal logs out there too.
  const logouts = logoutPaths.map((p) => {
    const path = p.split('?', 1)[0]!;
    return { loose: loose(path), script: /\.[^/]*$/.test(path) };
  });
  return {
    loginPathOf(lowered, method) {
      if (method === 'GET' || method === 'HEAD') return undefined;
      const exact = spellings.find((s) => lowered === s.loose);
      if (exact) return exact.path;
      const below = spellings.find((s) => s.script && lowered.startsWith(`${s.loose}/`));
      return below?.path ?? (formLogin && /\/j_security_check(\/|$)/.test(lowered) ? formLogin : undefined);
    },
    isLogout: (lowered) => logouts.some((l) => lowered === l.loose || (l.script && lowered.startsWith(`${l.loose}/`))),
  };
}
