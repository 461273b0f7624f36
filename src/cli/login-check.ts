// `mfa-gateway login check`: the portal.login rules tried on the live portal, with a right password and a wrong one.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/schema.js';
import { canonicalTarget, pathAndQuery } from '../domain/canonical-path.js';
import { applySetCookies, cookieHeader, cookieName, cookieValues, type Jar } from '../domain/cookie-jar.js';
import { gatewaySite, type GatewaySite } from '../domain/gateway-site.js';
import { upstreamRequestHeaders } from '../domain/headers.js';
import { usernameFields } from '../domain/legacy-auth.js';
import { loginFormOf } from '../domain/login-form.js';
import { loose, portalPaths } from '../domain/portal-paths.js';
import { browserLocation, loginPageFor } from '../domain/redirect.js';
import { accountNames } from '../domain/username.js';
import { GatewayError } from '../errors.js';
import { judgeLoginAnswer, parseLoginBody, portalLogin, type JudgedLogin } from '../services/login.js';
import { InFlight } from '../upstream/in-flight.js';
import { bodyText, PortalClient, type PortalRequest, type PortalResponse } from '../upstream/portal-client.js';
import { UsageError } from './usage.js';

/**
 * The password, one line of stdin. Never from a terminal: it would show the password as it is typed (and a line in
 * argv is seen by every user of the machine and kept in the shell's history).
 */
export function readPassword(stdin: { isTTY?: boolean } = process.stdin): string {
  if (stdin.isTTY) throw new UsageError('login check reads the password from stdin, which is a terminal here: pipe it in (read -rs PW; printf "%s\\n" "$PW" | mfa-gateway login check ...)');
  const password = readFileSync(0, 'utf8').split(/\r?\n/, 1)[0];
  if (!password) throw new UsageError('login check reads the password from stdin (one line): none given');
  return password;
}

/**
 * Signs `user` in at the portal as a browser would, through the gateway's own login code, once with `password` and
 * once with a random wrong one, and judges both answers as the gateway would. `ok`: the rules tell them apart. `host`:
 * the name of server.hosts the browser has the gateway at (one run, one wrong password against the portal's lockout).
 */
export async function loginCheck(config: Config, user: string, password: string, host = config.server.hosts[0]!): Promise<{ lines: string[]; ok: boolean }> {
  const username = accountNames(config.portal.login)(user);
  if (username === null) throw new UsageError(`--user: not a usable username (no sign-in can use it): ${JSON.stringify(user)}`);
  // The gateway answers no other name (421), and the port is server.port's.
  if (!config.server.hosts.some((h) => h.toLowerCase() === host.toLowerCase())) {
    throw new UsageError(`--host: not one of server.hosts (${config.server.hosts.join(', ')}), a name without a port: ${JSON.stringify(host)}`);
  }
  // Random, not the password with a suffix: nothing of the right one goes to the portal twice.
  const wrongPassword = randomBytes(12).toString('base64url');
  // Applied to what the portal gave only (a password echoed in a Location, a form's action): the command's own words
  // stay as they are, or a password that is one of them (`wrong`) would show where it stands in their place.
  const hide = (text: string) => withoutPasswords(text, [password, wrongPassword]);
  const portal = new PortalClient(new URL(config.portal.url).origin, config.portal.timeoutSeconds * 1000, new InFlight(1));
  const site = gatewaySite(config.server, host);
  try {
    const right = await tryPassword(config, portal, site, { user, username, password }, hide);
    const wrong = await tryPassword(config, portal, site, { user, username, password: wrongPassword }, hide);
    const problems = [
      ...(right.judged.success ? [] : ['success does not hold for the right password']),
      ...(right.judged.failure === true ? ['failure holds for the right password'] : []),
      ...(wrong.judged.success ? ['success holds for the wrong password'] : []),
      ...(wrong.judged.failure === false ? ['failure does not hold for the wrong password'] : []),
    ];
    return {
      lines: [
        `as a browser at ${BROWSER_ADDRESS} on ${site.origin} (Origin and Referer), through the gateway (X-Forwarded-Proto ${site.proto}, X-Forwarded-Host ${site.host}, X-Forwarded-For ${BROWSER_ADDRESS})`,
        `right password: ${right.sent}`,
        ...judgement(right.judged, hide),
        `wrong password (a random one; it counts once against the portal's own lockout): ${wrong.sent}`,
        ...judgement(wrong.judged, hide),
        problems.length ? `verdict: the rules do not tell a right password from a wrong one: ${problems.join('; ')}` : 'verdict: the rules tell a right password from a wrong one',
      ],
      ok: problems.length === 0,
    };
  } catch (err) {
    // This command's own errors hide the password in what they quote of the portal; another (the portal client's) is
    // hidden whole, as it may quote what the portal sent.
    throw err instanceof CheckError ? err : new Error(hide(err instanceof Error ? err.message : String(err)));
  } finally {
    await portal.close();
  }
}

// The browser's address the portal is told (X-Forwarded-For): one kept for documentation (RFC 5737), no client's, and
// not the portal's own machine, which some portals trust more.
const BROWSER_ADDRESS = '192.0.2.1';

/** What the portal gets from the gateway for a browser's request with `headers` and the jar's `cookie`. */
function throughGateway(site: GatewaySite, headers: IncomingHttpHeaders, cookie: string | undefined): Record<string, string | string[]> {
  return upstreamRequestHeaders(headers, { clientIp: BROWSER_ADDRESS, proto: site.proto, host: site.host, cookie });
}

/** An error of the check whose message hides the passwords in what it quotes of the portal, and nothing else. */
class CheckError extends Error {}

/**
 * `text` with each of `passwords` replaced by [password], also where it is percent-encoded (any of its characters, with
 * hex digits in either case, and once or more: a URL carried in another one's query) or form-encoded (a space as +): a
 * portal may echo a password in its Location, a login page in its form's action, and all of it is printed. Also where
 * its characters beyond ASCII are read byte by byte (wörd as wÃ¶rd): the portal client reads a header so, as HTTP
 * has it, and a portal writes one in UTF-8 (PHP's header()).
 */
export function withoutPasswords(text: string, passwords: readonly string[]): string {
  return passwords.reduce((t, password) => t.replace(spellings(password), '[password]'), text);
}

function spellings(password: string): RegExp {
  const hex = (byte: number) => byte.toString(16).padStart(2, '0').replace(/[a-f]/g, (d) => `[${d}${d.toUpperCase()}]`);
  const literal = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
  const encoded = (s: string, as: BufferEncoding = 'utf8') => [...Buffer.from(s, as)].map((byte) => `%(?:25)*${hex(byte)}`).join('');
  const spelling = (c: string) => {
    const forms = [...new Set([c, Buffer.from(c).toString('latin1')])];
    // A Latin-1 portal's byte for it, percent-encoded (a servlet's Location: `ö` is the byte F6, read as %F6).
    const latin1 = c.codePointAt(0)! > 0x7f && c.codePointAt(0)! <= 0xff ? [encoded(c, 'latin1')] : [];
    return `(?:${[...forms.flatMap((f) => [literal(f), encoded(f)]), ...latin1].join('|')}${c === ' ' ? '|\\+' : ''})`;
  };
  return new RegExp([...password].map(spelling).join(''), 'g');
}

/** One password sent as the gateway forwards a login: what was sent (names only, never values) and its judgement. */
async function tryPassword(config: Config, portal: PortalClient, site: GatewaySite, c: Credentials & { username: string }, hide: (text: string) => string): Promise<{ sent: string; judged: JudgedLogin }> {
  const login = config.portal.login;
  const request = login.bodyType === 'json' ? await jsonLogin(config, portal, site, c, hide) : await formLogin(config, portal, site, c, hide);
  // As the login intercept does: one canonical parse, and the portal checks the username the gateway would hold.
  let body: Buffer;
  try {
    body = parseLoginBody(Buffer.from(request.body), login.bodyType, usernameFields(login), login.usernameCase).withUsername(c.username);
  } catch (err) {
    throw new CheckError(`the gateway would refuse this login (${(err as Error).message}): ${request.sent}`);
  }
  const contentType = login.bodyType === 'form' ? 'application/x-www-form-urlencoded' : 'application/json';
  const answer = await ask(config, portal, portalLogin({ ...request.to, body }, contentType), `the login ${hide(`${request.to.method} ${request.to.pathAndQuery}`)}`, hide);
  return { sent: request.sent, judged: judgeLoginAnswer(config, answer, request.to.pathAndQuery, Date.now()) };
}

/** What a person types: the name as given (the gateway makes it canonical) and the password. */
interface Credentials {
  user: string;
  password: string;
}

/**
 * A single-page portal's login, as its page's script sends it: the page fetched as for a form (see loginPage), and the
 * JSON body the gateway forwards sent to the first login path with the cookies set on the way, the page's Origin and
 * Referer (on the gateway), and each cookie of portal.browserCookies the page can read echoed in the header `X-` and
 * its name (a double-submit XSRF token, which many such portals want on the login too: `X-XSRF-TOKEN` as Angular,
 * axios, Laravel and Spring send it; Django's `X-CSRFToken` is the same header as `X-csrftoken`), decoded as those
 * scripts read it.
 */
async function jsonLogin(config: Config, portal: PortalClient, site: GatewaySite, c: Credentials, hide: (text: string) => string): Promise<{ to: Omit<PortalRequest, 'body'>; body: string; sent: string }> {
  const login = config.portal.login;
  const [path = '/login'] = login.paths;
  const [method = 'POST'] = login.methods;
  const field = usernameFields(login)[0]!;
  const now = Date.now();
  const { url: pageUrl, jar, asked } = await loginPage(config, portal, site, now, hide);
  const cookie = cookieHeader(jar, path, now);
  // What the page's script can read: the cookies for its path that are not HttpOnly.
  const readable = cookieHeader(jar.filter((c) => c.scriptable), pageUrl.pathname, now);
  const echoed = config.portal.browserCookies.flatMap((name) => {
    const [value] = cookieValues(readable, name) ?? [];
    return value === undefined ? [] : [[`X-${name}`, scriptRead(value)] as const];
  });
  const headers = throughGateway(site, { accept: 'application/json', origin: pageUrl.origin, referer: `${pageUrl.origin}${pageUrl.pathname}${pageUrl.search}`, ...Object.fromEntries(echoed) }, cookie);
  return {
    to: { method, pathAndQuery: path, headers },
    body: JSON.stringify({ [field]: c.user, [login.passwordField]: c.password }),
    sent: `${method} ${path} with JSON ${field}, ${login.passwordField} (as the script of ${hide(asked)} sends it; cookies sent: ${cookie ? hide(cookie.split('; ').map(cookieName).join(', ')) : 'none'}; echoed in: ${echoed.map(([name]) => name).join(', ') || 'none'})`,
  };
}

/** A cookie's value as a script reads it to echo it (percent-decoded, as Angular and axios do), else as it is. */
function scriptRead(value: string): string {
  try {
    const decoded = decodeURIComponent(value);
    return /^[\x20-\x7e]*$/.test(decoded) ? decoded : value;
  } catch {
    return value;
  }
}

/**
 * A form login: the login page fetched (see loginPage), its form that holds the username field filled in, hidden
 * fields and the cookies set on the way kept, and sent where the form sends it.
 */
async function formLogin(config: Config, portal: PortalClient, site: GatewaySite, c: Credentials, hide: (text: string) => string): Promise<{ to: Omit<PortalRequest, 'body'>; body: string; sent: string }> {
  const login = config.portal.login;
  const now = Date.now();
  const { page, url: pageUrl, jar, asked } = await loginPage(config, portal, site, now, hide);
  const fields = usernameFields(login);
  const text = bodyText(page);
  if (text === null) {
    const header = (name: string) => hide([page.headers[name] ?? 'none'].flat().join(', '));
    throw new CheckError(
      `${hide(asked)} (portal.login.page) answered ${page.status} with a body login check cannot decode (Content-Encoding ${header('content-encoding')}, Content-Type ${header('content-type')}): compressed other than gzip, deflate or br (none was asked for), damaged, or in a charset it does not know`,
    );
  }
  const form = loginFormOf(text, fields);
  if (!form) {
    throw new CheckError(
      `${hide(asked)} (portal.login.page) answered ${page.status} without a form that has an input named ${fields.join(' or ')} (portal.login.usernameField); a portal that signs in with JSON needs portal.login.bodyType: json`,
    );
  }
  // Read from where the page is on the gateway, after any redirect, or from its <base href>, as a browser reads it: an
  // action or a base that names the portal's own address (built from its Host, as a JSP's basePath is) would take the
  // password there, past the gateway. A base that is no URL, or a data: or javascript: one, is ignored, as browsers do
  // (https://html.spec.whatwg.org/multipage/semantics.html#set-the-frozen-base-url); any other is taken.
  const declared = form.base !== undefined && URL.canParse(form.base, pageUrl) ? new URL(form.base, pageUrl) : undefined;
  const ignored = form.base !== undefined && (!declared || declared.protocol === 'data:' || declared.protocol === 'javascript:');
  const base = declared && !ignored ? declared : pageUrl;
  const baseNamed = form.base === undefined ? '' : `the page's <base href=${JSON.stringify(hide(form.base))}>`;
  const ignoredNote = ignored ? `${baseNamed} ignored, as browsers ignore one that is no URL or a data: or javascript: one` : '';
  // An action no URL can be read from is sent nowhere by a browser (the form submission algorithm stops), so no password
  // would reach the portal.
  if (form.action !== undefined && !URL.canParse(form.action, base)) {
    const from = base === pageUrl ? `the page's address (${hide(`${pageUrl.pathname}${pageUrl.search}`)}${ignored ? `; ${ignoredNote}` : ''})` : baseNamed;
    throw new CheckError(`the login form's action ${JSON.stringify(hide(form.action))} is no URL read from ${from}: a browser sends the form nowhere`);
  }
  const to = form.action === undefined ? pageUrl : new URL(form.action, base);
  const where = `${form.method} ${to.pathname}${to.search}`;
  if (to.origin !== site.origin) throw new CheckError(`the login form sends ${hide(`${form.method} ${to.href}`)}, not to the gateway (${site.origin}), where the browser has the page`);
  // As the login intercept takes it: the canonical target (a path starting with `//` is none, and would name another
  // host to the portal client), sent to the portal as the configured login path it is.
  const target = canonicalTarget(`${to.pathname}${to.search}`, { pathParameters: config.server.pathParameters === 'allow' });
  const loginPath = target ? portalPaths(login, []).loginPathOf(loose(target.matchPath), form.method) : undefined;
  if (!target || loginPath === undefined || !(login.methods as readonly string[]).includes(form.method)) {
    throw new CheckError(`the login form sends ${hide(where)}, which is not a login the gateway intercepts (portal.login.paths, portal.login.methods)`);
  }
  // The login intercept takes the configured type only (415 for any other): a browser's login would never reach the portal.
  if (form.enctype !== 'application/x-www-form-urlencoded') {
    throw new CheckError(`the login form sends ${hide(where)} as ${form.enctype} (its enctype), which the gateway refuses (415): a portal.login.bodyType: form login is application/x-www-form-urlencoded`);
  }
  // A password field the form lacks (a script adds it) is added.
  const filled = form.fields.map(([name, value]): [string, string] => [name, name === form.usernameField ? c.user : name === login.passwordField ? c.password : value]);
  if (!filled.some(([name]) => name === login.passwordField)) filled.push([login.passwordField, c.password]);
  // The names of the login's own fields are the config's words, printed as they are: [password] in the place of
  // `password` would tell whoever reads the output that the password is `password`. The form's other names are the
  // portal's, and hidden as any text of its (a page may echo the last password tried), also one that is the password
  // by chance.
  const named = new Set([form.usernameField, login.passwordField]);
  const names = filled.map(([name]) => (named.has(name) ? name : hide(name))).join(', ');
  const cookie = cookieHeader(jar, loginPath, now);
  // Where the form was, as a browser says it (and the gateway passes it on): a portal may refuse a login without them
  // (Django over HTTPS wants a Referer of the host it is told it has).
  const headers = throughGateway(site, { accept: 'text/html', origin: pageUrl.origin, referer: `${pageUrl.origin}${pageUrl.pathname}${pageUrl.search}` }, cookie);
  return {
    to: { method: form.method, pathAndQuery: pathAndQuery({ path: loginPath, query: target.query }), headers },
    body: new URLSearchParams(filled).toString(),
    sent: `${hide(where)} with ${names} (the form of ${hide(asked)}${ignored ? `; ${ignoredNote}` : ''}; cookies sent: ${cookie ? hide(cookie.split('; ').map(cookieName).join(', ')) : 'none'})`,
  };
}

// Many portals send their login page on (`/login` to `/login/`, or to `/auth/login?next=…`); a browser follows.
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/**
 * The login page as a browser gets it through the gateway: GET portal.login.page, and each redirect followed on the
 * gateway, so on the portal (never to another host, which is an error), with the cookies set on the way. `url`: where
 * the page is on the gateway; `asked`: the way there (`GET /login -> /login/`).
 */
async function loginPage(config: Config, portal: PortalClient, site: GatewaySite, now: number, hide: (text: string) => string): Promise<{ page: PortalResponse; url: URL; jar: Jar; asked: string }> {
  const { origin } = portal;
  let url = new URL(loginPageFor(config.portal.login.page), site.origin);
  let asked = `GET ${url.pathname}${url.search}`;
  let jar: Jar = [];
  for (let redirects = 0; ; redirects++) {
    const cookie = cookieHeader(jar, url.pathname, now);
    const page = await ask(config, portal, { method: 'GET', pathAndQuery: url.pathname + url.search, headers: throughGateway(site, { accept: 'text/html', 'accept-encoding': 'identity' }, cookie) }, `${hide(asked)} (portal.login.page)`, hide);
    jar = applySetCookies(jar, [page.headers['set-cookie'] ?? []].flat(), url.pathname, now);
    const [location] = [page.headers.location ?? []].flat();
    if (!REDIRECTS.has(page.status) || location === undefined) return { page, url, jar, asked };
    if (redirects === MAX_REDIRECTS) throw new CheckError(`${hide(asked)} (portal.login.page) redirects more than ${MAX_REDIRECTS} times`);
    // Where the browser goes: the Location as the gateway passes it on (one on the portal as a path, see
    // browserLocation; one a portal built from X-Forwarded-Host, on the gateway, as sent), read from the page's address.
    const sent = browserLocation(location, origin);
    const next = URL.canParse(sent, url) ? new URL(sent, url) : undefined;
    // Named without its query, which may hold what is not for a log.
    if (next?.origin !== site.origin) {
      throw new CheckError(`${hide(asked)} (portal.login.page) answered ${page.status} to ${next ? hide(`${next.origin}${next.pathname}`) : 'no readable address'}, not on the portal (${origin}) nor on the gateway (${site.origin})`);
    }
    url = next;
    asked += ` -> ${url.pathname}${url.search}`;
  }
}

/**
 * The portal's answer to `request`; none (no connection, no answer in time, one too large) is an error naming `what`
 * was sent (the passwords hidden in it) and why, in the connection's own words (connect ECONNREFUSED …).
 */
async function ask(config: Config, portal: PortalClient, request: PortalRequest, what: string, hide: (text: string) => string): Promise<PortalResponse> {
  try {
    return await portal.send(request);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    const why = err.code === 'GW_ERR_UPSTREAM_TIMEOUT' ? `none within portal.timeoutSeconds (${config.portal.timeoutSeconds} s)` : hide(err.cause instanceof Error ? err.cause.message : err.message);
    throw new CheckError(`${what}: no usable answer from the portal (portal.url ${portal.origin}): ${why}`);
  }
}

/**
 * The answer as the gateway judges it (the Location where it sends a browser: a path and query on the portal, another
 * site's absolute URL), and each set of rules.
 */
function judgement(j: JudgedLogin, hide: (text: string) => string): string[] {
  const holds = (h: boolean) => (h ? 'holds' : 'does not hold');
  const { location } = j.facts;
  const cookies = j.facts.setCookieNames.join(', ');
  const where =
    location !== undefined ? `Location ${hide(location)}` : j.sentLocation ? `Location ${hide(j.sentLocation)} as sent, which the gateway cannot resolve (no location rule holds)` : 'no Location';
  return [
    `  answer: ${j.facts.status}, ${where}, cookies set: ${cookies ? hide(cookies) : 'none'}${j.unreadable ? '; body unreadable (its encoding or charset): no rule holds' : ''}`,
    `  success: ${holds(j.success)}`,
    `  failure: ${j.failure === undefined ? 'not configured' : holds(j.failure)}`,
  ];
}
