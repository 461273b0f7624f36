// Several gateway instances on one Redis behind a load balancer without sticky sessions: each request of one browser
// may reach any instance. What one instance changes (a session ended or moved, a factor removed, a code used, a
// cookie the portal set) holds on the others at once, whatever each keeps in its own memory.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { loggerOptions } from '../../src/log.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { startDemoPortal, type DemoPortal } from '../fixtures/demo-portal.js';
import { Browser, inputValue } from '../helpers/browser.js';
import { FakeClock } from '../helpers/clock.js';
import { freshAuditDir, rawTestConfig } from '../helpers/config.js';
import { testRedis } from '../helpers/redis.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { ALICE, enrol, jsonCall, passkeyCsrf, submitPassword, totpAt, type Stack } from '../helpers/stack.js';

interface Instance {
  url: string;
  app: FastifyInstance;
  kv: RedisKvStore;
  config: Config;
}

interface Instances {
  a: Instance;
  b: Instance;
  portal: DemoPortal;
  portalRequests: { url: string; headers: Record<string, string | string[] | undefined> }[];
  clock: FakeClock;
  logs: string[];
  /** A browser whose requests go to A and B in turn (one cookie jar), as a load balancer without stickiness sends them. */
  browser(): Balanced;
  /** The stack helpers' view: the configuration both share, the shared clock, a balanced browser. */
  stack: Stack;
}

/** One browser, one cookie jar; each request goes to the next instance in turn, or to the one `on` names. */
class Balanced extends Browser {
  private n = 0;
  constructor(readonly urls: readonly string[]) {
    super(urls[0]!);
    Object.defineProperty(this, 'base', { get: () => this.urls[this.n++ % this.urls.length] });
  }
  /** The same browser (its cookies), sending its requests to one instance only. */
  on(i: number): Browser {
    const one = new Browser(this.urls[i]!);
    Object.defineProperty(one, 'cookies', { value: this.cookies });
    return one;
  }
}

/** Two instances on one Redis; `store` sees each instance's store (0: A, 1: B) before the instance uses it. */
async function twoInstances(t: Tap.Test, patch: (raw: Record<string, any>) => void = () => {}, store: (kv: RedisKvStore, i: number) => void = () => {}): Promise<Instances> {
  const redis = await testRedis();
  t.teardown(redis.stop);
  const portalRequests: Instances['portalRequests'] = [];
  const portal = await startDemoPortal({ onRequest: (r) => portalRequests.push(r) });
  t.teardown(portal.close);
  const clock = new FakeClock(Date.now());
  const keyPrefix = `multi-${randomBytes(4).toString('hex')}:`;
  const raw = rawTestConfig(portal.url);
  raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix } };
  raw.log.level = 'info';
  patch(raw);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const start = async (i: number): Promise<Instance> => {
    // Same configuration and keys; each instance its own audit directory, as in production.
    const config = resolveConfig({ ...structuredClone(raw), audit: { ...raw.audit, dir: freshAuditDir() } });
    const kv = new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 });
    await kv.ready();
    store(kv, i);
    const app = await buildApp(config, { clock, kv, logger: pino(loggerOptions('debug'), sink) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.teardown(async () => {
      await app.close();
      await kv.close();
    });
    return { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, app, kv, config };
  };
  const a = await start(0);
  const b = await start(1);
  const browser = () => new Balanced([a.url, b.url]);
  const stack = { url: a.url, app: a.app, portal, portalRequests, clock, config: a.config, kv: a.kv, logs, browser } as unknown as Stack;
  return { a, b, portal, portalRequests: portalRequests, clock, logs, browser, stack };
}

/** Enrolled with an app, every request of the sign-in alternating between the instances. */
async function signedUp(x: Instances, user = ALICE) {
  const b = x.browser();
  await submitPassword(b, user.username, user.password);
  const { secret, codes } = await enrol(x.stack, b);
  return { b, secret, codes };
}

/**
 * A new browser with Alice's password accepted, at the passkey enrolment: its authenticator, the form's token and the
 * registration options (asked through `via`: the balanced browser itself, or one instance of it).
 */
async function atPasskeyEnrolment(x: Instances, via: (b: Balanced) => Browser = (b) => b) {
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  const b = x.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await via(b).get('/_mfa/enrol')).body);
  const options = await jsonCall(via(b), '/_mfa/enrol/passkey/options', csrf);
  return { auth, b, csrf, options };
}

/** A later sign-in with the app (the next time step), alternating. */
async function signedIn(x: Instances, secret: string, user = ALICE): Promise<Balanced> {
  x.clock.advance(30_000);
  const b = x.browser();
  await submitPassword(b, user.username, user.password);
  const csrf = inputValue((await b.get('/_mfa/verify')).body, 'csrf');
  const done = await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, x.clock.now()) });
  if (done.status !== 303) throw new Error(`the code answered ${done.status}`);
  return b;
}

const signedInAs = async (b: Browser) => {
  const page = await b.get('/records');
  return page.status === 200 && page.body.includes('Signed in as');
};

t.test('a sign-in spread over two instances: password on one, code on the other, recovery codes on the first', async (t) => {
  const x = await twoInstances(t);
  const b = x.browser();
  const login = await b.on(1).get('/login');
  t.equal((await b.on(0).post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(login.body, 'csrf') })).location, '/_mfa/enrol', 'the password on A');
  const setup = await b.on(0).get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const csrf = inputValue(setup.body, 'csrf');
  t.equal((await b.on(1).post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, x.clock.now()) })).location, '/_mfa/recovery-codes', 'the code on B');
  t.equal([...(await b.on(0).get('/_mfa/recovery-codes')).body.matchAll(/<li>[A-Z2-9-]{19}<\/li>/g)].length, 10, 'the recovery codes on A');
  t.equal((await b.on(1).post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).status, 303);
  t.ok(await signedInAs(b.on(0)), 'signed in on A');
  t.ok(await signedInAs(b.on(1)), 'and on B');
  // A later sign-in, each request on the other instance than the one before.
  const again = await signedIn(x, secret);
  t.ok(await signedInAs(again.on(1)));
});

t.test('a step-up on one instance: the old cookie is refused on the other at once', async (t) => {
  const x = await twoInstances(t);
  const { b, secret } = await signedUp(x);
  const old = new Map(b.cookies);
  for (const i of [0, 1]) t.ok(await signedInAs(b.on(i)), 'remembered as verified on both');
  x.clock.advance(6 * 60_000);
  const step = await b.on(0).get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
  const moved = await b.on(0).post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, x.clock.now()) });
  t.equal(moved.location, '/_mfa/security');
  t.not(b.cookies.get('__Host-mfa-session'), old.get('__Host-mfa-session'), 'a new cookie');
  const stale = new Browser(x.b.url);
  for (const [k, v] of old) stale.cookies.set(k, v);
  t.equal((await stale.get('/records')).status, 302, 'the old cookie on B: sent to sign in');
  t.ok(await signedInAs(b.on(1)), 'the new one works on B');
});

t.test('a logout on one instance: the old cookie is refused on the other at once', async (t) => {
  const x = await twoInstances(t);
  const { b } = await signedUp(x);
  const old = new Map(b.cookies);
  for (const i of [0, 1]) t.ok(await signedInAs(b.on(i)));
  const confirm = await b.on(1).get('/_mfa/logout');
  t.equal((await b.on(1).post('/_mfa/logout', { csrf: inputValue(confirm.body, 'csrf') })).status, 200);
  const stale = new Browser(x.a.url);
  for (const [k, v] of old) stale.cookies.set(k, v);
  t.equal((await stale.get('/records')).status, 302, 'the old cookie on A: sent to sign in');
});

t.test('sessions revoked, factors reset by an operator: both instances refuse at once', async (t) => {
  const x = await twoInstances(t);
  const { secret } = await signedUp(x);
  const one = await signedIn(x, secret);
  for (const i of [0, 1]) t.ok(await signedInAs(one.on(i)));
  const pid = x.a.app.gateway.pidOf(ALICE.username)!;
  t.equal(await x.b.app.gateway.admin.revokeSessions(pid), 2, 'the sign-up session and this one');
  for (const i of [0, 1]) t.equal((await one.on(i).get('/records')).status, 302, `revoked: refused on ${'AB'[i]}`);
  const two = await signedIn(x, secret);
  for (const i of [0, 1]) t.ok(await signedInAs(two.on(i)));
  await x.a.app.gateway.admin.resetFactors(pid, ALICE.username);
  for (const i of [0, 1]) t.equal((await two.on(i).get('/records')).status, 302, `reset: refused on ${'AB'[i]}`);
});

t.test('one-time things are accepted once across both instances, also sent at once', async (t) => {
  const x = await twoInstances(t);
  const { secret, codes } = await signedUp(x);
  // The same TOTP step in two sign-ins, one on each instance, sent at once.
  x.clock.advance(30_000);
  const pages = [x.browser(), x.browser()];
  const forms = [];
  for (const [i, p] of pages.entries()) {
    await submitPassword(p.on(i), ALICE.username, ALICE.password);
    forms.push(inputValue((await p.on(i).get('/_mfa/verify')).body, 'csrf'));
  }
  const code = await totpAt(secret, x.clock.now());
  const answers = await Promise.all(pages.map((p, i) => p.on(i).post('/_mfa/verify', { csrf: forms[i]!, code })));
  t.same(answers.map((a) => a.status).sort(), [303, 400], 'one code, one sign-in');
  // A recovery code, sent at once to both instances by two sign-ins.
  const recovering = [x.browser(), x.browser()];
  const rforms = [];
  for (const [i, p] of recovering.entries()) {
    await submitPassword(p.on(i), ALICE.username, ALICE.password);
    rforms.push(inputValue((await p.on(i).get('/_mfa/recovery')).body, 'csrf'));
  }
  const recovered = await Promise.all(recovering.map((p, i) => p.on(i).post('/_mfa/recovery', { csrf: rforms[i]!, code: codes[0]! })));
  t.same(recovered.map((a) => a.status).sort(), [303, 400], 'one recovery code, one sign-in');
});

t.test('a passkey removed on one instance is refused on the other', async (t) => {
  const x = await twoInstances(t);
  const { auth, b, csrf, options } = await atPasskeyEnrolment(x);
  const finished = await jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential: auth.register(options.json), name: 'Key' });
  t.equal(finished.status, 200);
  await b.get(finished.json.next);
  await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  // An app added too (so the passkey is not the last), then the passkey removed on A.
  const setup = await b.on(0).get('/_mfa/security/totp');
  t.equal(setup.status, 200, setup.location);
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  x.clock.advance(30_000);
  t.equal((await b.on(1).post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'App', code: await totpAt(secret, x.clock.now()) })).location, '/_mfa/security?notice=done');
  // A sign-in on B reads the factors (and remembers the record opened) before the removal.
  const before = x.browser();
  await submitPassword(before.on(1), ALICE.username, ALICE.password);
  const beforePage = (await before.on(1).get('/_mfa/verify')).body;
  t.match(beforePage, 'data-csrf');
  x.clock.advance(1000);
  const page = await b.on(0).get('/_mfa/security');
  const key = /name="factor" value="([^"]+)"/.exec(page.body.slice(page.body.indexOf('<bdi>Key</bdi>')))![1]!;
  t.equal((await b.on(0).post('/_mfa/security/remove', { csrf: inputValue(page.body, 'csrf'), factor: key })).status, 303);
  x.clock.advance(30_000);
  const later = x.browser();
  await submitPassword(later.on(1), ALICE.username, ALICE.password);
  const verify = await later.on(1).get('/_mfa/verify');
  t.notMatch(verify.body, 'data-csrf', 'B offers no passkey');
  const vcsrf = inputValue(verify.body, 'csrf');
  const opts = await jsonCall(later.on(1), '/_mfa/verify/passkey/options', vcsrf);
  t.same([opts.status, opts.json.error], [400, 'GW_ERR_BAD_REQUEST'], 'nor asks for one');
  t.ok(x.logs.some((l) => l.includes(`"reqId":"${opts.json.requestId}"`) && l.includes('"detail":"no passkey registered"')), 'as the user has none');
  t.match((await before.on(0).post('/_mfa/verify', { csrf: inputValue(beforePage, 'csrf'), code: await totpAt(secret, x.clock.now()) })).body, 'Sign in again', 'the sign-in begun before the change ended');
});

t.test('cookies the portal set through one instance are sent by the other', async (t) => {
  const x = await twoInstances(t);
  const { b } = await signedUp(x);
  t.equal((await b.on(0).get('/set-cookie-test')).body, 'ok');
  const echo = JSON.parse((await b.on(1).get('/echo')).body);
  t.match(echo.headers.cookie, 'portal_pref=dark', 'B sends what the portal set through A');
  // Before the sign-in too: the portal's login page through A, the password through B.
  const fresh = x.browser();
  const login = await fresh.on(0).get('/login');
  const answer = await fresh.on(1).post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(login.body, 'csrf') });
  t.equal(answer.status, 303, "the portal's form token from A's jar is sent by B");
});

t.test('a form sent twice, the second tap reaching the other instance: the same sign-in, the same step-up', async (t) => {
  const x = await twoInstances(t);
  const { secret } = await signedUp(x);
  x.clock.advance(30_000);
  const b = x.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = inputValue((await b.get('/_mfa/verify')).body, 'csrf');
  const form = { csrf, code: await totpAt(secret, x.clock.now()) };
  const copy = new Balanced([x.a.url, x.b.url]);
  for (const [k, v] of b.cookies) copy.cookies.set(k, v);
  const first = await b.on(0).post('/_mfa/verify', form);
  t.equal(first.status, 303);
  const second = await copy.on(1).post('/_mfa/verify', form);
  t.equal(second.status, 303, 'the second tap on B gets the sign-in');
  t.ok(await signedInAs(copy.on(0)), 'and its cookie works on A');
  // A step-up sent twice: on A, then on B.
  x.clock.advance(6 * 60_000);
  const step = await b.on(1).get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
  const up = { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, x.clock.now()) };
  const again = new Balanced([x.a.url, x.b.url]);
  for (const [k, v] of b.cookies) again.cookies.set(k, v);
  t.equal((await b.on(0).post('/_mfa/step-up', up)).location, '/_mfa/security');
  t.equal((await again.on(1).post('/_mfa/step-up', up)).location, '/_mfa/security', 'the second on B gets the moved session');
  t.equal(again.cookies.get('__Host-mfa-session'), b.cookies.get('__Host-mfa-session'));
  t.equal((await again.on(0).get('/_mfa/security')).status, 200);
});

t.test('wrong codes spread over both instances count together', async (t) => {
  const x = await twoInstances(t);
  await signedUp(x);
  x.clock.advance(30_000);
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) {
    const b = x.browser();
    await submitPassword(b.on(i % 2), ALICE.username, ALICE.password);
    const csrf = inputValue((await b.on(i % 2).get('/_mfa/verify')).body, 'csrf');
    statuses.push((await b.on((i + 1) % 2).post('/_mfa/verify', { csrf, code: '000000' })).status);
  }
  t.same(statuses, [400, 400, 400, 400, 400, 400, 429, 429], 'five free, then a wait, whichever instance checks');
});

t.test('a passkey answer sent to both instances at once signs in once', async (t) => {
  const x = await twoInstances(t);
  const { auth, b, csrf, options } = await atPasskeyEnrolment(x);
  const registered = auth.register(options.json);
  const enrolled = await Promise.all([0, 1].map((i) => jsonCall(b.on(i), '/_mfa/enrol/passkey', csrf, { credential: registered, name: 'Key' })));
  t.same(enrolled.map((r) => r.status).sort(), [200, 400], 'one registration with one challenge');
  const done = enrolled.find((r) => r.status === 200)!;
  await b.get(done.json.next);
  await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  const pages = [x.browser(), x.browser()];
  const sent = [];
  for (const p of pages) {
    await submitPassword(p, ALICE.username, ALICE.password);
    sent.push(passkeyCsrf((await p.get('/_mfa/verify')).body));
  }
  const opts = await jsonCall(pages[0]!.on(0), '/_mfa/verify/passkey/options', sent[0]!);
  const assertion = auth.authenticate(opts.json);
  const logged = x.logs.length;
  const answers = await Promise.all([jsonCall(pages[0]!.on(0), '/_mfa/verify/passkey', sent[0]!, { credential: assertion }), jsonCall(pages[0]!.on(1), '/_mfa/verify/passkey', sent[0]!, { credential: assertion })]);
  t.same(answers.map((a) => `${a.status} ${a.json.next ?? a.json.error}`).sort(), ['200 /records', '400 refused'], 'one sign-in, the other answer refused');
  t.match(x.logs.slice(logged).join('\n'), /"security":"mfa_failed"[^\n]*"reason":"no live authentication challenge"/, 'as its challenge was used');
});

t.test('an enrolment code used by two sign-ins at once, on both instances, binds one factor', async (t) => {
  const x = await twoInstances(t, (raw) => (raw.enrolment = { proof: 'invite', inviteDays: 1 }));
  const pid = x.a.app.gateway.pidOf(ALICE.username)!;
  const { invite } = await x.a.app.gateway.admin.resetFactors(pid, ALICE.username);
  const pages = [x.browser(), x.browser()];
  const forms = [];
  for (const [i, p] of pages.entries()) {
    await submitPassword(p.on(i), ALICE.username, ALICE.password);
    forms.push(inputValue((await p.on(i).get('/_mfa/proof')).body, 'csrf'));
  }
  const answers = await Promise.all(pages.map((p, i) => p.on(i).post('/_mfa/enrol/proof', { csrf: forms[i]!, code: invite!.code })));
  t.same(answers.map((a) => a.location), ['/_mfa/enrol', '/_mfa/enrol'], 'the code is proof for both until a factor is bound');
  const setups = [];
  for (const [i, p] of pages.entries()) {
    const page = await p.on(i).get('/_mfa/enrol/totp');
    setups.push({ csrf: inputValue(page.body, 'csrf'), secret: /id="secret">([^<]+)</.exec(page.body)![1]!.replaceAll(' ', '') });
  }
  const bound = await Promise.all(pages.map(async (p, i) => p.on(1 - i).post('/_mfa/enrol/totp', { csrf: setups[i]!.csrf, code: await totpAt(setups[i]!.secret, x.clock.now()) })));
  t.same(bound.map((a) => a.location ?? String(a.status)).sort(), ['/_mfa/recovery-codes', '403'], 'one factor bound, the other sign-in refused');
  t.match(bound.find((a) => a.status === 403)?.body, 'Your sign-in has expired. Please sign in again.', 'as its enrolment code was used');
});

/** The key of a session record (not of what is kept beside it: a move noted, an ending, a step-up's outcome). */
const SESSION_RECORD = /^session:\{[^}]+\}$/;

/**
 * Once armed, holds the next step-up on the store it is installed on between its read of the old session (a take) and
 * its write of the new one: just after the take (`taken`), or just before the new record is written (`writing`, the
 * move already noted), until released; `held` resolves when it is held.
 */
function stepUpHold() {
  let armed: { at: 'taken' | 'writing'; tookOld: boolean; reached(): Promise<void> } | undefined;
  const arm = (at: 'taken' | 'writing') => {
    let heldNow!: () => void;
    const held = new Promise<void>((r) => (heldNow = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    armed = { at, tookOld: false, reached: () => ((armed = undefined), heldNow(), released) };
    return { held, release };
  };
  const wrap = (kv: RedisKvStore) => {
    const take = kv.take.bind(kv);
    const set = kv.set.bind(kv);
    kv.take = async (key) => {
      const value = await take(key);
      if (armed && value !== null && SESSION_RECORD.test(key)) {
        armed.tookOld = true;
        if (armed.at === 'taken') await armed.reached();
      }
      return value;
    };
    kv.set = async (key, value, ttlMs) => {
      if (armed?.at === 'writing' && armed.tookOld && SESSION_RECORD.test(key)) await armed.reached();
      return set(key, value, ttlMs);
    };
  };
  return { wrap, arm };
}

// The step-up takes the old record, notes the move, writes the new one, then looks whether the old one was ended
// meanwhile (README, step-up: "a logout of the old id at that moment, in another tab, ends the new one too").
t.test('a logout on one instance landing between the read and the write of a step-up of the same session on the other: no session is left', async (t) => {
  const hold = stepUpHold();
  const x = await twoInstances(t, undefined, (kv, i) => i === 0 && hold.wrap(kv));
  const { secret } = await signedUp(x);
  const liveSessions = async () => {
    const records: string[] = [];
    for await (const batch of x.a.kv.scanKeys('session:{')) records.push(...batch.filter((k) => SESSION_RECORD.test(k)));
    return records.sort();
  };
  for (const at of ['taken', 'writing'] as const) {
    const b = await signedIn(x, secret);
    x.clock.advance(6 * 60_000);
    const step = await b.on(0).get('/_mfa/step-up?to=%2F_mfa%2Fsecurity');
    const confirm = await b.on(1).get('/_mfa/logout');
    const stepping = new Balanced([x.a.url, x.b.url]);
    for (const [k, v] of b.cookies) stepping.cookies.set(k, v);
    const before = await liveSessions();
    const logged = x.logs.length;

    const held = hold.arm(at);
    const steppingUp = stepping.on(0).post('/_mfa/step-up', { csrf: inputValue(step.body, 'csrf'), to: '/_mfa/security', code: await totpAt(secret, x.clock.now()) });
    // Not held within 10 s: the step-up no longer goes through take and set, and the test says so instead of hanging.
    let timer: NodeJS.Timeout | undefined;
    const reached = await Promise.race([held.held.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)))]);
    clearTimeout(timer);
    if (!reached) {
      t.fail(`${at}: the step-up was never held at its store`);
      held.release();
      await steppingUp;
      return;
    }
    t.equal((await b.on(1).post('/_mfa/logout', { csrf: inputValue(confirm.body, 'csrf') })).status, 200, `${at}: the logout on B, while the step-up on A is held`);
    held.release();
    const answer = await steppingUp;

    t.equal(answer.status, 401, `${at}: the step-up does not go through: sign in again`);
    t.notOk(x.logs.slice(logged).some((l) => l.includes('"security":"step_up_ok"')), `${at}: no step-up logged as done`);
    t.ok(x.logs.slice(logged).some((l) => l.includes('"detail":"session ended during step-up"')), `${at}: the step-up found its session ended`);
    const after = await liveSessions();
    t.equal(after.length, before.length - 1, `${at}: one session fewer in the store (the one logged out)`);
    t.same(after.filter((k) => !before.includes(k)), [], `${at}: and no new one`);
    for (const i of [0, 1]) t.equal((await stepping.on(i).get('/records')).status, 302, `${at}: the step-up's cookie signs in nowhere (${'AB'[i]})`);
  }
});

t.test('new recovery codes asked for with a double-click reaching both instances: one set, shown by both answers', async (t) => {
  const x = await twoInstances(t);
  const { b } = await signedUp(x);
  const page = await b.on(0).get('/_mfa/security');
  const form = { csrf: inputValue(page.body, 'csrf'), replaces: inputValue(page.body, 'replaces') };
  x.clock.advance(1000);
  const answers = await Promise.all([0, 1].map((i) => b.on(i).post('/_mfa/security/recovery-codes', form)));
  const sets = answers.map((a) => [...a.body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]).join());
  t.same(answers.map((a) => a.status), [200, 200]);
  t.ok(sets[0]!.length > 0 && sets[0] === sets[1], 'the same ten codes');
});

t.test('an app removed on one instance: its codes are refused on the other', async (t) => {
  const x = await twoInstances(t);
  const { b, secret } = await signedUp(x);
  const setup = await b.on(1).get('/_mfa/security/totp');
  const second = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  x.clock.advance(30_000);
  t.equal((await b.on(0).post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'Tablet', code: await totpAt(second, x.clock.now()) })).location, '/_mfa/security?notice=done');
  // B checks a code of the first app (and opens the factors record), then A removes that app.
  const onB = await signedIn(x, secret);
  t.ok(await signedInAs(onB.on(1)));
  const page = await b.on(0).get('/_mfa/security');
  t.equal(page.status, 200);
  const first = /name="factor" value="([^"]+)"/.exec(page.body)![1]!;
  t.equal((await b.on(0).post('/_mfa/security/remove', { csrf: inputValue(page.body, 'csrf'), factor: first })).status, 303);
  x.clock.advance(30_000);
  const later = x.browser();
  await submitPassword(later.on(1), ALICE.username, ALICE.password);
  const csrf = inputValue((await later.on(1).get('/_mfa/verify')).body, 'csrf');
  t.equal((await later.on(1).post('/_mfa/verify', { csrf, code: await totpAt(secret, x.clock.now()) })).status, 400, 'the removed app on B');
  t.equal((await later.on(1).post('/_mfa/verify', { csrf, code: await totpAt(second, x.clock.now()) })).status, 303, 'the other app still works');
});

/**
 * Once armed, holds the first write of a pending login the store makes after a factor record was written (a slow
 * network, a paused process), until released: `held` resolves when it is held. `wrap` installs it on a store.
 */
function pendingMoveHold() {
  let armed = false;
  let factorsWritten = false;
  let heldNow!: () => void;
  const held = new Promise<void>((r) => (heldNow = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const wrap = (kv: RedisKvStore) => {
    const setIfAbsent = kv.setIfAbsent.bind(kv);
    const replaceIf = kv.replaceIf.bind(kv);
    const wrote = (key: string, written: boolean) => {
      if (armed && written && key.endsWith(':factors')) factorsWritten = true;
      return written;
    };
    kv.setIfAbsent = async (key, value, ttlMs) => wrote(key, await setIfAbsent(key, value, ttlMs));
    kv.replaceIf = async (key, expected, value, ttlMs) => {
      if (factorsWritten && key.startsWith('pending:')) {
        armed = factorsWritten = false;
        heldNow();
        await released;
      }
      return wrote(key, await replaceIf(key, expected, value, ttlMs));
    };
  };
  return { wrap, arm: () => (armed = true), held, release };
}

/** The codes the recovery-codes page shows, then acknowledged; then a new sign-in with the first of them. */
async function codesShownSignIn(t: Tap.Test, x: Instances, b: Balanced, csrf: string) {
  const codes = [...(await b.on(0).get('/_mfa/recovery-codes')).body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  t.equal(codes.length, 10, 'ten recovery codes shown');
  t.equal((await b.on(1).post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).status, 303);
  x.clock.advance(30_000);
  const later = x.browser();
  await submitPassword(later.on(1), ALICE.username, ALICE.password);
  const rcsrf = inputValue((await later.on(1).get('/_mfa/recovery')).body, 'csrf');
  t.equal((await later.on(1).post('/_mfa/recovery', { csrf: rcsrf, code: codes[0]! })).status, 303, 'a recovery code shown signs in');
}

t.test('the enrolment page reloaded on one instance while the other binds the app: the codes shown are the stored ones', async (t) => {
  const hold = pendingMoveHold();
  const x = await twoInstances(t, undefined, (kv, i) => i === 0 && hold.wrap(kv));
  const b = x.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const setup = await b.on(0).get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const csrf = inputValue(setup.body, 'csrf');
  // A binds the app; its move on to the recovery codes is held while the page is reloaded on B.
  hold.arm();
  const binding = b.on(0).post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, x.clock.now()) });
  await hold.held;
  t.equal((await b.on(1).get('/_mfa/enrol/totp')).location, '/_mfa/recovery-codes', 'B goes on to the recovery codes');
  hold.release();
  t.equal((await binding).location, '/_mfa/recovery-codes', 'and so does A');
  await codesShownSignIn(t, x, b, csrf);
});

t.test('the enrolment page reloaded on one instance while the other binds a passkey: the codes shown are the stored ones', async (t) => {
  const hold = pendingMoveHold();
  const x = await twoInstances(t, undefined, (kv, i) => i === 0 && hold.wrap(kv));
  const { auth, b, csrf, options } = await atPasskeyEnrolment(x, (browser) => browser.on(0));
  hold.arm();
  const binding = jsonCall(b.on(0), '/_mfa/enrol/passkey', csrf, { credential: auth.register(options.json), name: 'Key' });
  await hold.held;
  t.equal((await b.on(1).get('/_mfa/enrol')).location, '/_mfa/recovery-codes', 'B goes on to the recovery codes');
  hold.release();
  t.equal((await binding).status, 200, 'and so does A');
  await codesShownSignIn(t, x, b, csrf);
});
