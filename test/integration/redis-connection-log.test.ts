// What the log says of the Redis connection: one warning when it is lost or refused (with why, never a password),
// nothing more while ioredis keeps retrying, one line when it is back; a request failed meanwhile, one short line.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { freePort, startOwnRedis, type TestRedis } from '../helpers/redis.js';
import { startStack, type Stack } from '../helpers/stack.js';

const waitFor = async (fn: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Line = { level: number; msg?: string; [k: string]: unknown };
const lines = (s: Stack): Line[] => s.logs.map((l) => JSON.parse(l) as Line);
const storeLines = (s: Stack) => lines(s).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('store connection'));
const failed = (s: Stack) => lines(s).filter((l) => l.msg === 'request failed');

t.test('started with Redis down: one warning with the reason, none on each retry; one line when Redis is up', async (t) => {
  const port = await freePort();
  const kv = new RedisKvStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: `log-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 300 });
  const s = await startStack({ kv: () => kv });
  let redis: TestRedis | undefined;
  t.teardown(async () => {
    await s.close();
    await redis?.stop();
  });
  t.ok(await waitFor(() => storeLines(s).length > 0), 'the refused connection is logged');
  // ioredis retries every 100 ms at first, then up to every second: several retries, still one line.
  await sleep(1500);
  t.match(storeLines(s), [{ level: 40, msg: 'store connection failed: requests that need the store are refused (503) until it is back', store: 'redis', reason: `connect ECONNREFUSED 127.0.0.1:${port}` }]);

  // A request meanwhile: 503, one short line (the code and what the store said, no stack).
  const page = await s.browser().get('/login');
  t.equal(page.status, 503);
  t.ok(await waitFor(() => failed(s).length === 1));
  const [line] = failed(s);
  t.equal(line!.code, 'GW_ERR_STORE_UNAVAILABLE');
  t.match(JSON.stringify(line), /not connected \(connection: connect ECONNREFUSED/);
  t.notMatch(JSON.stringify(line), /"stack"|\\n +at /, 'no stack trace');

  redis = await startOwnRedis({ port });
  t.ok(await waitFor(() => storeLines(s).length === 2), 'the connection made is logged');
  t.match(storeLines(s)[1], { level: 30, msg: 'store connection back: requests are served again', store: 'redis' });
  t.equal((await s.browser().get('/login')).status, 200);
  t.equal(storeLines(s).length, 2);
});

t.test('a refused password: one warning with what Redis said, never the password', async (t) => {
  const redis = await startOwnRedis();
  t.teardown(redis.stop);
  const admin = new Redis(redis.url);
  await admin.config('SET', 'requirepass', 'the-right-one');
  admin.disconnect();
  const url = redis.url.replace('redis://', 'redis://:Wr0ng-S3cret-pw@');
  const kv = new RedisKvStore({ url, keyPrefix: `log-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 300 });
  const s = await startStack({ kv: () => kv });
  t.teardown(s.close);
  t.ok(await waitFor(() => storeLines(s).length > 0));
  await sleep(1000);
  t.equal((await s.browser().get('/login')).status, 503);
  t.ok(await waitFor(() => failed(s).length === 1));
  t.match(storeLines(s), [{ level: 40, store: 'redis', reason: /^WRONGPASS / }]);
  t.notMatch(s.logs.join('\n'), /Wr0ng-S3cret-pw/, 'the password is in no line');
});

t.test('Redis stopped while running: one warning, short lines for the requests failed meanwhile, one line when it is back', async (t) => {
  const redis = await startOwnRedis();
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: `log-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 300 });
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  t.teardown(async () => {
    await s.close();
    await redis.stop();
  });
  t.equal((await s.browser().get('/login')).status, 200);
  t.same(storeLines(s), [], 'nothing to say while it is up');
  await redis.stop();
  t.ok(await waitFor(() => storeLines(s).length > 0), 'logged without waiting for a request');
  await sleep(1500);
  t.match(storeLines(s), [{ level: 40, store: 'redis', reason: 'the connection was closed' }]);
  const statuses = await Promise.all([1, 2, 3].map(() => s.browser().get('/login').then((p) => p.status)));
  t.same(statuses, [503, 503, 503]);
  t.ok(await waitFor(() => failed(s).length === 3), 'one line per failed request');
  for (const line of failed(s)) t.notMatch(JSON.stringify(line), /"stack"|\\n +at /, 'no stack trace');
  await redis.restart();
  t.ok(await waitFor(() => storeLines(s).length === 2));
  t.match(storeLines(s)[1], { level: 30, msg: 'store connection back: requests are served again' });
  // Closing the gateway is no lost connection.
  await s.close();
  await sleep(300);
  t.equal(storeLines(s).length, 2, 'nothing logged at close');
});
