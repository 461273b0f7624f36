// npm run bench, in three parts:
//   1. stuffing: a credential-stuffing attack at full speed against the login route while a signed-in user
//      browses: the user's latency with and without the attack, and how many attack requests reached the portal;
//   2. instances: proxied throughput of two gateway processes on one Redis against one;
//   3. proxy overhead: one authenticated portal page (a) straight from the demo portal, (b) through a bare
//      @fastify/reply-from proxy with no authentication (the floor of this stack) and (c) through the gateway with a
//      session; the last line is `gateway/bare-proxy ratio: X.XX`.
// Each server runs in its own process; autocannon runs in this one.
// Environment: BENCH_ONLY (stuffing|instances|proxy), BENCH_SECONDS (per round), BENCH_ROUNDS, BENCH_CONNECTIONS,
// BENCH_REDIS_URL (a Redis to use; otherwise one is started when redis-server is there), BENCH_CPU_PROFILE_DIR.
// First, as in src/main.ts: importing it keeps the shape of Node's tick objects (src/runtime.ts).
import { tuneRuntime } from '../src/runtime.js';
import { fork, spawn as spawnProcess, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';
import { generate } from 'otplib';
import { request } from 'undici';
import { buildApp } from '../src/app.js';
import { resolveConfig } from '../src/config/load.js';
import { DEMO_USERS, startDemoPortal } from '../test/fixtures/demo-portal.js';
import { Browser, inputValue } from '../test/helpers/browser.js';
import { rawTestConfig } from '../test/helpers/config.js';
import { freePort, waitForPing } from '../test/helpers/redis.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ONLY = process.env.BENCH_ONLY;
const PAGE = '/records';
const self = fileURLToPath(import.meta.url);

/** A server process: the demo portal, the bare proxy, or a gateway (arg: portal URL, then an optional Redis URL). */
async function child(): Promise<void> {
  const [role, arg, redisUrl] = process.argv.slice(2);
  if (role === 'attack') return attackProcess(arg!);
  // Every server runs with the V8 settings of `mfa-gateway serve`, the bare proxy and the portal too.
  tuneRuntime();
  let url: string;
  let portalLogins = 0;
  if (role === 'portal') {
    url = (await startDemoPortal({ onRequest: (r) => void (r.method === 'POST' && r.url.startsWith('/login') && portalLogins++) })).url;
  } else if (role === 'bare') {
    const app = Fastify();
    await app.register(replyFrom, { base: arg!, undici: { connections: 256, pipelining: 1 }, disableRequestLogging: true });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    app.all('/*', (_req, reply) => reply.from());
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  } else {
    const raw = rawTestConfig(arg!);
    raw.log.level = 'warn';
    // Every gateway of a run shares its keys (so a session works on each) and, with Redis, its store.
    raw.keys = JSON.parse(process.env.BENCH_KEYS!);
    // The limits as shipped, not the test suite's (which answers refused logins at once).
    delete raw.limits;
    const store = redisUrl || process.env.BENCH_REDIS_URL;
    if (store) raw.store = { type: 'redis', redis: { url: store, keyPrefix: 'bench:' } };
    const app = await buildApp(resolveConfig(raw));
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  }
  process.on('message', (m) => {
    if (m === 'stats') process.send!({ rss: process.memoryUsage().rss, cpu: process.cpuUsage(), portalLogins });
  });
  process.on('SIGTERM', () => process.exit(0));
  process.send!({ url });
}

const KEYS = JSON.stringify(rawTestConfig('http://x').keys);

async function spawn(role: string, ...args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const profile = (role === 'gateway' || role === 'bare') && process.env.BENCH_CPU_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE_DIR}/${role}`] : [];
  const proc = fork(self, [role, ...args], { stdio: 'inherit', execArgv: profile, env: { ...process.env, BENCH_KEYS: KEYS } });
  const [msg] = (await once(proc, 'message')) as [{ url: string }];
  return { proc, url: msg.url };
}

async function portalCookie(url: string): Promise<string> {
  const b = new Browser(url);
  const user = DEMO_USERS[0]!;
  const page = await b.get('/login');
  await b.post('/login', { username: user.username, password: user.password, csrf: inputValue(page.body, 'csrf') });
  return cookieHeaderOf(b);
}

/** Signs up on a gateway (first login, authenticator app) and returns the Cookie header a browser then sends. */
async function gatewayCookie(url: string, user = DEMO_USERS[0]!): Promise<string> {
  const b = new Browser(url);
  const page = await b.get('/login');
  await b.post('/login', { username: user.username, password: user.password, csrf: inputValue(page.body, 'csrf') });
  const enrol = await b.get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(enrol.body)![1]!.replaceAll(' ', '');
  const csrf = inputValue(enrol.body, 'csrf');
  await b.post('/_mfa/enrol/totp', { csrf, code: await generate({ secret }) });
  await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  return cookieHeaderOf(b);
}

/** Every cookie the browser holds (on the gateway: its session, and the portal cookies allow-listed to the browser). */
function cookieHeaderOf(b: Browser): string {
  return [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}

interface Stats {
  rss: number;
  cpu: NodeJS.CpuUsage;
  portalLogins: number;
}

async function stats(proc: ChildProcess): Promise<Stats> {
  proc.send('stats');
  const [m] = (await once(proc, 'message')) as [Stats];
  return m;
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  cpu: number;
  sys: number;
  rss: number;
}

function browse(url: string, cookie: string, seconds: number, connections = CONNECTIONS) {
  return autocannon({ url: `${url}${PAGE}`, connections, headers: { cookie }, duration: seconds });
}

async function measure(name: string, url: string, cookie: string, proc: ChildProcess, seconds: number): Promise<Result> {
  const before = await stats(proc);
  const r = await browse(url, cookie, seconds);
  const after = await stats(proc);
  if (r.non2xx || r.errors || r.timeouts) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
  // CPU time the server process spent per request, and the kernel's part of it (system time: mostly the socket writes).
  const sys = (after.cpu.system - before.cpu.system) / r.requests.total;
  const cpu = (after.cpu.user - before.cpu.user) / r.requests.total + sys;
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, cpu, sys, rss: after.rss };
}

async function checkPage(name: string, url: string, cookie: string): Promise<void> {
  const check = await request(`${url}${PAGE}`, { headers: { cookie } });
  const body = await check.body.text();
  if (check.statusCode !== 200 || !body.includes('Signed in as')) throw new Error(`${name}: ${PAGE} is not the authenticated page (${check.statusCode})`);
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

function machine(): string {
  return `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`;
}

/** A Redis for the run: BENCH_REDIS_URL, or a redis-server of our own (null when there is none). */
async function benchRedis(): Promise<{ url: string; stop(): void } | null> {
  if (process.env.BENCH_REDIS_URL) return { url: process.env.BENCH_REDIS_URL, stop: () => {} };
  const port = await freePort();
  const proc = spawnProcess('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const failed = await Promise.race([once(proc, 'error').then(() => true), waitForPing(`redis://127.0.0.1:${port}`).then(() => false)]).catch(() => true);
  if (failed) return null;
  return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill() };
}

/**
 * The attacker, in a process of its own (as on another machine, so its client work does not slow the measurement of
 * the legitimate user): many usernames, one password, a new (untrusted, so ignored) X-Forwarded-For on each request.
 */
async function attackProcess(url: string): Promise<void> {
  let n = 0;
  const r = await autocannon({
    url: `${url}/login`,
    connections: CONNECTIONS,
    duration: DURATION,
    requests: [
      {
        method: 'POST',
        setupRequest: (req) => {
          n++;
          return {
            ...req,
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': `10.${n % 250}.${(n >> 8) % 250}.${n % 7}` },
            body: `username=victim${n}&password=Summer2024%21&csrf=x`,
          };
        },
      },
    ],
  });
  process.send!({ total: r.requests.total, statuses: { '2xx': r['2xx'], '4xx': r['4xx'], '5xx': r['5xx'] } });
  process.exit(0);
}

/** 1. The signed-in user's latency alone, then under a credential-stuffing attack on the login route. */
async function stuffing(): Promise<void> {
  const portal = await spawn('portal');
  const gateway = await spawn('gateway', portal.url);
  try {
    const cookie = await gatewayCookie(gateway.url);
    await checkPage('gateway', gateway.url, cookie);
    const userConnections = 4;
    await browse(gateway.url, cookie, 2, userConnections); // warm-up
    const alone = await browse(gateway.url, cookie, DURATION, userConnections);
    const before = await stats(portal.proc);
    const attacker = fork(self, ['attack', gateway.url], { stdio: 'inherit' });
    const attack = once(attacker, 'message') as Promise<[{ total: number }]>;
    const [underAttack, [attacked]] = await Promise.all([browse(gateway.url, cookie, DURATION, userConnections), attack]);
    const reached = (await stats(portal.proc)).portalLogins - before.portalLogins;
    console.log(`\n1. credential stuffing (${machine()})`);
    console.log(`signed-in user (${userConnections} connections, GET ${PAGE}): alone p50 ${alone.latency.p50} ms, p99 ${alone.latency.p99} ms;`);
    console.log(`  under attack p50 ${underAttack.latency.p50} ms, p99 ${underAttack.latency.p99} ms (${underAttack.non2xx} not 2xx)`);
    console.log(`attack (${CONNECTIONS} connections, ${DURATION} s): ${attacked.total} login requests, ${reached} reached the portal (${((100 * reached) / Math.max(1, attacked.total)).toFixed(2)} %)`);
    console.log(`legitimate p99 under attack / alone: ${(underAttack.latency.p99 / Math.max(1, alone.latency.p99)).toFixed(2)}`);
  } finally {
    for (const p of [portal, gateway]) p.proc.kill();
  }
}

/** 2. Proxied throughput: two gateway processes on one Redis against one. */
async function instances(): Promise<void> {
  const redis = await benchRedis();
  if (!redis) {
    console.log('\n2. instances: skipped (no redis-server and no BENCH_REDIS_URL)');
    return;
  }
  const portal = await spawn('portal');
  const one = await spawn('gateway', portal.url, redis.url);
  const two = await spawn('gateway', portal.url, redis.url);
  try {
    const cookie = await gatewayCookie(one.url, DEMO_USERS[1]);
    await checkPage('second gateway', two.url, cookie);
    await browse(one.url, cookie, 2);
    const single = await browse(one.url, cookie, DURATION);
    const [a, b] = await Promise.all([browse(one.url, cookie, DURATION, CONNECTIONS / 2), browse(two.url, cookie, DURATION, CONNECTIONS / 2)]);
    const both = a.requests.average + b.requests.average;
    console.log(`\n2. instances on one Redis (${machine()})`);
    console.log(`one gateway: ${single.requests.average.toFixed(0)} req/s (p99 ${single.latency.p99} ms); two gateways: ${both.toFixed(0)} req/s (p99 ${Math.max(a.latency.p99, b.latency.p99)} ms)`);
    console.log(`two/one: ${(both / single.requests.average).toFixed(2)} (the portal, Redis, both gateways and autocannon share ${cpus().length} cores)`);
  } finally {
    for (const p of [portal, one, two]) p.proc.kill();
    redis.stop();
  }
}

/** 3. The gateway's cost on the hot path against a bare proxy and the portal itself. */
async function proxyOverhead(): Promise<void> {
  const portal = await spawn('portal');
  const bare = await spawn('bare', portal.url);
  const gateway = await spawn('gateway', portal.url);
  try {
    const portalSession = await portalCookie(portal.url);
    const targets = [
      { name: '(a) portal directly', url: portal.url, cookie: portalSession, proc: portal.proc, runs: [] as Result[] },
      { name: '(b) bare reply-from proxy', url: bare.url, cookie: portalSession, proc: bare.proc, runs: [] as Result[] },
      { name: '(c) gateway with a session', url: gateway.url, cookie: await gatewayCookie(gateway.url), proc: gateway.proc, runs: [] as Result[] },
    ];
    for (const t of targets) {
      await checkPage(t.name, t.url, t.cookie);
      await measure(t.name, t.url, t.cookie, t.proc, 2); // warm-up
    }
    // Rounds alternate the order of the targets, so a slow spell of the machine does not fall on one target only.
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) t.runs.push(await measure(t.name, t.url, t.cookie, t.proc, DURATION));
    }
    const [a, b, c] = targets.map((t) => t.runs) as [Result[], Result[], Result[]];
    const ratio = (x: Result[], y: Result[]) => median(x.map((r, i) => r.rps / y[i]!.rps));
    console.log(`\n3. proxy overhead (${machine()})`);
    console.log(`load: autocannon, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION} s per target, GET ${PAGE}; store: ${process.env.BENCH_REDIS_URL ? 'redis' : 'memory'}`);
    console.log('figures: median of the rounds\n');
    console.log('target                          req/s     p50 ms   p99 ms   CPU µs/req   of it kernel   RSS MiB');
    for (const t of targets) {
      const m = (f: (r: Result) => number) => median(t.runs.map(f));
      console.log(`${t.name.padEnd(30)} ${m((r) => r.rps).toFixed(0).padStart(7)} ${String(m((r) => r.p50)).padStart(9)} ${String(m((r) => r.p99)).padStart(8)} ${m((r) => r.cpu).toFixed(0).padStart(12)} ${m((r) => r.sys).toFixed(0).padStart(14)} ${(Math.max(...t.runs.map((r) => r.rss)) / 2 ** 20).toFixed(0).padStart(9)}`);
    }
    console.log(`\nper-round gateway/bare-proxy: ${c.map((r, i) => (r.rps / b[i]!.rps).toFixed(2)).join(' ')}`);
    console.log(`gateway/portal ratio: ${ratio(c, a).toFixed(2)}`);
    console.log(`gateway/bare-proxy ratio: ${ratio(c, b).toFixed(2)}`);
  } finally {
    for (const p of [portal, bare, gateway]) p.proc.kill();
  }
}

async function main(): Promise<void> {
  if (!ONLY || ONLY === 'stuffing') await stuffing();
  if (!ONLY || ONLY === 'instances') await instances();
  if (!ONLY || ONLY === 'proxy') await proxyOverhead();
}

if (process.argv[2]) await child();
else await main();
