// Reading requests: the gateway's own forms and JSON calls (one value per field), the CSRF checks, whether a request
// opens a page, the client's address.
import type { FastifyRequest } from 'fastify';
import { GatewayError } from '../errors.js';
import { sameToken } from '../mechanisms/random.js';

type Body = Record<string, unknown>;

/** What a gateway route takes as its body: its pages' forms, or its scripts' JSON calls. */
export type BodyKind = 'form' | 'json';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The body the route takes, when it is not a form (see checkBodyType). */
    body?: BodyKind;
  }
}

const MEDIA_TYPE: Record<BodyKind, string> = { form: 'application/x-www-form-urlencoded', json: 'application/json' };

/**
 * Refuses a POST whose body is not of the kind its route takes, by its Content-Type (parameters aside), before it is
 * read: a field is read alike from a form and a JSON object, so a code sent to a form as JSON would be checked and use
 * up a try, and a passkey call would take a form. Nothing is checked, and no try used, for a body of another type.
 */
export function checkBodyType(req: FastifyRequest): void {
  if (req.method !== 'POST') return;
  const kind = req.routeOptions.config.body ?? 'form';
  // Media types are case-insensitive (RFC 9110 §8.3.1).
  const type = req.headers['content-type']?.split(';', 1)[0]!.trim().toLowerCase();
  if (type !== MEDIA_TYPE[kind]) throw new GatewayError('GW_ERR_UNSUPPORTED_MEDIA_TYPE', `not a ${kind} body`);
}

/** A form field or JSON string member; repeated fields are refused, absent ones are ''. */
export function field(req: FastifyRequest, name: string): string {
  const v = (req.body as Body | undefined)?.[name];
  if (v !== undefined && typeof v !== 'string') throw new GatewayError('GW_ERR_BAD_REQUEST', `field ${name} is not one text value`);
  return v ?? '';
}

/**
 * Whether a code form came with nothing typed in its field (the button pressed, or Enter, before typing): said so, and
 * no try is used up; "did not work", with one try less, would be untrue, and five of them would end the sign-in.
 */
export function noCodeTyped(req: FastifyRequest): boolean {
  return field(req, 'code').trim() === '';
}

/** A member of a JSON body, as sent (checked by whoever reads it). */
export function member(req: FastifyRequest, name: string): unknown {
  const body = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'body is not a JSON object');
  return (body as Body)[name];
}

/**
 * A state-changing request from one of the gateway's own pages (SECURITY R45): same-site by Sec-Fetch-Site and
 * Origin, and the synchronizer token of the login or session (a form field, or the X-CSRF-Token header of a
 * JSON call).
 */
export function checkCsrf(req: FastifyRequest, expected: string): void {
  checkSameOrigin(req);
  const header = req.headers['x-csrf-token'];
  const token = typeof header === 'string' ? header : field(req, 'csrf');
  if (!sameToken(token, expected)) throw new GatewayError('GW_ERR_CSRF', 'csrf token mismatch');
}

/** Refuses a request another site made the browser send (Fetch Metadata, then Origin), when the browser says so. */
export function checkSameOrigin(req: FastifyRequest): void {
  const reason = crossSite(req);
  if (reason) throw new GatewayError('GW_ERR_CSRF', reason);
}

/** Why a request is one another site made the browser send, when the browser says so (null: it does not). */
export function crossSite(req: FastifyRequest): string | null {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `sec-fetch-site ${site}`;
  // Without either header (older browsers, on a GET), the Referer when there is one.
  const origin = req.headers.origin ?? req.headers.referer;
  if (origin === undefined) return null;
  // A page served with `Referrer-Policy: no-referrer` (the portal's login page with helmet's defaults, say) has its
  // own forms posted with "Origin: null": the browser's Sec-Fetch-Site still says where the form was.
  if (origin === 'null' && site === 'same-origin') return null;
  const from = urlOf(origin);
  // Another host, or the plain-http site of this host sending to the https gateway (a network attacker's page).
  return !from || from.host !== req.headers.host || (req.client.proto === 'https' && from.protocol !== 'https:') ? 'cross-origin request' : null;
}

/**
 * Whether a GET or HEAD is the browser opening a page (a link, the address bar, a form), which a redirect serves. A
 * script's call (fetch or XMLHttpRequest: `Sec-Fetch-Mode` other than `navigate`, `X-Requested-With: XMLHttpRequest`,
 * or an `Accept` that takes neither HTML nor anything, as `application/json`) would follow a redirect to a page it
 * cannot use: it gets a status it can act on instead. A browser opening a page always asks for HTML; one that sends
 * none of these headers (older browsers, web views) is taken to open a page. `method`: the browser's, when `req`
 * carries its headers for another request (forward-auth).
 */
export function opensPage(req: FastifyRequest, method = req.method): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const mode = req.headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  // Media types are case-insensitive (RFC 9110 §8.3.1): `TEXT/HTML` asks for a page too.
  const accept = req.headers.accept?.toLowerCase();
  if (accept !== undefined && !accept.includes('text/html') && !accept.includes('*/*')) return false;
  return String(req.headers['x-requested-with']).toLowerCase() !== 'xmlhttprequest';
}

/**
 * The page a request was sent from (its path and query), when the browser says so (Referer) and the page is on this
 * gateway's origin: where a step-up asked for by a form sent there comes back to.
 */
export function sentFrom(req: FastifyRequest): string | undefined {
  const referer = req.headers.referer;
  if (referer === undefined || crossSite(req)) return undefined;
  const from = urlOf(referer);
  // Not a path that reads as another host (`//evil.example/`) either, though the step-up page would refuse it too.
  if (!from || from.host !== req.headers.host?.toLowerCase() || from.pathname.startsWith('//')) return undefined;
  return `${from.pathname}${from.search}`;
}

/** The client's address for logs, limits and notifications ('unknown' when a trusted proxy passed junk). */
export function clientIp(req: FastifyRequest): string {
  return req.client.ip ?? 'unknown';
}

function urlOf(origin: string): URL | undefined {
  try {
    return new URL(origin);
  } catch {
    return undefined;
  }
}
