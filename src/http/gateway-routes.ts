// The gateway's own pages under the reserved prefix: enrolment, verification, recovery, logout, health.
import { readFileSync } from 'node:fs';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cookieHeader, type Jar } from '../domain/cookie-jar.js';
import { safeRelativeTarget } from '../domain/redirect.js';
import { GatewayError } from '../errors.js';
import { sameToken } from '../mechanisms/random.js';
import { groupedSecret, totpUri } from '../mechanisms/totp.js';
import { qrSvg } from '../mechanisms/qr.js';
import { messages } from '../ui/messages.js';
import * as pages from '../ui/pages.js';
import type { HttpContext } from './context.js';
import { COOKIE, clearOptions, cookieOptions } from './cookies.js';
import { sendPage } from './pages.js';

const CSS = readFileSync(new URL('../ui/assets/gateway.css', import.meta.url));
// Gateway forms are tiny; anything bigger is not one of ours.
const FORM_BODY_LIMIT = 16 * 1024;

type Form = Record<string, string | string[] | undefined>;

export async function gatewayRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config, secondFactor, sessions, page } = ctx;
  const p = config.server.prefix;
  await app.register(formbody, { bodyLimit: FORM_BODY_LIMIT });

  const field = (req: FastifyRequest, name: string): string => {
    const v = (req.body as Form | undefined)?.[name];
    if (v !== undefined && typeof v !== 'string') throw new GatewayError('GW_ERR_BAD_REQUEST', `repeated field ${name}`);
    return v ?? '';
  };
  const ip = (req: FastifyRequest) => req.client.ip ?? 'unknown';
  /** Same-origin check and synchronizer token (SECURITY R45). */
  const checkCsrf = (req: FastifyRequest, expected: string) => {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new GatewayError('GW_ERR_CSRF', `sec-fetch-site ${site}`);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null' && safeHost(origin) !== req.headers.host) throw new GatewayError('GW_ERR_CSRF', 'cross-origin form');
    if (origin === 'null' || !sameToken(field(req, 'csrf'), expected)) throw new GatewayError('GW_ERR_CSRF', 'csrf token mismatch');
  };
  const pendingId = (req: FastifyRequest) => req.cookies[COOKIE.pending];
  const signedIn = (reply: FastifyReply, token: string, to: string) =>
    reply.clearCookie(COOKIE.pending, clearOptions).setCookie(COOKIE.session, token, cookieOptions()).redirect(to, 303);

  app.get(`${p}/assets/gateway.css`, (_req, reply) =>
    reply.headers({ 'content-type': 'text/css; charset=utf-8', 'cache-control': 'public, max-age=3600', 'x-content-type-options': 'nosniff' }).send(CSS),
  );

  app.get(`${p}/health/live`, async () => ({ status: 'ok' }));
  app.get(`${p}/health/ready`, async (_req, reply) => {
    try {
      await ctx.kv.ping();
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ status: 'unavailable' });
    }
  });

  // Where a browser with a pending login goes next: the page of its stage.
  app.get(`${p}/continue`, async (req, reply) => {
    const stage = await secondFactor.stage(pendingId(req));
    if (!stage) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no pending login');
    return reply.redirect(`${p}/${stage === 'acknowledge' ? 'recovery-codes' : stage}`, 303);
  });

  app.get(`${p}/enrol`, async (req, reply) => {
    const id = pendingId(req)!;
    const pending = await secondFactor.pendingAt(id, 'enrol');
    const secret = await secondFactor.enrolmentSecret(id, pending);
    const uri = totpUri({ issuer: config.mfa.issuer, account: pending.username, secret });
    return sendPage(reply, 200, pages.enrolPage(page, { qrSvg: await qrSvg(uri), groupedSecret: groupedSecret(secret), csrf: pending.csrf }));
  });

  app.post(`${p}/enrol`, async (req, reply) => {
    const id = pendingId(req)!;
    const pending = await secondFactor.pendingAt(id, 'enrol');
    checkCsrf(req, pending.csrf);
    const result = await secondFactor.confirmEnrolment(id, pending, field(req, 'code'), ip(req));
    if (!result.ok) {
      const secret = pending.totpSecret ?? '';
      const uri = totpUri({ issuer: config.mfa.issuer, account: pending.username, secret });
      return sendPage(reply, 400, pages.enrolPage(page, { qrSvg: await qrSvg(uri), groupedSecret: groupedSecret(secret), csrf: pending.csrf, error: messages.wrongCode(result.attemptsLeft) }));
    }
    return sendPage(reply, 200, pages.recoveryCodesPage(page, { codes: result.codes, csrf: pending.csrf }));
  });

  // Back at the acknowledgement after leaving it: the codes were shown once and are not shown again.
  app.get(`${p}/recovery-codes`, async (req, reply) => {
    const pending = await secondFactor.pendingAt(pendingId(req), 'acknowledge');
    return sendPage(reply, 200, pages.recoveryCodesPage(page, { codes: [], csrf: pending.csrf }));
  });

  app.post(`${p}/recovery-codes`, async (req, reply) => {
    const id = pendingId(req)!;
    const pending = await secondFactor.pendingAt(id, 'acknowledge');
    checkCsrf(req, pending.csrf);
    // The codes are never shown again; the person confirms they kept them before the portal opens.
    if (field(req, 'saved') !== 'yes') return sendPage(reply, 400, pages.messagePage(page, { message: messages.recoveryAckRequired }));
    const done = await secondFactor.acknowledge(id, ip(req));
    return signedIn(reply, done.token, done.continueTo);
  });

  // Signing in with the authenticator app or with a recovery code: the same form, another check.
  const codeForms = [
    { path: 'verify', render: pages.verifyPage, check: secondFactor.verifyTotp.bind(secondFactor) },
    { path: 'recovery', render: pages.recoveryPage, check: secondFactor.verifyRecoveryCode.bind(secondFactor) },
  ];
  for (const form of codeForms) {
    app.get(`${p}/${form.path}`, async (req, reply) => {
      const pending = await secondFactor.pendingAt(pendingId(req), 'verify');
      return sendPage(reply, 200, form.render(page, { csrf: pending.csrf }));
    });
    app.post(`${p}/${form.path}`, async (req, reply) => {
      const id = pendingId(req)!;
      const pending = await secondFactor.pendingAt(id, 'verify');
      checkCsrf(req, pending.csrf);
      const result = await form.check(id, pending, field(req, 'code'), ip(req));
      if ('token' in result) return signedIn(reply, result.token, result.continueTo);
      return sendPage(reply, 400, form.render(page, { csrf: pending.csrf, error: result.ok ? undefined : messages.wrongCode(result.attemptsLeft) }));
    });
  }

  // Step-up: a signed-in person confirms a second factor again, then goes back to where they were going.
  const stepUpTarget = (req: FastifyRequest, value: unknown) =>
    typeof value === 'string' && value !== '' ? safeRelativeTarget(value, config.portal.url) : undefined;
  const renderStepUp = (req: FastifyRequest, reply: FastifyReply, csrf: string, status: number, to: string | undefined, error?: string) => {
    const factors = String((req.query as Record<string, unknown>).factors ?? '').split(',').filter(Boolean);
    // TOTP is what a session can step up with today; a rule asking for another factor gets an explanation instead.
    const totpAllowed = factors.length === 0 || factors.includes('totp');
    return sendPage(reply, status, pages.stepUpPage(page, { csrf, to, error, totpAllowed }));
  };
  app.get(`${p}/step-up`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) return reply.redirect(config.portal.login.page, 302);
    return renderStepUp(req, reply, active.record.csrf, 200, stepUpTarget(req, (req.query as Record<string, unknown>).to));
  });
  app.post(`${p}/step-up`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'step-up without a session');
    checkCsrf(req, active.record.csrf);
    const to = stepUpTarget(req, field(req, 'to'));
    const result = await secondFactor.stepUpTotp(active, field(req, 'code'), ip(req));
    if (!result.ok) return renderStepUp(req, reply, active.record.csrf, 400, to, messages.wrongCode(result.attemptsLeft));
    reply.setCookie(COOKIE.session, result.token, cookieOptions());
    if (to) return reply.redirect(to, 303);
    return sendPage(reply, 200, pages.messagePage(page, { title: messages.stepUpDoneTitle, message: messages.stepUpDone }));
  });

  app.get(`${p}/logout`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) return reply.redirect(config.portal.login.page, 302);
    return sendPage(reply, 200, pages.logoutPage(page, { csrf: active.record.csrf }));
  });

  app.post(`${p}/logout`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (active) {
      checkCsrf(req, active.record.csrf);
      await endPortalSession(ctx, active.record.jar, ip(req));
      await sessions.end(active, 'logout');
    }
    reply.clearCookie(COOKIE.session, clearOptions).header('clear-site-data', '"cookies", "storage"');
    return sendPage(reply, 200, pages.messagePage(page, { title: messages.signedOutTitle, message: messages.signedOutTitle, action: { href: config.portal.login.page, label: messages.signInAgain } }));
  });
}

/** Calls the portal's logout with the session's jar so the portal session ends too; failures are only logged. */
async function endPortalSession(ctx: HttpContext, jar: Jar, clientIp: string): Promise<void> {
  const path = ctx.config.portal.logoutPaths[0];
  if (!path) return;
  const cookie = cookieHeader(jar, path, ctx.clock.now());
  await ctx.portal
    .send({ method: 'GET', pathAndQuery: path, headers: { 'x-forwarded-for': clientIp, ...(cookie ? { cookie } : {}) } })
    .catch(() => undefined);
}

function safeHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}
