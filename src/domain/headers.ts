// Header hygiene between browser and portal: what may pass, what the gateway sets, what is always removed.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { cookieName, heldByBrowser, type BrowserCookies } from './cookie-jar.js';

// RFC 9110 §7.6.1 hop-by-hop fields, plus proxy credentials that are meant for the gateway hop only, and Expect:
// Node has already answered a 100-continue, and the portal client refuses requests that carry one.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings', 'expect',
]);

// The gateway's own answer headers: the portal cannot weaken them (HSTS max-age=0 would switch HSTS off), nor say
// where else the gateway's origin is served (the portal's Alt-Svc names its own ports: the browser would send the
// gateway's requests there, or keep trying a port with nothing on it).
const GATEWAY_OWNED = new Set(['strict-transport-security', 'alt-svc']);

/** Headers that ask the portal to act on another method than the request's (ASP.NET MVC, Express, Rails, Spring). */
export const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'];

// Client-address and routing headers, as proxies, CDNs and load balancers set them: only the gateway may set them
// for the portal (SECURITY C-24). In forward-auth mode the proxy in front passes them on, and may set some itself.
// X-Forwarded and Forwarded-For are read by the common PHP "client IP" code (HTTP_X_FORWARDED, HTTP_FORWARDED_FOR),
// which skips a private address in X-Forwarded-For (a clinic's) and takes the next header it finds. The application
// servers and SSO agents of legacy portals have their own: WebLogic's plugin (WL-Proxy-Client-IP, and WL-Proxy-SSL for
// "the client used HTTPS", as IIS ARR's X-ARR-SSL and Front-End-Https), WebSEAL's iv-remote-address, and
// Proxy-Client-IP and X-ProxyUser-IP, which the common Java "client IP" code reads.
const FORWARDED_ADDRESS = '(for|proto|host|port|server|ssl|scheme|method|uri|prefix)$';
const WEBLOGIC_ADDRESS = '(client-ip|ssl)$';
const ADDRESS = [
  `x-forwarded-${FORWARDED_ADDRESS}`, 'x-forwarded$', 'forwarded$', 'forwarded-for$', 'x-real-ip$', 'x-client-ip$', 'client-ip$', 'x-cluster-client-ip$',
  'true-client-ip$', 'x-true-client-ip$', 'cf-connecting-ip', 'fastly-client-ip$', 'x-azure-clientip$', 'x-azure-socketip$', 'cloudfront-viewer-address$',
  'x-originating-ip$', 'x-original-forwarded-for$', 'x-envoy-', 'front-end-https$',
  'proxy-client-ip$', 'x-proxyuser-ip$', `wl-proxy-${WEBLOGIC_ADDRESS}`, 'x-arr-ssl$', 'iv-remote-address$',
];
// Headers that would have the portal act for another user, on another path, method or client certificate, as set by
// identity-aware proxies and URL rewriters, and Proxy (httpoxy: a CGI or FastCGI portal sees it as HTTP_PROXY, which
// many HTTP clients take as the proxy for their own requests). Never from a client, in either mode.
const ACTING = [
  // X-Forwarded-User, -Email, -Groups, -Access-Token (oauth2-proxy and the like).
  `x-forwarded-(?!${FORWARDED_ADDRESS})`,
  'x-pomerium-', 'shib-', 'auth-user$', 'oidc-claim-',
  'remote-', 'x-remote-', 'x-auth', 'x-user', 'x-webauth-', 'x-email$', 'x-preferred-username$', 'x-principal', 'x-proxy-user$',
  'x-groups$', 'x-roles$',
  'x-ssl-', 'ssl-client', 'x-client-cert', 'client-cert$', 'client-cert-chain$', 'x-client-verify', 'x-client-dn', 'x-amzn-oidc-', 'x-goog-authenticated-', 'x-goog-iap-',
  'x-ms-client-principal', 'x-ms-token-aad-', 'x-arr-clientcert$', 'cf-access-', 'gap-auth$', 'x-consumer-', 'x-credential-',
  'x-anonymous-consumer$', 'x-original-url$', 'x-rewrite-url$', 'x-original-uri$', 'x-original-method$',
  // Application servers and SSO agents under legacy portals, in the dashed spelling (actsOnPortal and a CGI portal
  // read SM_USER as SM-USER): WebLogic's plugin (WL-Proxy-Client-Cert, -Keysize, -SecretKeysize: any but its address
  // headers), IBM WebSEAL and WebSphere's TAI (iv-user, iv-user-l, iv-groups, iv-creds), CA SiteMinder (SM_USER,
  // SM_USERDN, SM_UNIVERSALID and the rest, and the older spellings without the underscore: exact names, as a bare
  // "sm" would take in ordinary headers), Oracle Access Manager (OAM_REMOTE_USER), mod_auth_mellon (MELLON_*), iisnode
  // (x-iisnode-auth_user, -logon_user) and the AWS load balancer's mutual TLS (X-Amzn-Mtls-Clientcert*).
  `wl-proxy-(?!${WEBLOGIC_ADDRESS})`, 'iv-(?!remote-address$)', 'sm-', 'smuser$', 'smuserdn$', 'smuniversalid$',
  'oam-', 'mellon-', 'x-iisnode-', 'x-amzn-mtls-',
  'x-original-host$', 'x-host$', 'x-middleware-subrequest$', 'x-mfa-', 'proxy$', 'proxy-authorization$',
  ...METHOD_OVERRIDE_HEADERS.map((name) => `${name}$`),
];
const matcher = (patterns: string[]) => new RegExp(`^(${patterns.join('|')})`);
const IDENTITY = matcher([...ADDRESS, ...ACTING]);
const ACTING_HEADER = matcher(ACTING);

/**
 * A header name as a CGI, FastCGI or PHP portal reads it, in the dashed spelling: each character but a letter, a digit
 * or `-` is `-` (lighttpd, Apache 2.2 and PHP make every one of them the variable's `_`: X_Real.IP is HTTP_X_REAL_IP).
 */
export const cgiSpelling = (name: string): string => name.toLowerCase().replace(/[^a-z0-9-]/g, '-');

/**
 * Whether a client's header (lower-case name) would have the portal act for another user, path, method or client
 * certificate, in any spelling a CGI portal reads as the same variable (X_Original_URL, X-Original.URL).
 */
export function actsOnPortal(name: string): boolean {
  return ACTING_HEADER.test(cgiSpelling(name));
}

export interface ForwardContext {
  clientIp: string;
  proto: 'http' | 'https';
  /** The Host the browser asked for, passed on as X-Forwarded-Host. */
  host: string | undefined;
  /** The portal's own host, sent as Host. */
  upstreamHost?: string;
  cookie: string | undefined;
  /** Further lower-case header names never passed on (e.g. the device certificate header). */
  strip?: ReadonlySet<string>;
  /** Headers the gateway itself adds (identity to the portal), lower-case names. */
  add?: Readonly<Record<string, string>>;
}

/** Whether a client-sent header may pass to the portal, by lower-case name (without the Connection check). */
function passes(name: string): boolean {
  const n = name.toLowerCase();
  // A name with another character than a letter, a digit or `-` (X_Auth_User, X-Real.IP) may reach a PHP or CGI
  // portal as the same variable as the dashed form (see cgiSpelling): such a name never passes.
  return !(cgiSpelling(n) !== n || HOP_BY_HOP.has(n) || IDENTITY.test(n) || n === 'cookie' || n === 'host');
}

// Header names repeat from request to request: each name is judged once (bounded, so junk names cannot grow it).
const verdicts = new Map<string, boolean>();
function passesCached(n: string): boolean {
  let v = verdicts.get(n);
  if (v === undefined) {
    v = passes(n);
    if (verdicts.size < 1000) verdicts.set(n, v);
  }
  return v;
}

/** Headers for the portal: client copies of hop-by-hop, identity and cookie headers removed, then ours added. */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, ctx: ForwardContext): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const n in incoming) {
    const value = incoming[n];
    if (value === undefined || !passesCached(n) || named.has(n) || ctx.strip?.has(n)) continue;
    out[n] = value;
  }
  if (ctx.upstreamHost) out.host = ctx.upstreamHost;
  out['x-forwarded-for'] = ctx.clientIp;
  out['x-forwarded-proto'] = ctx.proto;
  if (ctx.host) out['x-forwarded-host'] = ctx.host;
  if (ctx.cookie) out.cookie = ctx.cookie;
  if (ctx.add) Object.assign(out, ctx.add);
  return out;
}

/**
 * The portal's Set-Cookie lines of the cookies the browser holds, for the browser: host-only, as the gateway's host
 * (the portal's Domain names the portal's host, which the browser would refuse, or a parent domain, which would hand
 * the cookie to sibling sites).
 */
export function browserSetCookies(setCookies: readonly string[], browserCookies: BrowserCookies): string[] {
  return setCookies.filter((sc) => heldByBrowser(cookieName(sc), browserCookies)).map((sc) => sc.replace(/;\s*domain\s*=[^;]*/gi, ''));
}

/**
 * The portal's response headers for the browser: its cookies stay in the jar except the allow-listed ones. A page
 * (HTML) is never kept by the browser, whoever asked (`no-store`, whatever the portal said): on a shared computer,
 * Back after a sign-out would show the last person's records again (from the back/forward cache or the HTTP cache),
 * or the portal's login form with their password still in it. Other answers to a signed-in person (`signedIn`) that
 * say nothing of caching are not kept either (a JSON record); the portal's own caching of its scripts and images stands.
 */
export function browserResponseHeaders(
  upstream: Record<string, string | string[] | number | undefined>,
  opts: { browserCookies: BrowserCookies; rewriteLocation: (location: string) => string; signedIn: boolean },
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const named = connectionTokens(upstream.connection);
  // undici gives lower-case names.
  for (const n in upstream) {
    const value = upstream[n];
    if (value === undefined || HOP_BY_HOP.has(n) || GATEWAY_OWNED.has(n) || named.has(n)) continue;
    if (n === 'set-cookie') {
      const allowed = browserSetCookies(asList(value), opts.browserCookies);
      if (allowed.length) out[n] = allowed;
    } else if (n === 'location' || n === 'content-location') {
      // A repeated Location is malformed: the first one, rewritten like a single one, never the portal's origin.
      // Content-Location names the portal's origin as Location does.
      out[n] = opts.rewriteLocation(asList(value)[0]!);
    } else if (n === 'content-type') {
      // Sent twice (a framework's and the server's): the last, as browsers read it. Both would make no type the
      // gateway can read, and a page would go out as a download, kept as the portal said.
      out[n] = asList(value).at(-1)!;
    } else if (n === 'refresh') {
      // `Refresh: 0; url=…` is a redirect too.
      out[n] = refreshWith(asList(value)[0]!, opts.rewriteLocation);
    } else if (n === 'link') {
      // `Link: <http://portal.internal/style.css>; rel=preload`: each target as a Location.
      out[n] = asList(value).map((v) => v.replace(/<([^>]*)>/g, (_m, url: string) => `<${opts.rewriteLocation(url)}>`));
    } else {
      out[n] = value;
    }
  }
  if (PAGE_TYPE.test(String(out['content-type'] ?? '')) || (opts.signedIn && out['cache-control'] === undefined)) {
    out['cache-control'] = 'no-store';
    for (const name in out) if (targetedCaching(name)) delete out[name];
  }
  return out;
}

/**
 * A caching field a cache in front reads instead of Cache-Control (RFC 9213 §2.1): CDN-Cache-Control and a CDN's own
 * (`Cloudflare-CDN-Cache-Control`), Surrogate-Control (Fastly, Akamai, Varnish), Akamai's Edge-Control, nginx's
 * X-Accel-Expires. Where the gateway says `no-store`, they go: a CDN would keep the answer as the portal said, for
 * others.
 */
export function targetedCaching(name: string): boolean {
  return TARGETED_CACHING.has(name) || name.endsWith('-cdn-cache-control');
}

const TARGETED_CACHING = new Set(['cdn-cache-control', 'surrogate-control', 'edge-control', 'x-accel-expires']);

// Any type of a list (`text/plain, text/html`, malformed but sent): browsers take the last valid one, which may be the
// page; an answer the browser shows as text instead is then only not cached.
const PAGE_TYPE = /(^|,)\s*(text\/html|application\/xhtml\+xml)\s*(;|,|$)/i;

// Refresh: `<seconds>[;|,] [url=]['|"]<url>` as browsers read it (HTML "shared declarative refresh steps").
const REFRESH_URL = /^(\s*[\d.]+\s*[;,]?\s*(?:url\s*=\s*)?)(["']?)/i;

/** A Refresh header with its URL rewritten; the delay, the quotes and anything after a closing quote as sent. */
function refreshWith(refresh: string, rewrite: (url: string) => string): string {
  const m = REFRESH_URL.exec(refresh);
  if (!m) return refresh;
  const start = m[0].length;
  const end = m[2] ? refresh.indexOf(m[2], start) : -1;
  const stop = end === -1 ? refresh.length : end;
  return refresh.slice(0, start) + rewrite(refresh.slice(start, stop)) + refresh.slice(stop);
}

/**
 * The value of a header (`name` lower-case) the request holds exactly once, from its raw headers (name, value, ...);
 * undefined when it holds none or several. Node joins the copies of most headers with ", ", and the first copy, which
 * may be the client's, is then read as the whole value.
 */
export function sentOnce(raw: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length !== name.length || n.toLowerCase() !== name) continue;
    if (value !== undefined) return undefined;
    value = raw[i + 1]!;
  }
  return value;
}

/**
 * Whether a portal answer's Clear-Site-Data has the browser delete the site's cookies, the gateway's session cookie
 * among them: a `"cookies"` or `"*"` directive. The value is a comma list of quoted strings; browsers match each one
 * exactly (case and quotes) and ignore the rest, an unquoted `cookies` too, and so does this.
 */
export function clearsCookies(clearSiteData: string | string[] | number | undefined): boolean {
  // Nearly every answer has none: nothing to allocate for it.
  if (clearSiteData === undefined) return false;
  return asList(clearSiteData).some((value) => value.split(',').some((d) => COOKIE_DIRECTIVES.has(d.trim())));
}

const COOKIE_DIRECTIVES = new Set(['"cookies"', '"*"']);

export function asList(v: string | string[] | number | undefined): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [String(v)];
}

const NONE: ReadonlySet<string> = new Set<string>();
// Nearly every message says "keep-alive" or "close": those name no header to remove beyond the hop-by-hop ones.
const PLAIN_CONNECTION = new Set(['keep-alive', 'close', 'Keep-Alive', 'Close']);

function connectionTokens(v: string | string[] | number | undefined): ReadonlySet<string> {
  if (v === undefined || (typeof v === 'string' && PLAIN_CONNECTION.has(v))) return NONE;
  return new Set(asList(v).flatMap((s) => s.split(',')).map((t) => t.trim().toLowerCase()).filter(Boolean));
}
