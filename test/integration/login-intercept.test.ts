// The intercepted login against what a browser (or an attacker's script) can send at once or in odd spellings.
import { createServer } from 'node:http';
import t, { type Test } from 'tap';
import { GatewayError } from '../../src/errors.js';
import { loginContentType, parseLoginBody } from '../../src/services/login.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { inputValue } from '../helpers/browser.js';
import { ALICE, BOB, enrol, portalReceived, signUpAndEnrol, startStack, submitPassword, totpAt } from '../helpers/stack.js';

t.test('two logins sent at once from one browser: only one gets its portal session', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const p = s.config.server.prefix;
  // Both accounts with their authenticator apps (one of them the attacker's own).
  const secrets = new Map<string, string>();
  for (const user of [BOB, ALICE]) {
    const own = s.browser();
    await submitPassword(own, user.username, user.password);
    secrets.set(user.username, (await enrol(s, own)).secret);
  }

  // One pre-login browser (its portal session in the gateway's jar), then Bob's and Alice's passwords at once.
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const twin = s.browser();
  for (const [k, v] of b.cookies) twin.cookies.set(k, v);
  const [bob, alice] = await Promise.all([
    b.post('/login', { username: BOB.username, password: BOB.password, csrf }),
    twin.post('/login', { username: ALICE.username, password: ALICE.password, csrf }),
  ]);
  const posts = s.portalRequests.filter((r) => r.method === 'POST' && r.url === '/login').slice(-2);
  const withSession = posts.filter((r) => String(r.headers.cookie ?? '').includes('PORTALSESSID='));
  t.equal(withSession.length, 1, 'exactly one of the two carried the browser\'s portal session');
  const accepted = [bob, alice].filter((r) => r.status === 303);
  t.equal(accepted.length, 1, `one login goes on to the second factor (answers ${bob.status}, ${alice.status})`);
  // Whichever went on: its own second factor opens its own account's portal session, never the other's.
  const [winner, loser, browser] = bob.status === 303 ? [BOB, ALICE, b] : [ALICE, BOB, twin];
  s.clock.advance(30_000);
  const verify = await browser.get(`${p}/verify`);
  const done = await browser.post(`${p}/verify`, { csrf: inputValue(verify.body, 'csrf'), code: await totpAt(secrets.get(winner.username)!, s.clock.now()) });
  t.equal(done.status, 303);
  const records = await browser.get('/records');
  t.match(records.body, `Signed in as ${winner.username}`, "the second factor opens that account's portal session");
  t.notMatch(records.body, loser.name, "never the other account's");
  // Each login on its own still works: the jar was only taken by the one that had it.
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 303, 'a later login from a fresh page goes on');
});

t.test('a public page asked for while a password is checked: its answer, which may be the account\'s, is withheld', async (t) => {
  // The demo portal keeps its session id at login: the pre-login jar's session is the one the password signs in.
  const s = await startStack({ patch: (raw) => raw.policy.rules.unshift({ name: 'public slow page', paths: ['/slow'], decision: 'public' }) });
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  t.equal((await b.get('/slow?who=1')).body, 'slow ok: nobody', 'before: the public page, not signed in');
  // The portal reads the session a second after it has the request; the password is checked meanwhile.
  const during = b.get('/slow?ms=1000&who=1');
  await portalReceived(s, '/slow?ms=1000&who=1');
  const browserId = b.cookies.get('__Host-mfa-browser')!;
  const login = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf });
  t.equal(login.status, 303, 'the password is right');
  // A client that keeps the browser id has a jar made again under it (another portal session) meanwhile.
  const same = s.browser();
  same.cookies.set('__Host-mfa-browser', browserId);
  t.equal((await same.get('/login')).status, 200);
  t.equal(same.cookies.get('__Host-mfa-browser'), browserId, 'under the same id');
  const withheld = await during;
  t.equal(withheld.status, 409, 'the answer that came after the password is withheld');
  t.notMatch(withheld.body, ALICE.username, "nothing of the account's page");
  t.match(withheld.body, 'finish signing in');
  t.ok(s.logs.some((l) => l.includes('GW_ERR_SIGNED_IN_MEANWHILE')));
  t.equal((await b.get('/slow?who=1')).body, 'slow ok: nobody', 'after: the public page again, without the signed-in portal session');
  t.equal((await b.get('/records')).location, '/_mfa/continue', 'and the portal pages wait for the second factor');
});

t.test("a pre-login browser id planted in a victim's browser (session fixation): its holder never gets the portal session the victim's password signs in", async (t) => {
  // The demo portal keeps its session id at login, so the pre-login jar's portal session is the one the password signs in.
  const s = await startStack({ patch: (raw) => raw.policy.rules.unshift({ name: 'public page', paths: ['/slow'], decision: 'public' }) });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  const attacker = s.browser();
  t.equal((await attacker.get('/login')).status, 200, 'the attacker starts a pre-login jar');
  const planted = attacker.cookies.get('__Host-mfa-browser')!;
  const victim = s.browser();
  victim.cookies.set('__Host-mfa-browser', planted);
  s.clock.advance(30_000);
  const csrf = inputValue((await victim.get('/login')).body, 'csrf');
  t.equal(victim.cookies.get('__Host-mfa-browser'), planted, 'the victim uses the planted id');
  const before = s.portalRequests.length;
  t.equal((await victim.post('/login', { username: ALICE.username, password: ALICE.password, csrf })).status, 303, 'the password is right');
  const signedIn = /PORTALSESSID=([0-9a-f]+)/.exec(String(s.portalRequests.slice(before).find((r) => r.method === 'POST')!.headers.cookie))![1]!;
  t.notOk(victim.cookies.has('__Host-mfa-browser'), 'the pre-login id is dropped from the browser');
  const attackerSees = async (when: string) => {
    const from = s.portalRequests.length;
    t.equal((await attacker.get('/slow?who=1')).body, 'slow ok: nobody', `${when}: the portal answers the planted id as nobody`);
    for (const r of s.portalRequests.slice(from)) t.notMatch(String(r.headers.cookie ?? ''), signedIn, `${when}: the signed-in portal session never goes out under the planted id`);
  };
  await attackerSees('after the password');
  const verifyCsrf = inputValue((await victim.get('/_mfa/verify')).body, 'csrf');
  t.equal((await victim.post('/_mfa/verify', { csrf: verifyCsrf, code: await totpAt(secret, s.clock.now()) })).status, 303, 'the victim finishes');
  await attackerSees('after the second factor');
  t.equal((await victim.get('/slow?who=1')).body, `slow ok: ${ALICE.username}`, "the victim's session is the signed-in one");
  t.equal((await attacker.get('/records')).location, '/login', 'the attacker is not signed in');
});

t.test('answers that change the pre-login cookies meanwhile are no password login: the page loads whole', async (t) => {
  // A load balancer's stickiness cookie (AWS ALB) has a new value on each answer; so has a session cookie some
  // frameworks encrypt again on each (Rails' expire_after).
  let n = 0;
  const portal = createServer((req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': `AWSALB=v${++n}; Path=/; Max-Age=604800` }).end(`ok ${req.headers.cookie}`), Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0));
  });
  await new Promise<void>((r) => portal.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => portal.close(r)));
  const s = await startStack({ patch: (raw) => (raw.portal.url = `http://127.0.0.1:${(portal.address() as { port: number }).port}`) });
  t.teardown(s.close);
  const b = s.browser();
  t.equal((await b.get('/login')).status, 200, 'the first answer starts the jar');
  const [fast, slow] = await Promise.all([b.get('/static/a.css?ms=20'), b.get('/static/b.js?ms=300')]);
  t.same([fast.status, slow.status], [200, 200], 'both assets, the slower after the faster changed the cookie');
  t.notOk(s.logs.some((l) => l.includes('GW_ERR_SIGNED_IN_MEANWHILE')));
  t.match((await b.get('/static/c.css')).body, /^ok AWSALB=v3$/, 'the jar holds the latest value');
});

/**
 * A public page whose answer comes while the store's reads fail with `error` (as the jar is checked then): the gateway's
 * answer, and its stack for the log.
 */
async function answeredWhileStoreFails(t: Test, error: Error) {
  let failing = false;
  const s = await startStack({
    patch: (raw) => raw.policy.rules.unshift({ name: 'public slow page', paths: ['/slow'], decision: 'public' }),
    kv: (clock) =>
      new (class extends MemoryKvStore {
        override async get(key: string): Promise<string | null> {
          if (failing) throw error;
          return super.get(key);
        }
      })(clock),
  });
  t.teardown(s.close);
  const b = s.browser();
  await b.get('/login');
  const during = b.get('/slow?ms=300&who=1');
  await portalReceived(s, '/slow?ms=300&who=1');
  failing = true;
  const answer = await during;
  failing = false;
  return { s, answer };
}

t.test('a public page whose jar cannot be checked when its answer comes (the store failing) is not passed on', async (t) => {
  const { answer } = await answeredWhileStoreFails(t, new GatewayError('GW_ERR_STORE_UNAVAILABLE', 'store down (test)'));
  t.equal(answer.status, 503, 'fails closed, as the store does');
  t.notMatch(answer.body, 'slow ok');
});

t.test("a fault of the gateway's own while passing an answer on is an internal error, logged with its stack, not the portal's failure", async (t) => {
  const { s, answer } = await answeredWhileStoreFails(t, new TypeError('a fault (test)'));
  t.equal(answer.status, 500, 'GW_ERR_INTERNAL, not a 502 blaming the portal');
  t.notMatch(answer.body, 'slow ok');
  const failed = s.logs.map((l) => JSON.parse(l) as { msg: string; level: number; code?: string; err?: { stack?: string } }).filter((l) => l.msg === 'request failed');
  t.match(failed, [{ level: 50, code: 'GW_ERR_INTERNAL', err: { stack: /a fault \(test\)/ } }], 'an error, with the stack of its cause');
});

t.test('a password sent below a login script is the login: it never reaches the portal with a session\'s jar', async (t) => {
  // PHP and ASP.NET run a script with path info: `/login.php/x` is `/login.php`, and forwarded with a signed-in
  // session's jar it would switch that session to the account whose password came with it.
  const s = await startStack({
    patch: (raw) => {
      raw.portal.login.paths = ['/login', '/login.php', '/app/j_security_check'];
      raw.portal.methods = ['GET', 'POST', 'PUT'];
    },
  });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s, ALICE);
  await b.get('/records');
  const aliceJar = /PORTALSESSID=[^;]+/.exec(String(s.portalRequests.at(-1)!.headers.cookie))?.[0];
  t.ok(aliceJar, "Alice's portal session");
  for (const path of ['/login.php/x', '/Login.PHP/a/b/', '/login.php/%78']) {
    const before = s.portalRequests.length;
    const r = await b.post(path, { username: BOB.username, password: BOB.password });
    t.equal(r.status, 404, `${path}: the portal's own answer (the demo portal has no login.php)`);
    const sent = s.portalRequests.slice(before);
    t.same(sent.map((q) => `${q.method} ${q.url}`), ['POST /login.php'], 'intercepted: sent as the configured login path');
    t.notMatch(String(sent[0]?.headers.cookie), aliceJar!, "with the browser's pre-login jar, not Alice's session's");
  }
  // In another method too: Jetty signs in at any j_security_check whatever the method, and reads PUT forms.
  for (const path of ['/login.php/x', '/other/j_security_check']) {
    const before = s.portalRequests.length;
    const r = await b.send('PUT', path, new URLSearchParams({ username: BOB.username, password: BOB.password }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });
    t.equal(r.status, 405, `PUT ${path}: the login, in a method it does not take`);
    t.equal(s.portalRequests.length, before, 'nothing reached the portal');
  }
  t.match((await b.get('/records')).body, `Signed in as ${ALICE.username}`, "Alice's session is still Alice's at the portal");
  // Below a route name (`/login`) are other routes of the portal (Spring's /login/oauth2/code/…): ordinary requests.
  const before = s.portalRequests.length;
  t.equal((await b.post('/login/x', { code: 'x', state: 'y' })).status, 404, 'POST /login/x goes to the portal');
  t.same(s.portalRequests.slice(before).map((q) => `${q.method} ${q.url}`), ['POST /login/x']);
  // Unless it carries the login's fields, as any request to another path (SECURITY C-30).
  t.equal((await b.post('/login/x', { username: BOB.username, password: BOB.password })).status, 403, 'the login fields below the login path: refused');
  t.equal(s.portalRequests.length, before + 1, 'nothing more reached the portal');
  t.equal((await b.get('/login.php/x')).status, 404, 'GET below the login script is an ordinary request');
  t.equal(s.portalRequests.at(-1)!.url, '/login.php/x');
});

t.test('the same form sent twice at once: both answers go on to the second factor, with one login at the portal', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const p = s.config.server.prefix;
  const own = s.browser();
  await submitPassword(own, BOB.username, BOB.password);
  const { secret } = await enrol(s, own);

  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const twin = s.browser();
  for (const [k, v] of b.cookies) twin.cookies.set(k, v);
  const before = s.portalRequests.filter((r) => r.method === 'POST').length;
  const [first, second] = await Promise.all([b.post('/login', { username: BOB.username, password: BOB.password, csrf }), twin.post('/login', { username: BOB.username, password: BOB.password, csrf })]);
  t.same([first.status, second.status], [303, 303], 'both go on');
  t.equal(first.location, `${p}/verify`);
  t.equal(second.location, `${p}/verify`);
  t.equal(s.portalRequests.filter((r) => r.method === 'POST').length - before, 1, 'one password login reached the portal');
  t.equal(twin.cookies.get('__Host-mfa-pending'), b.cookies.get('__Host-mfa-pending'), 'the same sign-in');
  t.notOk(s.logs.some((l) => l.includes('"security":"password_failed"')), 'no failed password counted');
  // The browser shows whichever answer came last: either one finishes the sign-in.
  s.clock.advance(30_000);
  const verify = await twin.get(`${p}/verify`);
  const done = await twin.post(`${p}/verify`, { csrf: inputValue(verify.body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(done.status, 303);
  t.match((await twin.get('/records')).body, `Signed in as ${BOB.username}`);
});

t.test('the same browser sending another password for the account gets no share of a sign-in that succeeded', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const copy = () => {
    const c = s.browser();
    for (const [k, v] of b.cookies) c.cookies.set(k, v);
    return c;
  };
  const [wrongCopy, laterCopy] = [copy(), copy()];
  const [right, wrong] = await Promise.all([b.post('/login', { username: BOB.username, password: BOB.password, csrf }), wrongCopy.post('/login', { username: BOB.username, password: 'wrong-password', csrf })]);
  const pendingOf = (x: typeof b) => x.cookies.get('__Host-mfa-pending');
  t.equal(right.status, 303);
  t.not(wrong.status, 303, 'a wrong password sent at the same time is not handed the sign-in');
  t.notOk(pendingOf(wrongCopy), 'nor its pending cookie');
  const later = await laterCopy.post('/login', { username: BOB.username, password: 'wrong-password', csrf });
  t.not(later.status, 303, 'nor one sent just after');
  t.notOk(pendingOf(laterCopy));
});

t.test('a failed login keeps the browser its portal session (the portal\'s error page comes with a new form token)', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const failed = await submitPassword(b, ALICE.username, 'wrong');
  t.equal(failed.status, 200);
  t.match(failed.body, 'Invalid username or password.');
  const retry = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(failed.body, 'csrf') });
  t.equal(retry.status, 303, 'the form on the error page works: the jar was put back');
});

t.test('a login another site posts (login CSRF) is refused before it reaches the portal, changing no cookie', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const page = await b.get('/login');
  const browserCookie = b.cookies.get('__Host-mfa-browser');
  const form = { username: ALICE.username, password: ALICE.password, csrf: inputValue(page.body, 'csrf') };
  const before = s.portalRequests.length;
  for (const headers of [{ 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }]) {
    const r = await b.post('/login', form, headers);
    t.equal(r.status, 403, JSON.stringify(headers));
    t.match(r.body, 'This form has expired');
  }
  t.equal(s.portalRequests.length, before, 'no password reached the portal');
  t.notOk(b.cookies.has('__Host-mfa-pending'), 'no sign-in planted in the browser');
  t.equal(b.cookies.get('__Host-mfa-browser'), browserCookie, "the browser's pre-login jar kept");
  t.equal((await b.post('/login', form, { origin: 'null' })).status, 403, 'an opaque origin, the browser not saying where the form was');
  t.equal(s.portalRequests.length, before, 'no password reached the portal');
  const same = await b.post('/login', form, { 'sec-fetch-site': 'same-origin', origin: s.url });
  t.equal(same.status, 303, 'the form on its own page still signs in');
  // The portal's login page served with `Referrer-Policy: no-referrer`: the browser posts its form with "Origin: null".
  const other = s.browser();
  const csrf = inputValue((await other.get('/login')).body, 'csrf');
  const noReferrer = await other.post('/login', { ...form, csrf }, { 'sec-fetch-site': 'same-origin', origin: 'null' });
  t.equal(noReferrer.status, 303, 'the form on its own page signs in, also from a page that sends no referrer');
});

t.test('login Content-Type: the configured type with at most charset=utf-8, and the portal gets exactly that', async (t) => {
  t.equal(loginContentType('application/x-www-form-urlencoded', 'form'), 'application/x-www-form-urlencoded');
  t.equal(loginContentType('Application/X-WWW-Form-Urlencoded; Charset="UTF-8"', 'form'), 'application/x-www-form-urlencoded; charset=utf-8');
  t.equal(loginContentType('application/json', 'json'), 'application/json');
  for (const bad of [
    'application/x-www-form-urlencoded; charset = cp037',
    "application/x-www-form-urlencoded; charset*=utf-8''cp037",
    'application/x-www-form-urlencoded; xcharset=cp037',
    'application/x-www-form-urlencoded; charset=utf-8; charset=cp037',
    'application/x-www-form-urlencoded; charset=utf-8; boundary=x',
    'application/x-www-form-urlencoded; charset=iso-8859-1',
    'application/json',
    undefined,
  ]) t.equal(loginContentType(bad, 'form'), null, String(bad));

  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const form = new URLSearchParams({ username: ALICE.username, password: 'wrong', csrf }).toString();
  const before = s.portalRequests.length;
  for (const type of ['application/x-www-form-urlencoded; charset = cp037', "application/x-www-form-urlencoded; charset*=utf-8''cp037", 'application/x-www-form-urlencoded; xcharset=cp037']) {
    t.equal((await b.send('POST', '/login', form, { 'content-type': type })).status, 415, type);
  }
  t.equal(s.portalRequests.length, before, 'none reached the portal');
  t.equal((await b.send('POST', '/login', form, { 'content-type': 'application/x-www-form-urlencoded; Charset="UTF-8"' })).status, 200);
  t.equal(s.portalRequests.at(-1)!.headers['content-type'], 'application/x-www-form-urlencoded; charset=utf-8', 'the portal gets the type as checked');
  t.equal((await b.send('POST', '/login', form, { 'content-type': 'application/x-www-form-urlencoded' })).status, 200);
  t.equal(s.portalRequests.at(-1)!.headers['content-type'], 'application/x-www-form-urlencoded', 'no charset added when none was sent');
});

t.test('form bodies: raw bytes beyond ASCII are refused (a browser percent-encodes them)', async (t) => {
  t.throws(() => parseLoginBody(Buffer.from('username=alic\xe9&password=x', 'latin1'), 'form', ['username']), { code: 'GW_ERR_BAD_REQUEST' });
  t.throws(() => parseLoginBody(Buffer.from('username=alice&password=\xc3\xa9&x\x7f=1', 'latin1'), 'form', ['username']), { code: 'GW_ERR_BAD_REQUEST' });
  t.equal(parseLoginBody(Buffer.from('username=alic%C3%A9&password=x'), 'form', ['username']).username, 'alicé', 'percent-encoded: fine');
});

t.test('portal.login.usernamePattern: one form of a name per account; other logins never reach the portal', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.portal.login.usernamePattern = '[a-z0-9._-]+') });
  t.teardown(s.close);
  const before = s.portalRequests.filter((r) => r.method === 'POST').length;
  for (const name of ['alice@riverbend.example', 'Alice Ngata']) {
    t.equal((await submitPassword(s.browser(), name, ALICE.password)).status, 400, name);
  }
  t.equal(s.portalRequests.filter((r) => r.method === 'POST').length, before, 'none reached the portal');
  t.equal((await submitPassword(s.browser(), ALICE.username.toUpperCase(), ALICE.password)).status, 303, 'the pattern applies to the canonical (lower-case) name');
});

t.test('portal.login.failure: an answer that is neither a success nor a refusal is not shown, and its portal session is dropped', async (t) => {
  const strict = (raw: Record<string, any>) => {
    raw.portal.login.success = { status: [302], location: '^/records$' };
    raw.portal.login.failure = { status: [200, 403] };
  };
  const s = await startStack({ patch: strict });
  t.teardown(s.close);
  // A success the rules miss: the portal sends the browser on to the `next` page, which the location rule does not expect.
  const b = s.browser();
  const csrf = inputValue((await b.get('/login?next=/messages')).body, 'csrf');
  const unrecognised = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf, next: '/messages' });
  t.equal(unrecognised.status, 502, 'a 502 page');
  t.match(unrecognised.body, 'The sign-in could not be completed', 'saying so, with the way back to the sign-in page');
  t.match(unrecognised.body, 'href="/login"');
  t.notOk(unrecognised.location, 'not sent on to the portal page');
  t.equal(await s.kv.get(`jar:{${b.cookies.get('__Host-mfa-browser')}}`), null, 'the jar it went out with (perhaps signed in now) is dropped');
  t.ok(s.logs.some((l) => l.includes('"security":"password_failed"') && l.includes('unrecognised answer')), 'counted and logged as a failed password');
  // The jar it used stays taken: a new login page is a new portal session, and its form works.
  const again = await submitPassword(b, ALICE.username, ALICE.password);
  t.equal(again.status, 303, 'a recognised success goes on to the second factor');
  // A refusal that matches the failure rules is shown as before.
  const wrong = await submitPassword(s.browser(), ALICE.username, 'wrong');
  t.equal(wrong.status, 200);
  t.match(wrong.body, 'Invalid username or password.');

  // Without failure rules, whatever is not a success is shown as the portal's answer (the documented default).
  const open = await startStack({ patch: (raw) => (raw.portal.login.success = { status: [302], location: '^/records$' }) });
  t.teardown(open.close);
  const o = open.browser();
  const ocsrf = inputValue((await o.get('/login?next=/messages')).body, 'csrf');
  t.equal((await o.post('/login', { username: ALICE.username, password: ALICE.password, csrf: ocsrf, next: '/messages' })).location, '/messages');
});

t.test('portal.login.page with {target}: a page asked for while signed out is where the sign-in ends', async (t) => {
  const s = await startStack({ patch: (raw) => void (raw.portal.login.page = '/login?next={target}') });
  t.teardown(s.close);
  const b = s.browser();
  const asked = await b.get('/messages?folder=in%20box');
  t.equal(asked.status, 302);
  t.equal(asked.location, '/login?next=%2Fmessages%3Ffolder%3Din%2520box', 'the path and query asked for, percent-encoded');
  // The portal's login form carries it on, and its answer to the password names it.
  const page = await b.get(asked.location!);
  const next = inputValue(page.body, 'next');
  t.equal(next, '/messages?folder=in%20box');
  const password = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(page.body, 'csrf'), next });
  t.equal(password.status, 303, 'the password accepted');
  const { done } = await enrol(s, b);
  t.equal(done.location, '/messages?folder=in%20box', 'after the second factor: the page asked for');
  // Where no page was asked for (an error page's link, the signed-out page), the way on is '/'.
  t.match((await s.browser().send('POST', '/messages', 'a=1', { 'content-type': 'application/x-www-form-urlencoded' })).body, 'href="/login?next=%2F"');
  t.equal((await s.browser().get('/_mfa/security')).location, '/login?next=%2F_mfa%2Fsecurity', 'a gateway page asked for');
});
