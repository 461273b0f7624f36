// login check: the portal.login rules tried on the live demo portal, with the right password and a wrong one.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEMO_USERS, startDemoPortal } from '../fixtures/demo-portal.js';
import { runCliAsync } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { checkOn, startFormPortal, startPortal } from '../helpers/login-check.js';

const alice = DEMO_USERS[0]!;

t.test('login check against the demo portal', async (t) => {
  const portal = await startDemoPortal();
  const dir = mkdtempSync(join(tmpdir(), 'login-check-'));
  t.teardown(async () => {
    await portal.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const configFile = (name: string, login: Record<string, unknown>): string => {
    const raw = rawTestConfig(portal.url);
    raw.portal.login = { ...raw.portal.login, page: '/login?next={target}', ...login };
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ ...raw, log: { level: 'silent' } }));
    return file;
  };
  const check = (file: string, password = `${alice.password}\n`, user = 'Alice') => runCliAsync(['login', 'check', '--config', file, '--user', user], {}, password);
  const noPassword = (t: Tap.Test, r: { stdout: string; stderr: string }) => t.notMatch(r.stdout + r.stderr, alice.password, 'the password is never printed');

  t.test('rules that tell them apart: exit 0, each answer and rule shown', async (t) => {
    const r = await check(configFile('right', { success: { status: [302], location: '^/(?!login)' }, failure: { status: [200], body: 'Invalid username or password' } }));
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').slice(1);
    t.match(lines[0], /^right password: POST \/login with csrf, next, username, password \(the form of GET \/login\?next=%2F; cookies sent: PORTALSESSID, XSRF-TOKEN\)$/);
    t.same(lines.slice(1, 4), ['  answer: 302, Location /, cookies set: XSRF-TOKEN', '  success: holds', '  failure: does not hold']);
    t.match(lines[4], /^wrong password \(a random one; it counts once against the portal's own lockout\): POST \/login/);
    t.same(lines.slice(5, 8), ['  answer: 200, no Location, cookies set: none', '  success: does not hold', '  failure: holds']);
    t.equal(lines[8], 'verdict: the rules tell a right password from a wrong one');
    noPassword(t, r);
  });

  t.test('rules the wrong password meets too: exit 1, the verdict names them', async (t) => {
    const r = await check(configFile('loose', { success: { status: [302, 200] }, failure: { status: [200, 403] } }));
    t.equal(r.code, 1, r.stderr);
    t.match(r.stdout, /\n {2}success: holds\n {2}failure: holds\nverdict: the rules do not tell a right password from a wrong one: success holds for the wrong password$/m);
    noPassword(t, r);
  });

  t.test('a wrong password given: success does not hold for it', async (t) => {
    const r = await check(configFile('typo', { success: { status: [302], location: '^/(?!login)' }, failure: { status: [200], body: 'Invalid username or password' } }), 'not the password\n');
    t.equal(r.code, 1);
    t.match(r.stdout, 'verdict: the rules do not tell a right password from a wrong one: success does not hold for the right password; failure holds for the right password');
  });

  t.test("a password that is a word of the command's own text: that text is printed as it is", async (t) => {
    // [password] in the command's words would show where the password stands, and that it is `wrong`.
    const r = await check(configFile('word', { success: { status: [302], location: '^/(?!login)' }, failure: { status: [200], body: 'Invalid username or password' } }), 'wrong\n');
    t.equal(r.code, 1);
    t.notMatch(r.stdout, '[password]');
    t.match(r.stdout, /^wrong password \(a random one; it counts once against the portal's own lockout\): POST \/login/m);
    t.match(r.stdout, 'verdict: the rules do not tell a right password from a wrong one: success does not hold for the right password; failure holds for the right password');
  });

  t.test('a username field the login page has no form for: a clear error', async (t) => {
    const r = await check(configFile('field', { usernameField: 'email' }));
    t.equal(r.code, 1);
    t.equal(r.stdout, '');
    t.match(r.stderr, 'GET /login?next=%2F (portal.login.page) answered 200 without a form that has an input named email (portal.login.usernameField); a portal that signs in with JSON needs portal.login.bodyType: json');
    noPassword(t, r);
  });

  t.test('a JSON login: the body the gateway forwards, with what the page set', async (t) => {
    const r = await check(configFile('json', { bodyType: 'json', success: { status: [302] }, failure: { status: [403] } }));
    // The demo portal takes forms only: neither password gets past its CSRF check (a form field).
    t.equal(r.code, 1);
    t.match(r.stdout, /^right password: POST \/login with JSON username, password \(as the script of GET \/login\?next=%2F sends it; cookies sent: PORTALSESSID, XSRF-TOKEN; echoed in: X-XSRF-TOKEN\)\n {2}answer: 403, no Location/m);
    noPassword(t, r);
  });

  t.test('no password on stdin: wrong usage, nothing sent', async (t) => {
    const r = await check(configFile('none', {}), '');
    t.equal(r.code, 2);
    t.match(r.stderr, 'login check reads the password from stdin (one line): none given');
  });
});

t.test('the portal is told what the gateway tells it of a browser on the gateway: its scheme, host and address', async (t) => {
  // A portal that is told it is behind https on the gateway's host (Django's SECURE_SSL_REDIRECT and USE_X_FORWARDED_HOST,
  // Rails' force_ssl): any other request is sent there; its redirects and its form's action name that host (Rails'
  // redirect_to), and its CSRF check wants a login's Origin and Referer on it.
  const told: string[] = [];
  const portal = await startPortal(t, (req) => {
    const host = req.headers['x-forwarded-host'] ?? req.headers.host;
    told.push(`${req.headers['x-forwarded-proto']} ${req.headers['x-forwarded-host']} ${req.headers['x-forwarded-for']}`);
    if (req.headers['x-forwarded-proto'] !== 'https') return { status: 301, headers: { location: `https://${host}${req.url}` } };
    if (req.url === '/login') return { status: 302, headers: { location: `https://${host}/session/new` } };
    if (req.method === 'GET') return { status: 200, body: `<form method="post" action="https://${host}/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>` };
    if (req.headers.origin !== `https://${host}` || req.headers.referer !== `https://${host}/session/new`) return { status: 403, body: 'CSRF verification failed' };
    return { status: 302, headers: { location: `https://${host}${new URLSearchParams(req.body).get('j_password') === 'right-pw' ? '/home' : '/login?error'}` } };
  });
  const behindProxy = { hosts: ['mfa.example', 'localhost'], trustedProxies: ['10.0.0.1'] };
  const r = await checkOn(t, portal, { failure: { status: [302], location: '^/login\\?error' } }, 'right-pw', [], behindProxy);
  t.equal(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'as a browser at 192.0.2.1 on https://mfa.example (Origin and Referer), through the gateway (X-Forwarded-Proto https, X-Forwarded-Host mfa.example, X-Forwarded-For 192.0.2.1)');
  t.equal(lines[1], 'right password: POST /j_security_check with j_username, j_password (the form of GET /login -> /session/new; cookies sent: none)');
  t.same(portal.seen.map((s) => s.split(' ', 2).join(' ')), ['GET /login', 'GET /session/new', 'POST /j_security_check', 'GET /login', 'GET /session/new', 'POST /j_security_check']);
  t.same(new Set(told), new Set(['https mfa.example 192.0.2.1']), 'on every request');
});

t.test('--host: the browser on that name of server.hosts, which must be one of them', async (t) => {
  // A portal that knows one of the gateway's names only (Django's ALLOWED_HOSTS, read from X-Forwarded-Host).
  const portal = await startPortal(t, (req) => {
    if (req.headers['x-forwarded-host'] !== 'portal.example') return { status: 400, body: 'Bad Request (400)' };
    if (req.method === 'GET') return { status: 200, body: '<form method="post" action="/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>' };
    return { status: 302, headers: { location: new URLSearchParams(req.body).get('j_password') === 'right-pw' ? '/home' : '/login?error' } };
  });
  const server = { hosts: ['mfa.example', 'portal.example'], trustedProxies: ['10.0.0.1'] };
  const first = await checkOn(t, portal, {}, 'right-pw', [], server);
  t.equal(first.code, 1, 'the first name by default');
  t.match(first.stderr, 'GET /login (portal.login.page) answered 400 without a form');

  const named = await checkOn(t, portal, {}, 'right-pw', [], server, ['--host', 'Portal.Example']);
  t.equal(named.code, 0, named.stderr);
  t.equal(named.stdout.split('\n')[0], 'as a browser at 192.0.2.1 on https://portal.example (Origin and Referer), through the gateway (X-Forwarded-Proto https, X-Forwarded-Host portal.example, X-Forwarded-For 192.0.2.1)');

  const asked = portal.seen.length;
  for (const host of ['evil.example', 'portal.example:443']) {
    const other = await checkOn(t, portal, {}, 'right-pw', [], server, ['--host', host]);
    t.equal(other.code, 2, host);
    t.match(other.stderr, `mfa-gateway: --host: not one of server.hosts (mfa.example, portal.example), a name without a port: "${host}"\n`);
  }
  t.equal(portal.seen.length, asked, 'nothing sent for another name');
});

t.test("a login form whose action names the portal's own address: an error, no password sent", async (t) => {
  // Built from the portal's Host: the browser would send the password there, past the gateway (or nowhere).
  const portal = await startFormPortal(t, (port) => `<form method="post" action="http://127.0.0.1:${port}/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>`);
  const r = await checkOn(t, portal, {}, 'right-pw');
  t.equal(r.code, 1);
  t.equal(r.stderr, `mfa-gateway: the login form sends POST ${portal.url}/j_security_check, not to the gateway (http://localhost), where the browser has the page\n`);
  t.same(portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent');
});

t.test('the login form is sent where the gateway would send it, never to another host', async (t) => {
  const other = await startFormPortal(t, () => '');
  const run = async (action: string) => {
    const portal = await startFormPortal(t, () => `<form method="post" action="${action}"><input name="j_username"><input type="password" name="j_password"></form>`);
    return { portal, r: await checkOn(t, portal, {}, 'right-pw') };
  };

  // Resolved on the portal's origin, a path that starts with `//` names a host to a URL parser.
  const away = await run(`/..//127.0.0.1:${other.port}/j_security_check`);
  t.same(other.seen, [], 'nothing reached the other host');
  t.equal(away.r.code, 1);
  t.match(away.r.stderr, `the login form sends POST //127.0.0.1:${other.port}/j_security_check, which is not a login the gateway intercepts`);
  t.same(away.portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent at all');

  // A login below the configured path (Jetty's j_security_check anywhere) goes to the portal as the configured path.
  const below = await run('/app/j_security_check');
  t.equal(below.r.code, 0, below.r.stderr);
  t.match(below.portal.seen[1], /^POST \/j_security_check j_username=alice&j_password=right-pw$/);
});

t.test("a login page with a base URL: the form's action read from it, as a browser reads it", async (t) => {
  // A JSP with `<base href="<%=basePath%>">`, its forms' actions relative to the application's root.
  const run = async (base: (port: number) => string) => {
    const portal = await startFormPortal(t, (port) => `<head><base href="${base(port)}"></head><form method="post" action="login.do"><input name="j_username"><input type="password" name="j_password"></form>`);
    return { portal, r: await checkOn(t, portal, { paths: ['/app/login.do'] }, 'right-pw') };
  };
  const path = await run(() => '/app/');
  t.equal(path.r.code, 0, path.r.stderr);
  t.match(path.portal.seen[1], /^POST \/app\/login\.do j_username=alice&j_password=right-pw$/);

  // A basePath built from the portal's Host names the portal: the browser would send the password there, past the gateway.
  const portalAddress = await run((port) => `http://127.0.0.1:${port}/app/`);
  t.equal(portalAddress.r.code, 1);
  t.equal(portalAddress.r.stderr, `mfa-gateway: the login form sends POST ${portalAddress.portal.url}/app/login.do, not to the gateway (http://localhost), where the browser has the page\n`);
  t.same(portalAddress.portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent');
});

t.test("a login page whose <base href> a browser ignores (no URL, data:, javascript:): the action read from the page's address, and said so", async (t) => {
  for (const href of ['javascript:void(0)', 'data:text/html,x', 'http://[portal']) {
    const portal = await startFormPortal(t, () => `<base href="${href}"><form method="post" action="j_security_check"><input name="j_username"><input type="password" name="j_password"></form>`);
    const r = await checkOn(t, portal, {}, 'right-pw');
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.split('\n')[1], `right password: POST /j_security_check with j_username, j_password (the form of GET /login; the page's <base href="${href}"> ignored, as browsers ignore one that is no URL or a data: or javascript: one; cookies sent: none)`);
    t.match(portal.seen[1], /^POST \/j_security_check j_username=alice&j_password=right-pw$/);
  }
});

t.test('a login form whose action no URL can be read from: an error that names it and where it is read from, no password sent', async (t) => {
  const run = async (page: string, password = 'right-pw') => {
    const portal = await startFormPortal(t, () => `${page}<input name="j_username"><input type="password" name="j_password"></form>`);
    const r = await checkOn(t, portal, {}, password);
    t.same(portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent');
    return r;
  };
  // A base a browser takes, but that no relative address can be read from: the browser sends the form nowhere.
  const mailto = await run('<base href="mailto:help@portal.example"><form method="post" action="j_security_check">');
  t.equal(mailto.code, 1);
  t.equal(mailto.stderr, `mfa-gateway: the login form's action "j_security_check" is no URL read from the page's <base href="mailto:help@portal.example">: a browser sends the form nowhere\n`);
  const space = await run('<form method="post" action="https://portal example/j_security_check">');
  t.equal(space.code, 1);
  t.equal(space.stderr, `mfa-gateway: the login form's action "https://portal example/j_security_check" is no URL read from the page's address (/login): a browser sends the form nowhere\n`);
  // One that echoes the password (a backslash, which quoting it escapes): hidden before it is quoted.
  const echoed = await run('<form method="post" action="https://portal example/j_security_check?last=pa\\ss">', 'pa\\ss');
  t.equal(echoed.stderr, `mfa-gateway: the login form's action "https://portal example/j_security_check?last=[password]" is no URL read from the page's address (/login): a browser sends the form nowhere\n`);
});

t.test('a portal that does not answer: an error naming what was asked, where and why', async (t) => {
  const form = '<form method="post" action="/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>';
  // Nothing listening: refused.
  const gone = createServer().listen(0, '127.0.0.1');
  await once(gone, 'listening');
  const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
  await new Promise((r) => gone.close(r));
  const refused = await checkOn(t, { url }, {}, 'right-pw');
  t.equal(refused.code, 1);
  t.equal(refused.stderr, `mfa-gateway: GET /login (portal.login.page): no usable answer from the portal (portal.url ${url}): connect ECONNREFUSED ${url.slice(7)}\n`);

  // The login page answered, the login not (within portal.timeoutSeconds, 2 s in the test config).
  const held: ServerResponse[] = [];
  const slow = createServer((req, res) => (req.method === 'GET' ? res.writeHead(200, { 'content-type': 'text/html' }).end(form) : held.push(res))).listen(0, '127.0.0.1');
  await once(slow, 'listening');
  t.teardown(() => {
    slow.closeAllConnections();
    slow.close();
  });
  const late = await checkOn(t, { url: `http://127.0.0.1:${(slow.address() as AddressInfo).port}` }, {}, 'right-pw');
  t.equal(late.code, 1);
  t.equal(late.stderr, `mfa-gateway: the login POST /j_security_check: no usable answer from the portal (portal.url http://127.0.0.1:${(slow.address() as AddressInfo).port}): none within portal.timeoutSeconds (2 s)\n`);
  t.equal(held.length, 1, 'the right password only');
});
