// Login answers of portals unlike the demo portal: a refusal that deletes the cookie a success sets, an answer
// compressed although the gateway asked for none, a status no rule can judge.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config/load.js';
import { loggerOptions } from '../../src/log.js';
import { Browser } from '../helpers/browser.js';
import { rawTestConfig } from '../helpers/config.js';
import { enrol, type Stack } from '../helpers/stack.js';

type LoginAnswer = (password: string, res: ServerResponse) => void;

/** A gateway in front of a portal whose login answers as `answer` says; `cookies`: what its login page was sent. */
async function start(t: Test, answer: LoginAnswer, patch: (raw: Record<string, any>) => void) {
  const cookies: string[] = [];
  const portal = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url!, 'http://portal').pathname;
      if (path === '/login' && req.method === 'GET') {
        cookies.push(req.headers.cookie ?? '');
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<form method="post">login</form>');
      }
      if ((path === '/login' || path === '/portal/login.php') && req.method === 'POST') return answer(new URLSearchParams(Buffer.concat(chunks).toString()).get('password') ?? '', res);
      res.writeHead(404).end();
    });
  });
  portal.listen(0, '127.0.0.1');
  await once(portal, 'listening');
  const raw = rawTestConfig(`http://127.0.0.1:${(portal.address() as AddressInfo).port}`);
  patch(raw);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const config = resolveConfig(raw);
  const app = await buildApp(config, { logger: pino(loggerOptions('debug'), sink) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    portal.closeAllConnections();
    portal.close();
  });
  const b = new Browser(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
  /** Whether the portal's signed-in cookie reached the browser, or the portal with the browser's next request. */
  const leaked = async () => {
    await b.get('/login');
    return b.cookies.has('AUTH') || /AUTH=tok/.test(cookies.at(-1)!);
  };
  // What the enrolment helper needs of a stack.
  const stack = { config, clock: { now: () => Date.now() } } as unknown as Stack;
  return { b, leaked, logs, stack };
}

t.test('a refusal that deletes the cookie the success rule names is a refusal', async (t) => {
  const { b } = await start(
    t,
    (password, res) =>
      password === 'right'
        ? res.writeHead(302, { location: '/home', 'set-cookie': 'AUTH=tok; Path=/; HttpOnly' }).end()
        : // Refused: back to the form, and any stale cookie deleted (a common pattern).
          res.writeHead(302, { location: '/login?error=1', 'set-cookie': 'AUTH=; Path=/; Max-Age=0' }).end(),
    (raw) => (raw.portal.login.success = { status: [302], setCookie: 'AUTH' }),
  );
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong' });
  t.equal(wrong.location, '/login?error=1', "the portal's own refusal");
  t.notOk(b.cookies.has('__Host-mfa-pending'), 'no second step');
  const right = await b.post('/login', { username: 'alice', password: 'right' });
  t.equal(right.location, '/_mfa/enrol', 'the right password goes on to the second step');
});

t.test('a compressed login answer is judged by its decoded body', async (t) => {
  const page = (html: string, cookie?: string) => (res: ServerResponse) =>
    res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip', ...(cookie ? { 'set-cookie': cookie } : {}) }).end(gzipSync(html));
  const { b, leaked } = await start(
    t,
    (password, res) => (password === 'right' ? page('<h1>Welcome alice</h1>', 'AUTH=tok; Path=/')(res) : page('<p>Wrong password</p>')(res)),
    (raw) => (raw.portal.login.success = { status: [200], body: 'Welcome' }),
  );
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong' });
  t.equal(wrong.status, 200, "a refusal: the portal's page");
  const right = await b.post('/login', { username: 'alice', password: 'right' });
  t.equal(right.location, '/_mfa/enrol', 'a success: on to the second step');
  t.notOk(await leaked(), "the portal's signed-in session stays with the gateway");
});

t.test('a login answer whose body cannot be read is neither a success nor a refusal when a body rule must judge it', async (t) => {
  const { b, leaked } = await start(
    t,
    (_password, res) => res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'zstd', 'set-cookie': 'AUTH=tok; Path=/' }).end('<h1>Welcome alice</h1>'),
    (raw) => (raw.portal.login.success = { status: [200], body: 'Welcome' }),
  );
  const answer = await b.post('/login', { username: 'alice', password: 'right' }, { accept: 'application/json' });
  t.equal(answer.status, 502);
  t.match(JSON.parse(answer.body), { error: 'GW_ERR_LOGIN_UNRECOGNISED' });
  t.notOk(await leaked(), "the answer's session cookie went nowhere");
});

t.test('a login answered with a status outside 100–599 is the 502 of a portal that cannot be used', async (t) => {
  // Node's server refuses to write such a status: written raw.
  const { b, leaked } = await start(t, (_password, res) => res.socket!.end('HTTP/1.1 600 Odd\r\nset-cookie: AUTH=tok; Path=/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'), () => {});
  const answer = await b.post('/login', { username: 'alice', password: 'right' }, { accept: 'application/json' });
  t.equal(answer.status, 502);
  t.match(JSON.parse(answer.body), { error: 'GW_ERR_UPSTREAM_UNAVAILABLE' });
  t.notOk(await leaked());
});

t.test('forward-auth mode: each session cookie the browser sent with the password must come back anew', async (t) => {
  // Two session cookies; the browser already holds both. A portal that renews one and keeps the other would sign the
  // kept one in (a gateway session bound to it would carry the account): the login is refused.
  for (const [renews, status] of [['PORTALSESSID=new1; Path=/', 502], [['PORTALSESSID=new1; Path=/', 'SSO=new2; Path=/'], 303]] as const) {
    const { b } = await start(t, (_password, res) => res.writeHead(302, { location: '/', 'set-cookie': renews }).end(), (raw) => {
      raw.server.trustedProxies = ['127.0.0.1'];
      raw.forwardAuth = { enabled: true, sessionCookies: ['PORTALSESSID', 'SSO'] };
    });
    b.cookies.set('PORTALSESSID', 'old1');
    b.cookies.set('SSO', 'old2');
    t.equal((await b.post('/login', { username: 'alice', password: 'right' })).status, status, String(renews));
  }
});

t.test("forward-auth mode: the portal's cookies go to the browser as the portal wrote them, a space in a value too", async (t) => {
  const value = 'S3cretPortalSess Value42';
  const { b, logs, stack } = await start(t, (_password, res) => res.writeHead(302, { location: '/', 'set-cookie': `PORTALSESSID=${value}; Path=/; HttpOnly` }).end(), (raw) => {
    raw.server.trustedProxies = ['127.0.0.1'];
    raw.forwardAuth = { enabled: true, sessionCookies: ['PORTALSESSID'] };
  });
  t.equal((await b.post('/login', { username: 'alice', password: 'right' })).location, '/_mfa/enrol');
  const { done } = await enrol(stack, b);
  t.equal(done.status, 303, 'signed in');
  t.equal(b.cookies.get('PORTALSESSID'), value, "the portal's session cookie, as the portal set it");
  t.notOk(logs.join('\n').includes('S3cretPortalSess'), 'its value is in no log line');
});

t.test('signing in again in a browser that was signed in ends the session its cookie held', async (t) => {
  // A portal whose login form has no token bound to its session: its form, opened while signed in, signs in again.
  const { b, logs, stack } = await start(t, (password, res) => (password === 'right' ? res.writeHead(302, { location: '/', 'set-cookie': 'AUTH=tok; Path=/' }) : res.writeHead(401)).end(), () => {});
  await b.post('/login', { username: 'alice', password: 'right' });
  await enrol(stack, b);
  const old = new Browser(b.base);
  old.cookies.set('__Host-mfa-session', b.cookies.get('__Host-mfa-session')!);
  t.equal((await old.get('/records')).status, 404, "alice's session: on to the portal");
  // Someone else at the same computer signs in: the cookie is replaced, and the session it held ends with it.
  t.equal((await b.post('/login', { username: 'bob', password: 'right' })).location, '/_mfa/enrol');
  const { done } = await enrol(stack, b);
  t.equal(done.status, 303, 'bob signed in');
  t.equal((await b.get('/records')).status, 404, "bob's session: on to the portal");
  t.equal((await old.get('/records')).status, 302, "alice's session ended: a copy of her cookie opens nothing");
  const ended = logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'session_ended');
  t.same(ended.map((l) => l.reason), ['signed-in-again'], 'recorded as such');
});

t.test("a login answer's Location in UTF-8 sends the browser there once signed in, percent-encoded once", async (t) => {
  // Node writes a header string byte by byte: the UTF-8 bytes of the path, as a portal sends them.
  const raw = Buffer.from('http://PORTAL/befund/Müller?n=Zoë', 'utf8').toString('latin1');
  const { b, stack } = await start(t, (_password, res) => res.writeHead(302, { location: raw.replace('PORTAL', res.req.headers.host!), 'set-cookie': 'AUTH=tok; Path=/' }).end(), () => {});
  t.equal((await b.post('/login', { username: 'alice', password: 'right' })).location, '/_mfa/enrol');
  const { done } = await enrol(stack, b);
  t.equal(done.location, '/befund/M%C3%BCller?n=Zo%C3%AB');
});

t.test('a login answer in the charset its Content-Type names is judged by its text in that charset', async (t) => {
  // A legacy portal's pages in ISO-8859-1: "ungültig" is one byte 0xFC there, not UTF-8.
  const page = (status: number, html: string, cookie?: string) => (res: ServerResponse) =>
    res.writeHead(status, { 'content-type': 'text/html; charset=ISO-8859-1', ...(cookie ? { 'set-cookie': cookie } : {}) }).end(Buffer.from(html, 'latin1'));
  const { b, leaked } = await start(
    t,
    (password, res) => (password === 'right' ? page(200, '<h1>Willkommen zurück</h1>', 'AUTH=tok; Path=/')(res) : page(200, '<p>Passwort ungültig</p>')(res)),
    (raw) => {
      raw.portal.login.success = { status: [200], body: 'Willkommen zurück' };
      raw.portal.login.failure = { status: [200], body: 'Passwort ungültig' };
    },
  );
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong' });
  t.equal(wrong.status, 200, "a refusal: the portal's page");
  const right = await b.post('/login', { username: 'alice', password: 'right' });
  t.equal(right.location, '/_mfa/enrol', 'a success: on to the second step');
  t.notOk(await leaked(), "the portal's signed-in session stays with the gateway");
});

t.test("a login answer's Location on the portal's own origin is judged as the path the browser is sent to", async (t) => {
  // A portal that builds its redirects from the Host it was sent (PHP's HTTP_HOST, older servlet containers).
  const to = (path: string, cookie?: string) => (res: ServerResponse) =>
    res.writeHead(302, { location: `http://${res.req.headers.host}${path}`, ...(cookie ? { 'set-cookie': cookie } : {}) }).end();
  const { b, leaked } = await start(
    t,
    (password, res) => (password === 'right' ? to('/home', 'AUTH=tok; Path=/')(res) : to('/login?error=1')(res)),
    (raw) => {
      // Anchored to where a sign-in lands, as the configuration check advises.
      raw.portal.login.success = { status: [302], location: '^/home' };
      raw.portal.login.failure = { status: [302], location: '^/login\\?error' };
    },
  );
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong' });
  t.equal(wrong.location, '/login?error=1', "a refusal: the portal's own, to its login page");
  const right = await b.post('/login', { username: 'alice', password: 'right' });
  t.equal(right.location, '/_mfa/enrol', 'a success: on to the second step');
  t.notOk(await leaked(), "the portal's signed-in session stays with the gateway");
});

t.test("a login answer's relative Location is judged, and sends the browser on, from the login's own path, as a browser reads it", async (t) => {
  // PHP's header('Location: home.php') from /portal/login.php: the portal's home is /portal/home.php.
  const { b, stack } = await start(
    t,
    (password, res) => res.writeHead(302, password === 'right' ? { location: 'home.php?welcome=1', 'set-cookie': 'AUTH=tok; Path=/' } : { location: 'login.php?error=1' }).end(),
    (raw) => {
      raw.portal.login.paths = ['/portal/login.php'];
      raw.portal.login.success = { status: [302], location: '^/portal/home\\.php' };
      raw.portal.login.failure = { status: [302], location: '^/portal/login\\.php\\?error' };
      raw.policy.rules[0].paths.push('/portal/login.php');
    },
  );
  const wrong = await b.post('/portal/login.php', { username: 'alice', password: 'wrong' });
  t.equal(wrong.location, 'login.php?error=1', "a refusal: the portal's own answer");
  t.equal((await b.post('/portal/login.php', { username: 'alice', password: 'right' })).location, '/_mfa/enrol');
  const { done } = await enrol(stack, b);
  t.equal(done.location, '/portal/home.php?welcome=1', 'where the portal sent the browser, not /home.php');
});

t.test("a login answer that sends the browser to another site is not a success for a rule written for the portal's path", async (t) => {
  // The same path on another host: a portal taken over, or misconfigured, must not have it count as a sign-in.
  for (const location of ['https://evil.example/portal/home.php', '//evil.example/portal/home.php']) {
    const { b, leaked } = await start(
      t,
      (_password, res) => res.writeHead(302, { location, 'set-cookie': 'AUTH=tok; Path=/' }).end(),
      (raw) => {
        raw.portal.login.success = { status: [302], location: '^/portal/home' };
        raw.portal.login.failure = { status: [302], location: '^/login\\?error' };
      },
    );
    const answer = await b.post('/login', { username: 'alice', password: 'right' }, { accept: 'application/json' });
    t.equal(answer.status, 502, location);
    t.match(JSON.parse(answer.body), { error: 'GW_ERR_LOGIN_UNRECOGNISED' });
    t.notOk(b.cookies.has('__Host-mfa-pending'), 'no second step');
    t.notOk(await leaked(), "the answer's session cookie went nowhere");
  }
});

t.test("a refused login's page without a Content-Type of the portal's gets none added (the browser would download it)", async (t) => {
  const { b } = await start(
    t,
    (password, res) => (password === 'right' ? res.writeHead(302, { location: '/home', 'set-cookie': 'AUTH=tok; Path=/' }).end() : res.writeHead(200).end('<p>Wrong password</p>')),
    (raw) => (raw.portal.login.success = { status: [302], setCookie: 'AUTH' }),
  );
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong' });
  t.equal(wrong.status, 200);
  t.equal(wrong.body, '<p>Wrong password</p>', "the portal's page");
  t.equal(wrong.headers['content-type'], undefined, 'no type the portal did not give');
});
