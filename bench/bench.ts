// npm run bench: requests/s and latency of one authenticated portal page (a) straight from the demo portal,
// (b) through a bare @fastify/reply-from proxy with no authentication (the floor of this stack) and (c) through
// the gateway with a valid session. Each server runs in its own process; autocannon runs in this one.
// Environment: BENCH_SECONDS (per round), BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_REDIS_URL (gateway on Redis instead of memory),
// BENCH_CPU_PROFILE_DIR (write a V8 CPU profile of the gateway there).
import { fork, type ChildProcess } from 'node:child_process';
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

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const PAGE = '/records';
const self = fileURLToPath(import.meta.url);

async function child(): Promise<void> {
  const [role, arg] = process.argv.slice(2);
  let url: string;
  if (role === 'portal') {
    url = (await startDemoPortal()).url;
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
    if (process.env.BENCH_REDIS_URL) raw.store = { type: 'redis', redis: { url: process.env.BENCH_REDIS_URL, keyPrefix: 'bench:' } };
    const app = await buildApp(resolveConfig(raw));
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  }
  process.on('message', (m) => {
    if (m === 'stats') process.send!({ rss: process.memoryUsage().rss, cpuMicros: process.cpuUsage().user + process.cpuUsage().system });
  });
  process.on('SIGTERM', () => process.exit(0));
  process.send!({ url });
}

async function spawn(role: string, arg = ''): Promise<{ proc: ChildProcess; url: string }> {
  const proc = fork(self, [role, arg], { stdio: 'inherit', execArgv: role === 'gateway' && process.env.BENCH_CPU_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE_DIR}`] : [] });
  const [msg] = (await once(proc, 'message')) as [{ url: string }];
  return { proc, url: msg.url };
}

async function portalCookie(url: string): Promise<string> {
  const b = new Browser(url);
  const user = DEMO_USERS[0]!;
  const page = await b.get('/login');
  await b.post('/login', { username: user.username, password: user.password, csrf: inputValue(page.body, 'csrf') });
  return [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}

async function gatewayCookie(url: string): Promise<string> {
  const b = new Browser(url);
  const user = DEMO_USERS[0]!;
  const page = await b.get('/login');
  await b.post('/login', { username: user.username, password: user.password, csrf: inputValue(page.body, 'csrf') });
  const enrol = await b.get('/_mfa/enrol');
  const secret = /id="secret">([^<]+)</.exec(enrol.body)![1]!.replaceAll(' ', '');
  const csrf = inputValue(enrol.body, 'csrf');
  await b.post('/_mfa/enrol', { csrf, code: await generate({ secret }) });
  await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  return `__Host-mfa-session=${b.cookies.get('__Host-mfa-session')}`;
}

interface Stats {
  rss: number;
  cpuMicros: number;
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
  rss: number;
}

async function measure(name: string, url: string, cookie: string, proc: ChildProcess, seconds: number): Promise<Result> {
  const opts = { url: `${url}${PAGE}`, connections: CONNECTIONS, headers: { cookie } };
  const before = await stats(proc);
  const r = await autocannon({ ...opts, duration: seconds });
  const after = await stats(proc);
  if (r.non2xx || r.errors || r.timeouts) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
  // CPU time the server process spent per request: the cost that does not depend on the other processes.
  const cpu = (after.cpuMicros - before.cpuMicros) / r.requests.total;
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, cpu, rss: after.rss };
}

async function checkPage(name: string, url: string, cookie: string): Promise<void> {
  const check = await request(`${url}${PAGE}`, { headers: { cookie } });
  const body = await check.body.text();
  if (check.statusCode !== 200 || !body.includes('Signed in as')) throw new Error(`${name}: ${PAGE} is not the authenticated page (${check.statusCode})`);
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
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
    console.log(`\nmachine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
    console.log(`load: autocannon, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION} s per target, GET ${PAGE}; store: ${process.env.BENCH_REDIS_URL ? 'redis' : 'memory'}`);
    console.log('figures: median of the rounds\n');
    console.log('target                          req/s     p50 ms   p99 ms   CPU µs/req   RSS MiB');
    for (const t of targets) {
      const m = (f: (r: Result) => number) => median(t.runs.map(f));
      console.log(`${t.name.padEnd(30)} ${m((r) => r.rps).toFixed(0).padStart(7)} ${String(m((r) => r.p50)).padStart(9)} ${String(m((r) => r.p99)).padStart(8)} ${m((r) => r.cpu).toFixed(0).padStart(12)} ${(Math.max(...t.runs.map((r) => r.rss)) / 2 ** 20).toFixed(0).padStart(9)}`);
    }
    console.log(`\nper-round gateway/bare-proxy: ${c.map((r, i) => (r.rps / b[i]!.rps).toFixed(2)).join(' ')}`);
    console.log(`gateway/portal ratio: ${ratio(c, a).toFixed(2)}`);
    console.log(`gateway/bare-proxy ratio: ${ratio(c, b).toFixed(2)}`);
  } finally {
    for (const p of [portal, bare, gateway]) p.proc.kill();
  }
}

if (process.argv[2]) await child();
else await main();
