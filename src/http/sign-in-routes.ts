// The second half of signing in, under the gateway prefix: enrolment proof, first factor, recovery codes, the
// second factor at each sign-in, step-up, and logout.
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cookieHeader, type Jar } from '../domain/cookie-jar.js';
import { isRuleFactor, type RuleFactor } from '../domain/policy.js';
import { loginPageFor, returnTarget, stepUpPage as stepUpAddress } from '../domain/redirect.js';
import { offersMoreTime } from '../domain/session-times.js';
import { GatewayError } from '../errors.js';
import { KNOWN_BROWSER_SECONDS } from '../mechanisms/known-browser.js';
import { qrSvg } from '../mechanisms/qr.js';
import { groupedSecret, totpUri } from '../mechanisms/totp.js';
import type { Refused } from '../services/ceremony.js';
import { OtherStage, type SignedIn } from '../services/pending.js';
import { twinForm } from '../services/second-factor.js';
import type { ActiveSession } from '../services/sessions.js';
import type { PendingLogin, PendingStage } from '../stores/records.js';
import type { MessageKey } from '../ui/i18n.js';
import * as pages from '../ui/pages.js';
import type { HttpContext } from './context.js';
import { CLEAR_SITE_DATA, COOKIE, clearOptions, cookieOptions } from './cookies.js';
import { checkCsrf, checkSameOrigin, clientIp, field, member, noCodeTyped } from './forms.js';
import { pageContext, sendPage, sendPasskeyRefused } from './pages.js';

const PAGE_OF_STAGE: Record<PendingStage, string> = { proof: 'proof', enrol: 'enrol', verify: 'verify', acknowledge: 'recovery-codes' };
// The pages of each stage that offer more time, and where "I need more time" comes back to. None at the recovery
// codes (shown once): that stage begins with its whole time again instead (see recoveryCodesUntil).
const MORE_TIME_PAGES: Record<PendingStage, readonly string[]> = { proof: ['proof'], enrol: ['enrol', 'enrol/totp'], verify: ['verify', 'recovery'], acknowledge: [] };
/** A page as the answer to "I need more time": which page, and whether more was given (see pendingPage). */
interface MoreTimeAnswer {
  here: string;
  asked: 'more' | 'same';
}
// The maxlength of the fields whose value a page is sent back with (see sent): a code from paper's, a factor name's.
const FIELD_LENGTH = { code: 24, name: 60 } as const;
// WebAuthn responses with attestation are larger than a form; still bounded.
const JSON_LIMIT = 64 * 1024;
/** A cookie name (an RFC 9110 token), and what a cookie's value or path may hold in a header: printable ASCII but ';'. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_TEXT = /^[\x20-\x3a\x3c-\x7e]*$/;

export async function signInRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config, pending, enrolment, secondFactor, sessions, ui } = ctx;
  const p = config.server.prefix;
  const pendingId = (req: FastifyRequest) => req.cookies[COOKIE.pending];
  const page = (req: FastifyRequest) => pageContext(ui, req);
  /** A page shown to someone signed in (a step-up, signing out): it links to their sign-in settings. */
  const sessionPage = (req: FastifyRequest) => Object.assign(page(req), { signedIn: true });
  /**
   * A page of a sign-in in progress, which says how long is left to finish it, and offers more time while it can.
   * `moreTime`: the page as the answer to "I need more time" (its path and what the button got), not the request's.
   */
  const pendingPage = (req: FastifyRequest, login: PendingLogin, moreTime?: MoreTimeAnswer) => {
    const c = page(req);
    const now = ctx.clock.now();
    // The page itself: its path, or the path of its form when a form answers with the page again.
    const path = req.url.split('?', 1)[0]!.slice(p.length + 1);
    const here = moreTime?.here ?? (path === 'enrol/proof' ? 'proof' : path);
    const more = MORE_TIME_PAGES[login.stage].includes(here) && offersMoreTime(login, now, config.mfa.pendingTimeoutSeconds * 1000, config.mfa.pendingMaxSeconds * 1000);
    const asked = moreTime?.asked ?? (req.query as Record<string, unknown>).time;
    c.timeLimit = {
      secondsLeft: Math.max(0, Math.ceil((login.expiresAt - now) / 1000)),
      // The recovery codes: the factor and its codes are saved, so the end loses nothing (see TimeLimit).
      ...(login.stage === 'acknowledge' ? { of: 'codes' as const } : {}),
      ...(more ? { moreTime: { csrf: login.csrf, back: here } } : {}),
      ...(asked === 'more' || asked === 'same' ? { asked } : {}),
    };
    return c;
  };
  const wrong = (req: FastifyRequest, r: Refused, key: MessageKey = 'wrongCode') => page(req).t(r.justUsed ? 'codeJustUsed' : key, { left: r.attemptsLeft });
  /** What a form with a code answers: the missing code, or the wrong one. */
  const refusal = (req: FastifyRequest, r: Refused | undefined, key?: MessageKey) => (r ? wrong(req, r, key) : page(req).t('codeMissing'));
  /**
   * What was typed in a field, sent back to its page (a code from paper sent wrong, to correct; a code or a passkey's
   * name, to go on after more time): no longer than the field takes, without the half of a character the cut would
   * leave (shown as U+FFFD).
   */
  const sent = (req: FastifyRequest, name: keyof typeof FIELD_LENGTH) => field(req, name).slice(0, FIELD_LENGTH[name]).replace(/\p{Cs}$/u, '');
  /**
   * The session starts: the pending cookie goes, the session cookie comes (with a known-browser token for the
   * account), and the portal's the browser holds: those its login answer set, and in forward-auth mode all of them.
   */
  const signedIn = async (req: FastifyRequest, reply: FastifyReply, done: SignedIn) => {
    reply
      .clearCookie(COOKIE.pending, clearOptions)
      .setCookie(COOKIE.session, done.token, cookieOptions());
    // Signed in again in a browser that was (as the same person or another): the session its cookie held ends, rather
    // than living on in the store, with its portal cookies, until its idle time. Not when the form sent twice already
    // brought this very cookie.
    const before = req.cookies[COOKIE.session];
    if (before && before !== done.token) {
      await ctx.sessions.endByCookie(before, 'signed-in-again').catch((err: unknown) => void req.log.warn({ err }, 'could not end the session signed in again from'));
    }
    // The session has started: a store that fails now costs the browser its token, not the sign-in.
    const known = await ctx.login.knownBrowserToken(done.pid).catch((err: unknown) => void req.log.warn({ err }, 'could not give a known-browser token'));
    if (known) reply.setCookie(COOKIE.known, known, cookieOptions(KNOWN_BROWSER_SECONDS));
    for (const line of done.browserSetCookies ?? []) reply.header('set-cookie', line);
    if (ctx.browserCookies === 'all') {
      // Written as the portal wrote them (the cookie serializer refuses values a portal may use, a space among them),
      // but only what a header can carry; one its scripts read (an XSRF token) stays readable.
      const now = ctx.clock.now();
      const secure = req.client.proto === 'https' ? '; Secure' : '';
      for (const c of done.jar.filter((x) => x.expiresAt === undefined || x.expiresAt > now)) {
        if (!COOKIE_NAME.test(c.name) || !COOKIE_TEXT.test(c.value) || !COOKIE_TEXT.test(c.path)) {
          // Not under `cookie`, a field the log redacts: the line would not say which cookie.
          req.log.warn({ cookieName: c.name.slice(0, 100) }, 'a portal cookie that cannot be given to the browser');
          continue;
        }
        const maxAge = c.expiresAt === undefined ? '' : `; Max-Age=${Math.floor((c.expiresAt - now) / 1000)}`;
        reply.header('set-cookie', `${c.name}=${c.value}; Path=${c.path}${maxAge}${c.scriptable ? '' : '; HttpOnly'}${secure}; SameSite=Lax`);
      }
    }
  };
  const finished = async (req: FastifyRequest, reply: FastifyReply, done: SignedIn) => {
    await signedIn(req, reply, done);
    return reply.redirect(done.continueTo, 303);
  };
  /**
   * The pending login at `stage`; or, when there is none, the sign-in that a twin of `form` finished it with (the form
   * sent twice: see PendingService.twin). Otherwise the login has expired, as pending.at says.
   */
  const pendingOrTwin = async (req: FastifyRequest, stage: PendingStage, form: string): Promise<{ id: string; p: PendingLogin; twin?: undefined } | { twin: SignedIn }> => {
    try {
      return await pending.at(pendingId(req), stage);
    } catch (err) {
      const twin = err instanceof OtherStage ? null : await pending.twin(pendingId(req), stage, form);
      if (twin) return { twin };
      throw err;
    }
  };
  /** A JSON call from the passkey script: its answer when refused. */
  const refusedJson = (req: FastifyRequest, reply: FastifyReply, r: Refused) => sendPasskeyRefused(reply, page(req), r.attemptsLeft);
  const json = { bodyLimit: JSON_LIMIT, config: { body: 'json' } } as const;

  // Where a browser with a pending login goes next: the page of its stage.
  app.get(`${p}/continue`, async (req, reply) => {
    const stage = await pending.stage(pendingId(req));
    if (!stage) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no pending login');
    return reply.redirect(`${p}/${PAGE_OF_STAGE[stage]}`, 303);
  });

  // More time for a sign-in in progress (WCAG 2.2.1: a button on each of its pages), then back to its page.
  app.post(`${p}/more-time`, async (req, reply) => {
    const stage = await pending.stage(pendingId(req));
    if (!stage) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no pending login');
    const { id, p: login } = await pending.at(pendingId(req), stage);
    checkCsrf(req, login.csrf);
    const expiresAt = await ctx.login.moreTime(id);
    reply.setCookie(COOKIE.pending, id, cookieOptions(Math.ceil((expiresAt - ctx.clock.now()) / 1000)));
    const back = field(req, 'back');
    // `same` says more can be given later: only while it can (not at the latest end, nor at the recovery codes).
    const later = offersMoreTime({ ...login, expiresAt }, ctx.clock.now(), config.mfa.pendingTimeoutSeconds * 1000, config.mfa.pendingMaxSeconds * 1000);
    const asked = expiresAt === login.expiresAt && later ? 'same' : 'more';
    const ownPage = MORE_TIME_PAGES[stage].includes(back);
    // Sent by the button of a page's form with a code field, or with the factor choice's passkey name (see
    // timeWarning): the page itself, with what was typed in its field again, not a redirect (a code goes in no
    // address, and the log would have it).
    const sentWith = (name: string) => ownPage && Object.hasOwn((req.body as object | undefined) ?? {}, name);
    const typed = sentWith('code') ? sent(req, 'code') : undefined;
    const again: MoreTimeAnswer = { here: back, asked };
    const longer = { ...login, expiresAt };
    if (back === 'enrol' && sentWith('name')) return choosePage(req, reply, id, longer, { ...again, typed: sent(req, 'name') });
    if (typed !== undefined && back === 'proof') return proofPage(req, reply, 200, longer, { typed }, again);
    if (typed !== undefined && back === 'enrol/totp') return totpPage(req, reply, 200, longer, { secret: await enrolment.pendingTotpSecret(id, login), typed }, again);
    if (typed !== undefined && back === 'verify') return verifyPage(req, reply, 200, undefined, { ...again, typed });
    if (typed !== undefined && back === 'recovery') return recoveryPage(req, reply, 200, longer, { typed }, again);
    return reply.redirect(`${p}/${ownPage ? back : PAGE_OF_STAGE[stage]}?time=${asked}`, 303);
  });

  // 1. The enrolment proof: an invitation code, or a code sent through the portal's own channel.
  const proofMode = config.enrolment.proof === 'webhook' ? 'webhook' : 'invite';
  /** The proof page; `v`: the code sent, with its error (or with more time, `again`). */
  const proofPage = (req: FastifyRequest, reply: FastifyReply, status: number, login: PendingLogin, v: { error?: string; typed?: string } = {}, again?: MoreTimeAnswer) => {
    const c = pendingPage(req, login, again);
    const sent = proofMode === 'webhook' && login.proofCode ? { minutes: config.enrolment.webhook?.codeMinutes ?? 10 } : undefined;
    return sendPage(reply, status, c, pages.proofPage(c, { csrf: login.csrf, mode: proofMode, ...v, ...(sent ? { sent } : {}) }));
  };
  app.get(`${p}/proof`, async (req, reply) => {
    const { p: login } = await pending.at(pendingId(req), 'proof');
    return proofPage(req, reply, 200, login);
  });
  app.post(`${p}/enrol/proof/send`, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'proof');
    checkCsrf(req, login.csrf);
    if (proofMode !== 'webhook') throw new GatewayError('GW_ERR_NOT_FOUND', 'codes are not sent in this mode');
    const delivered = await enrolment.sendProofCode(id, login, clientIp(req));
    if (!delivered) throw new GatewayError('GW_ERR_CODE_NOT_SENT', 'enrolment webhook did not accept the code');
    return reply.redirect(`${p}/proof`, 303);
  });
  app.post(`${p}/enrol/proof`, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'proof');
    checkCsrf(req, login.csrf);
    const result = noCodeTyped(req) ? undefined : await enrolment.confirmProof(id, login, field(req, 'code'), clientIp(req));
    if (result?.ok) return reply.redirect(`${p}/enrol`, 303);
    return proofPage(req, reply, 400, login, { error: refusal(req, result, 'proofWrong'), typed: sent(req, 'code') });
  });

  // 2. The first factor: a passkey, or an authenticator app (works without JavaScript).
  const enrolPasskey = (csrf: string): pages.PasskeyAction => ({
    ceremony: 'register',
    optionsUrl: `${p}/enrol/passkey/options`,
    finishUrl: `${p}/enrol/passkey`,
    csrf,
    label: 'passkeyCreate',
    nameField: true,
    // Opened again by its own address: the page may be the answer to "I need more time", at one that takes only POST.
    page: `${p}/enrol`,
  });
  /** The factor choice; `again`: the answer to "I need more time", with the passkey's name typed. */
  const choosePage = async (req: FastifyRequest, reply: FastifyReply, id: string, login: PendingLogin, again?: MoreTimeAnswer & { typed: string }) => {
    // The factor this sign-in bound, its answer lost (a passkey cannot be made again on the same device): go on.
    if (await enrolment.resumeEnrolment(id, login, clientIp(req))) return reply.redirect(`${p}/recovery-codes`, 303);
    const c = pendingPage(req, login, again);
    return sendPage(reply, 200, c, pages.choosePage(c, { csrf: login.csrf, passkey: enrolPasskey(login.csrf), ...(again ? { typed: again.typed } : {}) }));
  };
  app.get(`${p}/enrol`, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'enrol');
    return choosePage(req, reply, id, login);
  });
  const totpPage = async (req: FastifyRequest, reply: FastifyReply, status: number, login: PendingLogin, v: { secret: string; error?: string; typed?: string }, again?: MoreTimeAnswer) => {
    const uri = totpUri({ issuer: config.mfa.issuer ?? config.portal.name, account: login.username, secret: v.secret });
    const c = pendingPage(req, login, again);
    return sendPage(reply, status, c, pages.totpSetupPage(c, { action: '/enrol/totp', csrf: login.csrf, qrSvg: await qrSvg(uri), uri, groupedSecret: groupedSecret(v.secret), nameField: false, ...(v.error ? { error: v.error } : {}), ...(v.typed !== undefined ? { typed: v.typed } : {}) }));
  };
  app.get(`${p}/enrol/totp`, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'enrol');
    if (await enrolment.resumeEnrolment(id, login, clientIp(req))) return reply.redirect(`${p}/recovery-codes`, 303);
    const secret = await enrolment.pendingTotpSecret(id, login);
    return totpPage(req, reply, 200, login, { secret });
  });
  app.post(`${p}/enrol/totp`, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'enrol');
    checkCsrf(req, login.csrf);
    const result = noCodeTyped(req) ? undefined : await enrolment.confirmPendingTotp(id, login, field(req, 'code'), page(req).t('totpDefaultName'), clientIp(req));
    if (result?.ok) return reply.redirect(`${p}/recovery-codes`, 303);
    // The form sent twice: the other submission enrolled with the code (used up for this one); both go on.
    if ((await pending.stage(id)) === 'acknowledge') return reply.redirect(`${p}/recovery-codes`, 303);
    // The page's key, or a new one for a form sent before the page was ever shown (no code typed: nothing was checked).
    return totpPage(req, reply, 400, login, { secret: await enrolment.pendingTotpSecret(id, login), error: refusal(req, result) });
  });
  app.post(`${p}/enrol/passkey/options`, json, async (req) => {
    const { id, p: login } = await pending.at(pendingId(req), 'enrol');
    checkCsrf(req, login.csrf);
    return enrolment.pendingPasskeyOptions(id, login, clientIp(req));
  });
  app.post(`${p}/enrol/passkey`, json, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'enrol');
    checkCsrf(req, login.csrf);
    const name = typeof member(req, 'name') === 'string' ? (member(req, 'name') as string) : '';
    const result = await enrolment.confirmPendingPasskey(id, login, member(req, 'credential'), name || page(req).t('passkeyDefaultName'), clientIp(req));
    if (!result.ok) return sendPasskeyRefused(reply, page(req));
    return { next: `${p}/recovery-codes` };
  });

  // 3. Recovery codes: shown once (taken from the pending login as they are shown), then acknowledged.
  app.get(`${p}/recovery-codes`, async (req, reply) => {
    // Their one showing is not used up by another site (a window it opens and closes at once).
    checkSameOrigin(req);
    const { id, p: login } = await pending.at(pendingId(req), 'acknowledge');
    // HEAD (a prefetch, a link checker) shows nothing, so it takes nothing.
    const codes = req.method === 'HEAD' ? [] : await pending.takeRecoveryCodes(id, login);
    // The login got its whole time again at this stage: the pending cookie (set for the first time limit) lives as long.
    reply.setCookie(COOKIE.pending, id, cookieOptions(Math.ceil((login.expiresAt - ctx.clock.now()) / 1000)));
    const c = pendingPage(req, login);
    return sendPage(reply, 200, c, pages.recoveryCodesPage(c, { codes, csrf: login.csrf, action: '/recovery-codes' }));
  });
  app.post(`${p}/recovery-codes`, async (req, reply) => {
    const form = twinForm(field(req, 'csrf'), field(req, 'saved'));
    const at = await pendingOrTwin(req, 'acknowledge', form);
    if (at.twin) return finished(req, reply, at.twin);
    const { id, p: login } = at;
    checkCsrf(req, login.csrf);
    // The codes are never shown again; the person confirms they kept them before the portal opens.
    if (field(req, 'saved') !== 'yes') {
      const c = pendingPage(req, login);
      return sendPage(reply, 400, c, pages.recoveryCodesPage(c, { codes: [], csrf: login.csrf, action: '/recovery-codes', error: c.t('recoveryAckRequired') }));
    }
    return finished(req, reply, await pending.finish(id, 'acknowledge', clientIp(req), undefined, form));
  });

  // 4. Every later sign-in: a passkey, the authenticator app, or a recovery code.
  /** `again`: the answer to "I need more time", with the code typed (read anew, the login has its new end). */
  const verifyPage = async (req: FastifyRequest, reply: FastifyReply, status: number, error?: string, again?: MoreTimeAnswer & { typed: string }) => {
    const { p: login } = await pending.at(pendingId(req), 'verify');
    const kinds = await secondFactor.kindsOf(login.pid);
    const c = pendingPage(req, login, again);
    // `page`: opened again by its script, the page is this one, also where the form's answer (more time) has another address.
    const passkey: pages.PasskeyAction | undefined = kinds.webauthn
      ? { ceremony: 'authenticate', optionsUrl: `${p}/verify/passkey/options`, finishUrl: `${p}/verify/passkey`, csrf: login.csrf, label: 'verifyPasskey', page: `${p}/verify` }
      : undefined;
    const note = lockedNote(kinds.locked.length > 0, kinds.totp || kinds.webauthn || kinds.recovery);
    return sendPage(reply, status, c, pages.verifyPage(c, { title: 'verifyTitle', action: '/verify', csrf: login.csrf, totp: kinds.totp, recoveryLink: kinds.recovery, ...(passkey ? { passkey } : {}), ...(error ? { error } : {}), ...(note ? { note } : {}), ...(again ? { typed: again.typed } : {}) }));
  };
  app.get(`${p}/verify`, (req, reply) => verifyPage(req, reply, 200));
  app.post(`${p}/verify`, async (req, reply) => {
    const form = twinForm(field(req, 'csrf'), field(req, 'code'));
    const at = await pendingOrTwin(req, 'verify', form);
    if (at.twin) return finished(req, reply, at.twin);
    const { id, p: login } = at;
    checkCsrf(req, login.csrf);
    const result = noCodeTyped(req) ? undefined : await secondFactor.verifyTotp(id, login, field(req, 'code'), clientIp(req));
    if (result?.ok) return finished(req, reply, result);
    // Refused as the code was just used, by this same form sent a moment before: that one's sign-in.
    const twin = result && (await pending.twin(id, 'verify', form));
    return twin ? finished(req, reply, twin) : verifyPage(req, reply, 400, refusal(req, result));
  });
  app.post(`${p}/verify/passkey/options`, json, async (req) => {
    const { id, p: login } = await pending.at(pendingId(req), 'verify');
    checkCsrf(req, login.csrf);
    return secondFactor.pendingPasskeyOptions(id, login, clientIp(req));
  });
  app.post(`${p}/verify/passkey`, json, async (req, reply) => {
    const { id, p: login } = await pending.at(pendingId(req), 'verify');
    checkCsrf(req, login.csrf);
    const result = await secondFactor.verifyPasskey(id, login, member(req, 'credential'), clientIp(req));
    if (!result.ok) return refusedJson(req, reply, result);
    await signedIn(req, reply, result);
    return { next: result.continueTo };
  });
  const recoveryPage = (req: FastifyRequest, reply: FastifyReply, status: number, login: PendingLogin, v: { error?: string; typed?: string } = {}, again?: MoreTimeAnswer) => {
    const c = pendingPage(req, login, again);
    return sendPage(reply, status, c, pages.recoveryPage(c, { csrf: login.csrf, ...v }));
  };
  app.get(`${p}/recovery`, async (req, reply) => {
    const { p: login } = await pending.at(pendingId(req), 'verify');
    return recoveryPage(req, reply, 200, login);
  });
  app.post(`${p}/recovery`, async (req, reply) => {
    const form = twinForm(field(req, 'csrf'), field(req, 'code'));
    const at = await pendingOrTwin(req, 'verify', form);
    if (at.twin) return finished(req, reply, at.twin);
    const { id, p: login } = at;
    checkCsrf(req, login.csrf);
    const result = noCodeTyped(req) ? undefined : await secondFactor.verifyRecoveryCode(id, login, field(req, 'code'), clientIp(req));
    if (result?.ok) return finished(req, reply, result);
    const twin = result && (await pending.twin(id, 'verify', form));
    if (twin) return finished(req, reply, twin);
    return recoveryPage(req, reply, 400, login, { error: refusal(req, result), typed: sent(req, 'code') });
  });

  // 5. Step-up: a signed-in person confirms a second factor again, then goes back to where they were going.
  const session = async (req: FastifyRequest): Promise<ActiveSession> => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'no session');
    return active;
  };
  const backTo = (value: string) => (value ? returnTarget(value, config) : undefined);
  /** The kinds of factor the step-up is for (its rule's, carried by the page's address or its form); none: any. */
  const wantedOf = (req: FastifyRequest) => String((req.query as Record<string, unknown>).factors ?? field(req, 'factors')).split(',').filter(isRuleFactor);
  const stepUpPage = async (req: FastifyRequest, reply: FastifyReply, active: ActiveSession, status: number, to: string | undefined, wanted: RuleFactor[], error?: string) => {
    const kinds = await secondFactor.kindsOf(active.record.pid);
    const takes = (kind: RuleFactor) => wanted.length === 0 || wanted.includes(kind);
    const totp = kinds.totp && takes('totp');
    // A rule that takes only passkeys that cannot leave their device: only those are offered.
    const deviceBoundOnly = !takes('webauthn') && takes('device-bound-passkey');
    const lockedHere = kinds.locked.some((kind) => (kind === 'totp' ? takes('totp') : kind === 'webauthn' && (takes('webauthn') || takes('device-bound-passkey'))));
    const c = sessionPage(req);
    const toParam = to ? `?to=${encodeURIComponent(to)}` : '';
    const passkey: pages.PasskeyAction | undefined =
      (deviceBoundOnly ? kinds.deviceBoundPasskey : takes('webauthn') && kinds.webauthn)
        ? {
            ceremony: 'authenticate',
            optionsUrl: `${p}/step-up/passkey/options${deviceBoundOnly ? '?only=device-bound' : ''}`,
            finishUrl: `${p}/step-up/passkey${toParam}`,
            csrf: active.record.csrf,
            label: 'verifyPasskey',
            // Also after a wrong code (the form's address): opened again, the page keeps its way back and the kinds it offers.
            page: stepUpAddress(p, to, wanted),
          }
        : undefined;
    return sendPage(
      reply,
      status,
      c,
      pages.verifyPage(c, {
        title: 'stepUpTitle',
        intro: 'stepUpIntro',
        action: '/step-up',
        submit: 'stepUpSubmit',
        csrf: active.record.csrf,
        totp,
        recoveryLink: false,
        ...(to ? { to } : {}),
        // Sent back with the form, so that a wrong code's answer offers only what the rule accepts.
        ...(wanted.length ? { factors: wanted.join(',') } : {}),
        ...(passkey ? { passkey } : {}),
        ...(error ? { error } : {}),
        // A rule asking for a kind of factor the user does not have: say which, and how to get one; one the user has
        // but that is disabled: that the help desk turns it back on.
        ...(lockedHere || (!totp && !passkey) ? { note: lockedNote(lockedHere, totp || Boolean(passkey)) ?? stepUpNote(wanted) } : {}),
        // Recovery codes do not step up; a new sign-in with one does, where the rule takes any factor.
        ...(active.record.factor === 'recovery' && kinds.recovery && (wanted.length === 0 || wanted.includes('recovery')) ? { recoverySignOut: true } : {}),
      }),
    );
  };
  app.get(`${p}/step-up`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    const to = backTo(String((req.query as Record<string, unknown>).to ?? ''));
    // Signed out meanwhile (the session idle on this page): a new sign-in goes on to the page the step-up was for.
    if (!active) return reply.redirect(loginPageFor(config.portal.login.page, to), 302);
    return stepUpPage(req, reply, active, 200, to, wantedOf(req));
  });
  const steppedUp = (req: FastifyRequest, reply: FastifyReply, token: string, to: string | undefined) => {
    reply.setCookie(COOKIE.session, token, cookieOptions());
    if (to) return reply.redirect(to, 303);
    const c = sessionPage(req);
    return sendPage(reply, 200, c, pages.messagePage(c, { title: 'stepUpDoneTitle', message: c.t('stepUpDone'), action: { href: '/', label: 'backToPortal' } }));
  };
  app.post(`${p}/step-up`, async (req, reply) => {
    const cookie = req.cookies[COOKIE.session];
    // Every field is read before the code is checked: one that is not one text value is refused before it uses a try.
    const form = twinForm(field(req, 'csrf'), field(req, 'code'));
    const to = backTo(field(req, 'to'));
    const wanted = wantedOf(req);
    const active = await sessions.authenticate(cookie);
    if (!active) {
      // The same form sent a moment before moved this session to a new id (a second tap): that one's step-up.
      const twin = await sessions.twin(cookie, form);
      // Signed out meanwhile (the session idle on this page): a new sign-in goes on to the page the step-up was for.
      if (!twin) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'no session', { next: to ?? '/' });
      return steppedUp(req, reply, twin, to);
    }
    checkCsrf(req, active.record.csrf);
    const result = noCodeTyped(req) ? undefined : await secondFactor.stepUpTotp(active, field(req, 'code'), clientIp(req));
    if (result?.ok) return steppedUp(req, reply, result.token, to);
    // Refused as the code was just used, by this same form sent a moment before: that one's step-up.
    const twin = result && (await sessions.twin(cookie, form));
    return twin ? steppedUp(req, reply, twin, to) : stepUpPage(req, reply, active, 400, to, wanted, refusal(req, result));
  });
  app.post(`${p}/step-up/passkey/options`, json, async (req) => {
    const active = await session(req);
    checkCsrf(req, active.record.csrf);
    return secondFactor.stepUpPasskeyOptions(active, (req.query as Record<string, unknown>).only === 'device-bound', clientIp(req));
  });
  app.post(`${p}/step-up/passkey`, json, async (req, reply) => {
    const active = await session(req);
    checkCsrf(req, active.record.csrf);
    const result = await secondFactor.stepUpPasskey(active, member(req, 'credential'), clientIp(req));
    if (!result.ok) return refusedJson(req, reply, result);
    reply.setCookie(COOKIE.session, result.token, cookieOptions());
    return { next: backTo(String((req.query as Record<string, unknown>).to ?? '')) ?? '/' };
  });

  // 6. Signing out: the gateway session and the portal's.
  app.get(`${p}/logout`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) return reply.redirect(loginPageFor(config.portal.login.page), 302);
    const c = sessionPage(req);
    return sendPage(reply, 200, c, pages.logoutPage(c, { csrf: active.record.csrf }));
  });
  app.post(`${p}/logout`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]).catch((err: unknown) => {
      // The store is down: the session cannot be ended now (it runs out at its idle timeout), but this browser
      // forgets it (a shared computer); the answer says it did not work.
      if (err instanceof GatewayError && err.code === 'GW_ERR_STORE_UNAVAILABLE') reply.clearCookie(COOKIE.session, clearOptions);
      throw err;
    });
    if (active) checkCsrf(req, active.record.csrf);
    // The browser forgets the session also when ending it fails (the store gone mid-way: the error page carries
    // this), as it does when the store was down from the start.
    reply.clearCookie(COOKIE.session, clearOptions).header('clear-site-data', CLEAR_SITE_DATA);
    if (active) {
      // The gateway session ends first, so it ends even when the portal is slow or does not answer.
      await sessions.end(active, 'logout');
      await endPortalSession(ctx, active.record.jar, clientIp(req), req.log);
    } else {
      // A step-up in another tab that took the session a moment ago ends with it.
      await sessions.endByCookie(req.cookies[COOKIE.session], 'logout');
    }
    const c = page(req);
    return sendPage(reply, 200, c, pages.messagePage(c, { title: 'signedOutTitle', action: { href: loginPageFor(config.portal.login.page), label: 'signInAgain' } }));
  });
}

/** Calls the portal's logout with the session's jar so the portal session ends too; failures are only logged. */
async function endPortalSession(ctx: HttpContext, jar: Jar, clientIp: string, log: FastifyBaseLogger): Promise<void> {
  const path = ctx.config.portal.logoutPaths[0];
  if (!path) return;
  const cookie = cookieHeader(jar, path, ctx.clock.now());
  await ctx.portal
    .send({ method: 'GET', pathAndQuery: path, headers: { 'x-forwarded-for': clientIp, ...(cookie ? { cookie } : {}) } })
    .catch((err: unknown) => log.warn({ err }, 'could not end the portal session'));
}

/** What a page of second factors says when some the user has are disabled after too many failures (not offered). */
function lockedNote(locked: boolean, othersOffered: boolean): MessageKey | undefined {
  if (!locked) return undefined;
  return othersOffered ? 'factorLocked' : 'allFactorsLocked';
}

/** What the step-up page says when the user has no factor the rule takes. */
function stepUpNote(wanted: readonly string[]): MessageKey {
  if (wanted.includes('webauthn')) return 'stepUpOtherFactor';
  if (wanted.includes('device-bound-passkey')) return wanted.includes('totp') ? 'stepUpNeedsTotpOrDeviceBound' : 'stepUpNeedsDeviceBound';
  return wanted.includes('totp') ? 'stepUpNeedsTotp' : 'stepUpOtherFactor';
}
