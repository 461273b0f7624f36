// Forward-auth mode end to end: a real nginx running docs/forward-auth/nginx.conf in front of the demo portal asks
// the gateway about each request; and the gateway's endpoint itself, called as a proxy calls it.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { COOKIE } from '../../src/http/cookies.js';
import { Browser, inputValue } from '../helpers/browser.js';
import { startNginx, type TestNginx } from '../helpers/nginx.js';
import { TestCa } from '../helpers/pki.js';
import { ALICE, BOB, enrol, signUpAndEnrol, startStack, type Stack, type StackOptions, totpAt } from '../helpers/stack.js';

function forwardAuthStack(patch: (raw: Record<string, any>) => void = () => {}, newSessionAtLogin: StackOptions['newSessionAtLogin'] = true): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-groups-'));
  const groupsFile = join(dir, 'groups.yaml');
  writeFileSync(groupsFile, 'alice: [patients, carers]\n');
  return startStack({
    newSessionAtLogin,
    patch: (raw) => {
      raw.server.trustedProxies = ['127.0.0.1'];
      raw.forwardAuth = { enabled: true, sessionCookies: ['PORTALSESSID'] };
      raw.identity = { userHeader: 'X-MFA-User', groupsHeader: 'X-MFA-Groups' };
      raw.policy = {
        rules: [
          { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
          { name: 'admin closed', paths: ['/admin/'], decision: 'deny' },
          { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 300 },
          { name: 'portal', paths: ['/'], decision: 'mfa' },
        ],
      };
      raw.groups = { file: groupsFile };
      patch(raw);
    },
  });
}

/** The gateway and the portal, and nginx in front of both; all stopped when the test ends. */
async function behindNginx(t: Test, patch?: (raw: Record<string, any>) => void): Promise<{ s: Stack; nginx: TestNginx; browser: () => Browser }> {
  const s = await forwardAuthStack(patch);
  const nginx = await startNginx({ gateway: s.url, portal: s.portal.url }).catch(async (err) => {
    await s.close();
    throw err;
  });
  t.teardown(async () => {
    if (!t.passing()) console.error(`nginx error log:\n${nginx.errorLog()}`);
    await nginx.close();
    await s.close();
  });
  return { s, nginx, browser: () => new Browser(nginx.url, nginx.dispatcher) };
}

/** Password and authenticator-app enrolment, all through nginx. */
async function signIn(s: Stack, b: Browser, loginPath = '/login', user = ALICE): Promise<string> {
  const form = await b.get('/login');
  const password = await b.post(loginPath, { username: user.username, password: user.password, csrf: inputValue(form.body, 'csrf') });
  if (password.location !== '/_mfa/enrol') throw new Error(`password login answered ${password.status} ${password.location}`);
  const { secret, done } = await enrol(s, b);
  if (done.status !== 303) throw new Error(`enrolment answered ${done.status}`);
  return secret;
}

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const cookieOf = (b: Browser) => [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
const reachedPortal = (s: Stack, from: number) => s.portalRequests.slice(from).map((r) => r.url);

t.test('signed out: nginx sends the browser to the login page, which the gateway serves', async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  const records = await b.get('/records');
  t.equal(records.status, 302, 'a portal page needs a sign-in');
  t.equal(records.location, '/login');
  t.same(reachedPortal(s, 0), [], 'the portal never saw the request');

  const page = await b.get('/login', { 'x-mfa-user': 'admin' });
  t.equal(page.status, 200);
  t.match(page.body, 'name="password"', "the portal's own login form");
  t.ok(b.cookies.has('PORTALSESSID'), "forward-auth mode: the portal's pre-login cookie is the browser's");
  t.equal((await b.get('/static/portal.css')).status, 200, 'a public path, asked about and let through');
  // The gateway sees the browser's headers on the auth request: one that names a user is refused outright.
  t.equal((await b.get('/static/portal.css', { 'x-mfa-user': 'admin', 'x-mfa-groups': 'staff' })).status, 403, 'a client-sent identity header: refused');
  t.notOk(
    s.portalRequests.some((r) => r.headers['x-mfa-user'] !== undefined || r.headers['x-mfa-groups'] !== undefined),
    'no identity header reaches the portal for a signed-out browser, whatever the client sent',
  );
});

t.test('sign in through nginx; the portal is told who is asking, and only by the gateway', async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  await signIn(s, b, '/LOGIN/');
  t.ok(b.cookies.has('__Host-mfa-session'), 'the gateway session, set through nginx');

  const records = await b.get('/records');
  t.equal(records.status, 200);
  t.match(records.body, 'Health records for Alice Ngata', "the portal's page, served straight from the portal");
  t.equal(records.headers['cache-control'], 'no-store', 'not kept by the browser (Back on a shared computer)');
  t.equal((await b.get('/static/portal.css')).headers['cache-control'], 'public, max-age=3600', "the portal's caching of its style sheet stands");
  t.equal((await b.get('/echo', { accept: 'application/json', 'x-mfa-user': 'admin', 'x-mfa-groups': 'staff' })).status, 403, 'a client-sent identity header: refused');
  // The browser's X-Forwarded-Host too is nginx's to set (the portal may build links from it), and its other
  // forwarding headers, which frameworks read for the host, scheme, port or path asked for, never reach the portal.
  const forwarding = {
    forwarded: 'for=10.1.1.1;host=evil.example;proto=http',
    'x-forwarded-uri': '/admin/',
    'x-forwarded-method': 'DELETE',
    'x-forwarded-prefix': '/evil',
    'x-forwarded-port': '8443',
    'x-forwarded-server': 'evil.example',
    'x-forwarded-ssl': 'off',
    'x-forwarded-scheme': 'http',
    'front-end-https': 'off',
    'wl-proxy-ssl': 'false',
    'x-arr-ssl': '2048|256|CN=forged',
  };
  const echoed = await b.get('/echo', { accept: 'application/json', 'x-forwarded-host': 'evil.example', 'x-real-ip': '10.1.1.1', ...forwarding });
  t.equal(echoed.status, 200);
  const { headers } = JSON.parse(echoed.body);
  t.equal(headers['x-mfa-user'], 'alice', "the gateway's answer");
  t.equal(headers['x-forwarded-host'], '127.0.0.1', "nginx's (the Host it was asked for), not the browser's");
  t.equal(headers['x-real-ip'], '127.0.0.1', "nginx's");
  for (const name of Object.keys(forwarding)) t.equal(headers[name], undefined, `the browser's ${name} is not passed on`);
  t.same(String(headers['x-mfa-groups']).split(',').sort(), ['carers', 'patients']);
  t.notOk(s.portalRequests.some((r) => /admin|staff/.test(`${r.headers['x-mfa-user']} ${r.headers['x-mfa-groups']}`)), 'the client-sent identity never reached the portal');

  const thief = browser();
  thief.cookies.set('PORTALSESSID', b.cookies.get('PORTALSESSID')!);
  const stolen = await thief.get('/records');
  t.equal(stolen.status, 302, "the portal's cookie alone gets nowhere: every location asks the gateway");

  const beforeLogout = new Map(b.cookies);
  const out = await b.get('/logout');
  t.equal(out.status, 302, "the portal's logout answer, through the gateway");
  const old = browser();
  for (const [k, v] of beforeLogout) old.cookies.set(k, v);
  t.equal((await old.get('/records')).status, 302, 'the gateway session ended with the logout');
});

t.test("the portal's cookies handed over at sign-in: one its scripts read (an XSRF token) stays readable", async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  const form = await b.get('/login');
  await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(form.body, 'csrf') });
  const { done } = await enrol(s, b);
  const lines = [done.headers['set-cookie'] ?? []].flat();
  const line = (name: string) => lines.find((l) => l.startsWith(`${name}=`)) ?? '';
  t.match(line('PORTALSESSID'), /; HttpOnly/, 'the session cookie the portal made HttpOnly stays so');
  t.ok(line('XSRF-TOKEN'), 'the XSRF cookie the login answer set is handed over');
  t.notMatch(line('XSRF-TOKEN'), /HttpOnly/i, 'and stays readable by the portal\'s scripts');
});

t.test("a portal cookie that cannot be handed over at sign-in is left out, and the log names it", async (t) => {
  const s = await startStack({
    newSessionAtLogin: true,
    // A value no Set-Cookie header of the gateway's may carry (a raw non-ASCII byte).
    loginSetCookies: ['theme=d\u00e9cor-S3CRETPREF; Path=/'],
    patch: (raw) => {
      raw.server.trustedProxies = ['127.0.0.1'];
      raw.forwardAuth = { enabled: true, sessionCookies: ['PORTALSESSID'] };
    },
  });
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  t.equal((await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf })).status, 303);
  const { done } = await enrol(s, b);
  const lines = [done.headers['set-cookie'] ?? []].flat();
  t.ok(lines.some((l) => l.startsWith('PORTALSESSID=')), 'the session cookie is handed over');
  t.notOk(lines.some((l) => l.startsWith('theme=')), 'the cookie it cannot write is not');
  const warned = s.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'a portal cookie that cannot be given to the browser');
  t.same(warned.map((l) => l.cookieName), ['theme'], 'the log line names the cookie (its name, never its value)');
  t.notOk(s.logs.some((l) => l.includes('S3CRETPREF')), 'its value is not logged');
});

t.test("a session lets through only the portal session it was signed in with: not another person's", async (t) => {
  const { s, browser } = await behindNginx(t);
  const alice = browser();
  await signIn(s, alice);
  const bob = browser();
  await signIn(s, bob, '/login', BOB);
  const aliceRecords = 'Health records for Alice Ngata';
  t.match((await alice.get('/records')).body, aliceRecords, 'her own session and portal cookie');
  t.match((await bob.get('/records')).body, 'Health records for Bob', 'his');

  // Bob's own gateway session with Alice's portal cookie (stolen): signed out, not Alice's records.
  const thief = browser();
  for (const [k, v] of bob.cookies) thief.cookies.set(k, v);
  thief.cookies.set('PORTALSESSID', alice.cookies.get('PORTALSESSID')!);
  const stolen = await thief.get('/records');
  t.equal(stolen.status, 302, 'sent to sign in');
  t.notMatch(stolen.body, aliceRecords);
  // Both cookies at once (a second value of the name, for another path): which one the portal reads cannot be told.
  const both = await bob.get('/records', { cookie: `${cookieOf(bob)}; PORTALSESSID=${alice.cookies.get('PORTALSESSID')}` });
  t.equal(both.status, 302, 'a session cookie sent twice with two values: signed out');
  // Her cookie under a name some portal's parser reads as the session cookie (another case, percent-encoded, after a
  // comma or a space in another cookie's value): nginx passes the header as it is, so it is refused (a script's call:
  // told to sign in, not sent to the login page).
  const v = alice.cookies.get('PORTALSESSID')!;
  for (const disguised of [`portalsessid=${v}`, `%50ORTALSESSID=${v}`, `x=1, PORTALSESSID=${v}`, `x=1 PORTALSESSID=${v}`, `$Version=1; x=1, PORTALSESSID=${v}`]) {
    for (const header of [`${disguised}; ${cookieOf(bob)}`, `${cookieOf(bob)}; ${disguised}`]) {
      const res = await bob.get('/echo', { accept: 'application/json', cookie: header });
      t.equal(res.status, 401, `${header.startsWith(disguised) ? 'before' : 'after'} his own: ${disguised.replace(v, 'V')}`);
    }
  }
  t.match((await bob.get('/records')).body, 'Health records for Bob', "his session itself is untouched");

  // Alice's password alone, typed in Bob's browser: her portal session is a new one, withheld until her second factor.
  const form = await bob.get('/login');
  const password = await bob.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(form.body, 'csrf') });
  t.equal(password.location, '/_mfa/verify', 'her password accepted, her second factor asked for');
  const withheld = await bob.get('/records');
  t.notMatch(withheld.body, aliceRecords, "Alice's records are not shown without her second factor");
});

t.test('a session sent with portal cookies other than its own is not signed in, and that request keeps it no longer alive', async (t) => {
  const s = await forwardAuthStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const ask = async (cookie: string) => {
    const res = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/records', 'x-forwarded-host': 'localhost', cookie } });
    await res.body.dump();
    return res.statusCode;
  };
  t.equal(await ask(cookieOf(b)), 200, 'her session with her portal cookie');
  // Her gateway cookie alone (stolen), sent with a portal session of its holder's own, every 10 minutes.
  const stolen = `${COOKIE.session}=${b.cookies.get(COOKIE.session)}; PORTALSESSID=another`;
  s.clock.advance(10 * 60_000);
  t.equal(await ask(stolen), 401, 'not signed in');
  s.clock.advance(6 * 60_000);
  t.equal(await ask(cookieOf(b)), 401, 'idle for 16 minutes: signed out, the stolen cookie kept it alive for nobody');
});

t.test('a portal that keeps its session id at login gets no sign-in in forward-auth mode', async (t) => {
  // There, Alice's password typed in a browser holding a portal session id bound to Bob's gateway session would sign
  // that id in as Alice: Bob's session would carry it.
  const s = await forwardAuthStack(undefined, false);
  t.teardown(s.close);
  const b = s.browser();
  const form = await b.get('/login');
  const refused = await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(form.body, 'csrf') });
  t.equal(refused.status, 502, 'GW_ERR_LOGIN_UNRECOGNISED');
  t.notOk(b.cookies.has(COOKIE.pending), 'no second step begun');
  t.ok(s.logs.some((l) => l.includes('the portal kept its session id')), 'the log says why');
});

t.test("a password sent with the portal cookie another person's session is bound to ends that binding", async (t) => {
  // A portal that kept the id for Alice's login only: Bob, signed in, types her password in his own browser. The login
  // is refused once the portal has answered, but the portal has signed his cookie in as Alice by then.
  const s = await forwardAuthStack(undefined, (username) => username !== ALICE.username);
  t.teardown(s.close);
  const bob = s.browser();
  const secret = await signIn(s, bob, '/login', BOB);
  const ask = (b: Browser) => request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/records', 'x-forwarded-host': 'localhost', cookie: cookieOf(b) } });
  t.equal((await ask(bob)).statusCode, 200, 'his session and his portal cookie');
  const form = await bob.get('/login');
  const refused = await bob.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(form.body, 'csrf') });
  t.equal(refused.status, 502, 'refused: the portal kept the id');
  const res = await ask(bob);
  t.equal(res.statusCode, 401, "his session no longer carries that cookie, now Alice's at the portal");
  await res.body.dump();
  // Signing in again (his portal gives him a new id) works.
  s.clock.advance(30_000);
  const page = await bob.get('/login');
  t.equal((await bob.post('/login', { username: BOB.username, password: BOB.password, csrf: inputValue(page.body, 'csrf') })).location, '/_mfa/verify');
  const verify = await bob.get('/_mfa/verify');
  t.equal((await bob.post('/_mfa/verify', { csrf: inputValue(verify.body, 'csrf'), code: await totpAt(secret, s.clock.now()) })).status, 303);
  const again = await ask(bob);
  t.equal(again.statusCode, 200, 'a new sign-in, bound to its new cookie');
  await again.body.dump();
});

t.test('the policy decides at nginx: closed areas, legacy authentication and odd paths never reach the portal', async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  await signIn(s, b);
  const before = s.portalRequests.length;
  for (const path of ['/admin/', '/ADMIN/', '/%61dmin/', '/admin/x']) {
    t.equal((await b.get(path)).status, 403, `${path}: denied`);
  }
  const anon = await browser().get('/legacy/records', { authorization: basic(ALICE.username, ALICE.password) });
  t.equal(anon.status, 403, 'HTTP Basic is refused');
  t.equal((await b.get('/legacy/records', { authorization: basic(ALICE.username, ALICE.password) })).status, 403, 'with a session too');
  // nginx turns any auth answer other than 2xx, 401 and 403 into 500: closed either way.
  t.equal((await b.get('/admin%2fx')).status, 500, "the gateway's 400 for a non-canonical path");
  t.same(reachedPortal(s, before), [], 'none of these reached the portal');
  t.notOk(s.portalRequests.some((r) => r.headers.authorization), 'no Authorization header ever reached the portal');
  t.equal((await b.get('/records')).status, 200, 'the session itself still works');
});

t.test("nginx sets the device header itself: a browser's own copy, even of a real device certificate, does not count", async (t) => {
  const deviceCa = new TestCa('devices');
  t.teardown(() => rmSync(deviceCa.dir, { recursive: true, force: true }));
  const laptop = deviceCa.issue('laptop-1');
  const { s, browser } = await behindNginx(t, (raw) => {
    raw.devices = { caFile: deviceCa.ca.certFile, header: { name: 'X-SSL-Client-Cert', format: 'pem' } };
    raw.policy.rules.splice(1, 1, { name: 'clinic workstation', paths: ['/admin/'], decision: 'managed-device' }, { name: 'sign out at workstations', paths: ['/logout'], decision: 'managed-device' });
  });
  const b = browser();
  await signIn(s, b);
  // Certificates are public: the header as nginx writes it ($ssl_client_escaped_cert), sent by the browser instead.
  const forged = { 'x-ssl-client-cert': encodeURIComponent(laptop.cert) };
  const before = s.portalRequests.length;
  t.equal((await b.get('/admin/', forged)).status, 403, 'the forged header is not a managed device');
  t.same(reachedPortal(s, before), [], 'and the portal never saw the request');
  t.equal((await b.get('/echo', { ...forged, accept: 'application/json' })).status, 200);
  t.notOk(s.portalRequests.some((r) => r.headers['x-ssl-client-cert'] !== undefined), 'nor does the header reach the portal');
  // nginx passes the login and the logout to the gateway itself: there too the header is nginx's, not the browser's.
  // The logout of an unmanaged device leads to the gateway's sign-out page (a managed one would reach the portal's).
  const logout = await b.get('/logout', forged);
  t.match({ status: logout.status, location: logout.headers.location }, { status: 303, location: '/_mfa/logout' }, 'a request nginx passes to the gateway: not a managed device either');
  // The same header from the proxy itself (as nginx sends the certificate it verified) is believed.
  const asked = { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/admin/', 'x-forwarded-host': 'localhost', 'x-forwarded-for': '203.0.113.9', cookie: cookieOf(b) };
  const fromProxy = await request(`${s.url}/_mfa/forward-auth`, { headers: { ...asked, ...forged } });
  await fromProxy.body.dump();
  t.equal(fromProxy.statusCode, 200, 'a managed device when the proxy sends it');
  // A proxy that adds its own header to the browser's instead of replacing it sends two (Node would keep the first).
  const twice = await request(`${s.url}/_mfa/forward-auth`, { headers: { ...asked, 'x-ssl-client-cert': [forged['x-ssl-client-cert'], ''] } });
  await twice.body.dump();
  t.equal(twice.statusCode, 403, 'the header twice, the first a real certificate: not a managed device');
});

t.test('methods: a rule for GET covers HEAD, and a method override in the query is refused', async (t) => {
  const s = await forwardAuthStack((raw) => {
    raw.policy.rules.splice(
      1,
      0,
      { name: 'no record downloads', paths: ['/records/export'], methods: ['GET'], decision: 'deny' },
      { name: 'records kept', paths: ['/records/'], methods: ['DELETE'], decision: 'deny' },
    );
    raw.identity.userHeader = 'X-Portal-User';
    raw.portal.stripHeaders = ['X-Portal-Operator'];
    raw.portal.methods = ['GET', 'POST', 'DELETE'];
  });
  t.teardown(s.close);
  const cookie = cookieOf((await signUpAndEnrol(s)).b);
  const ask = async (method: string, uri: string, more: Record<string, string> = {}) => {
    const res = await request(`${s.url}/_mfa/forward-auth`, {
      headers: { 'x-forwarded-method': method, 'x-forwarded-uri': uri, 'x-forwarded-host': 'localhost', 'x-forwarded-for': '203.0.113.9', cookie, ...more },
    });
    await res.body.dump();
    return res.statusCode;
  };
  t.equal(await ask('GET', '/records/export'), 403, 'GET: denied');
  t.equal(await ask('HEAD', '/records/export'), 403, 'HEAD runs the GET handler: denied too');
  t.equal(await ask('DELETE', '/records/1'), 403, 'DELETE: denied');
  t.equal(await ask('POST', '/records/1'), 200, 'a POST is allowed');
  // Symfony and Laravel act on `_method` (POST ... ?_method=DELETE is a DELETE to them).
  t.equal(await ask('POST', '/records/1?_method=DELETE'), 403, 'a POST the portal would take for a DELETE: refused');
  t.equal(await ask('GET', '/records/1?.method=delete'), 403, 'in any spelling PHP reads as _method');
  t.equal(await ask('GET', '/records/1?method=card'), 200, 'another field is not an override');
  // The proxy passes the browser's headers on to the portal: an override header there is another method too.
  for (const name of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X_HTTP_Method_Override']) t.equal(await ask('POST', '/records/1', { [name]: 'DELETE' }), 403, `${name}: refused`);
  // So is one that has the portal act on another path (IIS URL Rewrite, Zend, older Symfony), or for another user.
  for (const [name, value] of [['X-Original-URL', '/records/export'], ['X-Rewrite-URL', '/records/export'], ['X_Original_URL', '/records/export'], ['X-Original.URL', '/records/export'], ['X-Portal.User', 'admin'], ['X-Original-Method', 'DELETE'], ['Remote-User', 'admin'], ['X-Forwarded-User', 'admin'], ['X-MFA-User', 'admin'], ['X-Middleware-Subrequest', 'middleware'], ['Proxy-Authorization', 'Basic YTpi'], ['X-Portal-User', 'admin'], ['X_Portal_User', 'admin'], ['X-Portal-Operator', 'admin']]) {
    t.equal(await ask('GET', '/records/1', { [name]: value }), 403, `${name}: refused`);
  }
  // The identity and client-certificate headers of application servers and SSO agents under legacy portals
  // (WebLogic, WebSEAL, SiteMinder, Oracle Access Manager, mod_auth_mellon, iisnode, the AWS load balancer's mTLS), as
  // their agents spell them (SM_USER) and dashed.
  for (const name of [
    ...['WL-Proxy-Client-Cert', 'WL-Proxy-Client-Keysize', 'WL-Proxy-Client-SecretKeysize', 'IV-User', 'IV-User-L', 'IV-Groups', 'IV-Creds'],
    ...['SM_USER', 'SM-User', 'SMUSER', 'SM_USERDN', 'SMUSERDN', 'SM_UNIVERSALID', 'SMUNIVERSALID', 'OAM_REMOTE_USER', 'OAM-Remote-User'],
    ...['MELLON_NAME_ID', 'X-IISNode-AUTH_USER', 'X-IISNode-LOGON_USER', 'X-Amzn-Mtls-Clientcert', 'X-Amzn-Mtls-Clientcert-Subject'],
  ]) {
    t.equal(await ask('GET', '/records/1', { [name]: 'admin' }), 403, `${name}: refused`);
  }
  // Address headers a CDN or load balancer in front sets are the portal's business: they pass.
  for (const name of ['X-Real-IP', 'CF-Connecting-IP', 'Forwarded']) t.equal(await ask('GET', '/records/1', { [name]: 'for=198.51.100.7' }), 200, `${name}: passes`);
  for (const name of ['WL-Proxy-Client-IP', 'Proxy-Client-IP', 'X-ProxyUser-IP', 'IV-Remote-Address', 'WL-Proxy-SSL', 'X-ARR-SSL', 'SMUsers-Online']) {
    t.equal(await ask('GET', '/records/1', { [name]: 'on' }), 200, `${name}: passes`);
  }
});

t.test('a method the full proxy does not pass is refused before any rule, in any spelling; the others are judged as before', async (t) => {
  const s = await forwardAuthStack((raw) => {
    raw.policy.rules.splice(1, 0, { name: 'records changed', paths: ['/records/'], methods: ['POST', 'PUT', 'PATCH', 'DELETE'], decision: 'step-up', maxAgeSeconds: 300 });
    raw.portal.methods = ['GET', 'POST', 'DELETE'];
  });
  t.teardown(s.close);
  const cookie = cookieOf((await signUpAndEnrol(s)).b);
  const ask = async (method: string, uri = '/records/1', headers: Record<string, string> = { cookie }) => {
    const res = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': method, 'x-forwarded-uri': uri, 'x-forwarded-host': 'localhost', accept: 'application/json', ...headers } });
    const body = await res.body.text();
    return [res.statusCode, body && JSON.parse(body).error];
  };
  s.clock.advance(301_000);
  t.same(await ask('GET'), [200, ''], 'GET: not a write, allowed');
  t.same(await ask('POST'), [401, 'GW_ERR_STEP_UP_REQUIRED'], 'POST: the step-up the rule asks for');
  t.same(await ask('DELETE'), [401, 'GW_ERR_STEP_UP_REQUIRED'], 'DELETE too');
  // The rule names methods portal.methods leaves out, which the full proxy refuses.
  for (const method of ['PUT', 'PATCH', 'OPTIONS']) t.same(await ask(method), [405, 'GW_ERR_METHOD_NOT_ALLOWED'], `${method}: not in portal.methods, refused`);
  // A WebDAV or made-up method writes without being named by any rule.
  for (const method of ['PROPPATCH', 'MOVE', 'COPY', 'MKCOL', 'LOCK', 'TRACE', 'FROBNICATE']) t.same(await ask(method), [405, 'GW_ERR_METHOD_NOT_ALLOWED'], `${method}: refused, as the full proxy refuses it`);
  // The full proxy takes a method only as written in capitals (Node refuses `post`); a portal may read any case.
  for (const method of ['post', 'Post', 'get', 'delete']) t.same(await ask(method), [405, 'GW_ERR_METHOD_NOT_ALLOWED'], `${method}: refused, not judged as ${method.toUpperCase()}`);
  // Before any rule: signed out it is not sent to sign in, and a public path does not let it through.
  t.same(await ask('PROPPATCH', '/records/1', {}), [405, 'GW_ERR_METHOD_NOT_ALLOWED'], 'signed out');
  t.same(await ask('PROPFIND', '/static/portal.css', {}), [405, 'GW_ERR_METHOD_NOT_ALLOWED'], 'on a public path');
  const refused = s.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request refused' && l.code === 'GW_ERR_METHOD_NOT_ALLOWED');
  t.ok(refused.some((l) => l.detail === 'method PROPPATCH'), 'logged with the code and detail of the full proxy');
});

t.test('through nginx, a method the full proxy does not pass never reaches the portal', async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  await signIn(s, b);
  const before = s.portalRequests.length;
  // nginx answers 500 for an auth answer other than 2xx, 401 and 403: closed all the same.
  for (const method of ['PROPPATCH', 'MOVE', 'FROBNICATE']) t.equal((await b.send(method, '/messages', '<x/>', { 'content-type': 'application/xml' })).status, 500, method);
  t.same(reachedPortal(s, before), [], 'none reached the portal');
  await b.post('/messages', { body: 'hi' });
  t.same(reachedPortal(s, before), ['/messages'], 'a POST does, as before');
});

t.test('step-up through nginx: sent to the step-up page, then back to the same URL', async (t) => {
  const { s, browser } = await behindNginx(t);
  const b = browser();
  const secret = await signIn(s, b);
  t.equal((await b.get('/prescriptions/')).status, 200, 'a fresh sign-in is recent enough');
  s.clock.advance(301_000);
  const asked = await b.get('/prescriptions/?page=2');
  t.equal(asked.status, 302);
  t.equal(asked.location, '/_mfa/step-up?to=%2Fprescriptions%2F%3Fpage%3D2');
  const page = await b.get(asked.location!);
  t.equal(page.status, 200);
  const back = await b.post('/_mfa/step-up', { csrf: inputValue(page.body, 'csrf'), to: '/prescriptions/?page=2', code: await totpAt(secret, s.clock.now()) });
  t.equal(back.status, 303);
  t.equal(back.location, '/prescriptions/?page=2');
  t.equal((await b.get('/prescriptions/?page=2')).status, 200, 'back in');
});

t.test('through nginx, a form sent or a script\'s call is told to sign in or step up, not sent to a page it cannot use', async (t) => {
  const { s, browser } = await behindNginx(t);
  const script = { 'sec-fetch-mode': 'cors', accept: 'application/json' };
  const anon = browser();
  t.equal((await anon.get('/records', script)).status, 401, "signed out: a script's call");
  t.equal((await anon.post('/records', { note: 'x' })).status, 401, 'signed out: a form sent');
  t.equal((await anon.get('/records')).location, '/login', 'a page opened: to the login page, as before');
  const b = browser();
  await signIn(s, b);
  s.clock.advance(301_000);
  const before = s.portalRequests.length;
  t.equal((await b.post('/prescriptions/', { medicine: 'salbutamol' })).status, 401, 'a form sent: not turned into a GET of the step-up page');
  t.equal((await b.get('/prescriptions/', script)).status, 401, "a script's call");
  t.equal(s.portalRequests.length, before, 'none reached the portal');
  t.equal((await b.get('/prescriptions/')).location, '/_mfa/step-up?to=%2Fprescriptions%2F', 'a page opened: to the step-up page, as before');
});

t.test('the endpoint with ?redirect=true: a form sent or a script\'s call gets the 401 page, leading where a portal page would', async (t) => {
  const s = await forwardAuthStack((raw) => raw.policy.rules.splice(2, 0, { name: 'controlled drugs', paths: ['/controlled/'], decision: 'step-up', factors: ['webauthn'] }));
  t.teardown(s.close);
  const ask = async (method: string, uri: string, headers: Record<string, string>) => {
    const res = await request(`${s.url}/_mfa/forward-auth?redirect=true`, {
      headers: { 'x-forwarded-method': method, 'x-forwarded-uri': uri, 'x-forwarded-host': 'localhost', 'x-forwarded-proto': 'https', accept: 'text/html', ...headers },
    });
    return { status: res.statusCode, location: res.headers.location, body: await res.body.text() };
  };
  const { b } = await signUpAndEnrol(s);
  const cookie = cookieOf(b);
  const sent = await ask('POST', '/controlled/', { cookie });
  t.equal(sent.status, 401);
  t.equal(sent.location, undefined, 'not redirected');
  t.match(sent.body, '<a href="/_mfa/step-up?factors=webauthn">', "the rule's step-up, not the security page's");
  const called = await ask('GET', '/controlled/', { cookie, 'sec-fetch-mode': 'cors', accept: 'application/json' });
  t.match(JSON.parse(called.body), { error: 'GW_ERR_STEP_UP_REQUIRED' });
  t.equal((await ask('GET', '/controlled/', { cookie })).location, 'https://localhost/_mfa/step-up?to=%2Fcontrolled%2F&factors=webauthn', 'a page opened: redirected, as before');
  const midway = await ask('POST', '/records', { cookie: `${COOKIE.pending}=x` });
  t.match(midway.body, '<a href="/_mfa/continue">', 'a sign-in in progress: back to its step');
});

t.test('a login page under a rule that asks for a sign-in is refused, not sent round to itself', async (t) => {
  const s = await forwardAuthStack((raw) => (raw.policy.rules[0].paths = ['/static/']));
  t.teardown(s.close);
  const ask = async (uri: string) => {
    const res = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': uri, 'x-forwarded-host': 'localhost', accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
    await res.body.dump();
    return [res.statusCode, res.headers['x-mfa-redirect']];
  };
  t.same(await ask('/login?next=%2Frecords'), [403, undefined], 'the login page: refused, not sent to itself');
  t.same(await ask('/records'), [401, '/login'], 'another page still leads to the login page');
});

t.test("the endpoint's page for the portal's start page refused leads on to signing out, not back to the start page", async (t) => {
  const s = await forwardAuthStack((raw) => raw.policy.rules.splice(1, 0, { name: 'carers elsewhere', paths: ['/'], groups: ['carers'], decision: 'deny' }));
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const ask = async (uri: string) => {
    const res = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': uri, 'x-forwarded-host': 'localhost', 'x-forwarded-proto': 'https', accept: 'text/html', cookie: cookieOf(b) } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  const start = await ask('/');
  t.equal(start.status, 403);
  t.match(start.body, '<p><a href="/_mfa/logout">Sign out</a></p>');
  t.notMatch(start.body, 'Back to the portal');
  t.match((await ask('/records')).body, '<a href="/">Back to the portal</a>', 'another page: back to the portal');
});

t.test("the login's own browser cookies reach the portal, but none named as a login field", async (t) => {
  const s = await forwardAuthStack();
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  // PHP's $_REQUEST (cookies after the form) and ASP.NET's Request[] read these where the form has none, or instead.
  for (const [name, value] of [['j_username', 'victim'], ['Email', 'victim%40example.org'], ['username', 'victim'], ['password', 'x'], ['theme', 'dark']]) b.cookies.set(name!, value!);
  const before = s.portalRequests.length;
  t.equal((await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf })).status, 303);
  const cookie = String(s.portalRequests.slice(before).find((r) => r.method === 'POST')!.headers.cookie);
  t.match(cookie, 'theme=dark', 'other browser cookies pass, as in forward-auth mode');
  t.notMatch(cookie, /j_username|Email|username=|password=/i, 'none named as a login field');
});

t.test('the endpoint, called as a proxy calls it', async (t) => {
  const s = await forwardAuthStack();
  t.teardown(s.close);
  const ask = async (uri: string, headers: Record<string, string> = {}, opts: { query?: string; method?: 'GET' | 'HEAD'; base?: string } = {}) => {
    const res = await request(`${opts.base ?? s.url}/_mfa/forward-auth${opts.query ?? ''}`, {
      method: opts.method ?? 'GET',
      headers: {
        'x-forwarded-method': 'GET',
        'x-forwarded-uri': uri,
        'x-forwarded-host': 'localhost',
        'x-forwarded-proto': 'https',
        'x-forwarded-for': '203.0.113.9',
        ...headers,
      },
    });
    await res.body.dump();
    return { status: res.statusCode, headers: res.headers };
  };

  const anon = await ask('/records?x=1');
  t.equal(anon.status, 401, 'signed out: sign in first');
  t.equal(anon.headers['x-mfa-redirect'], '/login');
  t.notOk(anon.headers['x-mfa-user']);
  const redirected = await ask('/records', {}, { query: '?redirect=true' });
  t.equal(redirected.status, 302, '?redirect=true: an answer the proxy can pass to the browser (Caddy, Traefik)');
  t.equal(redirected.headers.location, 'https://localhost/login', 'on the host the browser asked for');
  // Traefik resolves the Location against its forwardAuth address (Go's Response.Location): the browser must still
  // land on the portal's host, with the port it used, not on the gateway's internal address.
  const onPort = await ask('/records', { 'x-forwarded-host': 'LOCALHOST:8443' }, { query: '?redirect=true' });
  t.equal(new URL(String(onPort.headers.location), `${s.url}/_mfa/forward-auth?redirect=true`).href, 'https://localhost:8443/login', 'as Traefik passes it on');
  t.equal((await ask('/records', {}, { method: 'HEAD' })).status, 401, 'HEAD too');
  const midway = await ask('/records', { cookie: `${COOKIE.pending}=x` });
  t.same([midway.status, midway.headers['x-mfa-redirect']], [401, '/_mfa/continue'], 'a password without its second factor: back to that step, as the gateway itself would');
  const pub = await ask('/login');
  t.equal(pub.status, 200, 'a public path');
  t.notOk(pub.headers['x-mfa-user'], 'without identity headers');

  const { b } = await signUpAndEnrol(s);
  const cookie = cookieOf(b);
  const allowed = await ask('/records', { cookie });
  t.equal(allowed.status, 200);
  t.equal(allowed.headers['x-mfa-user'], 'alice');
  t.same(String(allowed.headers['x-mfa-groups']).split(',').sort(), ['carers', 'patients']);
  t.equal((await ask('/admin/', { cookie })).status, 403, 'a deny rule');
  t.equal((await ask('/records', { cookie, authorization: basic(ALICE.username, ALICE.password) })).status, 403, 'HTTP Basic');
  t.equal((await ask('/admin%2fx', { cookie })).status, 400, 'a URI that is not a canonical path');
  // The proxy passes the URI on as sent: one the gateway would have to normalise to judge is refused, never judged
  // as another path than the portal gets.
  for (const uri of ['/admin/x/../../login', '/admin/%2e%2e/records', '/admin/..', '/admin/./', '//records', '/records//x']) {
    t.equal((await ask(uri, { cookie })).status, 400, `segments to resolve: ${uri}`);
  }
  const why = s.logs.map((l) => JSON.parse(l)).filter((l) => l.code === 'GW_ERR_BAD_PATH').map((l) => l.detail);
  t.ok(why.includes("an encoded '/' or '\\' (%2F, %5C), which a portal that decodes first reads as a separator"), 'the log says why a path is refused');
  t.ok(why.includes('dot or empty segments, which the proxy in front would pass to the portal unresolved'), 'and for segments to resolve');
  t.equal((await ask('/records?a=/../admin&b=%2f', { cookie })).status, 200, 'the query is not part of the path');
  t.equal((await ask('/records?', { cookie })).status, 200, 'an empty query');
  t.equal((await ask('/%72ecords', { cookie })).status, 200, 'percent-encoding alone is judged as decoded');
  t.equal((await ask('/%61dmin/', { cookie })).status, 403, '... also where that means a deny');
  const noUri = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-host': 'localhost', cookie } });
  await noUri.body.dump();
  t.equal(noUri.statusCode, 400, 'no X-Forwarded-Uri: refused, not judged as /');
  const noMethod = await request(`${s.url}/_mfa/forward-auth`, { headers: { 'x-forwarded-uri': '/prescriptions/', 'x-forwarded-host': 'localhost', cookie } });
  await noMethod.body.dump();
  t.equal(noMethod.statusCode, 400, 'no X-Forwarded-Method: refused, not judged as GET');
  // Two methods (a proxy that adds the header to the client's own; Node joins them) match no method rule: refused.
  for (const method of ['POST, GET', 'DELETE,GET', 'G ET', '']) {
    t.equal((await ask('/prescriptions/1', { cookie, 'x-forwarded-method': method })).status, 400, `X-Forwarded-Method ${JSON.stringify(method)}`);
  }
  const twice = await request(`${s.url}/_mfa/forward-auth`, { headers: ['x-forwarded-method', 'DELETE', 'x-forwarded-method', 'GET', 'x-forwarded-uri', '/records/1', 'x-forwarded-host', 'localhost', 'cookie', cookie] });
  await twice.body.dump();
  t.equal(twice.statusCode, 400, 'the header twice');
  // Node keeps the first Authorization header; Caddy and Traefik pass every copy on, and a portal may read the last.
  const victim = basic(ALICE.username, ALICE.password);
  for (const [headers, uri] of [
    [['cookie', cookie, 'authorization', 'Bearer x', 'authorization', victim], '/records'],
    [['cookie', cookie, 'authorization', '', 'authorization', victim], '/records'],
    [['authorization', 'Bearer x', 'authorization', victim], '/login'],
  ] as const) {
    const res = await request(`${s.url}/_mfa/forward-auth`, { headers: ['x-forwarded-method', 'GET', 'x-forwarded-uri', uri, 'x-forwarded-host', 'localhost', ...headers] });
    await res.body.dump();
    t.equal(res.statusCode, 400, `Authorization twice, HTTP Basic second (${uri}): refused`);
  }
  t.equal((await ask('/records', { cookie, authorization: 'Bearer x' })).status, 200, 'one Authorization that is no legacy scheme: judged as usual');
  // The access line tells the method judged, not the proxy's subrequest's.
  t.equal((await ask('/records', { cookie, 'x-forwarded-method': 'POST' })).status, 200);
  t.ok(s.logs.some((l) => /"method":"POST","path":"\/records"/.test(l) && l.includes('"msg":"request"')), 'logged as POST');
  // The login and the logout belong to the gateway: one the proxy's routes let through is refused, never allowed
  // on to the portal (a password checked without the login limits, a portal logout leaving the session running).
  t.equal((await ask('/login', { cookie, 'x-forwarded-method': 'POST' })).status, 403, 'a login POST');
  t.equal((await ask('/LOGIN/', { 'x-forwarded-method': 'POST' })).status, 403, 'in another spelling, signed out');
  t.equal((await ask('/logout', { cookie })).status, 403, 'the logout');
  t.equal((await ask('/login', { cookie })).status, 200, 'GET of the login page is still judged (public)');
  // The gateway's prefix never reaches the portal, in a spelling the proxy's routes for it do not match either.
  for (const uri of ['/_MFA/security', '/_Mfa/', '/_mfa']) t.equal((await ask(uri, { cookie })).status, 403, `the prefix as ${uri}`);
  t.equal((await ask('/records', { cookie, 'x-forwarded-host': 'evil.example' })).status, 421, 'a host not in server.hosts');
  t.equal((await ask('/records', { cookie, 'x-forwarded-host': 'localhost:65535' })).status, 200, 'the highest port');
  // It would go into the Location of a sign-in redirect: a URL no browser opens.
  t.equal((await ask('/records', { cookie, 'x-forwarded-host': 'localhost:99999' })).status, 421, 'a port no host has');

  // Below a login script, and at any j_security_check, in a method the login does not take too (Jetty signs in there
  // whatever the method).
  const scripts = await forwardAuthStack((raw) => {
    raw.portal.login.paths = ['/login', '/login.php', '/app/j_security_check'];
    raw.portal.methods = ['GET', 'POST', 'PUT'];
  });
  t.teardown(scripts.close);
  const scriptCookie = cookieOf((await signUpAndEnrol(scripts)).b);
  for (const uri of ['/login.php/x', '/other/j_security_check']) {
    for (const method of ['POST', 'PUT']) t.equal((await ask(uri, { cookie: scriptCookie, 'x-forwarded-method': method }, { base: scripts.url })).status, 403, `${method} ${uri}`);
  }

  const elsewhere = await forwardAuthStack((raw) => (raw.server.trustedProxies = ['10.9.9.9']));
  t.teardown(elsewhere.close);
  const { b: other } = await signUpAndEnrol(elsewhere);
  const untrusted = await ask('/records', { cookie: cookieOf(other) }, { base: elsewhere.url });
  t.equal(untrusted.status, 403, 'a caller that is not one of server.trustedProxies');
  t.notOk(untrusted.headers['x-mfa-user'], 'and learns nothing');
});
