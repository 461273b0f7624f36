// The real thing on loopback sockets: the demo portal, and the gateway in front of it.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { generate } from 'otplib';
import pino from 'pino';
import { Agent, type Dispatcher } from 'undici';
import { buildApp } from '../../src/app.js';
import type { Config } from '../../src/config/schema.js';
import { loggerOptions } from '../../src/log.js';
import type { KvStore } from '../../src/stores/kv-store.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { closeWithin, DEMO_USERS, startDemoPortal, type DemoPortal, type DemoPortalOptions } from '../fixtures/demo-portal.js';
import { Browser, inputValue, type Page } from './browser.js';
import type { AssertionKnobs, SoftAuthenticator } from './soft-authenticator.js';
import { FakeClock } from './clock.js';
import { testConfig } from './config.js';
import { testRedis } from './redis.js';

export const ALICE = DEMO_USERS[0]!;
export const BOB = DEMO_USERS[1]!;

export interface Stack {
  url: string;
  app: FastifyInstance;
  portal: DemoPortal;
  /** Every request the portal received, in order. */
  portalRequests: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[];
  clock: FakeClock;
  config: Config;
  /** The store the gateway uses. */
  kv: KvStore;
  /** Every log line the gateway wrote. */
  logs: string[];
  browser(dispatcher?: Dispatcher): Browser;
  close(): Promise<void>;
}

export interface StackOptions {
  kv?: (clock: FakeClock) => KvStore;
  patch?: (raw: Record<string, any>) => void;
  /** CA of the gateway's TLS certificate. */
  ca?: string;
  /** The demo portal starts a new session id at login (see DemoPortalOptions). */
  newSessionAtLogin?: DemoPortalOptions['newSessionAtLogin'];
  /** Further cookies the demo portal sets at login (see DemoPortalOptions). */
  loginSetCookies?: DemoPortalOptions['loginSetCookies'];
}

export async function startStack(
  opts: StackOptions = {},
): Promise<Stack> {
  const portalRequests: Stack['portalRequests'] = [];
  const portal = await startDemoPortal({ onRequest: (r) => portalRequests.push(r), newSessionAtLogin: opts.newSessionAtLogin, loginSetCookies: opts.loginSetCookies });
  const clock = new FakeClock(Date.now());
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const config = testConfig(portal.url, (raw) => {
    raw.log.level = 'info';
    opts.patch?.(raw);
  });
  const kv = opts.kv?.(clock) ?? new MemoryKvStore(clock);
  const app = await buildApp(config, { clock, kv, logger: pino(loggerOptions('debug'), sink) });
  try {
    await app.listen({ host: '127.0.0.1', port: config.server.port });
  } catch (err) {
    await app.close();
    await portal.close();
    throw err;
  }
  const defaultDispatcher = opts.ca ? new Agent({ connect: { ca: opts.ca } }) : undefined;
  const url = `${config.server.tls ? 'https' : 'http'}://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  return {
    url,
    app,
    portal,
    portalRequests,
    clock,
    config,
    kv,
    logs,
    browser: (dispatcher?: Dispatcher) => new Browser(url, dispatcher ?? defaultDispatcher),
    close: async () => {
      await closeWithin(app);
      await kv.close();
      await portal.close();
    },
  };
}

/** The portal's own login page through the gateway, then its form posted with the password. */
/**
 * A stack on a real Redis, under a key prefix of its own, with `store` in its config pointing there: the command line
 * (given the same config) acts on the running gateway's data. Stops the Redis at teardown; the caller closes the stack.
 */
export async function startRedisStack(t: { teardown(fn: () => unknown): void }, opts: Omit<StackOptions, 'kv'> = {}): Promise<Stack> {
  const redis = await testRedis();
  t.teardown(redis.stop);
  const keyPrefix = `it-${randomBytes(4).toString('hex')}:`;
  const kv = new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 });
  await kv.ready();
  return startStack({
    ...opts,
    kv: () => kv,
    patch: (raw) => {
      raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix } };
      opts.patch?.(raw);
    },
  });
}

/**
 * Until the portal has received `n` requests for `url` (polling, at most 10 s): a request the test sent without
 * waiting for its answer is then past the gateway's checks and under way at the portal, however loaded the machine.
 */
export async function portalReceived(s: Pick<Stack, 'portalRequests'>, url: string, n = 1): Promise<void> {
  const received = () => s.portalRequests.filter((r) => r.url === url).length;
  for (const deadline = Date.now() + 10_000; received() < n; await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error(`the portal received ${received()} of ${n} requests for ${url}`);
  }
}

/** The browser as it is now, copied (its cookies): what it sends again if a form goes off twice. */
export function copyOf(s: Stack, b: Browser): Browser {
  const copy = s.browser();
  for (const [k, v] of b.cookies) copy.cookies.set(k, v);
  return copy;
}

export async function submitPassword(b: Browser, username: string, password: string): Promise<Page> {
  const page = await b.get('/login');
  if (page.status !== 200) throw new Error(`login page answered ${page.status}`);
  return b.post('/login', { username, password, csrf: inputValue(page.body, 'csrf') });
}

export function totpAt(secret: string, ms: number): Promise<string> {
  return generate({ secret, epoch: Math.floor(ms / 1000) });
}

/** The authenticator-app enrolment page after a first password login: the secret it shows and the form's token. */
export async function totpEnrolmentForm(s: Stack, b: Browser): Promise<{ secret: string; csrf: string }> {
  const page = await b.get(`${s.config.server.prefix}/enrol/totp`);
  return { secret: /id="secret">([^<]+)</.exec(page.body)![1]!.replaceAll(' ', ''), csrf: inputValue(page.body, 'csrf') };
}

/** Enrolment with an authenticator app after a first password login: the secret, the recovery codes, the final answer. */
export async function enrol(s: Stack, b: Browser): Promise<{ secret: string; codes: string[]; done: Page }> {
  const p = s.config.server.prefix;
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const confirm = await b.post(`${p}/enrol/totp`, { csrf, code: await totpAt(secret, s.clock.now()) });
  if (confirm.location !== `${p}/recovery-codes`) throw new Error(`enrolment answered ${confirm.status} ${confirm.location}`);
  const shown = await b.get(`${p}/recovery-codes`);
  const codes = [...shown.body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  const done = await b.post(`${p}/recovery-codes`, { csrf, saved: 'yes' });
  return { secret, codes, done };
}

export async function signUpAndEnrol(s: Stack, user = ALICE): Promise<{ b: Browser; secret: string; codes: string[] }> {
  const b = s.browser();
  await submitPassword(b, user.username, user.password);
  const { secret, codes } = await enrol(s, b);
  return { b, secret, codes };
}

/** Password accepted, code page open: the browser and the form's CSRF token. */
export async function atCodePage(s: Stack, user = ALICE, form: 'verify' | 'recovery' = 'verify'): Promise<{ b: Browser; csrf: string }> {
  const b = s.browser();
  await submitPassword(b, user.username, user.password);
  return { b, csrf: inputValue((await b.get(`${s.config.server.prefix}/${form}`)).body, 'csrf') };
}

/** A later sign-in: password, then the TOTP code of the next time step (the last one is already used). */
export async function signInWithTotp(s: Stack, secret: string, user = ALICE): Promise<{ b: Browser; final: Page }> {
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s, user);
  const final = await b.post(`${s.config.server.prefix}/verify`, { csrf, code: await totpAt(secret, s.clock.now()) });
  return { b, final };
}

/** A JSON call of the passkey script: CSRF header, same-origin. */
export async function jsonCall(b: Browser, path: string, csrf: string, body: unknown = {}): Promise<{ status: number; json: any }> {
  const res = await b.send('POST', path, JSON.stringify(body), { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf });
  return { status: res.status, json: res.body ? JSON.parse(res.body) : null };
}

/** The CSRF token a page gives its passkey script. */
export function passkeyCsrf(html: string): string {
  const m = /data-csrf="([^"]+)"/.exec(html);
  if (!m) throw new Error('no passkey button on the page');
  return m[1]!;
}

/** First login enrolling a passkey: password, options, the authenticator's answer, recovery codes, session. */
export async function signUpWithPasskey(s: Stack, auth: SoftAuthenticator, user = ALICE): Promise<{ b: Browser; codes: string[] }> {
  const b = s.browser();
  await submitPassword(b, user.username, user.password);
  const p = s.config.server.prefix;
  const csrf = passkeyCsrf((await b.get(`${p}/enrol`)).body);
  const options = await jsonCall(b, `${p}/enrol/passkey/options`, csrf);
  const finished = await jsonCall(b, `${p}/enrol/passkey`, csrf, { credential: auth.register(options.json), name: 'Test key' });
  if (finished.status !== 200) throw new Error(`passkey enrolment answered ${finished.status} ${JSON.stringify(finished.json)}`);
  const shown = await b.get(finished.json.next);
  const codes = [...shown.body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  await b.post(`${p}/recovery-codes`, { csrf, saved: 'yes' });
  return { b, codes };
}

/** A later sign-in with a passkey: password, then the assertion. Returns the browser and the final JSON answer. */
export async function signInWithPasskey(s: Stack, auth: SoftAuthenticator, user = ALICE, knobs: AssertionKnobs = {}): Promise<{ b: Browser; answer: { status: number; json: any } }> {
  const b = s.browser();
  await submitPassword(b, user.username, user.password);
  const p = s.config.server.prefix;
  const csrf = passkeyCsrf((await b.get(`${p}/verify`)).body);
  const options = await jsonCall(b, `${p}/verify/passkey/options`, csrf);
  const answer = await jsonCall(b, `${p}/verify/passkey`, csrf, { credential: auth.authenticate(options.json, knobs) });
  return { b, answer };
}
