// login check: the portal.login rules tried on the live demo portal, with the right password and a wrong one.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEMO_USERS, startDemoPortal } from '../fixtures/demo-portal.js';
import { runCliAsync } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';

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

interface Asked {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A portal that answers each request as `answer` says, and records every request it gets as `METHOD path body`. */
async function startPortal(t: Tap.Test, answer: (req: Asked, port: number) => { status: number; headers?: Record<string, string | string[]>; body?: string }): Promise<{ url: string; port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      const a = answer({ method: req.method!, url: req.url!, headers: req.headers, body }, port);
      res.writeHead(a.status, { 'content-type': 'text/html', ...a.headers }).end(a.body ?? '');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((r) => server.close(r)));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, seen };
}

// Where a browser has the portal's pages with the test config: the first of server.hosts, served over plain HTTP.
const GATEWAY = 'http://localhost';

/**
 * A portal of one login page (`page`), which refuses a password sent without its page's Origin or Referer (on the
 * gateway), as Django does over HTTPS.
 */
function startFormPortal(t: Tap.Test, page: (port: number) => string): Promise<{ url: string; port: number; seen: string[] }> {
  return startPortal(t, (req, port) => {
    if (req.method === 'GET') return { status: 200, body: page(port) };
    if (req.headers.origin !== GATEWAY || req.headers.referer !== `${GATEWAY}/login`) return { status: 403, body: 'CSRF verification failed' };
    const right = new URLSearchParams(req.body).get('j_password') === 'right-pw';
    return { status: 302, headers: { location: right ? '/home' : '/login?error' } };
  });
}

/** login check run on a config of `portal` with these portal.login (and server) settings and `args`, the password on stdin. */
async function checkOn(t: Tap.Test, portal: { url: string }, login: Record<string, unknown>, password: string, browserCookies = ['XSRF-TOKEN'], server: Record<string, unknown> = {}, args: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'login-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const raw = rawTestConfig(portal.url);
  raw.server = { ...raw.server, ...server };
  raw.portal.browserCookies = browserCookies;
  raw.portal.login = { paths: ['/j_security_check'], usernameField: 'j_username', passwordField: 'j_password', success: { status: [302], location: '^/home' }, ...login };
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...raw, log: { level: 'silent' } }));
  return runCliAsync(['login', 'check', '--config', file, '--user', 'alice', ...args], {}, `${password}\n`);
}

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

t.test('a login page whose body cannot be decoded: an error that names its encoding and type, not a missing form', async (t) => {
  const form = '<form method="post" action="/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>';
  for (const [headers, named] of [
    [{ 'content-encoding': 'zstd' }, 'Content-Encoding zstd, Content-Type text/html'],
    [{ 'content-type': 'text/html; charset=x-unknown' }, 'Content-Encoding none, Content-Type text/html; charset=x-unknown'],
  ] as const) {
    const portal = await startPortal(t, () => ({ status: 200, headers, body: form }));
    const r = await checkOn(t, portal, {}, 'right-pw');
    t.equal(r.code, 1);
    t.equal(r.stderr, `mfa-gateway: GET /login (portal.login.page) answered 200 with a body login check cannot decode (${named}): compressed other than gzip, deflate or br (none was asked for), damaged, or in a charset it does not know\n`);
    t.same(portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent');
  }
});

t.test("a login form whose submit button names where it goes (formaction, formmethod): sent there, as a browser sends it", async (t) => {
  const portal = await startFormPortal(t, () => '<form action="/login"><input name="j_username"><input type="password" name="j_password"><button formaction="/j_security_check" formmethod="post">Sign in</button></form>');
  const r = await checkOn(t, portal, {}, 'right-pw');
  t.equal(r.code, 0, r.stderr);
  t.match(portal.seen[1], /^POST \/j_security_check j_username=alice&j_password=right-pw$/);
});

t.test('a login form a browser sends in another encoding than the gateway takes: an error, no password sent', async (t) => {
  // The login intercept answers such a login 415: it never reaches the portal, whatever the rules say of its answers.
  const run = async (form: string) => {
    const portal = await startFormPortal(t, () => `${form}<input name="j_username"><input type="password" name="j_password"><button>Sign in</button></form>`);
    return { portal, r: await checkOn(t, portal, {}, 'right-pw') };
  };
  for (const enctype of ['multipart/form-data', 'text/plain']) {
    const { portal, r } = await run(`<form method="post" action="/j_security_check" enctype="${enctype}">`);
    t.equal(r.code, 1, enctype);
    t.match(r.stderr, `the login form sends POST /j_security_check as ${enctype} (its enctype), which the gateway refuses (415)`);
    t.same(portal.seen.map((s) => s.split(' ', 1)[0]), ['GET'], 'no password sent');
  }
  const { r } = await run('<form method="post" action="/j_security_check" enctype="application/x-www-form-urlencoded">');
  t.equal(r.code, 0, r.stderr);
});

t.test("each answer's Location is printed and judged where it sends a browser: resolved against the login's URL", async (t) => {
  // A servlet portal under /portal/ that answers with Locations relative to its login (home.jsp), or another.
  const run = async (right: string, wrong = 'login.jsp?error') => {
    const portal = await startPortal(t, (req) => {
      if (req.method === 'GET') return { status: 200, body: '<form method="post" action="/portal/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>' };
      return { status: 302, headers: { location: new URLSearchParams(req.body).get('j_password') === 'right-pw' ? right : wrong } };
    });
    const login = { paths: ['/portal/j_security_check'], success: { status: [302], location: '^/portal/home\\.jsp' }, failure: { status: [302], location: '^/portal/login\\.jsp\\?error' } };
    return checkOn(t, portal, login, 'right-pw');
  };
  const relative = await run('home.jsp');
  t.equal(relative.code, 0, relative.stderr);
  t.match(relative.stdout, /^ {2}answer: 302, Location \/portal\/home\.jsp, cookies set: none\n {2}success: holds\n {2}failure: does not hold$/m);
  t.match(relative.stdout, /^ {2}answer: 302, Location \/portal\/login\.jsp\?error, cookies set: none\n {2}success: does not hold\n {2}failure: holds$/m);

  // The same path on another site is no success; shown as the absolute URL it is.
  const away = await run('https://evil.example/portal/home.jsp');
  t.equal(away.code, 1);
  t.match(away.stdout, /^ {2}answer: 302, Location https:\/\/evil\.example\/portal\/home\.jsp, cookies set: none\n {2}success: does not hold$/m);

  // One the gateway cannot resolve (browsers read a backslash differently) is shown as sent, and holds no rule.
  const odd = await run('/\\evil.example/portal/home.jsp');
  t.equal(odd.code, 1);
  t.match(odd.stdout, /^ {2}answer: 302, Location \/\\evil\.example\/portal\/home\.jsp as sent, which the gateway cannot resolve \(no location rule holds\), cookies set: none\n {2}success: does not hold$/m);
});

t.test('a password the portal echoes is never printed: [password] in its place', async (t) => {
  const pw = 'pa ss/wörd+&=1%Z';
  const spellings = [pw, encodeURIComponent(pw), new URLSearchParams({ p: pw }).toString().slice(2)];
  const printed = (t: Tap.Test, r: { stdout: string; stderr: string }) => {
    for (const spelt of spellings) t.notOk((r.stdout + r.stderr).includes(spelt), `not printed: ${spelt}`);
  };
  // The last password tried is in the login page's form and in each answer's Location, as sent and as a URL spells it.
  const echo = (away: boolean) => {
    let last: string | undefined;
    return startPortal(t, (req, port) => {
      const host = away && last ? 'http://localhost:1' : '';
      if (req.method === 'GET') return { status: 200, body: `<form method="post" action="${host}/j_security_check${last ? `?last=${last}` : ''}"><input name="j_username"><input type="password" name="j_password"></form>` };
      last = req.body.split('j_password=')[1];
      const sent = new URLSearchParams(req.body).get('j_password')!;
      return { status: 302, headers: { location: sent === pw ? `/home?pw=${last}` : `http://127.0.0.1:${port}/login?pw=${encodeURIComponent(sent)}` } };
    });
  };
  const r = await checkOn(t, await echo(false), {}, pw);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^ {2}answer: 302, Location \/home\?pw=\[password\], cookies set: none$/m);
  t.match(r.stdout, /^wrong password .*: POST \/j_security_check\?last=\[password\] with j_username, j_password/m);
  t.match(r.stdout, /^ {2}answer: 302, Location \/login\?pw=\[password\], cookies set: none$/m);
  printed(t, r);

  // An error names the form's action, with the password the page holds.
  const e = await checkOn(t, await echo(true), {}, pw);
  t.equal(e.code, 1);
  t.match(e.stderr, 'the login form sends POST http://localhost:1/j_security_check?last=[password], not to the gateway (http://localhost), where the browser has the page');
  printed(t, e);
});

t.test("a password that is the name of a login field: the name printed as it is, the password hidden elsewhere", async (t) => {
  // [password] in the field's place would say that the password is j_password.
  let last: string | null = null;
  const portal = await startPortal(t, (req) => {
    if (req.method === 'GET') {
      const seen = last === null ? '' : `<input type="hidden" name="seen-${last}" value="1">`;
      return { status: 200, body: `<form method="post" action="/j_security_check"><input name="j_username"><input type="password" name="j_password">${seen}</form>` };
    }
    const sent = new URLSearchParams(req.body).get('j_password')!;
    last ??= sent;
    return { status: 302, headers: { location: sent === 'j_password' ? `/home?pw=${sent}` : '/login?error' } };
  });
  const r = await checkOn(t, portal, {}, 'j_password');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^right password: POST \/j_security_check with j_username, j_password \(/m, "the login's own field");
  t.match(r.stdout, /^ {2}answer: 302, Location \/home\?pw=\[password\], cookies set: none$/m, 'the password the portal echoes: hidden');
  t.match(r.stdout, /^wrong password .*: POST \/j_security_check with j_username, j_password, seen-\[password\] \(/m, "in a name of the portal's own: hidden");
  t.notMatch(r.stdout, /pw=j_password|seen-j_password/);
});

t.test('a login page reached by redirects: followed on the portal, with the cookies set on the way', async (t) => {
  const cookies = (req: Asked) => req.headers.cookie ?? '';
  const portal = await startPortal(t, (req, port) => {
    const here = `http://127.0.0.1:${port}`;
    // A cookie for another path on the way: not sent with the login, so not listed as sent.
    if (req.url === '/login') return { status: 301, headers: { location: '/login/', 'set-cookie': ['first=1; Path=/', 'elsewhere=0; Path=/other'] } };
    if (req.url === '/login/' && cookies(req) === 'first=1') return { status: 303, headers: { location: `${here}/auth/login?next=%2F`, 'set-cookie': 'second=2; Path=/' } };
    if (req.url === '/auth/login?next=%2F' && cookies(req) === 'first=1; second=2') {
      // A relative action: /auth/check from this page, /check from the one first asked for.
      return { status: 200, headers: { 'set-cookie': 'csrf=3; Path=/auth' }, body: '<form method="post" action="check"><input name="j_username"><input type="password" name="j_password"></form>' };
    }
    if (req.method === 'POST' && req.url === '/auth/check' && req.headers.referer === `${GATEWAY}/auth/login?next=%2F` && cookies(req) === 'csrf=3; first=1; second=2') {
      return { status: 302, headers: { location: new URLSearchParams(req.body).get('j_password') === 'right-pw' ? '/home' : '/login?error' } };
    }
    return { status: 400 };
  });
  const r = await checkOn(t, portal, { paths: ['/auth/check'] }, 'right-pw');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.split('\n')[1], 'right password: POST /auth/check with j_username, j_password (the form of GET /login -> /login/ -> /auth/login?next=%2F; cookies sent: csrf, first, second)');
  t.same(portal.seen.filter((s) => s.startsWith('POST')).map((s) => s.split(' ', 2)[1]), ['/auth/check', '/auth/check'], 'the passwords went to the login path only');
});

t.test("a login page redirected to the portal's host and port under https: followed, as the gateway passes it on", async (t) => {
  // A portal that builds its redirects from its Host and the scheme it assumes (ASP.NET Core, Django): the gateway
  // makes such a Location a path on the gateway (browserLocation), so the browser gets the page there.
  const portal = await startPortal(t, (req, port) => {
    if (req.url === '/login') return { status: 302, headers: { location: `https://127.0.0.1:${port}/login/?next=%2F` } };
    if (req.method === 'GET' && req.url === '/login/?next=%2F') return { status: 200, body: '<form method="post" action="/j_security_check"><input name="j_username"><input type="password" name="j_password"></form>' };
    if (req.method === 'POST' && req.url === '/j_security_check') return { status: 302, headers: { location: new URLSearchParams(req.body).get('j_password') === 'right-pw' ? '/home' : '/login?error' } };
    return { status: 400 };
  });
  const r = await checkOn(t, portal, {}, 'right-pw');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.split('\n')[1], 'right password: POST /j_security_check with j_username, j_password (the form of GET /login -> /login/?next=%2F; cookies sent: none)');

  // The same host on another port is another site: the gateway passes it on as sent.
  const other = await startPortal(t, () => ({ status: 200 }));
  const away = await startPortal(t, () => ({ status: 302, headers: { location: `https://127.0.0.1:${other.port}/login/` } }));
  const a = await checkOn(t, away, {}, 'right-pw');
  t.equal(a.code, 1);
  t.equal(a.stderr, `mfa-gateway: GET /login (portal.login.page) answered 302 to https://127.0.0.1:${other.port}/login/, not on the portal (${away.url}) nor on the gateway (${GATEWAY})\n`);
  t.same(other.seen, [], 'nothing reached the other host');
});

t.test('a login page redirected to another host, or on and on: an error, nothing sent there', async (t) => {
  const other = await startPortal(t, () => ({ status: 200 }));
  const away = await startPortal(t, () => ({ status: 302, headers: { location: `http://localhost:${other.port}/sso/login?token=t0ken` } }));
  const r = await checkOn(t, away, {}, 'right-pw');
  t.equal(r.code, 1);
  t.equal(r.stderr, `mfa-gateway: GET /login (portal.login.page) answered 302 to http://localhost:${other.port}/sso/login, not on the portal (${away.url}) nor on the gateway (${GATEWAY})\n`);
  t.same(other.seen, [], 'nothing reached the other host');
  t.same(away.seen, ['GET /login '], 'no password sent');

  let n = 0;
  const loop = await startPortal(t, () => ({ status: 307, headers: { location: `/login?n=${++n}` } }));
  const l = await checkOn(t, loop, {}, 'right-pw');
  t.equal(l.code, 1);
  t.equal(l.stderr, 'mfa-gateway: GET /login -> /login?n=1 -> /login?n=2 -> /login?n=3 -> /login?n=4 -> /login?n=5 (portal.login.page) redirects more than 5 times\n');
  t.equal(loop.seen.length, 6, 'no password sent');
});

t.test('a JSON login that wants the double-submit XSRF token of its page: sent as the script of the page sends it', async (t) => {
  // Spring Security, Laravel Sanctum: the page sets XSRF-TOKEN (percent-encoded), its script echoes it in X-XSRF-TOKEN.
  const portal = await startPortal(t, (req) => {
    if (req.method === 'GET' && req.url === '/app/login') return { status: 200, headers: { 'set-cookie': ['XSRF-TOKEN=tok%3D1; Path=/', 'SESSION=anon; Path=/app'] } };
    if (req.method !== 'POST' || req.url !== '/api/session') return { status: 404 };
    if (req.headers.cookie !== 'XSRF-TOKEN=tok%3D1' || req.headers['x-xsrf-token'] !== 'tok=1') return { status: 403, body: '{"error":"Invalid CSRF token"}' };
    const { user, pass } = JSON.parse(req.body) as { user: string; pass: string };
    return user === 'alice' && pass === 'right-pw' ? { status: 200, headers: { 'set-cookie': 'JSESSIONID=s1; Path=/app; HttpOnly' }, body: '{"ok":true}' } : { status: 401, body: '{"ok":false}' };
  });
  const login = { paths: ['/api/session'], page: '/app/login', bodyType: 'json', usernameField: 'user', passwordField: 'pass', success: { status: [200], setCookie: 'JSESSIONID' }, failure: { status: [401] } };
  const r = await checkOn(t, portal, login, 'right-pw');
  t.equal(r.code, 0, r.stdout);
  const lines = r.stdout.split('\n').slice(1);
  t.equal(lines[0], 'right password: POST /api/session with JSON user, pass (as the script of GET /app/login sends it; cookies sent: XSRF-TOKEN; echoed in: X-XSRF-TOKEN)');
  t.same(lines.slice(1, 4), ['  answer: 200, no Location, cookies set: JSESSIONID', '  success: holds', '  failure: does not hold']);
  t.same(lines.slice(5, 8), ['  answer: 401, no Location, cookies set: none', '  success: does not hold', '  failure: holds']);
  // Not allow-listed, the browser could not read it, and its script could not send it: neither can login check.
  const hidden = await checkOn(t, portal, login, 'right-pw', []);
  t.equal(hidden.code, 1);
  t.match(hidden.stdout, /echoed in: none\)\n {2}answer: 403/);
  // HttpOnly, no script of the page can read it (allow-listed or not): it is sent as a cookie, never echoed.
  const httpOnly = await startPortal(t, (req) => {
    if (req.method === 'GET' && req.url === '/app/login') return { status: 200, headers: { 'set-cookie': 'XSRF-TOKEN=tok; Path=/; HttpOnly' } };
    if (req.method !== 'POST' || req.url !== '/api/session') return { status: 404 };
    return req.headers['x-xsrf-token'] === undefined ? { status: 401, body: '{"ok":false}' } : { status: 200, headers: { 'set-cookie': 'JSESSIONID=s1; Path=/app; HttpOnly' }, body: '{"ok":true}' };
  });
  const unread = await checkOn(t, httpOnly, login, 'right-pw');
  t.match(unread.stdout, /cookies sent: XSRF-TOKEN; echoed in: none\)\n {2}answer: 401/);
});
