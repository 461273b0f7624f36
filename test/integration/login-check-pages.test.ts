// login check on portals whose login pages test how it reads them as a browser does (encodings, buttons, redirects, JSON), and what it prints of their answers (Locations, echoed passwords hidden).
import t from 'tap';
import { DEMO_USERS } from '../fixtures/demo-portal.js';
import { GATEWAY, checkOn, startFormPortal, startPortal, type Asked } from '../helpers/login-check.js';

const alice = DEMO_USERS[0]!;

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
