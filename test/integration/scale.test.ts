// The gateway at scale: signing in on Redis Cluster and Sentinel (through a failover), two gateway processes on one
// Redis sharing logins, sessions and limits, and Redis killed and restarted under a stream of requests.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { DEMO_USERS, startDemoPortal } from '../fixtures/demo-portal.js';
import { Browser, inputValue } from '../helpers/browser.js';
import { gatewayProcess } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { freePort, startOwnRedis, testRedis } from '../helpers/redis.js';
import { startCluster, startSentinel } from '../helpers/redis-topologies.js';
import { merge } from '../helpers/config.js';
import { ALICE, signInWithTotp, signUpAndEnrol, startStack, submitPassword } from '../helpers/stack.js';

const prefix = () => `scale-${randomBytes(4).toString('hex')}:`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('signing in on a Redis Cluster', async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const kv = new RedisKvStore({ mode: 'cluster', nodes: cluster.nodes, keyPrefix: prefix(), commandTimeoutMs: 1000 });
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  t.match((await b.get('/records')).body, 'Signed in as alice');
  t.equal((await signInWithTotp(s, secret)).final.status, 303, 'a second sign-in');
  const bob = await signUpAndEnrol(s, DEMO_USERS[1]);
  t.match((await bob.b.get('/records')).body, 'Signed in as bob', 'keys of another user, on other nodes');
});

t.test('signing in on Sentinel, through a failover', async (t) => {
  const sentinel = await startSentinel();
  t.teardown(() => sentinel.stop());
  const kv = new RedisKvStore({ mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName, keyPrefix: prefix(), commandTimeoutMs: 500 });
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  t.teardown(s.close);
  const { b, secret } = await signUpAndEnrol(s);
  t.equal((await b.get('/records')).status, 200);
  await sentinel.waitForSync();
  await sentinel.failover();
  // During and after the failover: 503 or the right answer, never a pass-through; then back by itself.
  let back = false;
  for (let i = 0; i < 100 && !back; i++) {
    const r = await b.get('/records');
    t.ok([200, 503].includes(r.status), `status ${r.status}`);
    back = r.status === 200;
    if (!back) await sleep(100);
  }
  t.ok(back, 'the session written before the failover is still there');
  t.equal((await signInWithTotp(s, secret)).final.status, 303, 'and a new sign-in works');
});

t.test('two gateway processes on one Redis: log in on one, finish on the other, browse on both; limits shared', async (t) => {
  const redis = await testRedis();
  t.teardown(redis.stop);
  const portal = await startDemoPortal();
  t.teardown(portal.close);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-two-'));
  const [portA, portB] = [await freePort(), await freePort()];
  const raw = rawTestConfig(portal.url);
  raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix: prefix() } };
  raw.log.level = 'warn';
  // After the free wrong passwords, a minute's wait (not the default second): the last one below comes within it
  // however slow the machine.
  merge(raw, { limits: { password: { perAccount: { baseSeconds: 60 } } } });
  const files = [portA, portB].map((port, i) => {
    const file = join(dir, `gw-${i}.json`);
    // One audit directory per instance, as in production.
    writeFileSync(file, JSON.stringify({ ...raw, server: { ...raw.server, port }, audit: { ...raw.audit, dir: join(dir, `audit-${i}`) } }));
    return file;
  });
  const a = await gatewayProcess(files[0]!, portA);
  const b = await gatewayProcess(files[1]!, portB);
  t.teardown(() => {
    a.proc.kill();
    b.proc.kill();
  });

  // The browser's cookies go to whichever instance answers: one cookie jar, two base URLs.
  const onA = new Browser(a.url);
  const onB = new Browser(b.url);
  Object.defineProperty(onB, 'cookies', { value: onA.cookies });
  const page = await onA.get('/login');
  const toEnrol = await onB.post('/login', { username: ALICE.username, password: ALICE.password, csrf: inputValue(page.body, 'csrf') });
  t.equal(toEnrol.location, '/_mfa/enrol', 'the password on B, with the login page from A');
  const setup = await onA.get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const { generate } = await import('otplib');
  const confirm = await onB.post('/_mfa/enrol/totp', { csrf: inputValue(setup.body, 'csrf'), code: await generate({ secret }) });
  t.equal(confirm.location, '/_mfa/recovery-codes', 'enrolment started on A, confirmed on B');
  t.match((await onA.get('/_mfa/recovery-codes')).body, /<li>[A-Z2-9-]{19}<\/li>/);
  const done = await onB.post('/_mfa/recovery-codes', { csrf: inputValue(setup.body, 'csrf'), saved: 'yes' });
  t.equal(done.status, 303);
  t.match((await onA.get('/records')).body, 'Signed in as alice', 'browsing on A');
  t.match((await onB.get('/messages')).body, 'Signed in as alice', 'and on B');

  // Wrong passwords split across both instances count together.
  const x = new Browser(a.url);
  const y = new Browser(b.url);
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) statuses.push((await submitPassword(i % 2 ? y : x, 'bob', 'wrong')).status);
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429], 'the seventh waits, whichever instance it reaches');
});

t.test('Redis killed and restarted under a stream of requests: 503 or the right answer, then back by itself', async (t) => {
  const redis = await startOwnRedis();
  t.teardown(redis.stop);
  const kv = new RedisKvStore({ url: redis.url, keyPrefix: prefix(), commandTimeoutMs: 300 });
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const anonymous = s.browser();
  const seen = { ok: 0, unavailable: 0, back: false, other: [] as string[] };
  let stop = false;
  let restarted = false;
  const stream = (async () => {
    while (!stop) {
      const [mine, theirs] = await Promise.all([b.get('/records'), anonymous.get('/records')]);
      if (restarted && mine.status !== 503) seen.back = true;
      if (mine.status === 200 && mine.body.includes('Signed in as alice')) seen.ok++;
      else if (mine.status === 503) seen.unavailable++;
      // The restarted Redis kept nothing: from then on the session is gone and the browser is sent to sign in.
      else if (!(restarted && mine.status === 302)) seen.other.push(`signed in: ${mine.status}`);
      // Without a session nothing of the portal is ever served, whatever the store does.
      if (![302, 503].includes(theirs.status) || theirs.body.includes('Signed in')) seen.other.push(`anonymous: ${theirs.status}`);
    }
  })();
  /** Until `done` holds, at most 15 s. */
  const until = async (done: () => boolean) => {
    for (const deadline = Date.now() + 15_000; !done() && Date.now() < deadline; ) await sleep(50);
  };
  await sleep(300);
  await redis.stop();
  // Down for a second at least, and until the stream has met it.
  await sleep(1000);
  await until(() => seen.unavailable > 0);
  const during = seen.unavailable;
  restarted = true;
  await redis.restart();
  await until(() => seen.back);
  stop = true;
  await stream;
  t.ok(during > 0, `503 while Redis was down (${during})`);
  t.same(seen.other, [], 'nothing but 200 (signed in), 302 (signed out) or 503');
  // Redis kept nothing: the old session is gone, so the signed-in browser is now sent to sign in, not let through.
  t.equal((await b.get('/records')).status, 302);
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 303, 'signing in works again');
});

t.test('operators list and clear blocks and lockouts with the CLI, on the shared Redis', async (t) => {
  // Run without blocking this process, where the gateway runs: a connection it keeps alive is closed on time, not
  // as the next request is sent on it.
  const { OPERATOR, runCliAsync: runCli } = await import('../helpers/cli.js');
  const redis = await testRedis();
  t.teardown(redis.stop);
  const keyPrefix = prefix();
  const kv = new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 });
  await kv.ready();
  const s = await startStack({
    kv: () => kv,
    patch: (raw) => {
      raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix } };
      merge(raw, { limits: { password: { addressRate: { perMinute: 10_000, burst: 10_000 } }, stuffing: { distinctAccounts: 3 }, secondFactor: { freeAttempts: 50, cap: 2 } } });
    },
  });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-ops-'));
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));

  for (const user of ['u1', 'u2', 'u3']) await submitPassword(s.browser(), user, 'wrong');
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 429, 'the address is blocked');
  const listed = await runCli(['blocks', 'list', '--config', configFile, ...OPERATOR]);
  t.match(listed.stdout, /^127\.0\.0\.1 {2}until \d{4}-/);
  t.match(await runCli(['blocks', 'clear', '--config', configFile, '--ip', 'banana', ...OPERATOR]), { code: 2, stderr: /not an IP address/ }, 'not an address: nothing "cleared"');
  t.match(await runCli(['blocks', 'clear', '--config', configFile, '--ip', '1.2.3.4/64', ...OPERATOR]), { code: 2 }, 'an IPv4 address is not a /64');
  t.match(await runCli(['blocks', 'clear', '--config', configFile, '--ip', '2001:DB8:0:1::/64', ...OPERATOR]), { code: 0, stdout: /^2001:db8:0:1::\/64 was not blocked/ }, 'an IPv6 block as `blocks list` prints it; none there, and the operator is told');
  // The IPv4-mapped spelling is the same address: it clears the block on 127.0.0.1.
  t.match(await runCli(['blocks', 'clear', '--config', configFile, '--ip', '::ffff:127.0.0.1', ...OPERATOR]), { code: 0, stdout: /^cleared 127\.0\.0\.1/ });
  // A gateway remembers a block it has seen for up to 5 s (so a flood costs it no store round trip).
  s.clock.advance(5001);
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 303, 'cleared by the operator');

  s.clock.advance(30_000);
  for (let i = 0; i < 2; i++) {
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    await b.post('/_mfa/verify', { csrf: inputValue((await b.get('/_mfa/verify')).body, 'csrf'), code: '000000' });
  }
  const c = s.browser();
  await submitPassword(c, ALICE.username, ALICE.password);
  const { totpAt } = await import('../helpers/stack.js');
  const csrf = inputValue((await c.get('/_mfa/verify')).body, 'csrf');
  t.equal((await c.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 403, 'the app is disabled');
  const cleared = await runCli(['lockouts', 'clear', '--config', configFile, '--user', 'Alice', '--factor', 'totp', ...OPERATOR]);
  t.equal(cleared.code, 0, cleared.stderr);
  t.match(cleared.stdout, 'cleared totp for Alice: totp turned back on');
  t.equal((await c.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 303, 'back on');
});
