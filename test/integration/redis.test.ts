// Sign-in on a real Redis, and failing closed when Redis stops or stalls.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { request } from 'undici';
import { Redis } from 'ioredis';
import { createGateway } from '../../src/gateway.js';
import { keys as storeKeys } from '../../src/stores/keys.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { inputValue } from '../helpers/browser.js';
import { testConfig } from '../helpers/config.js';
import { freePort, startOwnRedis, type TestRedis } from '../helpers/redis.js';
import { ALICE, signInWithTotp, signUpAndEnrol, startStack, submitPassword } from '../helpers/stack.js';

async function redisStack() {
  const redis = await startOwnRedis();
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: `it-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 300 });
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  return { s, redis, kv };
}

const waitFor = async (fn: () => Promise<boolean>, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
};

t.test('full sign-in with Redis, and nothing readable at rest', async (t) => {
  const { s, redis } = await redisStack();
  t.teardown(async () => {
    await s.close();
    await redis.stop();
  });
  const { b, secret } = await signUpAndEnrol(s);
  t.match((await b.get('/records')).body, 'Signed in as alice');
  const second = await signInWithTotp(s, secret);
  t.equal(second.final.status, 303);
  // A wrong password too: the address's failures note the accounts tried, in a set.
  t.equal((await submitPassword(s.browser(), ALICE.username, 'wrong')).status, 200);
  const { Redis } = await import('ioredis');
  const r = new Redis(redis.url);
  const keys = await r.keys('*');
  const read = async (k: string) => {
    const type = await r.type(k);
    return type === 'string' ? (await r.get(k))! : type === 'set' ? (await r.smembers(k)).join('\n') : `not read: ${type}`;
  };
  const values = await Promise.all(keys.map(read));
  r.disconnect();
  t.ok(keys.some((k) => k.includes(':session:')), 'sessions are in Redis');
  t.ok(keys.some((k) => k.endsWith(':usernames')), "and the set of the accounts tried from the address");
  t.same(values.filter((v) => v.startsWith('not read')), [], 'every value read');
  const dump = keys.join('\n') + values.join('\n');
  t.notMatch(dump, 'alice', 'no username at rest');
  t.notMatch(dump, secret, 'no TOTP secret at rest');
  t.notMatch(dump, 'PORTALSESSID', 'no portal cookie at rest');
  const count = /^mfa_gateway_store_call_duration_seconds_count (\d+)$/m.exec(await s.app.gateway.metrics.text());
  t.ok(Number(count?.[1]) > 10, 'every Redis call is timed');
});

t.test('the embedded memory store is not timed: its calls are map lookups', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  t.match((await b.get('/records')).body, 'Signed in as alice');
  t.match(await s.app.gateway.metrics.text(), /^mfa_gateway_store_call_duration_seconds_count 0$/m);
});

t.test('an evicting maxmemory-policy is said in the log at start (it would drop used codes and failure counts)', async (t) => {
  const redis = await startOwnRedis();
  t.teardown(redis.stop);
  const admin = new RedisKvStore({ url: redis.url, keyPrefix: 'policy:', commandTimeoutMs: 1000 });
  t.teardown(() => admin.close());
  await admin.ready();
  t.same(await admin.warnings(), [], "noeviction, Redis's default: nothing to say");
  await admin.client.config('SET', 'maxmemory-policy', 'volatile-lru');
  t.match(await admin.warnings(), [/^Redis maxmemory-policy is volatile-lru: .*set noeviction$/]);
  // A user that may not read the settings (as on many managed services): said too, the store still works.
  await admin.client.acl('SETUSER', 'gateway', 'on', '>gateway-pass', '~*', '&*', '+@all', '-config');
  const limited = new RedisKvStore({ url: redis.url.replace('redis://', 'redis://gateway:gateway-pass@'), keyPrefix: 'policy:', commandTimeoutMs: 1000 });
  t.teardown(() => limited.close());
  await limited.ready();
  t.match(await limited.warnings(), [/^Redis maxmemory-policy could not be read: make sure it is noeviction$/]);
  await limited.set('k', 'v', 60_000);
  t.equal(await limited.get('k'), 'v');

  const kv = new RedisKvStore({ url: redis.url, keyPrefix: 'policy-app:', commandTimeoutMs: 1000 });
  const s = await startStack({ kv: () => kv });
  t.teardown(s.close);
  t.ok(await waitFor(async () => s.logs.some((l) => JSON.parse(l).msg?.startsWith('Redis maxmemory-policy is volatile-lru'))), 'the gateway logs it once it has started');
  t.equal(JSON.parse(s.logs.find((l) => l.includes('maxmemory-policy'))!).level, 40, 'as a warning');
});

t.test('a start given up while waiting for the audit lock closes its connection to Redis', async (t) => {
  const redis = await startOwnRedis();
  t.teardown(redis.stop);
  const watcher = new Redis(redis.url);
  t.teardown(() => watcher.disconnect());
  const clients = async () => ((await watcher.client('LIST')) as string).trim().split('\n').length;
  const config = testConfig('http://127.0.0.1:1', (raw) => (raw.store = { type: 'redis', redis: { url: redis.url } }));
  // The lock of a crashed gateway on this host: the start waits for it to go stale.
  writeFileSync(join(config.audit.dir, 'audit.lock'), JSON.stringify({ host: hostname(), pid: process.pid, token: 'crashed' }));
  const stop = new AbortController();
  const starting = createGateway(config, { signal: stop.signal });
  t.ok(await waitFor(async () => (await clients()) === 2), 'the starting gateway has connected to Redis');
  stop.abort(new Error('stop requested'));
  await t.rejects(starting, /stop requested/);
  await waitFor(async () => (await clients()) === 1, 3000);
  t.equal(await clients(), 1, "the gateway's connection is closed: only the watcher's is left");
});

t.test('Redis up only well after the gateway: the start-up checks run once it is, and again on each reconnection', async (t) => {
  const port = await freePort();
  const kv = new RedisKvStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'late:', commandTimeoutMs: 300 });
  const s = await startStack({ kv: () => kv });
  let redis: TestRedis | undefined;
  t.teardown(async () => {
    await s.close();
    await redis?.stop();
  });
  // Longer than kv.ready() waits (5 s), as when Redis and the gateway start together, or a Sentinel set is forming.
  await new Promise((r) => setTimeout(r, 5500));
  redis = await startOwnRedis({ port, args: ['--maxmemory-policy', 'allkeys-lru'] });
  const policy = () => s.logs.map((l) => JSON.parse(l).msg as string | undefined).filter((m) => m?.startsWith('Redis maxmemory-policy'));
  const seen = storeKeys.keySeen('encryption', s.config.keys.encryption[0]!.id);
  t.ok(await waitFor(async () => policy().length > 0 && (await kv.get(seen).catch(() => null)) !== null, 5000), 'checked once Redis is up');
  t.match(policy(), [/^Redis maxmemory-policy is allkeys-lru: /]);

  // A reconnection (a restart, a failover) checks again: an emptied store gets its keys noted again, and a warning
  // is logged again only when it changed.
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  const reconnect = async () => {
    await admin.del(`late:${seen}`);
    await admin.client('KILL', 'TYPE', 'normal');
    t.ok(await waitFor(async () => (await kv.get(seen).catch(() => null)) !== null, 5000), 'keys noted again');
  };
  await reconnect();
  await admin.config('SET', 'maxmemory-policy', 'volatile-ttl');
  await reconnect();
  t.ok(await waitFor(async () => policy().length > 1, 5000));
  // Checks run one at a time: the first reconnection's is over before the second's.
  t.match(policy()[1], /^Redis maxmemory-policy is volatile-ttl: /, 'the same policy is not said again, another one is');
  t.equal(policy().length, 2);
});

t.test('Redis stalled: 503 everywhere it matters, then the same session works again', async (t) => {
  const { s, redis } = await redisStack();
  t.teardown(async () => {
    await s.close();
    await redis.stop();
  });
  const { b } = await signUpAndEnrol(s);
  t.equal((await b.get('/records')).status, 200);
  const pid = Number((await import('node:child_process')).execFileSync('sh', ['-c', `redis-cli -u ${redis.url} info server | grep process_id | cut -d: -f2`]).toString().trim());
  process.kill(pid, 'SIGSTOP');
  try {
    const before = s.portalRequests.length;
    const page = await b.get('/records');
    t.equal(page.status, 503, 'protected page: fail closed');
    t.match(page.body, 'temporarily unavailable');
    const login = await submitPassword(s.browser(), ALICE.username, ALICE.password).catch((e: Error) => e);
    t.ok(login instanceof Error ? /answered 503/.test(login.message) : login.status === 503, `login cannot start (${login instanceof Error ? login.message : login.status})`);
    t.same(s.portalRequests.slice(before).map((r) => r.url), [], 'nothing reached the portal, neither the page nor the login');
    const ready = await request(`${s.url}/_mfa/health/ready`);
    t.equal(ready.statusCode, 503, 'not ready');
    await ready.body.dump();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  t.ok(await waitFor(async () => (await b.get('/records')).status === 200), 'the session works again once Redis answers');
});

t.test('a Redis connection that goes silent (no close, no reset) is dropped, and a new one serves', async (t) => {
  const redis = await startOwnRedis();
  // A relay to Redis that can turn its existing connections into a black hole; connections made later pass.
  const silenced = new Set<Socket>();
  let connections = 0;
  const relay = createServer((client) => {
    connections++;
    const upstream = connect(Number(new URL(redis.url).port), '127.0.0.1');
    const pass = (from: Socket, to: Socket) => from.on('data', (d) => silenced.has(client) || to.write(d));
    pass(client, upstream);
    pass(upstream, client);
    for (const s of [client, upstream]) s.on('error', () => {}).on('close', () => (client.destroy(), upstream.destroy()));
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  const open = new Set<Socket>();
  relay.on('connection', (c) => (open.add(c), c.on('close', () => open.delete(c))));
  const kv = new RedisKvStore({ url: `redis://127.0.0.1:${(relay.address() as AddressInfo).port}`, keyPrefix: 'silent:', commandTimeoutMs: 200 });
  t.teardown(async () => {
    await kv.close();
    for (const c of open) c.destroy();
    relay.close();
    await redis.stop();
  });
  await kv.ready();
  await kv.ping();
  // A busy moment (the process did not turn its event loop for a second) times out the call waiting meanwhile.
  const waiting = kv.ping().then(() => 'answered', () => 'timed out');
  for (const until = Date.now() + 1000; Date.now() < until; );
  t.equal(await waiting, 'timed out', 'the call waiting through the busy moment timed out');
  await kv.ping();
  t.equal(connections, 1, 'a busy moment does not drop a working connection');
  // Two short stalls far apart (each times out a call, whose answer then comes late) are no silence either.
  const pid = Number(execFileSync('sh', ['-c', `redis-cli -u ${redis.url} info server | grep process_id | cut -d: -f2`]).toString().trim());
  const stall = async () => {
    process.kill(pid, 'SIGSTOP');
    await t.rejects(kv.ping(), { code: 'GW_ERR_STORE_UNAVAILABLE' }, 'the stall times out a call');
    await new Promise((r) => setTimeout(r, 100));
    process.kill(pid, 'SIGCONT');
  };
  await stall();
  await new Promise((r) => setTimeout(r, 1000));
  await stall();
  await kv.ping();
  t.equal(connections, 1, 'two stalls far apart do not drop it');
  for (const c of open) silenced.add(c);
  await t.rejects(kv.ping(), { code: 'GW_ERR_STORE_UNAVAILABLE' }, 'a call on the silent connection fails (fail closed)');
  t.ok(await waitFor(() => kv.ping().then(() => true, () => false), 5000), 'a new connection answers within seconds');
  t.equal(connections, 2, 'the silent one was dropped for a new one');
});

t.test('a call while Redis is down says it is not connected and why, in words an operator reads (the readiness reason, the log)', async (t) => {
  const port = await freePort();
  const kv = new RedisKvStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'down:', commandTimeoutMs: 200 });
  t.teardown(() => kv.close());
  await kv.ready(300).catch(() => {});
  const err = (await kv.get('x').catch((e: Error) => e)) as Error;
  t.equal(err.message, `redis: not connected (connection: connect ECONNREFUSED 127.0.0.1:${port})`);
  t.notMatch(err.message, /enableOfflineQueue|writeable/, "not ioredis' own option");
});

t.test('Redis killed mid-test: 503, never a pass-through; restarted: service resumes by itself', async (t) => {
  const { s, redis } = await redisStack();
  t.teardown(async () => {
    await s.close();
    await redis.stop();
  });
  const { b } = await signUpAndEnrol(s);
  await redis.stop();
  const reached = s.portalRequests.length;
  const statuses = await Promise.all(Array.from({ length: 20 }, () => b.get('/records').then((r) => r.status)));
  t.same([...new Set(statuses)], [503], 'every request 503');
  const fresh = s.browser();
  const loginPage = await fresh.get('/login');
  t.equal(loginPage.status, 503, 'public pages need the store for their cookie jar too');
  // Signing out now: the session cannot be ended, but the browser forgets it (not at another site's request).
  const copy = s.browser();
  for (const [k, v] of b.cookies) copy.cookies.set(k, v);
  const crossSite = await copy.post('/_mfa/logout', { csrf: 'x' }, { 'sec-fetch-site': 'cross-site' });
  t.equal(crossSite.status, 403, "refused as another site's request before the store is asked");
  t.ok(copy.cookies.has('__Host-mfa-session'), 'another site cannot have it cleared');
  const out = await copy.post('/_mfa/logout', { csrf: 'x' });
  t.equal(out.status, 503, 'logout: the session could not be ended');
  t.notOk(copy.cookies.has('__Host-mfa-session'), 'but the browser no longer holds it');
  t.same(s.portalRequests.slice(reached).map((r) => r.url), [], 'nothing reached the portal while Redis was down');
  await redis.restart();
  t.ok(await waitFor(async () => (await fresh.get('/login')).status === 200), 'recovered');
  // Redis kept nothing: the old session is gone, so the browser is sent to sign in, not let through.
  t.equal((await b.get('/records')).status, 302);
  const afterPassword = await submitPassword(fresh, ALICE.username, ALICE.password);
  t.equal(afterPassword.status, 303, 'sign-in works again');
  t.equal(afterPassword.location, '/_mfa/enrol');
  t.ok(inputValue((await fresh.get('/_mfa/enrol/totp')).body, 'csrf'));
});
