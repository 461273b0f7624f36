// The intercepted password login: replay to the portal with the browser's jar, decide, hold the portal session.
import { isUtf8 } from 'node:buffer';
import { createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { pathAndQuery } from '../domain/canonical-path.js';
import { applySetCookies, cookieHeader, cookieName, cookieValues, portalCookieIds, portalSessionDigest, setCookieNames, withExplicitPath, type BrowserCookies, type Jar } from '../domain/cookie-jar.js';
import { browserSetCookies, upstreamRequestHeaders } from '../domain/headers.js';
import { loginFields, namedLikeAUsername, queryFields, queryWrapsLoginField, sameFieldName, usernameFields } from '../domain/legacy-auth.js';
import { answerMatches, type PortalAnswer } from '../domain/login-success.js';
import { followedLocation, headerUrl, returnTarget } from '../domain/redirect.js';
import { moreTimeUntil } from '../domain/session-times.js';
import { accountNames, canonicalUsername, type UsernameCase } from '../domain/username.js';
import { GatewayError } from '../errors.js';
import { KNOWN_BROWSER_SECONDS, knownBrowserId, knownBrowserToken } from '../mechanisms/known-browser.js';
import type { SigningKey } from '../mechanisms/session-token.js';
import { ID_PATTERN, newId, pseudonym } from '../mechanisms/random.js';
import type { FactorStore } from '../stores/factor-store.js';
import type { KvStore } from '../stores/kv-store.js';
import { keys } from '../stores/keys.js';
import type { BrowserJars, PendingLogin, PendingLogins, PendingStage } from '../stores/records.js';
import { bodyText, type PortalClient, type PortalRequest, type PortalResponse } from '../upstream/portal-client.js';
import { groupsFromHeader } from './groups.js';
import type { AccountAdmission, Admission, LoginLimits } from './login-limits.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';

export interface LoginRequest {
  browserId: string;
  /** The Content-Type as checked (loginContentType): what the portal gets. */
  contentType: string;
  method: string;
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  /** Reads the body (bounded); called only once the client's address is admitted. */
  body: () => Promise<Buffer>;
  /** The client's address for limits (null: a trusted proxy passed one that cannot be read). */
  clientIp: string | null;
  /** What the portal gets as X-Forwarded-For. */
  forwardedFor: string;
  proto: 'http' | 'https';
  /** The browser's pending login, if it has one: a new password step replaces it. */
  replacesPending: string | undefined;
  /** The browser's known-browser token, if it has one (mechanisms/known-browser.ts). */
  knownBrowser: string | undefined;
}

export type LoginOutcome =
  | { kind: 'failed'; portal: PortalResponse }
  | { kind: 'accepted'; pendingId: string; stage: PendingStage };

/**
 * The login of one browser on its way to the portal (`token`: which one; `form`: a MAC of what it sent), then
 * (`done`) its outcome: the pending login it made, if it succeeded.
 */
interface LoginInFlight {
  token: string;
  form: string;
  done?: true;
  pendingId?: string;
  stage?: PendingStage;
}

/** A marker that cannot be read counts as a finished login that made nothing (its turn can be taken). */
function parseInFlight(value: string): LoginInFlight {
  try {
    return JSON.parse(value) as LoginInFlight;
  } catch {
    return { token: '', form: '', done: true };
  }
}

/** How long a finished login's outcome waits for the same form sent twice, and how often that one looks. */
const TWIN_MS = 10_000;
const TWIN_POLL_MS = 50;
/** A portal answer can take up to this many portal timeouts (to connect, for its headers, for its body). */
const BUSY_PORTAL_TIMEOUTS = 3;

export interface LoginDeps {
  config: Config;
  clock: Clock;
  portal: PortalClient;
  jars: BrowserJars;
  pending: PendingLogins;
  factors: FactorStore;
  pseudonymKey: Buffer;
  /** The session signing keys, for known-browser tokens. */
  signingKeys: readonly SigningKey[];
  kv: KvStore;
  limits: LoginLimits;
  browserCookies: BrowserCookies;
  /** Headers a client may not send the portal (identity, device). */
  reservedHeaders: ReadonlySet<string>;
  security: SecurityLog;
  notifier: Notifier;
  log: Logger;
}

export class LoginService {
  private readonly accountName: (raw: string) => string | null;

  constructor(private readonly d: LoginDeps) {
    this.accountName = accountNames(d.config.portal.login);
  }

  /** The token that makes this browser a known browser of the account, given when a sign-in finishes. */
  async knownBrowserToken(pid: string): Promise<string> {
    const epoch = await this.knownBrowserEpoch(pid);
    // The epoch that retired the tokens given before stays as long as this one works: gone, it would retire this one
    // too. Kept only while it is still the same (a retirement meanwhile is not undone).
    if (epoch !== '') await this.d.kv.replaceIf(keys.knownBrowserEpoch(pid), epoch, epoch, KNOWN_BROWSER_SECONDS * 1000);
    return knownBrowserToken(this.d.signingKeys, pid, epoch, this.d.clock.now());
  }

  private async knownBrowserEpoch(pid: string): Promise<string> {
    return (await this.d.kv.get(keys.knownBrowserEpoch(pid))) ?? '';
  }

  async login(req: LoginRequest): Promise<LoginOutcome> {
    const { config } = this.d;
    const ip = req.clientIp ?? 'unknown';
    // Limits come before the portal sees the password: first the address (before the body is even read)…
    const address = await this.d.limits.admitAddress(req.clientIp, this.longestLoginMs());
    if (!address.ok) {
      // Answered slowly: each of the flooding client's connections then carries about one attempt per delay.
      const delay = Math.min(address.retryAfterMs, config.limits.password.refusalDelayMs);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    throwIfRefused(address, ip, undefined, this.d.security);
    try {
      return await this.afterAddress(req, ip);
    } finally {
      if (address.turn) await this.d.limits.endTurn(address.turn).catch((err: unknown) => this.d.log.warn({ err }, "could not end the address's login turn"));
    }
  }

  /**
   * The longest a login can take: its body (sent as slowly as server.requestTimeoutSeconds allows), its wait for the
   * browser's turn (awaitTurn), then the portal's answer.
   */
  private longestLoginMs(): number {
    return this.d.config.server.requestTimeoutSeconds * 1000 + this.busyMs() + this.d.config.portal.timeoutSeconds * 1000;
  }

  /** How long one login of a browser can keep the next waiting for its turn. */
  private busyMs(): number {
    return BUSY_PORTAL_TIMEOUTS * this.d.config.portal.timeoutSeconds * 1000 + 5000;
  }

  private async afterAddress(req: LoginRequest, ip: string): Promise<LoginOutcome> {
    const { config, clock } = this.d;
    const login = config.portal.login;
    if (queryWrapsLoginField(req.query, loginFields(login))) throw new GatewayError('GW_ERR_BAD_REQUEST', 'a login field inside another in the query');
    const parsed = parseLoginBody(await req.body(), login.bodyType, usernameFields(login), login.usernameCase);
    // A servlet container reads its j_username from the query as well as from the body.
    if (queryFields(req.query).some(([n, v]) => otherUsername(n, v, parsed.username, login.usernameCase))) throw new GatewayError('GW_ERR_BAD_REQUEST', 'a field named like a username in the query');
    const username = this.accountName(parsed.username);
    if (username === null) throw new GatewayError('GW_ERR_BAD_REQUEST', 'unusable username');
    const pid = pseudonym(this.d.pseudonymKey, username);
    // …then the account, existing or not (a browser its owner signed in with on a count of its own), and the
    // gateway's overall rate.
    const known = req.knownBrowser && knownBrowserId(this.d.signingKeys, pid, await this.knownBrowserEpoch(pid), req.knownBrowser, clock.now());
    const admitted = await this.d.limits.admitAccount(pid, known || null);
    throwIfRefused(admitted, ip, pid, this.d.security);
    // The portal checks exactly the username the gateway will hold the session for.
    const body = parsed.withUsername(username);
    // Logins of one browser go to the portal one at a time (a form sent twice, two tabs): the pre-login jar holds one
    // portal session, and a portal that keeps the session id at login would otherwise sign both into it, as
    // whichever account it checked last. A second login waits for the first; when it is the same form sent again
    // (byte for byte, password and all), the first one's success is its answer too (the browser shows only the last
    // answer it asked for).
    const marker = keys.loginInFlight(req.browserId);
    const form = createHmac('sha256', this.d.pseudonymKey).update(`${req.method}\0${req.path}\0${req.query}\0`).update(body).digest('base64url');
    const mine = JSON.stringify({ token: newId(), form } satisfies LoginInFlight);
    const turn = await this.awaitTurn(marker, mine, form);
    if (turn !== 'mine' && turn !== 'late') {
      await this.d.limits.unjudged(admitted);
      return { kind: 'accepted', pendingId: turn.pendingId!, stage: turn.stage! };
    }
    // Taken, not read: a successful login moves it into its pending login; a failed one puts it back. Taking it is
    // what keeps two accounts apart, also when a login waited too long for its turn ('late').
    const jar = await this.d.jars.take(req.browserId);
    let outcome: LoginOutcome | undefined;
    try {
      outcome = await this.replay(req, { pid, username, ip, body, jar, admitted });
      return outcome;
    } finally {
      const done: LoginInFlight = { token: newId(), form, done: true, ...(outcome?.kind === 'accepted' ? { pendingId: outcome.pendingId, stage: outcome.stage } : {}) };
      if (turn === 'mine') await this.d.kv.replaceIf(marker, mine, JSON.stringify(done), TWIN_MS).catch((err: unknown) => this.d.log.warn({ err }, 'could not mark the login done'));
    }
  }

  /**
   * Waits until no other login of this browser is on its way to the portal, and marks this one (`mine`). Returns
   * 'mine', 'late' (the other took longer than a portal answer can: this one goes on unmarked), or the other
   * login's outcome when it was this same form and it succeeded (its pending login still there).
   */
  private async awaitTurn(marker: string, mine: string, form: string): Promise<'mine' | 'late' | LoginInFlight> {
    const busyMs = this.busyMs();
    for (let i = 0; i < busyMs / TWIN_POLL_MS; i++) {
      if (await this.d.kv.setIfAbsent(marker, mine, busyMs)) return 'mine';
      const value = await this.d.kv.get(marker);
      if (value === null) continue;
      const other = parseInFlight(value);
      if (other.done) {
        if (other.form === form && other.pendingId && (await this.d.pending.get(other.pendingId, this.d.clock.now()))) return other;
        // Of several logins waiting for this one, one takes the next turn; the others wait for it.
        if (await this.d.kv.replaceIf(marker, value, mine, busyMs)) return 'mine';
      }
      await new Promise((r) => setTimeout(r, TWIN_POLL_MS));
    }
    return 'late';
  }

  /** The password login sent to the portal, with the browser's pre-login jar, and its answer judged. */
  private async replay(req: LoginRequest, a: { pid: string; username: string; ip: string; body: Buffer; jar: Jar; admitted: Extract<AccountAdmission, { ok: true }> }): Promise<LoginOutcome> {
    const { config, clock } = this.d;
    const login = config.portal.login;
    const { pid, username, ip, body, jar, admitted } = a;
    const now = clock.now();
    const headers = upstreamRequestHeaders(req.headers, {
      clientIp: req.forwardedFor,
      proto: req.proto,
      host: req.headers.host,
      cookie: cookieHeader(jar, req.path, now, withoutLoginFields(req.headers.cookie, loginFields(login)), this.d.browserCookies),
      strip: this.d.reservedHeaders,
    });
    if (config.forwardAuth.enabled) await this.markPortalCookies(req.headers.cookie, admitted, now);
    let answer: PortalResponse;
    try {
      answer = await this.d.portal.send(portalLogin({ method: req.method, pathAndQuery: pathAndQuery(req), headers, body }, req.contentType));
    } catch (err) {
      // The portal never judged the password: it does not count against the account. The jar stays taken: the portal
      // may have signed its session in all the same.
      await this.d.limits.unjudged(admitted).catch((cause: unknown) => this.d.log.warn({ err: cause }, 'could not take back an unjudged login attempt'));
      throw err;
    }
    const setCookies = asArray(answer.headers['set-cookie']);
    const updated = applySetCookies(jar, setCookies, req.path, clock.now(), this.d.browserCookies);
    const location = locationOf(answer);
    const { verdict } = judgeLoginAnswer(config, answer, pathAndQuery(req), clock.now());
    const ok = verdict === 'success';
    if (verdict === 'unrecognised') {
      // Neither a success nor a refusal as configured: perhaps a success the rules miss (a `next` the location rule
      // does not expect, a page in another language). Its page and cookies go nowhere, the jar stays taken, and the
      // password counts as a failure (a guess must not learn more here than from a refusal).
      await this.d.limits.failed(pid, req.clientIp);
      this.d.security('password_failed', { pid, ip, reason: 'unrecognised answer' });
      throw new GatewayError('GW_ERR_LOGIN_UNRECOGNISED', `login answer ${answer.status} matches neither portal.login.success nor portal.login.failure`);
    }
    if (!ok) {
      if (updated.length) await this.d.jars.put(req.browserId, updated);
      await this.d.limits.failed(pid, req.clientIp);
      this.d.security('password_failed', { pid, ip });
      return { kind: 'failed', portal: answer };
    }
    // A successful answer's cookies are all held, also in forward-auth mode: only the second factor releases them.
    const held = this.d.browserCookies === 'all' ? applySetCookies(jar, setCookies, req.path, now, []) : updated;
    let portalSession: string | undefined;
    if (config.forwardAuth.enabled) {
      try {
        portalSession = forwardAuthSession(config.forwardAuth.sessionCookies, held, req.headers.cookie, now);
      } catch (err) {
        // The portal's fault (or the option's), not the password's: it counts neither way.
        await this.d.limits.unjudged(admitted);
        throw err;
      }
    }
    await this.d.limits.succeeded(admitted);
    const factors = await this.d.factors.get(pid);
    // No factor yet: the enrolment proof comes first, unless trust on first use was chosen explicitly.
    // The answer's cookies the browser holds (a double-submit XSRF token minted at login) reach it with the session.
    // They go out in answer to a gateway page, not to the login: a cookie set without a path keeps the login's.
    const forBrowser = this.d.browserCookies === 'all' ? [] : browserSetCookies(setCookies, this.d.browserCookies).map((line) => withExplicitPath(line, req.path));
    const stage: PendingStage = factors?.factors.length ? 'verify' : config.enrolment.proof === 'first-login' ? 'enrol' : 'proof';
    const pendingId = await this.d.pending.create(
      {
        pid,
        username,
        jar: held,
        ...(portalSession ? { portalSession } : {}),
        continueTo: returnTarget(location, config, pathAndQuery(req)),
        csrf: newId(),
        stage,
        expiresAt: now + config.mfa.pendingTimeoutSeconds * 1000,
        passwordAt: now,
        ...(config.groups.loginHeader ? { groups: groupsFromHeader(answer.headers[config.groups.loginHeader.toLowerCase()]) } : {}),
        ...(forBrowser.length ? { browserSetCookies: forBrowser } : {}),
        ip,
      },
      now,
    );
    if (req.replacesPending && ID_PATTERN.test(req.replacesPending)) await this.replace(req.replacesPending, pid, now);
    this.d.security('password_ok', { pid, ip, next: stage });
    // A right password whose second step never came is told to the person once the login has expired (R11).
    clock.after(config.mfa.pendingTimeoutSeconds * 1000 + 1000, () => void this.reportAbandoned(pendingId));
    return { kind: 'accepted', pendingId, stage };
  }

  /**
   * Forward-auth mode: the portal's session cookies a password goes to the portal with are marked, before the portal
   * sees it. A portal that kept such an id would sign it in as this account (the login is refused then, but only once
   * the portal has answered): a gateway session bound to that cookie, whoever's it is, no longer carries it (see
   * forward-auth.ts). A cookie sent in more than one form (which would the portal read?) is refused outright.
   */
  private async markPortalCookies(sent: string | undefined, admitted: Extract<AccountAdmission, { ok: true }>, now: number): Promise<void> {
    const ids = portalCookieIds(this.d.config.forwardAuth.sessionCookies, (name) => cookieValues(sent, name));
    if (ids === null) {
      await this.d.limits.unjudged(admitted);
      throw new GatewayError('GW_ERR_BAD_REQUEST', 'a portal session cookie sent in more than one form with a password');
    }
    const ttlMs = this.d.config.session.absoluteTimeoutSeconds * 1000;
    for (const id of ids) await this.d.kv.set(keys.portalCookieLogin(id), String(now), ttlMs);
  }

  /**
   * More time for a sign-in in progress, asked for on one of its pages: its whole time again from now, up to
   * `mfa.pendingMaxSeconds` after the password. Returns when it now expires; an expired login gets none.
   */
  async moreTime(id: string): Promise<number> {
    const now = this.d.clock.now();
    const { pendingTimeoutSeconds, pendingMaxSeconds } = this.d.config.mfa;
    let extended = false;
    const p = await this.d.pending.update(
      id,
      (cur) => {
        const until = moreTimeUntil(cur, now, pendingTimeoutSeconds * 1000, pendingMaxSeconds * 1000);
        extended = until !== null;
        return until !== null ? { ...cur, expiresAt: until } : cur;
      },
      now,
    );
    if (!p) throw new GatewayError('GW_ERR_LOGIN_EXPIRED', 'no pending login to give more time');
    // The check for an abandoned login, at the new end (the one planned finds it still going, and passes).
    if (extended) this.d.clock.after(p.expiresAt - now + 1000, () => void this.reportAbandoned(id));
    return p.expiresAt;
  }

  /**
   * Ends the browser's earlier login, replaced by this password step. The same account's is simply gone (the person
   * went back and entered the password again); another account's is abandoned, and told at once: else a password
   * holder could hide a right password by entering one of their own accounts' next, in the same browser.
   */
  private async replace(id: string, pid: string, now: number): Promise<void> {
    const earlier = await this.d.pending.take(id, now);
    await this.d.pending.delete(id);
    if (earlier && earlier.pid !== pid) this.abandoned(earlier);
  }

  /** An expired login that was neither finished nor ended, nor already reported for a wrong code. */
  private async reportAbandoned(id: string): Promise<void> {
    try {
      const p = await this.d.pending.takeAbandoned(id, this.d.clock.now());
      if (p) this.abandoned(p);
    } catch (err) {
      this.d.log.warn({ err }, 'could not check for an abandoned login');
    }
  }

  private abandoned(p: PendingLogin): void {
    // 'acknowledge': a factor was just bound; only the recovery codes page was left.
    if (p.stage === 'acknowledge' || p.failureNotified) return;
    this.d.security('mfa_abandoned', { pid: p.pid, ip: p.ip, stage: p.stage });
    const at = new Date(p.passwordAt ?? p.expiresAt - this.d.config.mfa.pendingTimeoutSeconds * 1000).toISOString();
    this.d.notifier.notify({ event: 'second_factor_abandoned', user: p.username, ip: p.ip, details: { passwordAt: at } });
  }
}

/**
 * Forward-auth mode: the portal session a sign-in binds its gateway session to (see portalSessionDigest), its cookies
 * as the browser will hold them: set by the login answer (withheld until the second factor), else sent with the
 * password. The answer must set anew each of them the browser sent: a portal that signed in an id the browser already
 * had (one that an attacker planted, or a gateway session of someone else's is bound to) would let the password alone in.
 */
function forwardAuthSession(names: readonly string[], held: Jar, sentCookies: string | undefined, now: number): string {
  const live = held.filter((c) => c.expiresAt === undefined || c.expiresAt > now);
  const setByAnswer = (name: string) => live.filter((c) => c.name === name).map((c) => c.value);
  // Its cookies were read for certain before the password went (see markPortalCookies).
  const sent = (name: string) => cookieValues(sentCookies, name) ?? [];
  const renewed = (name: string) => setByAnswer(name).some((value) => !sent(name).includes(value));
  if (!names.some(renewed) || names.some((name) => sent(name).length > 0 && !renewed(name))) {
    throw new GatewayError('GW_ERR_LOGIN_UNRECOGNISED', 'the login answer did not set each of forwardAuth.sessionCookies the browser sent anew (the portal kept its session id)');
  }
  const digest = portalSessionDigest(names, (name) => {
    const set = setByAnswer(name);
    return set.length ? set : cookieValues(sentCookies, name);
  });
  if (!digest) throw new GatewayError('GW_ERR_LOGIN_UNRECOGNISED', 'a cookie of forwardAuth.sessionCookies has two values, or is sent in another form too');
  return digest;
}

/**
 * The password login as the portal gets it: with the Content-Type as checked (no other parameter than the charset the
 * gateway read the body in), and asking for an uncompressed answer, as it is judged by its bytes (the body rule).
 */
export function portalLogin(req: PortalRequest & { body: Buffer }, contentType: string): PortalRequest {
  return { ...req, headers: { ...req.headers, 'content-type': contentType, 'content-length': String(req.body.length), 'accept-encoding': 'identity' } };
}

/** The portal's answer to a password as the rules see it, whether each set of rules holds, and what it is taken for. */
export interface JudgedLogin {
  facts: PortalAnswer;
  /** The Location as the portal sent it. */
  sentLocation: string | undefined;
  /** The body could not be read (another encoding or charset) and a body rule needs it: no rule holds. */
  unreadable: boolean;
  success: boolean;
  /** Undefined without portal.login.failure. */
  failure: boolean | undefined;
  /** A success wins; an answer neither rule set takes, when failure rules are given, is unrecognised. */
  verdict: 'success' | 'failure' | 'unrecognised';
}

/** The Location of the portal's answer, its raw bytes (UTF-8) percent-encoded for the URL parser (see headerUrl). */
function locationOf(answer: PortalResponse): string | undefined {
  const location = first(answer.headers.location);
  return location === undefined ? undefined : headerUrl(location);
}

/** `from`: the path and query the login was sent to, which a relative Location is read from. */
export function judgeLoginAnswer(config: Pick<Config, 'server' | 'portal'>, answer: PortalResponse, from: string, now: number): JudgedLogin {
  const login = config.portal.login;
  const sentLocation = locationOf(answer);
  const text = bodyText(answer);
  const facts: PortalAnswer = {
    status: answer.status,
    location: followedLocation(sentLocation, config, from),
    setCookieNames: setCookieNames(asArray(answer.headers['set-cookie']), now),
    body: text ?? '',
  };
  // A body rule cannot judge a body the gateway cannot read: neither a success nor a refusal.
  const unreadable = text === null && (login.success.body !== undefined || login.failure?.body !== undefined);
  const success = !unreadable && answerMatches(login.success, facts);
  const failure = login.failure === undefined ? undefined : !unreadable && answerMatches(login.failure, facts);
  return { facts, sentLocation, unreadable, success, failure, verdict: success ? 'success' : unreadable || failure === false ? 'unrecognised' : 'failure' };
}

/** A refused admission becomes a 429 (and one security event, except for a blocked address's flood). */
function throwIfRefused<A extends Admission | AccountAdmission>(a: A, ip: string, pid: string | undefined, security: SecurityLog): asserts a is Extract<A, { ok: true }> {
  if (a.ok) return;
  if (a.reason !== 'address blocked') security('password_throttled', { ...(pid ? { pid } : {}), ip, reason: a.reason });
  throw new GatewayError('GW_ERR_RATE_LIMITED', a.reason, { retryAfterMs: a.retryAfterMs });
}

/**
 * The Content-Type the portal gets for a login body, or null when the browser's cannot be accepted: the configured
 * type, with at most `charset=utf-8` (the charset the gateway reads the body in). Any other parameter is refused: a
 * portal that decoded another charset (`charset = cp037`, `charset*=`) would read other fields than the gateway checked.
 */
export function loginContentType(header: string | undefined, bodyType: 'form' | 'json'): string | null {
  const [type = '', ...params] = (header ?? '').split(';').map((p) => p.trim().toLowerCase());
  const expected = bodyType === 'form' ? 'application/x-www-form-urlencoded' : 'application/json';
  if (type !== expected) return null;
  const named = params.filter((p) => p !== '');
  if (named.length > 1 || named.some((p) => !/^charset="?utf-8"?$/.test(p))) return null;
  return named.length ? `${expected}; charset=utf-8` : expected;
}

interface ParsedLogin {
  username: string;
  withUsername(canonical: string): Buffer;
}

/**
 * One canonical parse of the login body (SECURITY C-35). Refused: a repeated field, a non-string username, any
 * other spelling of the username field (`UserName`), which a portal matching names loosely could read instead, more
 * than one of the configured username fields, and a field named as login forms name a username that is not
 * configured (`j_username`): at a login path whose field the configuration misses, the portal would sign in the
 * account named there, the gateway the one in the configured field. Form and JSON bodies keep every byte of every
 * other field as sent; only the username value is rewritten.
 */
export function parseLoginBody(body: Buffer, type: 'form' | 'json', fields: readonly string[], usernameCase: UsernameCase = 'lower'): ParsedLogin {
  const bad = (why: string) => new GatewayError('GW_ERR_BAD_REQUEST', why);
  const namesLike = (names: string[]) => names.filter((n) => fields.some((f) => sameFieldName(n, f)));
  // The one configured field the body holds, after the checks every body gets.
  const usernameField = (names: string[]): string => {
    const held = fields.filter((f) => names.includes(f));
    if (held.length === 0) throw bad('no username field');
    if (namesLike(names).length !== 1) throw bad('another spelling of the username field, or more than one');
    return held[0]!;
  };
  if (type === 'form') {
    // A browser sends ";" as %3B; some portals (CGI.pm, older Python) split fields on it too, and would read
    // `x=1;username=other` as a field of its own.
    if (body.includes(0x3b)) throw bad('";" in a form body');
    // A browser percent-encodes every other byte too; a raw one is read in whatever charset the portal assumes.
    if (body.some((b) => b > 0x7e)) throw bad('raw non-ASCII byte in a form body');
    // latin1 maps bytes 1:1, so fields the gateway does not touch reach the portal byte for byte.
    const pairs = body.length ? body.toString('latin1').split('&') : [];
    const names = pairs.map((p) => decodeFormComponent(p.split('=', 1)[0]!));
    if (names.some((n) => n === null)) throw bad('malformed form encoding');
    // No form has such a name; a portal may cut it short or drop the character, and read another field.
    if (names.some((n) => /[\x00-\x1f\x7f]/.test(n!))) throw bad('control character in a field name');
    if (new Set(names).size !== names.length) throw bad('duplicate form field');
    const at = names.indexOf(usernameField(names as string[]));
    // Decoded only where read: other fields reach the portal as sent, in whatever charset.
    const valueOf = (i: number) => decodeFormComponent(pairs[i]!.includes('=') ? pairs[i]!.slice(pairs[i]!.indexOf('=') + 1) : '');
    const username = valueOf(at);
    if (username === null) throw bad('malformed form encoding');
    // A value that does not decode (another charset) is another name.
    const another = (n: string, i: number) => i !== at && otherUsername(n, valueOf(i) ?? '\0', username, usernameCase);
    if ((names as string[]).some(another)) throw bad('a field named like a username that is not configured');
    return {
      username,
      withUsername: (canonical) =>
        Buffer.from(pairs.map((p, i) => (i === at ? `${p.split('=', 1)[0]}=${encodeURIComponent(canonical)}` : p)).join('&'), 'latin1'),
    };
  }
  // JSON is UTF-8 (RFC 8259): other bytes would not reach the portal as sent once decoded.
  if (!isUtf8(body)) throw bad('login body is not UTF-8');
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw bad('login body is not JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw bad('login body is not an object');
  // No login form nests deeply; thousands of levels would make writing the body back for the portal throw.
  if (deeperThan(json, MAX_JSON_DEPTH)) throw bad('login body nested too deeply');
  const obj = json as Record<string, unknown>;
  const field = usernameField(Object.keys(obj));
  const username = obj[field];
  if (typeof username !== 'string') throw bad('no username field');
  if (Object.entries(obj).some(([n, v]) => n !== field && otherUsername(n, v, username, usernameCase))) throw bad('a field named like a username that is not configured');
  // Rails wraps a JSON login as `session: {username}` unless the body brings such a wrapper itself, whose username
  // the portal would then check instead.
  const nested = (v: unknown): boolean => v !== null && typeof v === 'object' && Object.values(v).some((w) => w !== null && typeof w === 'object' && (namesLike(Object.keys(w)).length > 0 || nested(w)));
  if (nested(obj)) throw bad('the username field inside another field');
  const { values, repeated } = jsonLayout(text);
  // JSON.parse keeps a repeated key's last value; a portal's parser may keep the first.
  if (repeated) throw bad('duplicate JSON key');
  const [start, end] = values.get(field)!;
  // Only the username's bytes change: numbers beyond 2^53, key order and all else reach the portal as sent.
  return { username, withUsername: (canonical) => Buffer.from(text.slice(0, start) + JSON.stringify(canonical) + text.slice(end)) };
}

/**
 * The layout of a JSON object's text (one JSON.parse has read): where the value of each top-level key lies, without
 * the whitespace around it, and whether any object in it repeats a key.
 */
function jsonLayout(text: string): { values: Map<string, [number, number]>; repeated: boolean } {
  const values = new Map<string, [number, number]>();
  // Per open bracket: an object's keys so far, or null for an array.
  const open: (Set<string> | null)[] = [];
  let repeated = false;
  let keyNext = false;
  let key = '';
  let start = -1;
  const blank = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const keys = open.at(-1);
      if (keys && keyNext) {
        const name = JSON.parse(text.slice(i, j + 1)) as string;
        if (keys.has(name)) repeated = true;
        keys.add(name);
        key = name;
        keyNext = false;
      }
      i = j;
    } else if (c === '{' || c === '[') {
      open.push(c === '{' ? new Set() : null);
      keyNext = c === '{';
    } else if (c === ':' && open.length === 1) {
      start = i + 1;
    } else if (c === ',' || c === '}' || c === ']') {
      if (open.length === 1 && c !== ']' && start !== -1) {
        let [s, e] = [start, i];
        while (blank(text[s])) s++;
        while (blank(text[e - 1])) e--;
        values.set(key, [s, e]);
      }
      if (c === ',') keyNext = open.at(-1) !== null;
      else {
        open.pop();
        keyNext = false;
      }
    }
  }
  return { values, repeated };
}

const MAX_JSON_DEPTH = 32;

function deeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  return Object.values(value).some((v) => deeperThan(v, levels - 1));
}

/**
 * The browser's own cookies for the login (forward-auth mode passes them on), less any named as a login field: PHP's
 * $_REQUEST and ASP.NET's Request[] read a cookie where the form has no such field, or instead of it.
 */
function withoutLoginFields(header: string | undefined, fields: readonly string[]): string | undefined {
  if (!header) return header;
  const named = (pair: string) => {
    const name = cookieName(pair);
    return namedLikeAUsername(name) || fields.some((f) => sameFieldName(name, f));
  };
  return header.split(';').filter((pair) => !named(pair)).join(';') || undefined;
}

/**
 * A field besides the configured one, named as login forms name a username, that may name another account: at a
 * login path whose field the configuration misses, the portal would read it. A string or a number in it names one
 * (a portal reads 12345 or ["alice"] as a name), unless it is empty or names the same account (as usernameCase
 * compares names); null, true and false, and lists and objects without such a value, name none.
 */
function otherUsername(name: string, value: unknown, username: string, usernameCase: UsernameCase): boolean {
  if (!namedLikeAUsername(name)) return false;
  const same = canonicalUsername(username, usernameCase);
  const another = (v: unknown): boolean => {
    if (typeof v === 'string') return v !== '' && canonicalUsername(v, usernameCase) !== same;
    // Past 2^53, or not whole, the number read here may not be the one the portal reads (it gets the text as sent).
    if (typeof v === 'number') return !Number.isSafeInteger(v) || canonicalUsername(String(v), usernameCase) !== same;
    return v !== null && typeof v === 'object' && Object.values(v).some(another);
  };
  return another(value);
}

function decodeFormComponent(s: string): string | null {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

function asArray(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
