// The security page under the gateway prefix: the user's factors, adding and removing them, recovery codes,
// signing out other devices. Every change needs a second factor in the last 5 minutes and the session's CSRF token.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decodeKey } from '../config/load.js';
import { loginPageFor, stepUpPage } from '../domain/redirect.js';
import { GatewayError } from '../errors.js';
import { keptMarks } from '../mechanisms/kept-mark.js';
import { qrSvg } from '../mechanisms/qr.js';
import { codesLeft } from '../mechanisms/recovery-codes.js';
import { groupedSecret, totpUri } from '../mechanisms/totp.js';
import { isDeviceBound } from '../mechanisms/webauthn.js';
import { factorName } from '../services/enrolment.js';
import { CHANGE_WINDOW_MS, recoverySetOf } from '../services/factors.js';
import { twinForm } from '../services/second-factor.js';
import type { ActiveSession } from '../services/sessions.js';
import { deviceBound, removable, usable } from '../stores/factor-store.js';
import type { MessageKey } from '../ui/i18n.js';
import * as pages from '../ui/pages.js';
import type { HttpContext } from './context.js';
import { COOKIE } from './cookies.js';
import { checkCsrf, clientIp, field, member, noCodeTyped } from './forms.js';
import { pageContext, sendPage, sendPasskeyRefused } from './pages.js';

const NOTICES = new Map<string, MessageKey>([
  ['done', 'securityDone'],
  ['signed-out', 'securitySignedOutOthers'],
  ['codes-kept', 'securityCodesKept'],
  ['name-empty', 'securityNameEmpty'],
]);
// A passkey's answer, with its attestation, is larger than a form; still bounded.
const json = { bodyLimit: 64 * 1024, config: { body: 'json' } } as const;

export async function securityRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config, sessions, factors, enrolment, ui, clock } = ctx;
  const p = config.server.prefix;
  // Every page here is shown to someone signed in (see forPage, forChange).
  const page = (req: FastifyRequest) => Object.assign(pageContext(ui, req), { signedIn: true });
  const recent = (active: ActiveSession) => clock.now() - active.record.factorTime <= CHANGE_WINDOW_MS;
  /** A page that makes changes: it says how long they can be made without a step-up, and warns before the end (WCAG 2.2.1). */
  const changePage = (req: FastifyRequest, active: ActiveSession) =>
    Object.assign(page(req), { timeLimit: { of: 'changes' as const, secondsLeft: Math.max(0, Math.ceil((active.record.factorTime + CHANGE_WINDOW_MS - clock.now()) / 1000)) } });
  const query = (req: FastifyRequest, name: string) => String((req.query as Record<string, unknown>)[name] ?? '');
  /**
   * What a change sent after the time for changes keeps for its page (see forChange) is marked as the gateway's own,
   * for this session (`kept`, a MAC over it): a link from elsewhere with the same query fills in nothing and says
   * nothing is kept. Tied to the sign-in (its pid and time), not to the form token, which the step-up in between
   * replaces. A passkey's name is not in it: the page's script adds the name (see passkeyButton). Keyed from the first
   * signing key (see keptMarks).
   */
  const marks = keptMarks(decodeKey(config.keys.signing[0]!.secret));
  const keptMark = (active: ActiveSession, ...what: string[]) => marks.mark([active.record.pid, active.record.authTime, ...what]);
  const isKept = (req: FastifyRequest, active: ActiveSession, ...what: string[]) => marks.isMark(query(req, 'kept'), [active.record.pid, active.record.authTime, ...what]);

  /**
   * The signed-in session, for a page (GET: signed out → the login page; factor too old → step-up and back, to the
   * page without its query, a notice shown already, unless `keepQuery`) or for a change (POST: CSRF, then a recent
   * factor or GW_ERR_STEP_UP_REQUIRED, whose step-up comes back to `again`: the form's page, with what was typed in
   * it, to send again (WCAG 2.2.5); by default the settings).
   */
  const forPage = async (req: FastifyRequest, reply: FastifyReply, keepQuery = false): Promise<ActiveSession | null> => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) {
      // Back to the page after the sign-in, without its query: what it kept (a name typed, see forChange) is for this
      // session only, and would reach the portal in a login page's {target}.
      void reply.redirect(loginPageFor(config.portal.login.page, req.url.split('?', 1)[0]!), 302);
      return null;
    }
    if (!recent(active)) {
      void reply.redirect(stepUpPage(p, keepQuery ? req.url : req.url.split('?', 1)[0]!, []), 303);
      return null;
    }
    return active;
  };
  const forChange = async (req: FastifyRequest, again = (_active: ActiveSession) => `${p}/security`): Promise<ActiveSession> => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    // Signed out meanwhile: a new sign-in comes back to this page.
    if (!active) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'no session', { next: `${p}/security` });
    checkCsrf(req, active.record.csrf);
    if (!recent(active)) throw new GatewayError('GW_ERR_STEP_UP_REQUIRED', 'change needs a recent second factor', { next: again(active) });
    return active;
  };
  const done = (reply: FastifyReply, notice = 'done') => reply.redirect(`${p}/security?notice=${notice}`, 303);

  app.get(`${p}/security`, async (req, reply) => {
    // Kept across the step-up a reload after the time for changes asks for, as the other pages keep theirs.
    const active = await forPage(req, reply, query(req, 'kept') !== '');
    if (!active) return reply;
    const mine = await factors.list(active.record.pid);
    // A new name sent after the time for changes, back from its step-up (see forChange): in its field again.
    const [id, name] = [query(req, 'rename'), query(req, 'name')];
    const kept = mine.factors.some((f) => f.id === id) && isKept(req, active, 'rename', id, name) ? { factor: id, name } : undefined;
    const notice = kept ? 'securityKept' : NOTICES.get(query(req, 'notice'));
    const c = changePage(req, active);
    return sendPage(
      reply,
      200,
      c,
      pages.securityPage(c, {
        csrf: active.record.csrf,
        factors: mine.factors.map((f) => ({
          id: f.id,
          kind: f.kind === 'webauthn' && isDeviceBound(f.credential) ? (deviceBound(f) ? 'device-bound-passkey' : 'key-without-proof') : f.kind,
          name: f.name,
          addedAt: f.addedAt,
          ...(f.lastUsedAt ? { lastUsedAt: f.lastUsedAt } : {}),
          ...(usable(f) ? {} : { suspect: true }),
          ...(mine.disabled.has(f.kind) ? { disabled: true } : {}),
          removable: removable(mine.factors, f.id, mine.disabled),
        })),
        recoveryLeft: mine.recovery ? codesLeft(mine.recovery) : 0,
        ...(mine.disabled.has('recovery') ? { recoveryDisabled: true } : {}),
        recoverySet: recoverySetOf(mine),
        ...(notice ? { notice } : {}),
        ...(kept ? { kept } : {}),
      }),
    );
  });

  app.post(`${p}/security/rename`, async (req, reply) => {
    const [id, name] = [() => field(req, 'factor'), () => field(req, 'name')];
    const active = await forChange(req, (a) => `${p}/security?rename=${encodeURIComponent(id())}&name=${encodeURIComponent(name())}&kept=${keptMark(a, 'rename', id(), name())}`);
    // A name of spaces alone (or of characters a name leaves out) would keep the old one: said so, not "saved".
    if (!factorName(name(), '')) return done(reply, 'name-empty');
    await factors.rename(active, id(), name(), clientIp(req));
    return done(reply);
  });
  app.get(`${p}/security/remove`, async (req, reply) => {
    const active = await forPage(req, reply, true);
    if (!active) return reply;
    const id = String((req.query as Record<string, unknown>).factor ?? '');
    const mine = await factors.list(active.record.pid);
    const factor = mine.factors.find((f) => f.id === id);
    // Gone already, or the last that works (removed in another tab meanwhile): the settings, which say so.
    if (!factor || !removable(mine.factors, id, mine.disabled)) return reply.redirect(`${p}/security`, 303);
    const c = changePage(req, active);
    return sendPage(reply, 200, c, pages.removeFactorPage(c, { csrf: active.record.csrf, factor: { id: factor.id, name: factor.name } }));
  });
  app.post(`${p}/security/remove`, async (req, reply) => {
    const active = await forChange(req, () => `${p}/security/remove?factor=${encodeURIComponent(field(req, 'factor'))}`);
    await factors.remove(active, field(req, 'factor'), clientIp(req));
    return done(reply);
  });
  app.post(`${p}/security/sign-out-others`, async (req, reply) => {
    const active = await forChange(req);
    await factors.signOutOthers(active, clientIp(req));
    return done(reply, 'signed-out');
  });
  // New recovery codes, asked first (as a removal): the settings' button opens the question, for the set they showed.
  app.get(`${p}/security/recovery-codes`, async (req, reply) => {
    const active = await forPage(req, reply, true);
    if (!active) return reply;
    const replaces = Object.hasOwn((req.query as object | undefined) ?? {}, 'replaces') ? query(req, 'replaces') : recoverySetOf(await factors.list(active.record.pid));
    const c = changePage(req, active);
    return sendPage(reply, 200, c, pages.newRecoveryCodesPage(c, { csrf: active.record.csrf, replaces }));
  });
  app.post(`${p}/security/recovery-codes`, async (req, reply) => {
    // The set the page offered to replace (a page from before this field existed sends none: no check).
    const replaces = Object.hasOwn((req.body as object | undefined) ?? {}, 'replaces') ? field(req, 'replaces') : undefined;
    // Sent late: the step-up comes back to the question, for the same set.
    const active = await forChange(req, () => `${p}/security/recovery-codes${replaces === undefined ? '' : `?replaces=${encodeURIComponent(replaces)}`}`);
    const codes = await factors.newRecoveryCodes(active, replaces, clientIp(req), twinForm(field(req, 'csrf'), replaces ?? ''));
    // The form was sent again (Back, then resend): the set it meant to replace is gone already; the codes just
    // printed stay the ones that work.
    if (!codes) return done(reply, 'codes-kept');
    const c = page(req);
    return sendPage(reply, 200, c, pages.recoveryCodesPage(c, { codes, csrf: active.record.csrf, action: '/security/recovery-codes/saved' }));
  });
  app.post(`${p}/security/recovery-codes/saved`, async (req, reply) => {
    const active = await sessions.authenticate(req.cookies[COOKIE.session]);
    if (!active) throw new GatewayError('GW_ERR_SIGN_IN_REQUIRED', 'no session');
    checkCsrf(req, active.record.csrf);
    // As at enrolment: the new codes are never shown again, so the person confirms they kept them.
    if (field(req, 'saved') !== 'yes') {
      const c = page(req);
      return sendPage(reply, 400, c, pages.recoveryCodesPage(c, { codes: [], csrf: active.record.csrf, action: '/security/recovery-codes/saved', error: c.t('recoveryAckRequired') }));
    }
    return done(reply);
  });

  // Adding an authenticator app: a new secret, confirmed by its first code.
  // `kept`: the name sent after the time for changes, back from its step-up (see forChange), shown as typed (also
  // empty); the code is typed anew.
  const totpPage = async (req: FastifyRequest, reply: FastifyReply, active: ActiveSession, status: number, error?: string, name?: string, kept = false) => {
    const { secret, made } = await enrolment.sessionTotpSecret(active);
    const uri = totpUri({ issuer: config.mfa.issuer ?? config.portal.name, account: active.record.username, secret });
    const c = changePage(req, active);
    return sendPage(
      reply,
      status,
      c,
      pages.totpSetupPage(c, {
        action: '/security/totp',
        csrf: active.record.csrf,
        qrSvg: await qrSvg(uri),
        uri,
        groupedSecret: groupedSecret(secret),
        nameField: true,
        // A set-up made now (the one sent was over): its key is not in the app yet.
        ...(kept ? { kept: made ? ('new' as const) : ('same' as const) } : {}),
        ...(error ? { error } : {}),
        ...(name || kept ? { name } : {}),
      }),
    );
  };
  app.get(`${p}/security/totp`, async (req, reply) => {
    const active = await forPage(req, reply, true);
    if (!active) return reply;
    const name = query(req, 'name');
    const kept = isKept(req, active, 'totp', name);
    return totpPage(req, reply, active, 200, undefined, kept ? name : undefined, kept);
  });
  app.post(`${p}/security/totp`, async (req, reply) => {
    const active = await forChange(req, (a) => `${p}/security/totp?name=${encodeURIComponent(field(req, 'name'))}&kept=${keptMark(a, 'totp', field(req, 'name'))}`);
    const ip = clientIp(req);
    const result = noCodeTyped(req) ? undefined : await enrolment.confirmSessionTotp(active, field(req, 'code'), field(req, 'name') || page(req).t('totpDefaultName'), ip);
    // No set-up left to confirm (added already, or expired): the settings, which list the apps there are.
    if (result === null) return reply.redirect(`${p}/security`, 303);
    if (!result?.ok) return totpPage(req, reply, active, 400, result ? page(req).t('wrongCode', { left: result.attemptsLeft }) : page(req).t('codeMissing'), field(req, 'name'));
    await factors.afterChange(active, ip);
    return done(reply);
  });

  // Adding a passkey or security key.
  // Its script opens it again, with the name typed and the page's mark (`keep`, see keptMark), when a call is refused
  // as too late (see forChange).
  app.get(`${p}/security/passkey`, async (req, reply) => {
    const active = await forPage(req, reply, true);
    if (!active) return reply;
    const kept = isKept(req, active, 'passkey');
    const c = changePage(req, active);
    return sendPage(
      reply,
      200,
      c,
      pages.passkeySetupPage(c, {
        passkey: {
          ceremony: 'register',
          optionsUrl: `${p}/security/passkey/options`,
          finishUrl: `${p}/security/passkey`,
          csrf: active.record.csrf,
          label: 'passkeyCreate',
          nameField: true,
          keep: keptMark(active, 'passkey'),
          ...(kept ? { name: query(req, 'name') } : {}),
        },
        kept,
      }),
    );
  });
  app.post(`${p}/security/passkey/options`, json, async (req) => {
    const active = await forChange(req);
    return enrolment.sessionPasskeyOptions(active, clientIp(req));
  });
  app.post(`${p}/security/passkey`, json, async (req, reply) => {
    const active = await forChange(req);
    const ip = clientIp(req);
    const name = typeof member(req, 'name') === 'string' ? (member(req, 'name') as string) : '';
    const result = await enrolment.confirmSessionPasskey(active, member(req, 'credential'), name || page(req).t('passkeyDefaultName'), ip);
    if (!result.ok) return sendPasskeyRefused(reply, page(req));
    await factors.afterChange(active, ip);
    return { next: `${p}/security?notice=done` };
  });
}
