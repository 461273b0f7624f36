// Stopping the gateway process (`serve`) with SIGTERM: it stops within its grace period and a little more, whatever
// the portal does, so the container's stop timeout never kills it before its audit trail is sealed.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { Browser } from '../helpers/browser.js';
import { gatewayProcess, SIGNAL_SELF, TS_LOADER } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { STALE_MS } from '../../src/audit/dir-lock.js';
import { TestCa } from '../helpers/pki.js';
import { freePort, freePorts } from '../helpers/redis.js';
import { silentServer } from '../helpers/silent-server.js';

/** A gateway process in front of a portal that takes every request and never answers it (grace period 1 s). */
async function beforeSilentPortal(t: Test, graceSeconds = 1, logLevel = 'warn') {
  const portal = await silentServer(t);
  const raw = rawTestConfig(portal.url);
  raw.log = { level: logLevel };
  const port = await freePort();
  raw.server = { ...raw.server, port, shutdownGraceSeconds: graceSeconds };
  // Far longer than the grace period, as the default 30 s is longer than compose's 20 s stop_grace_period.
  raw.portal.timeoutSeconds = 30;
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const gw = await gatewayProcess(file, port);
  t.teardown(() => gw.proc.kill('SIGKILL'));
  gw.proc.stdout!.resume();
  return { portal, raw, gw };
}

t.test('a login waiting for a portal that does not answer holds the stop no longer than the grace period and a little more', async (t) => {
  const { portal, raw, gw } = await beforeSilentPortal(t);
  const seen = () => portal.requests.map((r) => `${r.method} ${r.url}`);
  gw.proc.stderr!.resume();

  const b = new Browser(gw.url);
  const login = b.post('/login', { username: 'alice', password: 'correct horse battery' }).catch(() => 'cut off');
  for (let i = 0; i < 100 && !seen().includes('POST /login'); i++) await new Promise((r) => setTimeout(r, 50));
  t.same(seen(), ['POST /login'], 'the password is being replayed to the portal');

  const started = Date.now();
  gw.proc.kill('SIGTERM');
  const [code] = (await once(gw.proc, 'exit')) as [number | null];
  const took = Date.now() - started;
  t.equal(code, 0);
  t.ok(took < 10_000, `stopped ${took} ms after SIGTERM (grace 1 s; the portal's timeout is 30 s)`);
  t.equal(await login, 'cut off', 'the browser waiting for it is cut off');
  // It stopped cleanly: the audit directory is given back, so the next start need not wait for its lock to go stale.
  t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit lock is released');
});

t.test('when the grace period runs out, the log says how many requests in flight were cut off', async (t) => {
  const { portal, gw } = await beforeSilentPortal(t, 1, 'warn');
  let stdout = '';
  gw.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  gw.proc.stderr!.resume();
  const b = new Browser(gw.url);
  const cut = [b.post('/login', { username: 'alice', password: 'correct horse battery' }), new Browser(gw.url).get('/static/a')].map((p) => p.catch(() => 'cut off'));
  for (let i = 0; i < 100 && portal.requests.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  gw.proc.kill('SIGTERM');
  const [code] = (await once(gw.proc, 'exit')) as [number | null];
  t.equal(code, 0);
  t.same(await Promise.all(cut), ['cut off', 'cut off']);
  t.match(stdout, /"level":40,.*"requests":2,"graceSeconds":1,"msg":"server.shutdownGraceSeconds ran out: 2 requests still in flight were cut off"/);
});

t.test('SIGHUP (the terminal closed, a reload the gateway does not have) stops it as SIGTERM does, not at once', async (t) => {
  const { portal, raw, gw } = await beforeSilentPortal(t, 1, 'info');
  let stdout = '';
  gw.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  gw.proc.stderr!.resume();
  const login = new Browser(gw.url).post('/login', { username: 'alice', password: 'correct horse battery' }).catch(() => 'cut off');
  for (let i = 0; i < 100 && !portal.requests.length; i++) await new Promise((r) => setTimeout(r, 50));

  gw.proc.kill('SIGHUP');
  const [code, signal] = (await once(gw.proc, 'exit')) as [number | null, string | null];
  t.same({ code, signal }, { code: 0, signal: null }, 'exits 0 after its stop, not killed by the signal');
  t.equal(await login, 'cut off');
  t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit trail is sealed and its lock released: the next start need not wait');
  // The operator's log says the stop began, by which signal, and that it ended (a line of a request cut off may be
  // written after it, its time before).
  t.match(stdout, /"signal":"SIGHUP","graceSeconds":1,"msg":"stopping: no new connections; requests in flight may finish"}\n(.*\n)*.*"signal":"SIGHUP","msg":"stopped"}\n/);
  // And the first line named the version that ran.
  const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  t.match(stdout.split('\n')[0], `"version":"${version}","msg":"starting mfa-gateway"}`);
});

t.test('a second signal while stopping (Ctrl+C after SIGTERM, SIGTERM again) neither crashes nor cuts the stop short', async (t) => {
  for (const second of ['SIGINT', 'SIGTERM'] as const) {
    // A login held by the portal keeps the stop going (5 s of grace) while the second signal comes.
    const { portal, raw, gw } = await beforeSilentPortal(t, 5);
    let stdout = '';
    let stderr = '';
    gw.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    gw.proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));

    const login = new Browser(gw.url).post('/login', { username: 'alice', password: 'correct horse battery' }).catch(() => 'cut off');
    for (let i = 0; i < 100 && !portal.requests.length; i++) await new Promise((r) => setTimeout(r, 50));
    gw.proc.kill('SIGTERM');
    // The second only once the first is being acted on (the port takes no new connection): two of a kind sent close
    // together can reach the process as one (the kernel keeps one of a kind pending).
    const port = Number(new URL(gw.url).port);
    const refused = () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => (socket.destroy(), resolve(false))).once('error', () => resolve(true));
      });
    for (let i = 0; i < 200 && !(await refused()); i++) await new Promise((r) => setTimeout(r, 10));
    gw.proc.kill(second);
    const [code, signal] = (await once(gw.proc, 'exit')) as [number | null, string | null];
    t.same({ code, signal }, { code: 0, signal: null }, `SIGTERM then ${second}: exits 0`);
    t.match(stdout, new RegExp(`"signal":"${second}".*"msg":"already stopping"`), 'the second signal is only logged');
    t.notMatch(stderr, /ERR_SERVER_NOT_RUNNING|\n\s+at /, 'no crash, no stack trace');
    await login;
    t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit trail is sealed and its lock released');
  }
});

t.test('while it drains, the admin listener says not ready (shutting down) and still live, and closes after the gateway', async (t) => {
  const portal = await silentServer(t);
  const raw = rawTestConfig(portal.url);
  const [port, adminPort] = await freePorts(2);
  // A grace period and a portal timeout far longer than the test: the drain ends when the portal lets the login go.
  raw.server = { ...raw.server, port, shutdownGraceSeconds: 120 };
  raw.portal.timeoutSeconds = 120;
  raw.admin = { port: adminPort };
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const gw = await gatewayProcess(file, port);
  t.teardown(() => gw.proc.kill('SIGKILL'));
  gw.proc.stdout!.resume();
  gw.proc.stderr!.resume();
  // A connection of its own for each request: what a probe that connects anew gets.
  const fresh = new Agent({ pipelining: 0 });
  t.teardown(() => fresh.close());
  const get = (url: string) =>
    request(url, { dispatcher: fresh }).then(
      async (r) => ({ status: r.statusCode, body: await r.body.text() }),
      (err: NodeJS.ErrnoException) => ({ status: 0, body: err.code }),
    );
  const admin = `http://127.0.0.1:${adminPort}`;
  t.same(await get(`${admin}/health/ready`), { status: 200, body: '{"status":"ready"}' });

  const login = new Browser(gw.url).post('/login', { username: 'alice', password: 'correct horse battery' });
  for (let i = 0; i < 100 && !portal.requests.length; i++) await new Promise((r) => setTimeout(r, 50));
  gw.proc.kill('SIGTERM');
  let ready = await get(`${admin}/health/ready`);
  for (let i = 0; i < 300 && ready.status === 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    ready = await get(`${admin}/health/ready`);
  }
  t.same(ready, { status: 503, body: '{"status":"unavailable","reason":"shutting down"}' }, 'not ready while the login drains');
  t.same(await get(`${admin}/health/live`), { status: 200, body: '{"status":"ok"}' }, 'still live');
  t.match(await get(`${admin}/metrics`), { status: 200, body: /^mfa_gateway_ready 0$/m }, 'still scraped, and not ready');
  t.same(await get(`${gw.url}/_mfa/health/ready`), { status: 0, body: 'ECONNREFUSED' }, "the gateway's port takes no new connection");
  t.equal(gw.proc.exitCode, null, 'still draining');

  // The portal gives up on the login: the drain is over.
  const exited = once(gw.proc, 'exit');
  portal.requests[0]!.socket.destroy();
  const [code] = (await exited) as [number | null];
  t.equal(code, 0);
  t.equal((await login).status, 502, 'the login in flight was answered');
  t.same(await get(`${admin}/health/live`), { status: 0, body: 'ECONNREFUSED' }, 'the admin listener is closed too');
  t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit lock is released');
});

t.test('with server.shutdownDelaySeconds, a stop first says not ready on both ports while it still serves, then drains', async (t) => {
  const portal = await silentServer(t);
  const raw = rawTestConfig(portal.url);
  const [port, adminPort] = await freePorts(2);
  raw.server = { ...raw.server, port, shutdownDelaySeconds: 3, shutdownGraceSeconds: 1 };
  raw.admin = { port: adminPort };
  raw.log = { level: 'info' };
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const gw = await gatewayProcess(file, port);
  t.teardown(() => gw.proc.kill('SIGKILL'));
  let stdout = '';
  gw.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  gw.proc.stderr!.resume();
  const fresh = new Agent({ pipelining: 0 });
  t.teardown(() => fresh.close());
  const get = (url: string) => request(url, { dispatcher: fresh }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }), (err: NodeJS.ErrnoException) => ({ status: 0, body: err.code }));

  const started = Date.now();
  gw.proc.kill('SIGTERM');
  let ready = await get(`${gw.url}/_mfa/health/ready`);
  for (let i = 0; i < 50 && ready.status === 200; i++) ready = (await new Promise((r) => setTimeout(r, 50)), await get(`${gw.url}/_mfa/health/ready`));
  t.same(ready, { status: 503, body: '{"status":"unavailable"}' }, "the gateway's port: not ready, on a new connection");
  t.same(await get(`http://127.0.0.1:${adminPort}/health/ready`), { status: 503, body: '{"status":"unavailable","reason":"shutting down"}' }, 'the admin listener: not ready');
  t.match(await get(`${gw.url}/_mfa/assets/gateway.css`), { status: 200 }, 'and it still serves requests, on new connections');
  t.ok(Date.now() - started < 3_000, 'all within the delay');
  const [code] = (await once(gw.proc, 'exit')) as [number | null];
  t.equal(code, 0);
  t.ok(Date.now() - started >= 3_000, 'it stopped only after the delay');
  t.match(stdout, /"signal":"SIGTERM","delaySeconds":3,"msg":"stopping: not ready \(503\) for server.shutdownDelaySeconds, still serving"}\n(.*\n)*.*"msg":"stopping: no new connections; requests in flight may finish"}/);
});

/**
 * A gateway process (`serve`, with server.tls when `tls`) whose grace period (20 s) is far longer than any test of it,
 * in front of a portal that answers only what the test writes to its requests' sockets. Once it is ready.
 */
async function beforeLongGrace(t: Test, tls: boolean) {
  const portal = await silentServer(t);
  const raw = rawTestConfig(portal.url);
  const port = await freePort();
  // The timers that close a connection sending nothing (server.headersTimeoutSeconds, which also bounds a TLS handshake)
  // run past the grace period: only the stop itself can close such a connection in time.
  raw.server = { ...raw.server, port, shutdownGraceSeconds: 20, headersTimeoutSeconds: 60 };
  raw.portal.timeoutSeconds = 60;
  if (tls) {
    const cert = new TestCa('server').issue('gateway', { server: true });
    raw.server.tls = { certFile: cert.certFile, keyFile: cert.keyFile };
  }
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const proc = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'serve', '--config', file], { stdio: ['ignore', 'ignore', 'ignore'] });
  t.teardown(() => proc.kill('SIGKILL'));
  const agent = new Agent({ connect: { rejectUnauthorized: false } });
  t.teardown(() => agent.close());
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const ready = () => request(`${url}/_mfa/health/ready`, { dispatcher: agent }).then((r) => (r.body.dump(), r.statusCode === 200), () => false);
  for (let i = 0; i < 300 && !(await ready()); i++) await new Promise((r) => setTimeout(r, 100));
  return { portal, raw, port, proc };
}

/**
 * A browser's connection to the gateway's port, as the browser sees it: what it received (one character a byte) and
 * when it was closed. With `tls`: once its handshake is done, or (`hello: false`) a TCP connection that sends nothing.
 */
async function browserConnection(t: Test, port: number, tls: boolean, hello = true) {
  const socket = tls && hello ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const c = { received: '', closedAt: undefined as number | undefined, get: (path: string) => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`) };
  socket.setEncoding('latin1').on('data', (d: string) => (c.received += d));
  socket.on('error', () => {}).on('close', () => (c.closedAt = Date.now()));
  await once(socket, tls && hello ? 'secureConnect' : 'connect');
  return c;
}

/** Waits until `done` (polling), at most `ms`; says whether it came. */
async function until(done: () => boolean, ms = 10_000): Promise<boolean> {
  for (const deadline = Date.now() + ms; !done(); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > deadline) return false;
  return true;
}

/** Whether `text` is nothing but whole answers, each with the body of the length it declares (none cut short). */
function wholeAnswers(text: string): boolean {
  while (text) {
    const head = /^HTTP\/1\.1 \d{3} [^\r]*\r\n(?:[^\r]+\r\n)*\r\n/.exec(text)?.[0];
    const length = head && /\r\ncontent-length: (\d+)\r\n/i.exec(head)?.[1];
    if (!head || length === undefined || text.length < head.length + Number(length)) return false;
    text = text.slice(head.length + Number(length));
  }
  return true;
}

for (const tls of [false, true]) {
  const mode = tls ? 'with server.tls' : 'over plain HTTP';
  t.test(`${mode}, connections with no request in flight (a browser's preconnection, a kept-alive one) do not hold the stop`, async (t) => {
    const { raw, port, proc } = await beforeLongGrace(t, tls);
    // A kept-alive connection, its answer received.
    const kept = await browserConnection(t, port, tls);
    kept.get('/_mfa/health/ready');
    t.ok(await until(() => wholeAnswers(kept.received) && kept.received !== ''), 'answered, and kept open');
    // One that sends its next request just as the stop begins.
    const late = await browserConnection(t, port, tls);
    late.get('/_mfa/health/ready');
    await until(() => wholeAnswers(late.received) && late.received !== '');
    const first = late.received;
    // A browser's preconnection (with server.tls: its handshake done), and a connection that sends nothing at all.
    const preconnected = await browserConnection(t, port, tls);
    const silent = tls ? await browserConnection(t, port, tls, false) : preconnected;

    const started = Date.now();
    proc.kill('SIGTERM');
    late.get('/_mfa/health/ready');
    const [code] = (await once(proc, 'exit')) as [number | null];
    const took = Date.now() - started;
    t.equal(code, 0);
    t.ok(took < 10_000, `stopped ${took} ms after SIGTERM (grace 20 s)`);
    t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit trail is sealed and its lock released');
    t.ok(await until(() => [kept, late, preconnected, silent].every((c) => c.closedAt !== undefined), 2_000), 'every connection is closed');
    // The request as the stop began: answered whole (the gateway's 503 or 200), or its connection closed before it was
    // read, which a browser sends again (never an answer cut short).
    t.ok(wholeAnswers(late.received.slice(first.length)), `the request as the stop began: ${JSON.stringify(late.received.slice(first.length, first.length + 20))}`);
  });

  t.test(`${mode}, while a request in flight holds the stop, a connection is closed as soon as it has none, and the one in flight gets its answer`, async (t) => {
    const { portal, port, proc } = await beforeLongGrace(t, tls);
    // An answer of unknown length, streamed through: its head went out before the stop, without Connection: close.
    const streamed = await browserConnection(t, port, tls);
    streamed.get('/static/stream');
    await until(() => portal.requests.length === 1);
    portal.requests[0]!.socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst \r\n');
    t.ok(await until(() => streamed.received.includes('first ')), 'the first part is through');
    const held = await browserConnection(t, port, tls);
    held.get('/static/held');
    await until(() => portal.requests.length === 2);
    const preconnected = await browserConnection(t, port, tls);

    proc.kill('SIGTERM');
    const refused = () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => (socket.destroy(), resolve(false))).once('error', () => resolve(true));
      });
    for (let i = 0; i < 200 && !(await refused()); i++) await new Promise((r) => setTimeout(r, 10));
    t.ok(await until(() => preconnected.closedAt !== undefined, 2_000), 'the preconnection is closed as the stop begins');
    t.same([streamed.closedAt, held.closedAt], [undefined, undefined], 'the connections with a request in flight are not');

    portal.requests[0]!.socket.end('4\r\nlast\r\n0\r\n\r\n');
    t.ok(await until(() => streamed.closedAt !== undefined, 2_000), 'the streamed answer ended: its connection is closed then');
    t.match(streamed.received, /first [\s\S]*last\r\n0\r\n\r\n$/, 'after the whole answer');
    t.equal(held.closedAt, undefined, 'the other request is still in flight');
    t.equal(proc.exitCode, null, 'still draining');

    const answered = Date.now();
    portal.requests[1]!.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nheld page');
    const [code] = (await once(proc, 'exit')) as [number | null];
    const took = Date.now() - answered;
    t.equal(code, 0);
    t.ok(took < 10_000, `stopped ${took} ms after the last answer (grace 20 s)`);
    t.match(held.received, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nheld page$/, 'the request in flight got its whole answer');
    t.ok(await until(() => held.closedAt !== undefined, 2_000), 'and its connection is closed');
  });
}

/**
 * A `serve` process whose audit directory holds the lock of a crashed gateway on this host (its process gone), last
 * touched `ageMs` ago: the start waits for it to go stale. Resolves once the process says it waits. Until then the
 * lock is touched again and again (to `ageMs` ago), so a slow start cannot find it stale already.
 */
async function startBehindLeftLock(t: Test, ageMs: number) {
  const raw = rawTestConfig('http://127.0.0.1:1');
  const port = await freePort();
  raw.server = { ...raw.server, port };
  raw.log = { level: 'info' };
  const lock = join(raw.audit.dir, 'audit.lock');
  const gone = spawnSync(process.execPath, ['-e', '']).pid;
  writeFileSync(lock, JSON.stringify({ host: hostname(), pid: gone, token: 'crashed' }));
  const touch = () => {
    const touched = new Date(Date.now() - ageMs);
    utimesSync(lock, touched, touched);
  };
  touch();
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const proc = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => proc.kill('SIGKILL'));
  const out = { stdout: '', stderr: '' };
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  for (let i = 0; i < 300 && !out.stdout.includes('for it to go stale') && proc.exitCode === null; i++) {
    touch();
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(out.stdout, `has a lock left by process ${gone} on ${hostname()}, most likely by a crash: waiting up to`, 'the start says why it waits');
  return { raw, port, lock, proc, out };
}

t.test("a SIGTERM while the start waits out a crashed gateway's audit lock stops it at once, with exit 0 and nothing taken", async (t) => {
  const { lock, proc, out } = await startBehindLeftLock(t, 0);
  const left = readFileSync(lock, 'utf8');

  const started = Date.now();
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const [code, signal] = (await exited) as [number | null, string | null];
  const took = Date.now() - started;
  t.same({ code, signal }, { code: 0, signal: null }, 'exits 0, as after a stop (not killed by the signal)');
  t.ok(took < 10_000, `stopped ${took} ms after SIGTERM (the lock goes stale only after ${STALE_MS / 1000} s)`);
  t.match(out.stdout, /"signal":"SIGTERM".*"msg":"stopped while starting"/, 'said so');
  t.notMatch(out.stderr, /\n\s+at /, 'no stack trace');
  t.equal(readFileSync(lock, 'utf8'), left, "the crashed gateway's lock is neither taken nor replaced by one of its own");
});

t.test("a start that is not stopped waits out the crashed gateway's lock, then serves and stops as ever", async (t) => {
  // Stale 5 s after the process says it waits.
  const { raw, port, lock, proc } = await startBehindLeftLock(t, STALE_MS - 5_000);
  let ready = false;
  for (let i = 0; i < 150 && !ready; i++) {
    ready = await request(`http://127.0.0.1:${port}/_mfa/health/ready`).then((r) => (r.body.dump(), r.statusCode === 200), () => false);
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ready, 'serving');
  t.match(readFileSync(lock, 'utf8'), `"pid":${proc.pid}`, 'the lock is its own');
  proc.kill('SIGTERM');
  const [code] = (await once(proc, 'exit')) as [number | null];
  t.equal(code, 0);
  t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit lock is released');
});

t.test('a signal once the start has taken the audit lock gives the start up before it listens: lock released, exit 0', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, port: await freePort() };
  raw.log = { level: 'info' };
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const proc = spawn(process.execPath, [TS_LOADER, SIGNAL_SELF, 'src/main.ts', 'serve', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SIGNAL_SELF: 'SIGTERM', SIGNAL_SELF_AT: 'lock' },
  });
  t.teardown(() => proc.kill('SIGKILL'));
  const out = { stdout: '', stderr: '' };
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const [code, signal] = (await once(proc, 'close')) as [number | null, string | null];
  t.same({ code, signal }, { code: 0, signal: null }, 'exits 0, as after a stop');
  t.match(out.stdout, /"signal":"SIGTERM".*"msg":"stopped while starting"/, 'said so');
  t.notMatch(out.stdout, /Server listening|admin listener/, 'it never listened');
  t.notMatch(out.stderr, /\n\s+at /, 'no stack trace');
  t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit lock is released');
});

/**
 * The command line, sent `signal` as the web framework's module is first imported: while the gateway's modules are
 * being loaded, before anything of the command has run. Without the NODE_OPTIONS the test runner gives every child
 * process: the module they preload handles SIGTERM and SIGINT itself, and a moment later kills a process that has no
 * handler of its own by then, where one run by hand is killed at once.
 */
function loadingSignalled(args: string[], signal: NodeJS.Signals) {
  return spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, TS_LOADER, SIGNAL_SELF, 'src/main.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SIGNAL_SELF: signal, SIGNAL_SELF_AT: 'import:fastify' },
  });
}

t.test('a signal while the command line is still loading (before the gateway is built) stops serve cleanly: exit 0, said so', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, port: await freePort() };
  raw.log = { level: 'info' };
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    // As the web framework's module is first imported: the gateway's modules are being loaded.
    const proc = loadingSignalled(['serve', '--config', file], signal);
    t.teardown(() => proc.kill('SIGKILL'));
    const out = { stdout: '', stderr: '' };
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
    const [code, killedBy] = (await once(proc, 'close')) as [number | null, string | null];
    t.same({ code, signal: killedBy }, { code: 0, signal: null }, `${signal}: exits 0, as after a stop (not killed by the signal)`);
    t.match(out.stdout, new RegExp(`"signal":"${signal}".*"msg":"stopped while starting"`), 'said so');
    t.notMatch(out.stdout, /Server listening|admin listener/, 'it never listened');
    t.notMatch(out.stderr, /\n\s+at /, 'no stack trace');
    t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'no audit lock is left');
  }
});

t.test('a signal while the command line is loading still ends any other command, as Node does by default', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-stop-')), 'gw.json');
  writeFileSync(file, JSON.stringify(raw));
  const proc = loadingSignalled(['config', 'check', file], 'SIGTERM');
  t.teardown(() => proc.kill('SIGKILL'));
  let stdout = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr.resume();
  const [code, signal] = (await once(proc, 'close')) as [number | null, string | null];
  t.same({ code, signal }, { code: null, signal: 'SIGTERM' }, 'ended by the signal');
  t.notMatch(stdout, /valid/, 'before it checked anything');
});
