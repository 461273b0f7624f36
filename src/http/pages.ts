// Sending the gateway's own HTML pages: the request's language, a fresh CSP nonce, the security headers (R44).
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Messages } from '../ui/i18n.js';
import type { PageContext } from '../ui/pages.js';

export interface UiSettings {
  messages: Messages;
  portalName: string;
  prefix: string;
  hasLogo: boolean;
}

// The nonce of a page, once its scripts asked for one; pages without scripts allow none.
const nonces = new WeakMap<PageContext, string>();

export function pageContext(ui: UiSettings, req: FastifyRequest): PageContext {
  const { lang, dir, t, english } = ui.messages.forRequest(req.headers['accept-language']);
  const ctx: PageContext = {
    portalName: ui.portalName,
    prefix: ui.prefix,
    hasLogo: ui.hasLogo,
    lang,
    dir,
    t,
    english,
    get nonce() {
      let n = nonces.get(ctx);
      if (!n) nonces.set(ctx, (n = randomBytes(16).toString('base64')));
      return n;
    },
  };
  return ctx;
}

/**
 * The language of a message sent as JSON to the page's script, which shows it: English where the request's catalogue
 * leaves it out, for the script to mark it so (as the pages mark such text). Said as the answer's Content-Language.
 */
export function messageLanguage(ctx: Pick<PageContext, 'lang' | 'english'>, message: string): string {
  return ctx.english(message) ? 'en' : ctx.lang;
}

/**
 * A passkey the gateway refused, answered to the passkey script: the message it shows, and the tries left when the
 * refusal used one (a registration's uses none).
 */
export function sendPasskeyRefused(reply: FastifyReply, ctx: PageContext, attemptsLeft?: number): FastifyReply {
  const message = ctx.t('passkeyFailed');
  return reply.code(400).header('content-language', messageLanguage(ctx, message)).send({ error: 'refused', message, ...(attemptsLeft === undefined ? {} : { attemptsLeft }) });
}

/** Headers of every HTML page of the gateway's, besides its type, language, caching and CSP. */
export const PAGE_HEADERS = {
  'x-content-type-options': 'nosniff',
  // same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts, defeating the origin check.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'x-frame-options': 'DENY',
} as const;

export function sendPage(reply: FastifyReply, status: number, ctx: PageContext, html: string): FastifyReply {
  return reply
    .code(status)
    .headers({
      'content-type': 'text/html; charset=utf-8',
      'content-language': ctx.lang,
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; script-src ${nonces.has(ctx) ? `'nonce-${nonces.get(ctx)}'` : "'none'"}; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'`,
      ...PAGE_HEADERS,
    })
    .send(html);
}
