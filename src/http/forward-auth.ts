// Forward-auth mode: a proxy in front (nginx auth_request, Caddy forward_auth, Traefik forwardAuth) asks the gateway
// about each request of the browser and sends it to the portal only on a 200. Same sessions, same policy.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { UNRESOLVED, pathAndQuery, sameSegments, targetOrRefusal } from '../domain/canonical-path.js';
import { cookieValues, portalCookieIds, portalSessionDigest } from '../domain/cookie-jar.js';
import { AddressSet, normaliseAddress } from '../domain/client-address.js';
import { actsOnPortal, cgiSpelling, sentOnce } from '../domain/headers.js';
import { inPrefix, loginPageMatcher, loose, passedMethods, portalPaths } from '../domain/portal-paths.js';
import { loginPageFor, stepUpPage } from '../domain/redirect.js';
import { GatewayError } from '../errors.js';
import type { ActiveSession } from '../services/sessions.js';
import { keys } from '../stores/keys.js';
import type { HttpContext } from './context.js';
import { COOKIE } from './cookies.js';
import { parseHost } from './edge.js';
import { opensPage } from './forms.js';

export async function forwardAuthRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config, sessions, access, identity, kv } = ctx;
  const p = config.server.prefix;
  const prefix = p.toLowerCase();
  const trusted = new AddressSet(config.server.trustedProxies);
  const hosts = new Set(config.server.hosts.map((h) => h.toLowerCase()));
  const deviceHeader = config.devices.header?.name.toLowerCase();
  // The identity headers the gateway answers with and the portal's own trusted ones (portal.stripHeaders).
  const reserved = new Set([...ctx.reservedHeaders].map(cgiSpelling));
  const paths = portalPaths(config.portal.login, config.portal.logoutPaths);
  const methods = passedMethods(config.portal.methods);
  const isLoginPage = loginPageMatcher(config.portal.login.page);
  const { sessionCookies } = config.forwardAuth;
  const one = (req: FastifyRequest, name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };

  /**
   * The session, when the portal's session cookies the browser sends are those it was signed in with, and no password
   * went to the portal with one of them since. The browser holds them in this mode: a gateway session of one's own
   * would otherwise let through another person's portal session (a stolen cookie, or one signed in with their password
   * alone at a portal that keeps its session id at login: see LoginService.markPortalCookies).
   */
  const boundTo = async (active: ActiveSession | null, req: FastifyRequest): Promise<ActiveSession | null> => {
    if (!active) return null;
    const sent = new Map(sessionCookies.map((name) => [name, cookieValues(req.headers.cookie, name)]));
    const valuesOf = (name: string) => sent.get(name)!;
    let bound = active.record.portalSession === portalSessionDigest(sessionCookies, valuesOf);
    const since = active.record.since ?? active.record.authTime;
    for (const id of bound ? (portalCookieIds(sessionCookies, valuesOf) ?? []) : []) {
      const login = await kv.get(keys.portalCookieLogin(id));
      if (login !== null && Number(login) >= since) bound = false;
    }
    if (bound) return active;
    req.log.warn({ pid: active.record.pid }, "a session sent with portal cookies other than its sign-in's, or signed in again since: not signed in");
    return null;
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    // Only the proxy may ask: its X-Forwarded-* headers describe the browser's request (SECURITY R55).
    if (!trusted.has(normaliseAddress(req.socket.remoteAddress ?? '') ?? '')) throw new GatewayError('GW_ERR_ACCESS_DENIED', 'forward-auth caller is not a trusted proxy');
    // The proxy sends the portal the URI as the browser wrote it, so only a URI with nothing to resolve is judged: the
    // path the rules see is then the one the portal gets ('/admin/x/../../public' would be judged as '/public').
    const uri = one(req, 'x-forwarded-uri');
    if (uri === undefined) throw new GatewayError('GW_ERR_BAD_PATH', 'X-Forwarded-Uri missing');
    const target = targetOrRefusal(uri, { pathParameters: config.server.pathParameters === 'allow' });
    if (typeof target === 'string') throw new GatewayError('GW_ERR_BAD_PATH', target);
    if (!sameSegments(uri)) throw new GatewayError('GW_ERR_BAD_PATH', UNRESOLVED);
    const forwardedHost = (one(req, 'x-forwarded-host') ?? '').toLowerCase();
    const host = parseHost(forwardedHost);
    if (host === null || !hosts.has(host)) throw new GatewayError('GW_ERR_UNKNOWN_HOST', 'forwarded host');
    // Without the method, method rules (a step-up for POST) cannot be judged: refused, like a missing URI. So is more
    // than one (a proxy that adds the header to the client's: Node joins them as `POST, GET`), which no rule matches.
    const method = req.headers['x-forwarded-method'];
    if (typeof method !== 'string' || !/^[A-Za-z]{1,20}$/.test(method)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'X-Forwarded-Method missing or not one method');
    // Only the methods the full proxy passes (portal.methods), as it spells them (Node refuses `post`): a rule for the
    // write methods does not name PROPPATCH, MOVE or a made-up one, which a portal may act on all the same (WebDAV, a
    // framework that reads the method in any case). Refused as the full proxy refuses them, before any rule.
    if (!methods.includes(method)) throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method}`);
    // The login (other than its page) and the logout belong to the gateway: a spelling the proxy's routes missed
    // (`/login;jsessionid=1`, `/login.php/x`) must not take a password to the portal, or log out of the portal alone.
    // The proxy passes the browser's headers on to the portal (the gateway strips these when it proxies itself): one
    // that has the portal act for another user, on another path or method (X-Original-URL, Remote-User,
    // X-HTTP-Method-Override, the configured identity headers and portal.stripHeaders), in any spelling a CGI or
    // FastCGI portal reads as the same variable, would have it act on something the rules did not judge. The device
    // header is the proxy's own.
    const acting = Object.keys(req.headers).find((name) => name !== deviceHeader && (actsOnPortal(name) || reserved.has(cgiSpelling(name))));
    if (acting) throw new GatewayError('GW_ERR_ACCESS_DENIED', `client header ${acting.slice(0, 40)}`);
    const lowered = loose(target.matchPath);
    // The gateway's prefix never reaches the portal, in any spelling (the proxy's routes for it may match one only).
    if (inPrefix(lowered, prefix)) throw new GatewayError('GW_ERR_ACCESS_DENIED', 'the gateway prefix sent to forward-auth');
    if (paths.isLogout(lowered) || paths.loginPathOf(lowered, method)) {
      throw new GatewayError('GW_ERR_ACCESS_DENIED', 'login or logout sent to forward-auth');
    }
    // Activity only once bound: a session cookie sent with another portal session (stolen) is not this session's request.
    const active = await boundTo(await sessions.authenticate(req.cookies[COOKIE.session], { seen: false }), req);
    if (active) await sessions.seen(active);
    const { outcome, device, groups } = await access.decide({
      host,
      method,
      path: target.matchPath,
      query: target.query,
      authorization: req.headers.authorization,
      client: req.client,
      tlsCertificate: undefined,
      // The proxy in front terminates TLS: its device header (from a trusted proxy, as every caller here is) counts;
      // more than one (the browser's passed on beside the proxy's) names no device, as in proxy mode.
      deviceHeader: deviceHeader ? sentOnce(req.raw.rawHeaders, deviceHeader) : undefined,
      session: active,
      // Logins are refused above: the login page alone is the sign-in's here.
      signingIn: isLoginPage(target.matchPath, method),
    });
    req.access = { method, rule: outcome.rule, verdict: outcome.verdict, pid: active?.record.pid, path: target.path, device };
    reply.header('cache-control', 'no-store');
    const back = pathAndQuery(target);
    // The redirect is absolute, on the host the browser asked for (one of server.hosts, checked above): Traefik
    // resolves a relative Location against its forwardAuth address, which would send the browser to the gateway's
    // internal name.
    const send = (to: string) =>
      (req.query as Record<string, unknown>).redirect === 'true' ? reply.redirect(`${req.client.proto}://${forwardedHost}${to}`, 302) : reply.code(401).header('x-mfa-redirect', to).send();
    // As in proxy mode, only a page being opened is sent on to the sign-in or step-up page: a script's call would
    // follow the redirect and take the page for the answer, and a form sent would come back from it as a GET, its
    // fields lost. They get a 401 with no place to go (which nginx passes on as it is), and are sent again after.
    const page = opensPage(req, method);
    switch (outcome.verdict) {
      case 'allow':
        if (active) reply.headers(await identity.headersFor(active, groups));
        return reply.code(200).send();
      case 'sign-in':
        if (!page) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', outcome.rule);
        // A password without its second factor: back to the pending step, as in proxy mode.
        if (req.cookies[COOKIE.pending]) return send(`${p}/continue`);
        // The login page itself under a rule that asks for a sign-in: refused, not sent round to itself (as in proxy mode).
        if (isLoginPage(target.matchPath, method)) throw new GatewayError('GW_ERR_ACCESS_DENIED', `${outcome.rule}: the login page asks for a sign-in`);
        return send(loginPageFor(config.portal.login.page, back));
      case 'step-up':
        if (!page) throw new GatewayError('GW_ERR_STEP_UP_REQUIRED', outcome.rule, { factors: outcome.factors });
        return send(stepUpPage(p, back, outcome.factors));
      case 'deny':
        throw new GatewayError(outcome.reason.startsWith('legacy') ? 'GW_ERR_LEGACY_AUTH' : 'GW_ERR_ACCESS_DENIED', `${outcome.rule}: ${outcome.reason}`);
      case 'managed-device':
        throw new GatewayError('GW_ERR_DEVICE_NOT_MANAGED', outcome.rule);
    }
  };
  app.route({ method: ['GET', 'HEAD'], url: `${p}/forward-auth`, handler });
}
