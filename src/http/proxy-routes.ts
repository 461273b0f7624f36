// Everything outside the gateway prefix: the intercepted login, then the session check, then the portal.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { pipeline, Readable, Transform } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { pathAndQuery, targetOrRefusal, type CanonicalTarget } from '../domain/canonical-path.js';
import { AddressSet, normaliseAddress } from '../domain/client-address.js';
import { applySetCookies, cookieHeader, sameJar, type Jar } from '../domain/cookie-jar.js';
import { fieldsType, LoginFieldsScanner, unreadableBody, type BodyRefusal } from '../domain/body-fields.js';
import { asList, browserResponseHeaders, clearsCookies, sentOnce, targetedCaching, upstreamRequestHeaders } from '../domain/headers.js';
import { usernameFields } from '../domain/legacy-auth.js';
import { inPrefix, loginPageMatcher, loose, passedMethods, portalPaths } from '../domain/portal-paths.js';
import { browserLocation, loginPageFor, stepUpPage } from '../domain/redirect.js';
import { GatewayError, portalFailureCode } from '../errors.js';
import { ID_PATTERN, newId } from '../mechanisms/random.js';
import { loginContentType } from '../services/login.js';
import type { ActiveSession } from '../services/sessions.js';
import type { HttpContext } from './context.js';
import { CLEAR_SITE_DATA, COOKIE, clearOptions, cookieOptions } from './cookies.js';
import { hostName } from './edge.js';
import { peerCertificate } from './peer-certificates.js';
import { checkSameOrigin, crossSite, opensPage } from './forms.js';

const LOGIN_BODY_LIMIT = 16 * 1024;
const BROWSER_JAR_TTL_MS = 60 * 60_000;
const BUFFERED_ANSWER_BYTES = 64 * 1024;
// A request goes to the portal once: reply-from would repeat a GET the portal answered 503 up to ten times (and
// one whose connection failed), multiplying the load on a portal in trouble. The browser gets the portal's answer
// or the gateway's error page.
const noRetry = () => null;

type JarOwner =
  | { kind: 'session'; active: ActiveSession; identity: Readonly<Record<string, string>>; /** Logged out by this request. */ ended: boolean }
  | {
      kind: 'browser';
      id: string;
      jar: Jar;
      /** The jar's round, if there was one (BrowserJars). */
      round?: string;
      /** The browser's id was made for this answer (its cookie set on it). */
      minted?: true;
    };

export async function proxyRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config, clock, sessions } = ctx;
  const prefix = config.server.prefix.toLowerCase();
  const paths = portalPaths(config.portal.login, config.portal.logoutPaths);
  const isLoginPage = loginPageMatcher(config.portal.login.page);
  const passwordForms = new Set(config.portal.passwordForms.map(loose));
  const { origin: portalOrigin, host: portalHost } = new URL(config.portal.url);
  const timeoutMs = config.portal.timeoutSeconds * 1000;

  await app.register(replyFrom, {
    base: portalOrigin,
    // reply-from turns certificate checks off unless told otherwise: an https portal is verified (system CAs and
    // NODE_EXTRA_CA_CERTS), as the login replay's client does by default.
    undici: { connections: 256, pipelining: 1, connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { rejectUnauthorized: true } },
    disableRequestLogging: true,
    // The app's close ends its connections to the portal (reply-from leaves them open by default), once the requests
    // in flight are done. Left open, a keep-alive connection lives on for as long as the portal's Keep-Alive allows
    // (72 s for some servers), and one undici opened but never used (it does after a request that failed mid-body)
    // holds the portal's own shutdown that long: a server waits for a connection on which no request has begun.
    destroyAgent: true,
  });
  // Bodies stream to the portal untouched, up to server.maxBodyBytes; only the login intercept reads one (bounded).
  const maxBody = config.server.maxBodyBytes;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (req, payload, done) => {
    if (Number(req.headers['content-length'] ?? 0) > maxBody) return done(new GatewayError('GW_ERR_PAYLOAD_TOO_LARGE', 'declared body too large'), undefined);
    // pipeline, not pipe: a browser that goes away mid-body ends the stream with an error, so the portal request
    // fails (and gives back its in-flight place) instead of waiting for the rest.
    const body = bounded(maxBody, timeoutMs);
    // A client that goes away mid-body (or breaks its framing) fails the portal request: its fault, not the portal's.
    // Its side fails first; when the portal fails, undici has destroyed the body before the pipeline tears this down.
    // The server's request timeout fails it with a 408 of its own (app.ts): a body that stopped arriving.
    payload.once('error', (err) => {
      if (body.destroyed) return;
      if (err instanceof GatewayError && err.code === 'GW_ERR_REQUEST_TIMEOUT') body.stalled = true;
      else body.brokeOff = true;
    });
    pipeline(payload, body, () => {});
    done(null, body);
  });


  const rewriteLocation = (location: string) => browserLocation(location, portalOrigin);
  const deviceHeader = config.devices.header?.name.toLowerCase();
  const trustedProxies = new AddressSet(config.server.trustedProxies);

  async function handle(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const target = targetOrRefusal(req.raw.url ?? '', { pathParameters: config.server.pathParameters === 'allow' });
    // The log says why, in the words policy explain uses.
    if (typeof target === 'string') throw new GatewayError('GW_ERR_BAD_PATH', target);
    const lowered = loose(target.matchPath);
    // The reserved prefix never reaches the portal, in any spelling.
    if (inPrefix(lowered, prefix)) throw new GatewayError('GW_ERR_NOT_FOUND');
    const loginPath = paths.loginPathOf(lowered, req.method);
    // A login in another spelling, or below a login script, goes to the portal as the configured path, and that is what
    // the policy sees.
    const forwarded: CanonicalTarget = loginPath ? { ...target, path: loginPath, matchPath: loginPath } : target;

    // An invalid session is dropped before any rule runs: the request is simply not signed in.
    const cookie = req.cookies[COOKIE.session];
    const active = await sessions.authenticate(cookie);
    if (!active && cookie) {
      // The portal's logout, its session gone a moment ago (a step-up in another tab took it): what it moved to ends,
      // and the browser forgets what the session left in it.
      if (paths.isLogout(lowered) && !crossSite(req)) {
        reply.clearCookie(COOKIE.session, clearOptions);
        await sessions.endByCookie(cookie, 'portal-logout');
        reply.header('clear-site-data', CLEAR_SITE_DATA);
      } else if (!(await sessions.movedLately(cookie))) {
        // Not for a session a step-up moved a moment ago: this answer (to a request sent before the step-up's came
        // back, in another tab) may reach the browser after the new cookie, and would delete that one.
        reply.clearCookie(COOKIE.session, clearOptions);
      }
    }
    const { outcome, device, groups } = await ctx.access.decide({
      host: hostName(req)!,
      method: req.method,
      path: forwarded.matchPath,
      query: target.query,
      authorization: req.headers.authorization,
      client: req.client,
      tlsCertificate: (req.socket as TLSSocket).encrypted ? peerCertificate(req.socket as TLSSocket) : undefined,
      // The device header more than once (a proxy that adds its own to the client's rather than replacing it): no
      // copy can be told for the proxy's, so the device is unmanaged, as with a certificate that does not verify.
      deviceHeader: deviceHeader && trustedProxies.has(normaliseAddress(req.socket.remoteAddress ?? '') ?? '') ? sentOnce(req.raw.rawHeaders, deviceHeader) : undefined,
      session: active,
      signingIn: loginPath !== undefined || isLoginPage(forwarded.matchPath, req.method),
    });
    req.access = { method: req.method, rule: outcome.rule, verdict: outcome.verdict, pid: active?.record.pid, path: forwarded.path, device };
    // Signing out needs no more than the session itself: a rule on the portal's logout that asks for a step-up, a
    // network or a managed device would leave the person signed in (on a shared computer, the next one at it). The
    // gateway's sign-out page ends both sessions whatever the rules, as for a link from another site.
    if (active && outcome.verdict !== 'allow' && paths.isLogout(lowered)) return void reply.redirect(`${config.server.prefix}/logout`, 303);
    switch (outcome.verdict) {
      case 'deny':
        throw new GatewayError(outcome.reason.startsWith('legacy') ? 'GW_ERR_LEGACY_AUTH' : 'GW_ERR_ACCESS_DENIED', `${outcome.rule}: ${outcome.reason}`);
      case 'managed-device':
        throw new GatewayError('GW_ERR_DEVICE_NOT_MANAGED', outcome.rule);
      case 'step-up': {
        if (opensPage(req)) return void reply.redirect(stepUpPage(config.server.prefix, pathAndQuery(target), outcome.factors), 303);
        throw new GatewayError('GW_ERR_STEP_UP_REQUIRED', outcome.rule, { factors: outcome.factors });
      }
      case 'sign-in':
        if (!opensPage(req)) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', outcome.rule);
        // A password without its second factor opens nothing: back to the pending step.
        if (req.cookies[COOKIE.pending]) return void reply.redirect(`${config.server.prefix}/continue`, 303);
        // The login page itself under a rule that asks for a sign-in (`config check` warns of it): sent on to itself,
        // the browser would go round for ever, the address growing each time. Refused instead, the rule named in the log.
        if (isLoginPage(forwarded.matchPath, req.method)) throw new GatewayError('GW_ERR_ACCESS_DENIED', `${outcome.rule}: the login page asks for a sign-in`);
        return void reply.redirect(loginPageFor(config.portal.login.page, pathAndQuery(target)), 302);
      case 'allow': {
        if (loginPath) return interceptLogin(req, reply, forwarded, active);
        if (req.body && !passwordForms.has(lowered) && !ctx.access.allowsLoginFields(outcome.rule)) guardLoginFields(req);
        if (!active) return forward(req, reply, forwarded, await browserJar(req, reply));
        // The portal's logout ends the gateway session first, so it ends even when the portal does not answer; the
        // portal still gets the request with the session's cookies, to end its own session. Another site can send the
        // browser there too (the SameSite=Lax cookie goes along on a link): then the person confirms on the gateway's
        // sign-out page instead, as for the gateway's own logout.
        const ended = paths.isLogout(lowered);
        if (ended && crossSite(req)) return void reply.redirect(`${config.server.prefix}/logout`, 303);
        if (ended) {
          // Set on the reply itself, so that an error page (the portal down or slow) carries them too.
          reply.clearCookie(COOKIE.session, clearOptions).header('clear-site-data', CLEAR_SITE_DATA);
          await sessions.end(active, 'portal-logout');
        }
        return forward(req, reply, forwarded, { kind: 'session', active, identity: ctx.identity.enabled ? await ctx.identity.headersFor(active, groups) : {}, ended });
      }
    }
  }

  /**
   * A portal answer to a signed-in request that has the browser delete its cookies (Clear-Site-Data): the browser would
   * drop the gateway's cookie while the session lived on in the store (and its copies with it), so it is the portal's
   * logout. As for the configured one, the browser is told first, so that an error page (the store failing) tells it too.
   */
  async function signedOutByPortal(reply: FastifyReply, active: ActiveSession, portalHeaders: OutgoingHttpHeaders): Promise<void> {
    reply.clearCookie(COOKIE.session, clearOptions);
    clearAsSignedOut(reply, portalHeaders);
    await sessions.end(active, 'portal-logout');
  }

  async function browserJar(req: FastifyRequest, reply: FastifyReply): Promise<JarOwner> {
    const id = browserId(req, reply);
    const { round, cookies } = await ctx.jars.get(id);
    return { kind: 'browser', id, jar: cookies, ...(round === undefined ? {} : { round }), ...(id === req.cookies[COOKIE.browser] ? {} : { minted: true as const }) };
  }

  function browserId(req: FastifyRequest, reply: FastifyReply): string {
    const id = req.cookies[COOKIE.browser];
    if (id && ID_PATTERN.test(id)) return id;
    const fresh = newId();
    reply.setCookie(COOKIE.browser, fresh, cookieOptions(BROWSER_JAR_TTL_MS / 1000));
    return fresh;
  }

  async function interceptLogin(req: FastifyRequest, reply: FastifyReply, target: CanonicalTarget, active: ActiveSession | null): Promise<void> {
    // Another site's form would sign the browser in as whoever's password it sends (login CSRF), replacing a sign-in
    // in progress, for a portal whose login form has no token of its own. Refused before any cookie changes.
    checkSameOrigin(req);
    const login = config.portal.login;
    if (!(login.methods as readonly string[]).includes(req.method)) throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', 'login method');
    const contentType = loginContentType(req.headers['content-type'], login.bodyType);
    if (contentType === null) throw new GatewayError('GW_ERR_UNSUPPORTED_MEDIA_TYPE', 'login content-type');
    // The gateway reads the body as sent: a portal that unpacked a compressed body would read other fields than the
    // gateway checked.
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') throw new GatewayError('GW_ERR_UNSUPPORTED_MEDIA_TYPE', 'login content-encoding');
    const id = browserId(req, reply);
    const outcome = await ctx.login.login({
      contentType,
      browserId: id,
      method: req.method,
      path: target.path,
      query: target.query,
      headers: req.headers,
      body: () => readBounded(req, LOGIN_BODY_LIMIT),
      clientIp: req.client.ip,
      forwardedFor: forwardedFor(req),
      proto: req.client.proto,
      replacesPending: req.cookies[COOKIE.pending],
      knownBrowser: req.cookies[COOKIE.known],
    });
    if (outcome.kind === 'failed') {
      // The portal shows its own error; only its cookies are kept back.
      const headers = browserResponseHeaders(outcome.portal.headers, { browserCookies: ctx.browserCookies, rewriteLocation, signedIn: false });
      delete headers['content-length'];
      // A signed-in browser's password refused with its cookies deleted: the browser would drop the gateway's too.
      if (active && clearsCookies(headers['clear-site-data'])) await signedOutByPortal(reply, active, headers);
      reply.code(outcome.portal.status).headers(headers).send(asSent(headers, outcome.portal.body));
      return;
    }
    reply
      .clearCookie(COOKIE.browser, clearOptions)
      .setCookie(COOKIE.pending, outcome.pendingId, cookieOptions(config.mfa.pendingTimeoutSeconds))
      .redirect(`${config.server.prefix}/${outcome.stage}`, 303);
  }

  /**
   * The login's username and password fields together in the body of a request to another path (SECURITY C-30): a
   * portal that signs in wherever they come (a front controller, a common include) would take a password there
   * without its second factor. The body is read on its way to the portal, every way a portal may read fields from it,
   * and its last byte is held back until the whole body has been read: a body holding both never reaches the portal
   * whole (a portal gets at most one cut short, its request broken off, which no framework acts on), and the request
   * is refused (403). A body the gateway cannot read for them is refused too: compressed (415, for form, JSON and
   * multipart types, which a framework may unpack), in a charset in which the names are other bytes (415), or
   * unreadable as multipart (400).
   */
  function guardLoginFields(req: FastifyRequest): void {
    const type = req.headers['content-type'];
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity' && fieldsType(type)) throw new GatewayError('GW_ERR_UNSUPPORTED_MEDIA_TYPE', 'compressed form or JSON body');
    const unreadable = unreadableBody(type);
    if (unreadable) throw new GatewayError(unreadable.startsWith('charset') ? 'GW_ERR_UNSUPPORTED_MEDIA_TYPE' : 'GW_ERR_BAD_REQUEST', `request body: ${unreadable}`);
    const body = req.body as BoundedBody;
    const scanner = new LoginFieldsScanner(type, usernameFields(config.portal.login), config.portal.login.passwordField);
    let held: Buffer | undefined;
    const refused = (verdict: BodyRefusal | null, cb: (err?: Error | null) => void): boolean => {
      if (!verdict) return false;
      body.refused = verdict;
      cb(refusal(verdict));
      return true;
    };
    const guard: GuardedBody = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (refused(scanner.write(chunk), cb)) return;
        if (chunk.length === 0) return cb();
        // All but the last byte goes on at once (the portal sees the request begin, and streaming stays as it was).
        if (held) this.push(held);
        if (chunk.length > 1) this.push(chunk.subarray(0, -1));
        held = chunk.subarray(-1);
        cb();
      },
      flush(cb) {
        if (refused(scanner.end(), cb)) return;
        cb(null, held);
      },
    });
    guard.bounded = body;
    pipeline(body, guard, () => {});
    req.body = guard;
  }

  function forward(req: FastifyRequest, reply: FastifyReply, target: CanonicalTarget, owner: JarOwner): void {
    // The place is kept until the portal has answered (or failed, or timed out), also when the browser has gone
    // away meanwhile: the portal is still working on the request, and the cap is on the portal's load.
    const leave = ctx.inFlight.enter();
    const jar = owner.kind === 'session' ? owner.active.record.jar : owner.jar;
    let setCookies: string[] = [];
    let forwardedHeaders: OutgoingHttpHeaders = {};
    // reply-from goes on to onResponse after onError for an answer whose status it cannot set (outside 100–599).
    let failed = false;
    // The portal's answer to a signed-in request has the browser delete its cookies (Clear-Site-Data): a logout not
    // among portal.logoutPaths, or the portal ending its session itself (see signedOutByPortal).
    let portalSignedOut = false;

    /** The portal's answer to the browser: the jar updated from its cookies, then its body (a small one read whole). */
    async function passOn(res: unknown): Promise<void> {
      if (owner.kind === 'session' && portalSignedOut) await signedOutByPortal(reply, owner.active, forwardedHeaders);
      // Only a jar that changed costs a write; allow-listed cookies went to the browser, not the jar.
      const updated = applySetCookies(jar, setCookies, target.path, clock.now(), ctx.browserCookies);
      const changed = sameJar(updated, jar) ? undefined : updated;
      let refused: { retryAfterMs: number; reason: string } | undefined;
      // A password login of this browser took the jar while the portal answered: a portal that keeps its session id
      // at login may have answered as the account just signed in, before its second factor. The answer is withheld
      // (taken before the password reached the portal, the jar is still there when an earlier answer is checked; a
      // login that failed puts it back as a new round). Other answers changing its cookies meanwhile keep its round.
      if (owner.kind === 'browser' && owner.round !== undefined && (await ctx.jars.get(owner.id)).round !== owner.round) {
        (res as { stream: Readable }).stream.resume();
        sendInstead(reply, forwardedHeaders, new GatewayError('GW_ERR_SIGNED_IN_MEANWHILE', 'the pre-login jar was taken by a password login'));
        return;
      }
      try {
        if (owner.kind === 'browser' && changed) {
          // A jar that starts here is a new record for an hour: new ones are limited per address and in all (an id in
          // the cookie is no proof, a client can make them up).
          const admitted = owner.round === undefined ? await ctx.limits.login.admitNewBrowser(req.client.ip) : undefined;
          if (admitted && !admitted.allowed) refused = admitted;
          else await ctx.jars.update(owner.id, owner.round, (current) => applySetCookies(current, setCookies, target.path, clock.now(), ctx.browserCookies));
        }
        if (owner.kind === 'session' && !owner.ended && !portalSignedOut && changed) {
          // The answer's cookies go onto the jar as it is now (see SessionService.save).
          await sessions.save(owner.active, (current) => applySetCookies(current, setCookies, target.path, clock.now(), ctx.browserCookies));
        }
      } catch (err) {
        // The store failing (full, or Redis gone: counted in its metric, and the readiness check tells) is one short
        // line per page, which still goes to the browser; anything else is a fault, with its stack.
        if (err instanceof GatewayError) req.log.warn({ code: err.code, detail: err.message }, 'could not save portal cookies');
        else req.log.error({ err }, 'could not save portal cookies');
      }
      const { stream, statusCode, headers } = res as unknown as { stream: Readable & { arrayBuffer(): Promise<ArrayBuffer> }; statusCode: number; headers: IncomingHttpHeaders };
      // An answer that gives a browser its id is no answer for a shared cache (a CDN in front) to give others, even a
      // public one of the portal's: every browser it reached would share one pre-login jar. Nor does a CDN keep it by
      // its own caching field (targetedCaching), which it reads before Cache-Control. A 304 keeps the portal's
      // word: it would have the browser's own cache drop what it just validated.
      if (owner.kind === 'browser' && owner.minted && statusCode !== 304) {
        reply.header('cache-control', 'no-store');
        for (const name of Object.keys(forwardedHeaders)) if (targetedCaching(name)) reply.removeHeader(name);
      }
      if (refused) {
        stream.resume();
        sendInstead(reply, forwardedHeaders, new GatewayError('GW_ERR_RATE_LIMITED', refused.reason, { retryAfterMs: refused.retryAfterMs }));
        return;
      }
      if (statusCode === 304 || statusCode === 204) {
        // No body, whatever length the answer declares: a 304 may give that of the page it did not send again (RFC
        // 9110 §8.6; IIS and Java stacks do), and undici then fails the answer for the bytes it lacks, after its
        // headers. The answer is passed on as it is; a 204 without the length it may not have.
        stream.on('error', () => {}).resume();
        if (statusCode === 204) reply.removeHeader('content-length');
        reply.send();
        return;
      }
      if (!bufferable(req.method, statusCode, headers['content-length'])) {
        // An answer that breaks off before anything was sent gets the error page (error-handler.ts), without the
        // portal's headers: fastify has already put them on the response itself, as well as on the reply.
        stream.once('error', () => {
          if (reply.raw.headersSent) return;
          for (const name of Object.keys(forwardedHeaders)) {
            reply.raw.removeHeader(name);
            reply.removeHeader(name);
          }
        });
        reply.send(stream);
        return;
      }
      let body: Buffer;
      try {
        body = (await arrived(stream, Number(headers['content-length']))) ?? Buffer.from(await stream.arrayBuffer());
      } catch (error) {
        // An error page instead of a page cut short.
        sendInstead(reply, forwardedHeaders, new GatewayError(portalFailureCode(error) ?? 'GW_ERR_UPSTREAM_UNAVAILABLE', 'the portal answer broke off', { cause: error }));
        return;
      }
      reply.send(asSent(headers, body));
    }

    const options: FastifyReplyFromHooks = {
      timeout: timeoutMs,
      retryDelay: noRetry,
      queryString: () => target.query,
      // From the request's own headers: reply-from's copy of them is a slow (dictionary-mode) object to go through.
      rewriteRequestHeaders: () =>
        upstreamRequestHeaders(req.headers, {
          clientIp: forwardedFor(req),
          proto: req.client.proto,
          host: req.headers.host,
          strip: ctx.reservedHeaders,
          upstreamHost: portalHost,
          cookie: cookieHeader(jar, target.path, clock.now(), req.headers.cookie, ctx.browserCookies),
          add: owner.kind === 'session' ? owner.identity : undefined,
        }),
      rewriteHeaders: (headers) => {
        leave();
        setCookies = asList(headers['set-cookie']);
        forwardedHeaders = browserResponseHeaders(headers, { browserCookies: ctx.browserCookies, rewriteLocation, signedIn: owner.kind === 'session' });
        // The configured logout set the gateway's Clear-Site-Data already: only a list of the portal's is added to it.
        if (owner.kind === 'session' && owner.ended) {
          if (forwardedHeaders['clear-site-data'] !== undefined) clearAsSignedOut(reply, forwardedHeaders);
        } else if (owner.kind === 'session') portalSignedOut = clearsCookies(forwardedHeaders['clear-site-data']);
        return forwardedHeaders as IncomingHttpHeaders;
      },
      // Nothing is returned: an async function that returned the reply (a thenable) would make the promise machinery call
      // its then(), on every request. What fails unexpectedly on the way is an error page, never an unheard rejection.
      onResponse: (_r, rep, res) => {
        if (failed) return void (res as { stream: Readable }).stream.resume();
        passOn(res).catch((err: unknown) => {
          // Failed before its body was taken (the store, ending the session or checking a withheld answer): the body is
          // read and dropped, or the portal's connection would stay held for a reader that never comes (no timeout).
          const { stream } = res as { stream: Readable };
          if (stream.readableFlowing === null) stream.on('error', () => {}).resume();
          if (rep.sent) req.log.error({ err }, 'could not pass the portal answer on');
          // The gateway's own failures (the store, checking a withheld answer) keep their code; anything else is the
          // portal's failure only when it says so, and otherwise a fault of the gateway (logged with its stack).
          else sendInstead(rep, forwardedHeaders, err instanceof GatewayError ? err : new GatewayError(portalFailureCode(err) ?? 'GW_ERR_INTERNAL', 'the portal answer could not be passed on', { cause: err }));
        });
      },
      // Also after the portal's headers were put on the reply (an answer whose status cannot be set): they go.
      onError: (rep, { error }) => {
        leave();
        failed = true;
        const body = boundedBody(req);
        if (body?.refused) {
          if (body.refused.refuse === 'login-fields') ctx.access.loginFieldsRefused({ pid: req.access?.pid, ip: req.client.ip, rule: req.access?.rule ?? '', path: target.path });
          return sendInstead(rep, forwardedHeaders, refusal(body.refused));
        }
        if (body?.tooLarge) return sendInstead(rep, forwardedHeaders, new GatewayError('GW_ERR_PAYLOAD_TOO_LARGE', 'body too large'));
        if (body?.stalled) return sendInstead(rep, forwardedHeaders, new GatewayError('GW_ERR_REQUEST_TIMEOUT', 'the body stopped arriving'));
        if (body?.brokeOff) return sendInstead(rep, forwardedHeaders, new GatewayError('GW_ERR_BAD_REQUEST', 'the body broke off'));
        const status = (error as { statusCode?: number }).statusCode;
        return sendInstead(rep, forwardedHeaders, new GatewayError(status === 504 ? 'GW_ERR_UPSTREAM_TIMEOUT' : 'GW_ERR_UPSTREAM_UNAVAILABLE', error.message, { cause: error }));
      },
    };
    try {
      // The exact canonical path the gateway decided on, and the query as sent (reply-from would decode one in the
      // path, and fail on a query it cannot decode).
      reply.from(target.path, options);
    } catch (err) {
      // Refused before anything was sent (reply-from checks the path once more).
      leave();
      throw err;
    }
  }

  // Every path of `handle` sends its answer itself. fastify is not given its promise: it would wait on it, and an
  // answer still on its way (the portal's) would need a listener for its end, on every request. An error is sent as
  // fastify sends one an async handler throws.
  const handler = (req: FastifyRequest, reply: FastifyReply): void => {
    handle(req, reply).catch((err: unknown) => {
      if (reply.sent) req.log.error({ err }, 'error after the answer was sent');
      else reply.send(err instanceof Error ? err : new Error(String(err)));
    });
  };
  // Only the methods portal.methods names reach the portal; the others get 405 (error-handler.ts), before any rule.
  const method = [...passedMethods(config.portal.methods)];
  app.route({ method, url: '/*', handler });
  app.route({ method, url: '/', handler });
}

/**
 * The gateway's page in place of the portal's answer, of which nothing was sent yet: without the portal's headers
 * (the gateway's own, HSTS among them, stay).
 */
function sendInstead(reply: { removeHeader(name: string): unknown; send(payload: GatewayError): unknown }, portalHeaders: OutgoingHttpHeaders, error: GatewayError): void {
  for (const name of Object.keys(portalHeaders)) reply.removeHeader(name);
  reply.send(error);
}

/**
 * The browser told to forget what a sign-out clears, and what the portal's answer asked besides: the portal's own
 * Clear-Site-Data ("cache", say) would replace the gateway's, and the browser would keep the known-browser token and
 * the portal cookies it holds. Set on the reply, so that an error page in place of the portal's answer carries it too.
 */
function clearAsSignedOut(reply: FastifyReply, portalHeaders: OutgoingHttpHeaders): void {
  const portal = asList(portalHeaders['clear-site-data']);
  delete portalHeaders['clear-site-data'];
  reply.header('clear-site-data', [CLEAR_SITE_DATA, ...portal].join(', '));
}

/**
 * A portal answer's body read whole, to send as it came: without a type of the portal's, none is added (fastify would
 * call a Buffer application/octet-stream, and the browser would download a page it should show).
 */
function asSent(headers: IncomingHttpHeaders | OutgoingHttpHeaders, body: Buffer): Buffer | Readable {
  return headers['content-type'] === undefined ? Readable.from([body]) : body;
}

/**
 * Whether a portal answer is read whole and sent in one write: a small body of declared length (as nginx's proxy
 * buffering does). Anything larger, of unknown length (chunked, event streams) or without a body streams through.
 */
function bufferable(method: string, status: number, contentLength: string | string[] | undefined): boolean {
  if (method === 'HEAD' || status < 200 || typeof contentLength !== 'string') return false;
  const length = Number(contentLength);
  return Number.isSafeInteger(length) && length <= BUFFERED_ANSWER_BYTES;
}

/**
 * A small answer's whole body when it has already arrived (it mostly comes with its headers, which undici hands on
 * before it has read the rest of the same packet): taken at once, without undici's reader and its copy. Null when not.
 */
async function arrived(stream: Readable, length: number): Promise<Buffer | null> {
  await undefined;
  if (stream.readableLength !== length || length === 0) return null;
  const body = stream.read() as Buffer | null;
  // Ends the stream (and frees undici's hold on it); an error after the body had come changes nothing.
  if (body) stream.on('error', () => {}).resume();
  return body;
}

/** X-Forwarded-For for the portal: the client, or the peer when a trusted proxy passed an unreadable address. */
function forwardedFor(req: FastifyRequest): string {
  return req.client.ip ?? normaliseAddress(req.socket.remoteAddress ?? '') ?? '';
}

type BoundedBody = Transform & { tooLarge?: boolean; stalled?: boolean; brokeOff?: boolean; refused?: BodyRefusal; /** Bytes come so far. */ received?: number };
/** A body read for the login's fields (guardLoginFields) on its way from the bounded one. */
type GuardedBody = Transform & { bounded?: BoundedBody };

/** The answer to a body refused by guardLoginFields. */
function refusal(r: BodyRefusal): GatewayError {
  return r.refuse === 'login-fields' ? new GatewayError('GW_ERR_LEGACY_AUTH', 'login fields in a request body') : new GatewayError('GW_ERR_BAD_REQUEST', `request body: ${r.why}`);
}

/** The request's body as the content parser bounded it, also where a guard stands after it. */
function boundedBody(req: FastifyRequest): BoundedBody | undefined {
  const body = req.body as GuardedBody | undefined;
  return body?.bounded ?? body;
}

/**
 * Whether a proxied request's body is still coming (the portal failed meanwhile, or the request was refused before
 * it went): its rest would never be read, so the connection closes after the answer. One already in whole (a small
 * body comes with its headers) leaves the connection serving on; `complete` says so only a moment later.
 */
export function bodyStillComing(req: FastifyRequest): boolean {
  const body = boundedBody(req);
  if (!(body instanceof Transform) || req.raw.complete || body.writableEnded) return false;
  return body.received !== Number(req.headers['content-length']);
}

/**
 * A pass-through that fails once more than `max` bytes went through, or when no byte came for `idleMs` (marked, so
 * the error becomes a 413 or a 408): a body that stops arriving would hold its place among the requests waiting for
 * the portal until the server's request timeout.
 */
function bounded(max: number, idleMs: number): BoundedBody {
  let seen = 0;
  const stall = () => {
    t.stalled = true;
    t.destroy(new GatewayError('GW_ERR_REQUEST_TIMEOUT', 'the body stopped arriving'));
  };
  const timer = setTimeout(stall, idleMs);
  const t: BoundedBody = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      timer.refresh();
      seen += chunk.length;
      t.received = seen;
      if (seen > max) {
        t.tooLarge = true;
        return cb(new GatewayError('GW_ERR_PAYLOAD_TOO_LARGE', 'body too large'));
      }
      cb(null, chunk);
    },
    flush(cb) {
      clearTimeout(timer);
      cb();
    },
  });
  t.once('close', () => clearTimeout(timer));
  return t;
}

async function readBounded(req: FastifyRequest, limit: number): Promise<Buffer> {
  const stream = req.body as Readable | undefined;
  const tooLarge = () => new GatewayError('GW_ERR_PAYLOAD_TOO_LARGE', 'login body too large');
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      // The rest of an oversized body is left unread; the connection closes after the 413.
      if (size > limit) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    // A client gone mid-body, or its framing broken: a bad request, not the gateway's failure.
    throw err instanceof GatewayError ? err : new GatewayError('GW_ERR_BAD_REQUEST', 'the login body broke off', { cause: err });
  }
  return Buffer.concat(chunks);
}
