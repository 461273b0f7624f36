// The one place errors become replies: status + generic message + request id outward, full detail in the log.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isRuleFactor } from '../domain/policy.js';
import { loginPageFor, stepUpPage } from '../domain/redirect.js';
import { ERRORS, GatewayError, portalFailureCode, type ErrorCode } from '../errors.js';
import { OtherStage } from '../services/pending.js';
import type { MessageKey } from '../ui/i18n.js';
import { messagePage } from '../ui/pages.js';
import { COOKIE } from './cookies.js';
import { sentFrom } from './forms.js';
import { messageLanguage, pageContext, sendPage, type UiSettings } from './pages.js';
import { bodyStillComing } from './proxy-routes.js';

const BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: 'GW_ERR_BAD_REQUEST',
  404: 'GW_ERR_NOT_FOUND',
  405: 'GW_ERR_METHOD_NOT_ALLOWED',
  413: 'GW_ERR_PAYLOAD_TOO_LARGE',
  415: 'GW_ERR_UNSUPPORTED_MEDIA_TYPE',
};

/** An error page's one link. */
type Link = { href: string; label: MessageKey };

export type ErrorReply = (error: FastifyError | GatewayError, request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined;

/**
 * How an error is answered (the app's error handler; also its router's refusals). `loginPageTemplate`:
 * `portal.login.page`, whose `{target}` becomes where a new sign-in goes on to; `refused` hears every code answered
 * (for metrics).
 */
export function errorReply(ui: UiSettings, loginPageTemplate: string, refused: (code: ErrorCode) => void): ErrorReply {
  const prefix = ui.prefix;
  const loginPage = loginPageFor(loginPageTemplate);
  /**
   * Where the page's one link leads, so that no step of signing in is a dead end: `signingIn` when a sign-in is in
   * progress (a pending cookie), `signedIn` with a session (see signedInTo), `signingOut` for the sign-out form,
   * `gateway` for a gateway page (else the portal's login was refused); `from`: the page the request was sent from
   * (see sentFrom); `atStart`: the portal page refused (4xx) is its start page, where "Back to the portal" leads (see
   * refusedStart).
   */
  const nextStep = (code: ErrorCode, gateway: boolean, signingIn: boolean, signedIn: boolean, signingOut: boolean, error: FastifyError | GatewayError, stepUp: string | undefined, from: string | undefined, atStart: boolean): Link | undefined => {
    const { factors, next } = error instanceof GatewayError ? error : { factors: undefined, next: undefined };
    // Any other gateway page (one not found, a form refused): on with what the browser was doing, as its cookies say.
    // Nothing is looked up: without the pending cookie the page says nothing of a sign-in. A portal page refused (a rule
    // that denies it, the portal down): back to the portal for someone signed in, else nothing to lead to; its start
    // page refused (not failed: then the way back tries again), the way back would only be refused again: to signing
    // out (the sign-in settings are in the page's header). A host not served has no page to lead to.
    const onward = (): Link | undefined => {
      if (code === 'GW_ERR_UNKNOWN_HOST') return undefined;
      if (!gateway) return !signedIn ? undefined : atStart ? { href: `${prefix}/logout`, label: 'signOutLink' } : { href: '/', label: 'backToPortal' };
      if (signingIn) return { href: `${prefix}/continue`, label: 'continue' };
      return signedIn ? { href: '/', label: 'backToPortal' } : { href: loginPage, label: 'signInAgain' };
    };
    switch (code) {
      case 'GW_ERR_SIGN_IN_REQUIRED':
        // A portal page asked for before the second factor: on to it.
        if (signingIn && !gateway) return { href: `${prefix}/continue`, label: 'continue' };
        return { href: next === undefined ? loginPage : loginPageFor(loginPageTemplate, next), label: 'signInAgain' };
      case 'GW_ERR_LOGIN_EXPIRED':
      case 'GW_ERR_LOGIN_UNRECOGNISED':
      case 'GW_ERR_TOO_MANY_ATTEMPTS':
        return { href: loginPage, label: 'signInAgain' };
      case 'GW_ERR_STEP_UP_REQUIRED': {
        // A change on the security page after its window (its form sent, not a page opened): back there after, to the
        // form with what was typed in it where the change says (`next`); a portal form: back to the page it was sent
        // from, to send it again. A portal rule that takes only some kinds of factor: the step-up page offers only
        // those, as when a page is opened.
        return { href: stepUpPage(prefix, gateway ? (next ?? `${prefix}/security`) : from, factors ?? []), label: 'stepUpTitle' };
      }
      case 'GW_ERR_SIGNED_IN_MEANWHILE':
        return { href: `${prefix}/continue`, label: 'continue' };
      // Back to the step being done (another method, a recovery code): of a sign-in, or of a signed-in person's
      // step-up (the security page's changes need one too); a refused portal login: its page.
      case 'GW_ERR_FACTOR_LOCKED':
      case 'GW_ERR_RATE_LIMITED':
        if (!gateway) return { href: loginPage, label: 'signInAgain' };
        return signingIn ? { href: `${prefix}/continue`, label: 'continue' } : { href: stepUp ?? `${prefix}/step-up`, label: 'stepUpTitle' };
      // A step-up form whose token a step-up in another tab replaced: the page again, with the current one; so the
      // sign-out form, or the person would stay signed in. A sign-in form whose login a password entered in another
      // tab replaced: on to the sign-in in progress.
      case 'GW_ERR_CSRF':
        if (stepUp !== undefined) return { href: stepUp, label: 'stepUpTitle' };
        return signingOut && signedIn ? { href: `${prefix}/logout`, label: 'signOutLink' } : onward();
      default:
        return onward();
    }
  };
  /**
   * The step-up page again, as the step-up form refused asked for it: its way back (checked there) and the kinds of
   * factor it offers, which the form carries and its address does not. None for another request.
   */
  const stepUpAgain = (request: FastifyRequest): string | undefined => {
    if (request.method !== 'POST' || request.url.split('?', 1)[0] !== `${prefix}/step-up`) return undefined;
    const form = request.body as Record<string, unknown> | undefined;
    const text = (name: string) => (typeof form?.[name] === 'string' ? (form[name] as string) : '');
    return stepUpPage(prefix, text('to') || undefined, text('factors').split(',').filter(isRuleFactor));
  };
  return (error, request, reply) => {
    // Besides the gateway's own errors: a portal answer streaming through that broke off before anything was sent.
    const code: ErrorCode =
      error instanceof GatewayError
        ? error.code
        : (portalFailureCode(error) ?? ((error.statusCode && error.statusCode < 500 && BY_STATUS[error.statusCode]) || 'GW_ERR_INTERNAL'));
    const { status } = ERRORS[code];
    refused(code);
    // The portal down or slow fails every request to it meanwhile: one short line each, not an error with its stack.
    if (code === 'GW_ERR_UPSTREAM_UNAVAILABLE' || code === 'GW_ERR_UPSTREAM_TIMEOUT') request.log.warn({ code, reason: portalFailureReason(error) }, 'request failed');
    else if (status >= 500) request.log.error({ err: error, code }, 'request failed');
    else request.log.info({ code, detail: error.message }, 'request refused');
    if (reply.sent) return undefined;
    // The pending cookie is left alone: the record in the store decides, and a stray request (a favicon) that
    // fails must not end a login that is still in progress.
    const ctx = pageContext(ui, request);
    const message = ctx.t(`error.${code}`);
    reply.removeHeader('content-length');
    if (error instanceof GatewayError && error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
    // The rest of a body too large, or of one still coming (see bodyStillComing), is never read: the connection closes
    // after this answer instead of waiting for it.
    if (code === 'GW_ERR_PAYLOAD_TOO_LARGE' || bodyStillComing(request)) reply.header('connection', 'close');
    if (request.headers.accept !== undefined && !request.headers.accept.toLowerCase().includes('text/html')) {
      return reply
        .code(status)
        .headers({ 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-language': messageLanguage(ctx, message), 'x-content-type-options': 'nosniff' })
        .send({ error: code, message, requestId: request.id });
    }
    // A page of a step already done (Back) while the sign-in goes on: the page of the step it is at, not an end.
    if (error instanceof OtherStage) return reply.header('cache-control', 'no-store').redirect(`${prefix}/continue`, 303);
    // A page of a sign-in already finished (Back, once signed in): on to the portal, not "your sign-in has expired"
    // (a session that is no longer valid is sent to sign in there).
    if (code === 'GW_ERR_LOGIN_EXPIRED' && (request.method === 'GET' || request.method === 'HEAD') && request.cookies?.[COOKIE.session] !== undefined && request.cookies[COOKIE.pending] === undefined) {
      return reply.header('cache-control', 'no-store').redirect('/', 303);
    }
    // The forward-auth endpoint answers for a portal page (a proxy may pass its page to the browser).
    const path = request.url.split('?', 1)[0]!;
    const gateway = path.startsWith(`${prefix}/`) && path !== `${prefix}/forward-auth`;
    // The report page refused while other builds wait: nothing to sign in or step up for, only to wait.
    const waitOnly = code === 'GW_ERR_RATE_LIMITED' && path === `${prefix}/admin/report`;
    const signingIn = request.cookies?.[COOKIE.pending] !== undefined;
    const signedIn = !signingIn && signedInTo(code, request.cookies?.[COOKIE.session]);
    const action = waitOnly ? undefined : nextStep(code, gateway, signingIn, signedIn, request.method === 'POST' && path === `${prefix}/logout`, error, stepUpAgain(request), sentFrom(request), status < 500 && refusedStart(request, path !== `${prefix}/forward-auth`));
    ctx.signedIn = signedIn;
    return sendPage(reply, status, ctx, messagePage(ctx, { title: `error.${code}`, reference: request.id, ...(action ? { action } : {}) }));
  };
}

/**
 * What a portal failure's log line says of it: the message of the error at the end of its causes (`connect ECONNREFUSED
 * 10.0.0.5:8080`), with that error's code where the message does not name it (`Headers Timeout Error
 * (UND_ERR_HEADERS_TIMEOUT)`; Node's AggregateError of each address tried has only its code, `ECONNREFUSED`). These
 * messages name the portal's address at most: what the portal sent is kept on the error (undici's `data`), not in them.
 */
function portalFailureReason(error: Error): string {
  let cause = error;
  while (cause.cause instanceof Error) cause = cause.cause;
  const { code } = cause as { code?: unknown };
  if (cause instanceof GatewayError || typeof code !== 'string' || cause.message.includes(code)) return cause.message;
  return cause.message ? `${cause.message} (${code})` : code;
}

/**
 * Whether the portal page refused is the one "Back to the portal" opens, `GET /`: the request's own, or in forward-auth
 * mode (`own` false) the one the proxy asked about. Another method or a query may be let through where this is not.
 */
function refusedStart(request: FastifyRequest, own: boolean): boolean {
  const [method, uri] = own ? [request.method, request.url] : [request.headers['x-forwarded-method'], request.headers['x-forwarded-uri']];
  return uri === '/' && ['GET', 'HEAD'].includes(String(method).toUpperCase());
}

/**
 * Whether an error page is shown to someone signed in, as far as it can tell without the store: a session cookie, and
 * an error that does not say there is no session (or that it just ended).
 */
function signedInTo(code: ErrorCode, sessionCookie: string | undefined): boolean {
  return sessionCookie !== undefined && code !== 'GW_ERR_SIGN_IN_REQUIRED' && code !== 'GW_ERR_TOO_MANY_ATTEMPTS';
}

export function installErrorHandler(app: FastifyInstance, answer: ErrorReply): void {
  app.setErrorHandler(answer);
  // Routes exist for every method the gateway serves, on every path (the proxy's catch the paths the gateway's own
  // do not), so an unmatched request is a method it refuses, also under the gateway's prefix: answered as any refusal
  // (JSON for a script).
  app.setNotFoundHandler((request, reply) => answer(new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${request.method.slice(0, 20)}`), request, reply));
}
