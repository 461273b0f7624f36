// Between browser and portal, over real sockets: one Host per request, client identity headers removed, the
// portal's internal origin kept out of the redirect headers, and field names a PHP portal reads as the login fields.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config/load.js';
import { rawRequest } from '../helpers/browser.js';
import { rawTestConfig } from '../helpers/config.js';

/** A portal whose public /static/ paths echo the request headers or redirect as the test asks. */
async function start(t: Test, patch: (raw: Record<string, any>) => void = () => {}) {
  const seen: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];
  const portal = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    const { pathname, searchParams } = new URL(req.url!, 'http://portal');
    if (pathname === '/static/echo') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(req.headers));
    if (pathname === '/static/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' }).write('data: one\n\n');
      return void setTimeout(() => res.end('data: two\n\n'), 300);
    }
    if (pathname === '/static/moved') {
      const to = searchParams.get('to')!;
      return res.writeHead(302, { location: to, 'content-location': to, refresh: `0; url=${to}` }).end();
    }
    // A wrong password, as far as the gateway can tell: the portal's own page.
    if (pathname === '/login') return res.writeHead(200, { 'content-type': 'text/plain' }).end('portal login page');
    res.writeHead(404).end();
  });
  portal.listen(0, '127.0.0.1');
  await once(portal, 'listening');
  const portalUrl = `http://127.0.0.1:${(portal.address() as AddressInfo).port}`;
  const raw = rawTestConfig(portalUrl);
  patch(raw);
  const app = await buildApp(resolveConfig(raw));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    portal.closeAllConnections();
    portal.close();
  });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, portalUrl, seen };
}

t.test('one Host and one Authorization header per request', async (t) => {
  const s = await start(t);
  const ask = (hosts: string) => rawRequest(s.url, `GET /static/echo HTTP/1.1\r\n${hosts}Connection: close\r\n\r\n`);
  t.match(await ask('Host: 127.0.0.1\r\n'), /^HTTP\/1\.1 200/, 'one Host: answered');
  t.equal(s.seen.length, 1);
  for (const hosts of ['Host: 127.0.0.1\r\nHost: admin.internal\r\n', 'Host: 127.0.0.1\r\nhost: 127.0.0.1\r\n', 'HOST: 127.0.0.1\r\nX-A: 1\r\nhOsT: admin.internal\r\n']) {
    const res = await ask(hosts);
    t.match(res, /^HTTP\/1\.1 400/, `${JSON.stringify(hosts)}: refused`);
    t.match(res, 'The request could not be understood.');
  }
  const basic = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
  t.match(await ask('Host: 127.0.0.1\r\nAuthorization: Bearer x\r\n'), /^HTTP\/1\.1 200/, 'one Authorization: answered');
  t.equal(s.seen.length, 2);
  for (const twice of [`Authorization: Bearer x\r\nAuthorization: ${basic}\r\n`, `authorization: \r\nAUTHORIZATION: ${basic}\r\n`]) {
    t.match(await ask(`Host: 127.0.0.1\r\n${twice}`), /^HTTP\/1\.1 400/, `${JSON.stringify(twice)}: refused`);
  }
  t.equal(s.seen.length, 2, 'none of them reached the portal');
});

t.test('a body only in the chunked transfer coding', async (t) => {
  const s = await start(t);
  const post = (coding: string) =>
    rawRequest(s.url, `POST /static/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: ${coding}\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n`);
  t.match(await post('chunked'), /^HTTP\/1\.1 200 /, 'chunked: passed on');
  t.match(await post('Chunked '), /^HTTP\/1\.1 200 /, 'in any case');
  t.equal(s.seen.length, 2);
  for (const coding of ['gzip, chunked', 'deflate,chunked', 'x-custom, chunked']) t.match(await post(coding), /^HTTP\/1\.1 400 /, `${coding}: refused`);
  t.equal(s.seen.length, 2, 'none of them reached the portal');
});

t.test('an HTTP/1.0 request with a transfer coding is refused, and its connection closed', async (t) => {
  const s = await start(t);
  const res = await rawRequest(
    s.url,
    `POST /static/echo HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n` +
      `GET /static/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
  );
  t.match(res, /^HTTP\/1\.1 400 /, 'refused');
  t.match(res, /\r\nconnection: close\r\n/i, 'nothing after it on the connection is read');
  t.equal(s.seen.length, 0, 'the portal saw nothing');
});

t.test("a request too large to read, pipelined behind an answer being streamed, writes no refusal into that answer", async (t) => {
  const s = await start(t);
  const host = 'Host: 127.0.0.1\r\n';
  const got = await new Promise<string>((resolve) => {
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1', () => socket.write(`GET /static/events HTTP/1.1\r\n${host}\r\n`));
    let data = '';
    let sent = false;
    socket.on('data', (d) => {
      data += d;
      if (sent || !data.includes('data: one')) return;
      sent = true;
      socket.write(`GET /static/echo HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    socket.on('close', () => resolve(data));
    socket.on('error', () => {});
  });
  t.match(got, /^HTTP\/1\.1 200 /, 'the stream was answered');
  t.notMatch(got, /HTTP\/1\.1 431/, 'and nothing written inside it');
  t.match((await rawRequest(s.url, `GET /static/echo HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`)), /^HTTP\/1\.1 431 /, 'alone, it is answered');
});

t.test('a WebSocket handshake is not proxied: the portal gets a plain request, after the same checks', async (t) => {
  const s = await start(t);
  const handshake = (path: string) =>
    rawRequest(s.url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
  const open = await handshake('/static/echo');
  t.match(open, /^HTTP\/1\.1 200 /, 'a plain answer, not 101 Switching Protocols');
  const echoed = JSON.parse(/\{.*\}/.exec(open)![0]) as Record<string, string>;
  t.equal(echoed.upgrade, undefined, 'the portal saw no Upgrade');
  t.notMatch(echoed.connection ?? '', /upgrade/i);
  t.match(await handshake('/records'), /^HTTP\/1\.1 302 /, 'a protected path signs in first');
  t.same(s.seen.map((r) => r.url), ['/static/echo'], 'which the portal never saw');
});

t.test('identity, routing and proxy headers from the client never reach the portal', async (t) => {
  const s = await start(t);
  const sent = {
    'remote-user': 'admin',
    'remote-groups': 'admins',
    'remote-email': 'admin@x',
    'remote-name': 'Admin',
    'x-groups': 'admins',
    'x-roles': 'admin',
    'x-proxy-user': 'admin',
    'x-original-host': 'admin.internal',
    'x-host': 'admin.internal',
    proxy: 'http://evil.example:3128',
  };
  const res = await request(`${s.url}/static/echo`, { headers: { ...sent, 'x-custom': 'kept', 'x-hostname-hint': 'kept too' } });
  const echoed = (await res.body.json()) as Record<string, string>;
  t.equal(echoed['x-custom'], 'kept', 'ordinary headers pass');
  t.equal(echoed['x-hostname-hint'], 'kept too', 'a header that only starts like one passes');
  for (const name of Object.keys(sent)) t.notOk(name in echoed, `${name} removed`);
});

t.test("the portal's redirect headers never name its internal origin", async (t) => {
  const s = await start(t);
  const moved = (to: string) => request(`${s.url}/static/moved?to=${encodeURIComponent(to)}`);
  const internal = new URL(s.portalUrl).host;
  // Also under the other scheme: a portal that builds its redirects from Host and X-Forwarded-Proto (ASP.NET Core's
  // sign-in redirect, Django's absolute URLs) names its own host with https.
  for (const to of [`${s.portalUrl}/home?a=1`, `//${internal}/home?a=1`, `https://${internal}/home?a=1`, `HTTPS://${internal}/home?a=1`]) {
    const res = await moved(to);
    t.equal(res.statusCode, 302);
    t.same([res.headers.location, res.headers['content-location'], res.headers.refresh], ['/home?a=1', '/home?a=1', '0; url=/home?a=1'], `${to}: a path on the gateway`);
    await res.body.dump();
  }
  for (const to of ['https://elsewhere.example/x', '//elsewhere.example/x', '/home', `https://127.0.0.1:${Number(new URL(s.portalUrl).port) + 1}/x`, 'ftp://127.0.0.1/x']) {
    const res = await moved(to);
    t.same([res.headers.location, res.headers['content-location'], res.headers.refresh], [to, to, `0; url=${to}`], `${to}: as sent`);
    await res.body.dump();
  }
});

t.test('field names a PHP portal reads as a login field', async (t) => {
  const s = await start(t, (raw) => Object.assign(raw.portal.login, { usernameField: 'user_name', passwordField: 'pass_word' }));
  const login = (body: string) =>
    request(`${s.url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' }, body });
  const plain = await login('user_name=alice&user[name]=x&pass_word=pw');
  t.equal(plain.statusCode, 200, 'user[name] is another field (the array user): the portal judges the password');
  t.match(await plain.body.text(), 'portal login page');
  const before = s.seen.length;
  // PHP turns a [ without a ] after it into _ and keeps the later field: it would sign in bob, the gateway alice.
  for (const body of ['user_name=alice&user[name=bob&pass_word=bobpw', 'user_name=alice&user[name[=bob&pass_word=bobpw']) {
    const res = await login(body);
    t.equal(res.statusCode, 400, body);
    await res.body.dump();
  }
  const query = async (q: string) => {
    const res = await request(`${s.url}/static/echo?${q}`);
    await res.body.dump();
    return res.statusCode;
  };
  t.equal(await query('pass[word=x'), 403, 'PHP reads pass[word as pass_word: legacy credentials');
  t.equal(s.seen.length, before, 'none of them reached the portal');
  t.equal(await query('pass[word]=x&page[size]=10'), 200, 'pass[word] and page[size] are other fields');
});
