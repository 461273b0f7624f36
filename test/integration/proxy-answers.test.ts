// Portal answers: a small one of declared length is read whole before it is sent (so one that breaks off becomes an
// error page, never a page cut short); a large one, or one of unknown length, streams through as it comes.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { Agent, createServer, get as httpGet, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config/load.js';
import { loggerOptions } from '../../src/log.js';
import { asList } from '../../src/domain/headers.js';
import { rawRequest } from '../helpers/browser.js';
import { rawTestConfig } from '../helpers/config.js';
import { TestCa } from '../helpers/pki.js';

const CHUNK = Buffer.alloc(100 * 1024, 0x61);
const PORTAL_SECRET = 'S3CRETPORTALSESSION';
const PATIENT = 'Jane Doe 1234';

async function listen(server: ReturnType<typeof createServer>): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * A portal whose public /static/ answers misbehave on purpose; `release` lets the held large answer finish. `patch`
 * changes the gateway's config.
 */
async function start(t: Test, patch: (raw: Record<string, any>) => void = () => {}) {
  let release!: () => void;
  // The portal's connections of /static/endless answers still open.
  const endless = new Set<Socket>();
  const released = new Promise<void>((r) => (release = r));
  let finished = false;
  const portal = createServer((req: IncomingMessage, res: ServerResponse) => {
    switch (req.url) {
      case '/static/small':
        return res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' }).end('hello');
      case '/static/cached':
        // As IIS and many Java stacks answer a conditional GET: a 304 that declares the length of the page it did not
        // send again (RFC 9110 §8.6 allows it).
        if (req.headers['if-none-match'] === '"v1"') return res.writeHead(304, { etag: '"v1"', 'content-length': '5', 'x-portal': 'yes' }).end();
        return res.writeHead(200, { etag: '"v1"', 'content-type': 'text/plain', 'content-length': '5' }).end('hello');
      case '/static/nothing':
        // A 204 that declares a length it may not have (RFC 9110 §8.6).
        return void req.socket.write('HTTP/1.1 204 No Content\r\nX-Portal: yes\r\nContent-Length: 5\r\n\r\n');
      case '/static/typed-twice':
        // Content-Type twice (a framework's and the server's): browsers read the last, and show a page.
        return void req.socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: public, max-age=3600\r\nContent-Length: 26\r\n\r\n<p>Patient: Jane Doe</p>\r\n');
      case '/static/typed-twice-streamed':
        return void req.socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Type: text/html\r\nCache-Control: public, max-age=3600\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
      case '/static/cdn':
        // A public style sheet, kept by the CDN in front as its own fields say (which it reads before Cache-Control).
        return res
          .writeHead(200, { 'content-type': 'text/css', 'content-length': '3', 'cache-control': 'public, max-age=3600', 'cdn-cache-control': 'max-age=86400', 'cloudflare-cdn-cache-control': 'max-age=86400', 'surrogate-control': 'max-age=86400', 'x-accel-expires': '86400' })
          .end('a{}');
      case '/static/later':
        // A small answer whose body comes in parts, after its headers.
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' });
        res.flushHeaders();
        return void setTimeout(() => {
          res.write('hello ');
          setTimeout(() => res.end('world'), 30);
        }, 30);
      case '/static/untyped':
        // No Content-Type: the browser decides what it is.
        return res.writeHead(200, { 'content-length': '13' }).end('<b>hello</b>\n');
      case '/static/cut':
        // Declares 1000 bytes, sends 10, then the connection drops.
        res.writeHead(200, { 'content-type': 'text/html', 'content-length': '1000', 'x-portal': 'yes', 'strict-transport-security': 'max-age=0' });
        res.write('x'.repeat(10));
        return void setTimeout(() => res.socket?.destroy(), 50);
      case '/static/stall':
        // Declares 1000 bytes, sends 10, then nothing for longer than portal.timeoutSeconds (2 s in tests).
        res.writeHead(200, { 'content-type': 'text/html', 'content-length': '1000' });
        res.write('x'.repeat(10));
        return void setTimeout(() => res.socket?.destroy(), 4000).unref();
      case '/static/malformed':
        // A header with a control character (undici refuses the answer), then the portal's session cookie and a page.
        return void req.socket.end(`HTTP/1.1 200 OK\r\nX-Legacy: a\u0001b\r\nSet-Cookie: PORTALSESSID=${PORTAL_SECRET}\r\nContent-Length: 28\r\n\r\n<p>Patient: ${PATIENT}</p>`);
      case '/static/bad-status':
        // A status no HTTP answer can have, with headers the browser must not get.
        return void req.socket.end(`HTTP/1.1 600 Odd\r\nX-Portal: yes\r\nSet-Cookie: XSRF-TOKEN=from-portal\r\nLocation: https://evil.example/\r\nContent-Length: 2\r\n\r\nok`);
      case '/static/stream-stall':
        // The headers of a download of unknown length (streamed through), then nothing past portal.timeoutSeconds.
        res.writeHead(200, { 'content-type': 'application/pdf', 'content-disposition': 'attachment; filename=letter.pdf', 'transfer-encoding': 'chunked', 'x-portal': 'yes' });
        res.flushHeaders();
        return void setTimeout(() => res.socket?.destroy(), 4000).unref();
      case '/static/stream-broken':
        // The same, with a chunk undici cannot parse.
        return void req.socket.end('HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Encoding: gzip\r\nX-Portal: yes\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n');
      case '/static/upload-drop': {
        // Reads 64 KiB of an upload, then the connection drops (a worker crashed, a body limit of its own).
        let n = 0;
        return void req.on('data', (d: Buffer) => {
          n += d.length;
          if (n > 65536) req.socket.destroy();
        });
      }
      case '/login':
        // The password check never answers (longer than portal.timeoutSeconds).
        req.resume();
        return void setTimeout(() => res.socket?.destroy(), 4000).unref();
      case '/static/endless': {
        // A download that goes on for as long as it is read (sent as fast as it is taken).
        const socket = res.socket!;
        endless.add(socket);
        socket.once('close', () => endless.delete(socket));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' });
        const more = () => {
          while (!res.destroyed && res.write(CHUNK));
        };
        res.on('drain', more);
        return more();
      }
      case '/static/sized':
        // 20 MiB, more than the sockets between the portal and a client hold, sent as fast as it is taken.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(200 * CHUNK.length) });
        return void (async () => {
          for (let i = 0; i < 200 && !res.destroyed; i++) if (!res.write(CHUNK)) await once(res, 'drain');
          res.end();
        })().catch(() => {});
      case '/static/large':
        // Half of a large answer, then nothing more until the test has seen the first bytes (or 5 s have passed).
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(2 * CHUNK.length) });
        res.write(CHUNK);
        return void Promise.race([released, new Promise((r) => setTimeout(r, 5000).unref())]).then(() => {
          finished = true;
          res.end(CHUNK);
        });
      default:
        res.writeHead(404).end();
    }
  });
  const portalUrl = await listen(portal);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const raw = rawTestConfig(portalUrl);
  patch(raw);
  const app = await buildApp(resolveConfig(raw), { logger: pino(loggerOptions('debug'), sink) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    portal.closeAllConnections();
    portal.close();
  });
  const closePortal = () => {
    portal.closeAllConnections();
    return new Promise((r) => portal.close(r));
  };
  const port = (app.server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, portalPort: new URL(portalUrl).port, release, finished: () => finished, closePortal, logs, endless };
}

/** The `request failed` lines of the gateway's log. */
const failed = (s: { logs: string[] }): Record<string, unknown>[] => s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request failed');

t.test('an answer without a Content-Type gets none from the gateway either', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/untyped`);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], undefined, 'not application/octet-stream: the browser would download the page');
  t.equal(await res.body.text(), '<b>hello</b>\n');
});

t.test("the answer that gives a new browser its id is kept by no cache in front, by none of a CDN's own fields either; later ones as the portal says", async (t) => {
  const s = await start(t);
  const targeted = ['cdn-cache-control', 'cloudflare-cdn-cache-control', 'surrogate-control', 'x-accel-expires'];
  const first = await request(`${s.url}/static/cdn`);
  const id = asList(first.headers['set-cookie']).find((c) => c.startsWith('__Host-mfa-browser='));
  t.ok(id, 'the new browser gets its id');
  t.equal(first.headers['cache-control'], 'no-store');
  for (const name of targeted) t.equal(first.headers[name], undefined, `${name}: a CDN would keep it, id and all, for other browsers`);
  t.equal(await first.body.text(), 'a{}');
  const later = await request(`${s.url}/static/cdn`, { headers: { cookie: id!.split(';')[0]! } });
  t.equal(later.headers['set-cookie'], undefined, 'the browser has its id');
  t.equal(later.headers['cache-control'], 'public, max-age=3600', "then the portal's word stands");
  for (const name of targeted) t.ok(later.headers[name], `${name} too`);
  await later.body.text();
});

t.test('a page whose Content-Type comes twice is shown as a page (the last copy, as browsers read it), and never kept', async (t) => {
  const s = await start(t);
  for (const path of ['/static/typed-twice', '/static/typed-twice-streamed']) {
    const res = await request(`${s.url}${path}`);
    t.match(res.headers['content-type'], /^text\/html(; charset=utf-8)?$/, `${path}: not a download`);
    t.equal(res.headers['cache-control'], 'no-store', `${path}: a page, whatever the portal said`);
    t.match(await res.body.text(), /Jane Doe|hello/);
  }
});

t.test('a 304 that declares the length of the page it did not send passes as a 304, and the connection serves on', async (t) => {
  const s = await start(t);
  // Node's client, as a browser reads a 304 (undici's, like the gateway's, fails one with a Content-Length).
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (headers: Record<string, string>) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      httpGet(`${s.url}/static/cached`, { agent, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      }).on('error', reject);
    });
  for (let i = 0; i < 3; i++) {
    const res = await get({ 'if-none-match': '"v1"' });
    t.equal(res.status, 304, 'not a 502');
    t.equal(res.headers.etag, '"v1"');
    t.equal(res.headers['x-portal'], 'yes');
    t.equal(res.body, '');
  }
  const fresh = await get({});
  t.equal(fresh.status, 200);
  t.equal(fresh.body, 'hello');
});

t.test('a 204 that declares a length passes as a 204, without it', async (t) => {
  const s = await start(t);
  for (let i = 0; i < 2; i++) {
    const res = await request(`${s.url}/static/nothing`);
    t.equal(res.statusCode, 204, 'not a 502');
    t.equal(res.headers['x-portal'], 'yes');
    t.equal(res.headers['content-length'], undefined);
    t.equal(await res.body.text(), '');
  }
});

t.test('a small answer arrives whole, also one whose body comes in parts after its headers', async (t) => {
  const s = await start(t);
  for (let i = 0; i < 2; i++) {
    const res = await request(`${s.url}/static/small`);
    t.equal(res.statusCode, 200);
    t.equal(res.headers['content-length'], '5');
    t.equal(await res.body.text(), 'hello');
    const later = await request(`${s.url}/static/later`);
    t.equal(later.statusCode, 200);
    t.equal(later.headers['content-length'], '11');
    t.equal(await later.body.text(), 'hello world');
  }
});

t.test('a small answer that breaks off is a 502 page, without the portal headers, not a page cut short', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/cut`, { headers: { accept: 'text/html' } });
  const body = await res.body.text();
  t.equal(res.statusCode, 502);
  t.match(body, 'not reachable');
  t.notOk(body.includes('xxxxxxxxxx'), 'none of the partial answer');
  t.notOk('x-portal' in res.headers, 'the portal headers of the broken answer are gone');
  t.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', "the gateway's own stay");
});

t.test("a portal that drops an upload half-way is the portal's failure (502), not the client's; the rest of an upload never read closes the connection", async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/upload-drop`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', accept: 'application/json' }, body: Buffer.alloc(2 * 1024 * 1024, 1) });
  t.equal(res.statusCode, 502);
  // The rest of the upload is never read: the connection closes, instead of waiting for the request timeout.
  t.equal(res.headers.connection, 'close');
  // An upload refused before it went to the portal (its session expired): its rest is never read either.
  const refused = await request(`${s.url}/records`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', accept: 'application/json' }, body: Buffer.alloc(4 * 1024 * 1024, 1) });
  await refused.body.dump();
  t.equal(refused.statusCode, 401);
  t.equal(refused.headers.connection, 'close');
  t.equal((await request(`${s.url}/static/small`)).statusCode, 200, 'the next request, on a new connection, is answered');
  // A small body that came whole with its headers: the connection serves on.
  const small = await rawRequest(s.url, `POST /records HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc`);
  t.match(small, /^HTTP\/1\.1 401 [^]*\r\nconnection: keep-alive\r\n/i);
  t.match(await res.body.json(), { error: 'GW_ERR_UPSTREAM_UNAVAILABLE' });
  t.match(failed(s), [{ level: 40, code: 'GW_ERR_UPSTREAM_UNAVAILABLE', reason: String }], 'logged as a portal failure: one short warning');
});

t.test('an answer the gateway cannot parse is a 502 page, and none of its bytes reach the log', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/malformed`, { headers: { accept: 'text/html' } });
  const body = await res.body.text();
  t.equal(res.statusCode, 502);
  t.notOk(body.includes(PORTAL_SECRET) || body.includes(PATIENT), 'not in the page');
  const log = s.logs.join('');
  t.match(log, 'HTTPParserError', 'the error is logged');
  t.notOk(log.includes(PORTAL_SECRET), 'the portal session is not logged');
  t.notOk(log.includes(PATIENT), 'the page is not logged');
});

t.test('an answer with a status outside 100–599 is a 502 page without any of its headers, answered once', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/bad-status`, { headers: { accept: 'text/html' } });
  const body = await res.body.text();
  t.equal(res.statusCode, 502);
  t.match(body, 'not reachable');
  t.notOk('x-portal' in res.headers || 'location' in res.headers, 'no portal header');
  t.notMatch(String(res.headers['set-cookie']), 'XSRF-TOKEN', "not even an allow-listed cookie (the gateway's own may be set)");
  t.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', "the gateway's own stay");
  t.equal((await request(`${s.url}/static/small`)).statusCode, 200, 'the gateway goes on');
  t.notMatch(s.logs.join(''), /already sent/, 'no second answer was tried');
});

t.test('a small answer that stalls past the portal timeout is a 504 page', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/stall`, { headers: { accept: 'text/html' } });
  const body = await res.body.text();
  t.equal(res.statusCode, 504);
  t.match(body, 'took too long');
  t.notOk(body.includes('xxxxxxxxxx'), 'none of the partial answer');
});

t.test('a streamed answer that breaks off before its first byte: the error page (504, 502), without the portal headers', async (t) => {
  const s = await start(t);
  for (const [path, status, code] of [['/static/stream-stall', 504, 'GW_ERR_UPSTREAM_TIMEOUT'], ['/static/stream-broken', 502, 'GW_ERR_UPSTREAM_UNAVAILABLE']] as const) {
    const page = await request(`${s.url}${path}`, { headers: { accept: 'text/html' } });
    t.equal(page.statusCode, status, path);
    t.match(await page.body.text(), status === 504 ? 'took too long' : 'not reachable');
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    for (const name of ['content-disposition', 'content-encoding', 'x-portal']) t.notOk(name in page.headers, `no ${name}`);
    t.equal(page.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', "the gateway's own stay");
    const json = await request(`${s.url}${path}`, { headers: { accept: 'application/json' } });
    t.equal(json.statusCode, status);
    t.equal(json.headers['content-type'], 'application/json; charset=utf-8');
    t.match(await json.body.json(), { error: code, requestId: String });
  }
});

t.test('a large answer streams: its first bytes arrive before the portal has sent the rest', async (t) => {
  const s = await start(t);
  const res = await request(`${s.url}/static/large`);
  t.equal(res.statusCode, 200);
  const chunks = res.body[Symbol.asyncIterator]();
  const first = await chunks.next();
  t.ok(!first.done && (first.value as Buffer).length > 0, 'bytes arrived');
  t.notOk(s.finished(), 'while the portal was still holding the rest');
  s.release();
  let total = (first.value as Buffer).length;
  for (let c = await chunks.next(); !c.done; c = await chunks.next()) total += (c.value as Buffer).length;
  t.equal(total, 2 * CHUNK.length, 'all of it');
});

for (const mode of ['http', 'https'] as const) {
  t.test(`${mode}, a client that takes none of a large answer is cut off after portal.timeoutSeconds, and the portal connection it held is let go`, async (t) => {
    const ca = mode === 'https' ? new TestCa('server') : undefined;
    const cert = ca?.issue('localhost', { server: true });
    const s = await start(t, (raw) => {
      if (cert) raw.server.tls = { certFile: cert.certFile, keyFile: cert.keyFile };
    });
    // Reads nothing once the request is sent (a browser tab frozen, a client gone to sleep with its connection open).
    const client = cert ? tlsConnect({ port: s.port, host: '127.0.0.1', servername: 'localhost', ca: ca!.ca.cert }) : tcpConnect(s.port, '127.0.0.1');
    t.teardown(() => client.destroy());
    client.on('error', () => {});
    await once(client, cert ? 'secureConnect' : 'connect');
    client.write('GET /static/endless HTTP/1.1\r\nHost: localhost\r\n\r\n');
    client.pause();
    while (s.endless.size === 0) await new Promise((r) => setTimeout(r, 20));
    const since = Date.now();
    // portal.timeoutSeconds is 2 s in tests; at once, the stall is not yet seen.
    await new Promise((r) => setTimeout(r, 1000));
    t.equal(s.endless.size, 1, 'the answer is still under way within portal.timeoutSeconds');
    // Kept open, the portal's connection is held for as long as the client keeps its own.
    while (s.endless.size > 0 && Date.now() - since < 10_000) await new Promise((r) => setTimeout(r, 50));
    t.equal(s.endless.size, 0, "the portal's connection is closed within a few seconds of portal.timeoutSeconds");
  });
}

t.test('a client that takes a large answer slowly, pausing for less than portal.timeoutSeconds at a time, gets all of it', async (t) => {
  const s = await start(t);
  const client = tcpConnect(s.port, '127.0.0.1');
  t.teardown(() => client.destroy());
  await once(client, 'connect');
  client.write('GET /static/sized HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  // A slow line: 2 MiB every 1.3 s (longer than the gateway's checks are apart), nothing in between.
  let received = 0;
  let quota = 0;
  client.on('data', (d: Buffer) => {
    received += d.length;
    quota -= d.length;
    if (quota <= 0) client.pause();
  });
  client.pause();
  let ended = false;
  client.once('close', () => (ended = true));
  while (!ended) {
    await new Promise((r) => setTimeout(r, 1300));
    quota = 2 * 1024 * 1024;
    client.resume();
  }
  t.ok(received > 200 * CHUNK.length, `the whole answer arrived (${received} bytes with the head)`);
});

t.test('a client on a slow line, whose first part of the answer takes a while to go out, is not cut off for the time before it came', async (t) => {
  const s = await start(t);
  // The gateway has been up longer than portal.timeoutSeconds (2 s in tests) before the client comes.
  await new Promise((r) => setTimeout(r, 2500));
  // A receive buffer of 2 KiB and small segments (a phone on a poor line): the answer's first write cannot all go out
  // at once. The client reads nothing for 1.5 s (under portal.timeoutSeconds), then all of it. Node cannot set a
  // socket's receive buffer; Python can.
  const client = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'GET /static/sized HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n')
time.sleep(1.5)
n = 0
while True:
    d = s.recv(65536)
    if not d: break
    n += len(d)
print(n)
`;
  const { stdout } = await promisify(execFile)('python3', ['-c', client, String(s.port)], { timeout: 60_000 });
  t.ok(Number(stdout) > 200 * CHUNK.length, `the whole answer arrived (${stdout.trim()} bytes with the head)`);
});

t.test('the password check itself: a portal that does not answer in time is a 504 page, one that is down a 502; each a short warning in the log', async (t) => {
  const s = await start(t);
  const login = () =>
    request(`${s.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      body: 'username=alice&password=correct+horse+battery',
    });
  const stalled = await login();
  const stalledBody = await stalled.body.text();
  t.equal(stalled.statusCode, 504);
  t.match(stalledBody, 'took too long');
  t.notOk('set-cookie' in stalled.headers && String(stalled.headers['set-cookie']).includes('__Host-mfa-pending'), 'no pending login');
  await s.closePortal();
  const down = await login();
  const downBody = await down.body.text();
  t.equal(down.statusCode, 502);
  t.match(downBody, 'not reachable');
  t.notMatch(downBody, /ECONNREFUSED|Error:|correct horse/);
  // A portal page asked for while the portal is down: the same.
  t.equal((await request(`${s.url}/static/small`)).statusCode, 502);
  // An outage fails every request: one line each, with what went wrong, without a stack trace.
  t.match(failed(s), [
    { level: 40, code: 'GW_ERR_UPSTREAM_TIMEOUT', reason: 'Headers Timeout Error (UND_ERR_HEADERS_TIMEOUT)' },
    { level: 40, code: 'GW_ERR_UPSTREAM_UNAVAILABLE', reason: `connect ECONNREFUSED 127.0.0.1:${s.portalPort}` },
    { level: 40, code: 'GW_ERR_UPSTREAM_UNAVAILABLE', reason: `connect ECONNREFUSED 127.0.0.1:${s.portalPort}` },
  ]);
  for (const line of failed(s)) t.same(Object.keys(line).sort(), ['code', 'hostname', 'level', 'msg', 'reason', 'reqId', 'time'], 'no err, no stack');
  const shown = s.logs.filter((l) => (JSON.parse(l) as { level: number }).level >= 30);
  t.notMatch(shown.join(''), /"stack"/, 'no other line of the outage has a stack either, debug aside (the proxy library logs its own there)');
  t.notMatch(s.logs.join(''), 'correct horse');
});

t.test("closing the gateway ends its connections to the portal, so they hold neither the portal's shutdown nor its sockets", async (t) => {
  const portal = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' }).end('hello'));
  // The portal lets an idle connection live for a minute (and says so in Keep-Alive), as servers often do.
  portal.keepAliveTimeout = 60_000;
  const open = new Set<Socket>();
  portal.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  const portalUrl = await listen(portal);
  t.teardown(() => {
    portal.closeAllConnections();
    portal.close();
  });
  const app = await buildApp(resolveConfig(rawTestConfig(portalUrl)), { logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const res = await request(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/static/page`);
  t.equal(await res.body.text(), 'hello');
  t.equal(open.size, 1, 'the answer came on a connection the gateway keeps for the next request');
  await app.close();
  // Within 10 s (at once, but the machine may be loaded); left open, it would live on for the portal's minute.
  for (const deadline = Date.now() + 10_000; open.size > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  t.equal(open.size, 0, 'the connection is closed once the gateway is');
});
