// The Redis store on Sentinel and Cluster: failing over and stalling nodes, fail closed and back by itself.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Cluster, Redis } from 'ioredis';
import { request } from 'undici';
import { systemClock } from '../../src/clock.js';
import { GatewayError } from '../../src/errors.js';
import { createKvStore } from '../../src/gateway.js';
import type { KvStore } from '../../src/stores/kv-store.js';
import { keys } from '../../src/stores/keys.js';
import { createRedisClient } from '../../src/stores/redis-connection.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { testConfig } from '../helpers/config.js';
import { testRedis } from '../helpers/redis.js';
import { startCluster, startSentinel, type TestSentinel } from '../helpers/redis-topologies.js';
import { ALICE, startStack, submitPassword } from '../helpers/stack.js';

const TIMEOUT_MS = 300;
// Timers and the event loop may add a little to the deadline; far less than a hang would. A loaded machine adds more:
// a call may also take as long as the event loop was held up meanwhile (its timeout's timer fires that much later).
const SLACK_MS = 100;
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const prefix = () => `it-${randomBytes(4).toString('hex')}:`;

interface Outcome<T> {
  value?: T;
  error?: unknown;
  ms: number;
  /** How long the event loop was held up during the call: busy in all, or its longest wait to be run. */
  lagMs: number;
}

async function timed<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  loopDelay.reset();
  const busy = performance.eventLoopUtilization();
  const start = performance.now();
  const end = () => ({ ms: performance.now() - start, lagMs: Math.max(loopDelay.max / 1e6, performance.eventLoopUtilization(busy).active) });
  try {
    const value = await fn();
    return { value, ...end() };
  } catch (error) {
    return { error, ...end() };
  }
}

/** Whether a call ended within the timeout, the slack and what a held-up event loop added. */
const withinTimeout = (o: Outcome<unknown>) => o.ms <= TIMEOUT_MS + SLACK_MS + o.lagMs;

async function waitFor(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(50);
  }
  return false;
}

const isStoreUnavailable = (err: unknown) => err instanceof GatewayError && err.code === 'GW_ERR_STORE_UNAVAILABLE';

/** The first answer of `fn` within 10 s, retrying store-unavailable failures (counted); other errors throw. */
async function settled<T>(fn: () => Promise<T>): Promise<{ value: T | undefined; failed: number }> {
  let failed = 0;
  for (const until = Date.now() + 10_000; Date.now() < until; failed++) {
    try {
      return { value: await fn(), failed };
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      await sleep(100);
    }
  }
  return { value: undefined, failed };
}

/** GET of one key straight from one node, bypassing the store. */
async function rawGet(port: number, key: string): Promise<string | null> {
  const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    return await r.get(key);
  } finally {
    r.disconnect();
  }
}

/** ROLE of one node, asked straight, bypassing the store: ['master', …] or ['slave', host, master's port, …]. */
async function rawRole(port: number): Promise<unknown[]> {
  const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    return (await r.role()) as unknown[];
  } finally {
    r.disconnect();
  }
}

/** The port of the node the store's own connection is on (INFO sent through it). */
async function servedBy(kv: KvStore): Promise<number> {
  const info = await ((kv as RedisKvStore).client as Redis).info('server');
  return Number(/^tcp_port:(\d+)/m.exec(info)?.[1]);
}

/**
 * `how`: SENTINEL FAILOVER (the old master stays up and becomes a replica), or the master killed. `backWithinMs`: with
 * replicaAcks, writes wait for a replica again; with a single replica that is the old master, once the sentinels have
 * made it a replica of the new one (their INFO round comes every 10 s).
 */
function failoverTest(name: string, how: 'failover' | 'killMaster', replicaAcks = 0, backWithinMs = 5000) {
  t.test(`Sentinel, ${name}: nothing lost, fail closed meanwhile, back by itself`, async (t) => {
    const sentinel = await startSentinel();
    t.teardown(() => sentinel.stop());
    const keyPrefix = prefix();
    const kv = new RedisKvStore({ mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName, keyPrefix, commandTimeoutMs: TIMEOUT_MS, replicaAcks });
    t.teardown(() => kv.close());
    await kv.ready();

    // The data written before the failover, replicated before it starts (through a store with time to spare).
    const setup = new RedisKvStore({ mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName, keyPrefix, commandTimeoutMs: 5000 });
    await setup.ready();
    const sessions = Array.from({ length: 20 }, (_, i) => [keys.session(`s${i}`), `record-${i}`] as const);
    for (const [key, value] of sessions) await setup.set(key, value, 600_000);
    const counter = keys.factorFailures('p', 'totp');
    for (let i = 0; i < 5; i++) await setup.increment(counter, 600_000);
    t.ok(await setup.raiseTo(keys.totpStep('p'), 100, 600_000));
    await setup.close();
    await sentinel.waitForSync();
    const before = await sentinel.master();
    t.equal(await servedBy(kv), before, `the store works on the master the sentinels name (${before})`);

    // Probe one read and one write at a time until the failover is over and the store answers again.
    let done: { from: number; to: number } | undefined;
    const failover = sentinel[how]().then((r) => (done = r));
    const outcomes: Outcome<unknown>[] = [];
    const wrongReads: unknown[] = [];
    const gaps: string[] = [];
    let count = 5;
    // A failed write may still have been applied: the next count may skip that many, never go back.
    let failedWrites = 0;
    let doneAt = 0;
    let backAt = 0;
    const deadline = Date.now() + 30_000;
    while (!backAt && Date.now() < deadline) {
      const [key, value] = sessions[outcomes.length % sessions.length]!;
      const read = await timed(() => kv.get(key));
      if (!read.error && read.value !== value) wrongReads.push(read.value);
      const write = await timed(() => kv.increment(counter, 600_000));
      if (!write.error) {
        if (write.value! <= count || write.value! > count + 1 + failedWrites) gaps.push(`${write.value} after ${count} (${failedWrites} failed since)`);
        count = write.value!;
        failedWrites = 0;
      } else failedWrites++;
      outcomes.push(read, write);
      if (done && !doneAt) doneAt = Date.now();
      if (done && !read.error && !write.error) backAt = Date.now();
      await sleep(10);
    }
    const { to } = await failover;
    // The failover happened: the sentinels name the other node, which is a master now; an old master still up follows it.
    t.not(to, before, `failed over from ${before} to ${to}`);
    t.equal(await sentinel.master(), to, 'the sentinels name the new master');
    t.equal((await rawRole(to))[0], 'master', 'the new master says it is one');

    const failures = outcomes.filter((o) => o.error);
    t.ok(failures.length > 0, `${failures.length} of ${outcomes.length} calls failed during the failover`);
    t.same(failures.filter((o) => !isStoreUnavailable(o.error)), [], 'every failure is GW_ERR_STORE_UNAVAILABLE');
    const slowest = outcomes.reduce((a, b) => (b.ms - b.lagMs > a.ms - a.lagMs ? b : a));
    t.ok(
      outcomes.every(withinTimeout),
      `no call took longer than the timeout (slowest: ${Math.round(slowest.ms)} ms, the event loop held up ${Math.round(slowest.lagMs)} ms of it)`,
    );
    t.same(wrongReads, [], 'no read answered a wrong value');
    t.same(gaps, [], 'no acknowledged write was lost (each increment follows the last one acknowledged)');
    const lastError = (failures.at(-1)?.error as Error | undefined)?.message;
    t.ok(
      backAt && backAt - doneAt < backWithinMs,
      backAt
        ? `the same store works again ${backAt - doneAt} ms after the sentinels agreed`
        : `the same store works again within 30 s (it did not: client status ${kv.client.status}, last error: ${lastError})`,
    );

    t.equal(await servedBy(kv), to, 'the same store now works on the new master');
    for (const [key, value] of sessions) t.equal(await kv.get(key), value, `${key} written before is readable after`);
    // With replicaAcks, a write can still fail closed while the sentinels finish turning the old master into a replica
    // (its link to the new master may restart once); such a write may have been applied, as in the loop above.
    const next = await settled(() => kv.increment(counter, 600_000));
    t.ok(
      next.value !== undefined && next.value > count && next.value <= count + 1 + next.failed,
      `the counter carries on from the last acknowledged value (${next.value} after ${count}, ${next.failed} failed since)`,
    );
    t.equal((await settled(() => kv.raiseTo(keys.totpStep('p'), 100, 600_000))).value, false, 'a step claimed before is still claimed');
    t.equal(await rawGet(to, keyPrefix + sessions[0]![0]), sessions[0]![1], 'the new master holds the data');
    t.equal(await rawGet(to, keyPrefix + counter), String(next.value), 'and the write acknowledged after the failover');
    if (how === 'failover') t.same((await rawRole(before)).slice(0, 3), ['slave', '127.0.0.1', to], 'the old master is a replica of the new one');
  });
}

t.test('replicaAcks: a write no replica acknowledged fails closed; reads go on', async (t) => {
  const redis = await testRedis();
  t.teardown(redis.stop);
  const lonely = new RedisKvStore({ url: redis.url, keyPrefix: prefix(), commandTimeoutMs: TIMEOUT_MS, replicaAcks: 1 });
  t.teardown(() => lonely.close());
  await lonely.ready();
  await t.rejects(lonely.increment('counter', 60_000), { code: 'GW_ERR_STORE_UNAVAILABLE', message: /0 of 1 replica\(s\) acknowledged/ }, 'no replica: the write fails');
  await t.rejects(lonely.setIfAbsent('once', 'x', 60_000), { code: 'GW_ERR_STORE_UNAVAILABLE' });
  t.equal(await lonely.get('counter'), '1', 'reads answer (the failed write may still have been applied, as with a timeout)');
  const plain = new RedisKvStore({ url: redis.url, keyPrefix: prefix(), commandTimeoutMs: TIMEOUT_MS });
  t.teardown(() => plain.close());
  await plain.ready();
  t.equal(await plain.increment('counter', 60_000), 1, 'without replicaAcks the same write succeeds');
  t.throws(() => new RedisKvStore({ mode: 'cluster', nodes: [{ host: '127.0.0.1', port: 1 }], keyPrefix: 'x:', commandTimeoutMs: 300, replicaAcks: 1 }), /cluster/);
});

t.test('options that cannot work are refused before connecting', async (t) => {
  const base = { keyPrefix: 'mfa:', commandTimeoutMs: 300 };
  t.throws(() => createRedisClient({ ...base, mode: 'single' }), TypeError, 'single without a url');
  t.throws(() => createRedisClient({ ...base, mode: 'sentinel', sentinels: [], masterName: 'm' }), TypeError, 'sentinel without sentinels');
  t.throws(() => createRedisClient({ ...base, mode: 'sentinel', sentinels: [{ host: '127.0.0.1', port: 1 }] }), TypeError, 'sentinel without a master name');
  t.throws(() => createRedisClient({ ...base, mode: 'cluster', nodes: [] }), TypeError, 'cluster without nodes');
  t.throws(() => createRedisClient({ ...base, mode: 'cluster', nodes: [{ host: '127.0.0.1', port: 1 }], keyPrefix: '{mfa}:' }), TypeError, 'a hash tag in the prefix');
});

// With the old master up, a write it takes just after a replica was promoted is lost unless a replica must hold it
// first (store.redis.replicaAcks: 1). With a single replica that also stops writes while the replica is missing, so
// the test of a killed master (which takes no more writes) runs without it.
failoverTest('SENTINEL FAILOVER (the old master stays up)', 'failover', 1, 15_000);
failoverTest('master killed', 'killMaster');

/** The store the gateway makes from its configuration: store.redis on `sentinel`, with `credentials` for the sentinels. */
function configuredStore(sentinel: TestSentinel, credentials: { sentinelUsername?: string; sentinelPassword?: string }): KvStore {
  const config = testConfig('http://127.0.0.1:1', (raw) => {
    raw.store = {
      type: 'redis',
      redis: { mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName, ...credentials, keyPrefix: prefix(), commandTimeoutMs: TIMEOUT_MS },
    };
  });
  return createKvStore(config, systemClock);
}

/** With sentinel credentials that are refused: the store fails closed within its timeout, and so does a gateway on it. */
async function refusedBySentinels(t: Test, kv: KvStore, what: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const o = await timed(() => kv.get(keys.session('s')));
    t.ok(isStoreUnavailable(o.error), `${what}: a read fails with GW_ERR_STORE_UNAVAILABLE (${(o.error as Error | undefined)?.message})`);
    t.ok(withinTimeout(o), `within the timeout (${Math.round(o.ms)} ms, the event loop held up ${Math.round(o.lagMs)} ms)`);
  }
  // What the operator reads in the log: why the connection fails, not only that the call could not be sent.
  const refusal = () => kv.get(keys.session('s')).then(() => '', (e: Error) => e.message);
  t.ok(await waitFor(async () => /WRONGPASS|NOAUTH/.test(await refusal())), `${what}: the error says the sentinels refused the credentials (${await refusal()})`);
  await t.rejects(kv.ping(), { code: 'GW_ERR_STORE_UNAVAILABLE' }, `${what}: not ready`);
  const s = await startStack({ kv: () => kv });
  t.teardown(() => s.close());
  const ready = await request(`${s.url}/_mfa/health/ready`);
  t.equal(ready.statusCode, 503, `${what}: the gateway says it is not ready`);
  await ready.body.dump();
  const login = await submitPassword(s.browser(), ALICE.username, ALICE.password).catch((e: Error) => e);
  t.ok(login instanceof Error ? /answered 503/.test(login.message) : login.status === 503, `${what}: a sign-in cannot start (503)`);
  t.same(s.portalRequests, [], `${what}: nothing reached the portal`);
}

t.test('Sentinels protected by an ACL user: sentinelUsername and sentinelPassword, and a wrong user fails closed', async (t) => {
  const auth = { username: 'mfa-gateway', password: randomBytes(12).toString('hex') };
  const sentinel = await startSentinel({ auth });
  t.teardown(() => sentinel.stop());

  const kv = configuredStore(sentinel, { sentinelUsername: auth.username, sentinelPassword: auth.password });
  t.teardown(() => kv.close());
  await kv.ready();
  await kv.set(keys.session('s'), 'record', 600_000);
  t.equal(await kv.get(keys.session('s')), 'record');
  await sentinel.waitForSync();
  // The master is found again through the same sentinels, and the failover is announced by them (SUBSCRIBE).
  const { from, to } = await sentinel.killMaster();
  t.not(from, to);
  t.ok(await waitFor(() => kv.get(keys.session('s')).then((v) => v === 'record')), 'after a failover, the store reads from the new master');
  t.equal(await servedBy(kv), to, `its connection is on the new master (${to})`);

  await refusedBySentinels(t, configuredStore(sentinel, { sentinelUsername: 'someone-else', sentinelPassword: auth.password }), 'another user');
  await refusedBySentinels(t, configuredStore(sentinel, { sentinelUsername: auth.username, sentinelPassword: 'wrong' }), 'a wrong password');
  await refusedBySentinels(t, configuredStore(sentinel, { sentinelPassword: auth.password }), 'the password without the user');
});

t.test('Sentinels protected by requirepass: sentinelPassword, and a missing or wrong one fails closed', async (t) => {
  const auth = { password: randomBytes(12).toString('hex') };
  const sentinel = await startSentinel({ auth });
  t.teardown(() => sentinel.stop());

  const kv = configuredStore(sentinel, { sentinelPassword: auth.password });
  t.teardown(() => kv.close());
  await kv.ready();
  await kv.set(keys.session('s'), 'record', 600_000);
  t.equal(await kv.get(keys.session('s')), 'record', 'the store reaches the master through the sentinels');

  await refusedBySentinels(t, configuredStore(sentinel, {}), 'no sentinelPassword');
  await refusedBySentinels(t, configuredStore(sentinel, { sentinelPassword: 'wrong' }), 'a wrong password');
});

// The race behind "master killed" failing now and then: +switch-master reaching ioredis' failover detector while the
// client is between connections, asking the sentinels for the master. ioredis then ended the client for good ("Connection
// is closed."); redis-connection.ts makes it start that attempt over. Here one sentinel stalls, so the client's questions
// hang on it (it asks each in turn) while the other two fail over and announce it.
t.test('Sentinel: a failover announced while the client is asking the sentinels does not end the client', async (t) => {
  const sentinel = await startSentinel();
  t.teardown(() => sentinel.stop());
  // Long enough for the stalled sentinel to hold the client's question until the failover is over.
  const kv = new RedisKvStore({ mode: 'sentinel', sentinels: sentinel.sentinels, masterName: sentinel.masterName, keyPrefix: prefix(), commandTimeoutMs: 15_000 });
  t.teardown(() => kv.close());
  await kv.ready();
  await kv.set('k', 'v');

  const stalled = sentinel.sentinels[0]!.port;
  sentinel.pause(stalled);
  let resumed = false;
  t.teardown(() => (resumed ? undefined : sentinel.resume(stalled)));
  const { from, to } = await sentinel.killMaster();
  t.not(from, to, `failed over from ${from} to ${to} without the stalled sentinel`);
  t.equal(kv.client.status, 'connecting', 'the client was still asking the sentinels when the failover was announced');

  sentinel.resume(stalled);
  resumed = true;
  t.ok(await waitFor(() => kv.get('k').then((v) => v === 'v'), 5000), `the same store works again (client status ${kv.client.status})`);
  t.equal(await servedBy(kv), to, `on the new master (${to})`);
});

t.test('Cluster: users spread over every node, and the scripts run on each', async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const keyPrefix = prefix();
  const kv = new RedisKvStore({ mode: 'cluster', nodes: cluster.nodes, keyPrefix, commandTimeoutMs: TIMEOUT_MS });
  t.teardown(() => kv.close());
  await kv.ready();

  // One user per node: pseudonymous ids, as the gateway makes them, until every node holds one.
  const userOn = new Map<number, string>();
  while (userOn.size < cluster.nodes.length) {
    const pid = randomBytes(16).toString('base64url');
    userOn.set(await cluster.nodeOf(keyPrefix + keys.factors(pid)), pid);
  }
  t.equal(userOn.size, 3, 'three users on three nodes');

  for (const [port, pid] of userOn) {
    const userKeys = [keys.factors(pid), keys.totpStep(pid), keys.factorFailures(pid, 'totp'), keys.recoveryCodeUsed(pid, 'salt', 3)];
    const nodes = new Set(await Promise.all(userKeys.map((k) => cluster.nodeOf(keyPrefix + k))));
    t.same([...nodes], [port], `every key of one user on one node (${port})`);

    t.same([await kv.increment(keys.factorFailures(pid, 'totp'), 60_000), await kv.increment(keys.factorFailures(pid, 'totp'), 60_000)], [1, 2], `increment on ${port}`);
    t.ok(await kv.raiseTo(keys.totpStep(pid), 10, 60_000), `raiseTo on ${port}`);
    t.notOk(await kv.raiseTo(keys.totpStep(pid), 10, 60_000), `raiseTo refuses the same value on ${port}`);
    t.ok(await kv.raiseTo(keys.totpStep(pid), 11, 60_000));
    await kv.set(keys.factors(pid), `factors of ${pid}`);
    t.equal(await rawGet(port, keyPrefix + keys.factors(pid)), `factors of ${pid}`, `the record lives on ${port}, under the prefix`);
  }
});

t.test('Cluster: a stalled node fails its keys within the timeout, the others carry on, then it is back', async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const keyPrefix = prefix();
  const kv = new RedisKvStore({ mode: 'cluster', nodes: cluster.nodes, keyPrefix, commandTimeoutMs: TIMEOUT_MS });
  t.teardown(() => kv.close());
  await kv.ready();
  const userOn = new Map<number, string>();
  while (userOn.size < cluster.nodes.length) {
    const pid = randomBytes(16).toString('base64url');
    userOn.set(await cluster.nodeOf(keyPrefix + keys.factorFailures(pid, 'totp')), pid);
  }

  const [stalled, others] = [cluster.nodes[0]!.port, cluster.nodes.slice(1).map((n) => n.port)];
  const pid = cluster.pid(stalled);
  process.kill(pid, 'SIGSTOP');
  try {
    for (let i = 0; i < 3; i++) {
      const o = await timed(() => kv.increment(keys.factorFailures(userOn.get(stalled)!, 'totp'), 60_000));
      t.ok(isStoreUnavailable(o.error), 'the stalled node: GW_ERR_STORE_UNAVAILABLE');
      t.ok(withinTimeout(o), `within the timeout (${Math.round(o.ms)} ms, the event loop held up ${Math.round(o.lagMs)} ms)`);
    }
    for (const port of others) t.equal(await kv.increment(keys.factorFailures(userOn.get(port)!, 'totp'), 60_000), 1, `node ${port} unaffected`);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  t.ok(await waitFor(() => kv.get(keys.factorFailures(userOn.get(stalled)!, 'totp')).then(() => true)), 'the node answers again through the same store');
});

// A node whose cluster_state is fail still answers PING, and answers every command on a key with CLUSTERDOWN.
t.test('Cluster: a master lost with no replica to take over makes the store unready once the cluster is down', async (t) => {
  const cluster = await startCluster({ nodeTimeoutMs: 1000 });
  t.teardown(() => cluster.stop());
  const kv = new RedisKvStore({ mode: 'cluster', nodes: cluster.nodes, keyPrefix: prefix(), commandTimeoutMs: TIMEOUT_MS });
  t.teardown(() => kv.close());
  await kv.ready();
  await t.resolves(kv.ping(), 'ready while every node serves');

  const [lost, ...others] = cluster.nodes.map((n) => n.port);
  process.kill(cluster.pid(lost!), 'SIGKILL');
  t.ok(await waitFor(async () => (await Promise.all(others.map((p) => cluster.state(p)))).every((s) => s === 'fail')), 'the other nodes say the cluster is down');
  await t.rejects(kv.get(keys.session('s')), { code: 'GW_ERR_STORE_UNAVAILABLE' }, 'requests fail closed');
  for (let i = 0; i < 5; i++) await t.rejects(kv.ping(), { code: 'GW_ERR_STORE_UNAVAILABLE' }, 'and readiness says so, whichever node is asked');
});

// ioredis drops its connection to a node that went away, until a slot refresh brings it back.
t.test('Cluster: a scan while a master is gone fails instead of leaving its keys out', async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const kv = new RedisKvStore({ mode: 'cluster', nodes: cluster.nodes, keyPrefix: prefix(), commandTimeoutMs: TIMEOUT_MS });
  t.teardown(() => kv.close());
  await kv.ready();
  for (let i = 0; i < 60; i++) await kv.set(keys.session(`s${i}`), 'v', 600_000);
  let found = 0;
  for await (const batch of kv.scanKeys('session:{')) found += batch.length;
  t.equal(found, 60, 'every key, on every node');

  process.kill(cluster.pid(cluster.nodes[0]!.port), 'SIGKILL');
  t.ok(await waitFor(async () => (kv.client as Cluster).nodes('master').length === 2), 'the client let go of the lost node');
  await t.rejects(
    (async () => {
      for await (const batch of kv.scanKeys('session:{')) found += batch.length;
    })(),
    { code: 'GW_ERR_STORE_UNAVAILABLE' },
  );
});
