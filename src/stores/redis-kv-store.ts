// The shared store: Redis (single node, Sentinel or Cluster) through ioredis. Every failure or slow answer is a 503 (fail closed).
import { Cluster, Redis } from 'ioredis';
import { assertGcraArgs, assertPositiveInteger } from '../domain/limits.js';
import { GatewayError } from '../errors.js';
import { storeTtl, type ConnectionChange, type KvStore } from './kv-store.js';
import { createRedisClient, type RedisConnectionOptions } from './redis-connection.js';

// Lua runs atomically in Redis; ioredis loads each script once and then calls it by its SHA. Each script touches
// one key only, so in a Cluster it runs on the node that holds that key.
// The TTL is given to a counter this call creates only (one holding "0" keeps its own, as in the memory store).
const INCREMENT = `local existed = redis.call('EXISTS', KEYS[1])
local n = redis.call('INCR', KEYS[1])
if existed == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;
const RAISE_TO = `local cur = tonumber(redis.call('GET', KEYS[1]))
if cur ~= nil and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end
return 1`;
// An empty TTL, or the cap: the counter is kept until deleted (PERSIST drops a TTL it was created with).
const INCREMENT_CAPPED = `local cur = redis.call('GET', KEYS[1])
local n, cap = tonumber(cur or '0'), tonumber(ARGV[1])
local counted = 0
if n < cap then n, counted = redis.call('INCR', KEYS[1]), 1 end
if ARGV[2] == '' or n >= cap then redis.call('PERSIST', KEYS[1])
elseif not cur then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {n, counted}`;
// gcraStep in domain/limits.ts, line for line. Whole milliseconds are exact in Lua's doubles; %d writes them
// without an exponent.
const GCRA = `local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now) + interval
local allowAt = tat - burst * interval
if now < allowAt then return {0, allowAt - now, 0} end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', tat - now))
return {1, 0, math.floor((now - allowAt) / interval)}`;
// An empty TTL: the set is kept until deleted (PERSIST drops a TTL an earlier add gave it). A TTL is never shortened
// (PTTL is -1 for a set without one, as a new one is after SADD).
const SET_ADD = `redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == '' then redis.call('PERSIST', KEYS[1])
elseif redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SCARD', KEYS[1])`;

const REPLACE_IF = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`;
// Deleting needs no memory: Redis runs this when full too (a script without flags is refused only at a write that needs memory).
const DELETE_IF = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

type ScriptedRedis = (Redis | Cluster) & {
  mfaIncrement(key: string, ttlMs: number): Promise<number>;
  mfaRaiseTo(key: string, value: number, ttlMs: number): Promise<number>;
  mfaRaiseToNoting(key: string, noteKey: string, value: number, ttlMs: number, note: string): Promise<number>;
  mfaIncrementCapped(key: string, cap: number, ttlMs: number | ''): Promise<[value: number, counted: number]>;
  mfaGcra(key: string, nowMs: number, emissionIntervalMs: number, burst: number): Promise<[allowed: number, retryAfterMs: number, remaining: number]>;
  mfaSetAdd(key: string, member: string, ttlMs: number | ''): Promise<number>;
  mfaReplaceIf(key: string, expected: string, value: string, ttlMs: string): Promise<number>;
  mfaDeleteIf(key: string, expected: string): Promise<number>;
};

/**
 * Connection options; without a mode, `{ url, keyPrefix, commandTimeoutMs }` is a single node. `replicaAcks`: a write
 * succeeds only once that many replicas hold it (default 0; not in Cluster mode).
 */
export type RedisKvOptions = Omit<RedisConnectionOptions, 'mode'> & { mode?: RedisConnectionOptions['mode']; replicaAcks?: number };

const CLUSTER_SLOTS = 16384;

// ioredis' commandTimeout and the call's own deadline (below).
const TIMED_OUT = /^(Command timed out|no answer within)/;
// ioredis' refusal of a call while disconnected, which names its own option ("Stream isn't writeable and
// enableOfflineQueue options is false"): said as "not connected", with the connection's own error after it.
const OFFLINE = /enableOfflineQueue/;

export class RedisKvStore implements KvStore {
  private readonly redis: ScriptedRedis;
  private readonly timeoutMs: number;
  private readonly replicaAcks: number;
  /** When calls began to time out with no answer since (see timedOut()), and whether a ping is out to check. */
  private silentSince: number | undefined;
  private probing = false;
  /** Why the connection last failed, until it is ready again: the reason a call refused while disconnected gives. */
  private connectionError: string | undefined;
  /** Why the connection is down, once said to onConnection's listeners (undefined: up, or not down yet). */
  private down: string | undefined;
  /** The connection was ready, and has not closed since. */
  private connected = false;
  /** Why this store closes its own connection (a silent one replaced): said instead of "closed". */
  private dropping: string | undefined;
  private closing = false;
  private readonly connectionListeners = new Set<(change: ConnectionChange) => void>();

  /** Takes connection options, or a client made by createRedisClient (the store then owns it and closes it). */
  constructor(opts: RedisKvOptions | Redis | Cluster) {
    if (!(opts instanceof Redis || opts instanceof Cluster) && opts.mode === 'cluster' && opts.replicaAcks) throw new TypeError('replicaAcks is not available in cluster mode');
    const redis = opts instanceof Redis || opts instanceof Cluster ? opts : createRedisClient({ ...opts, mode: opts.mode ?? 'single' });
    const timeoutMs = redis instanceof Cluster ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout;
    if (timeoutMs === undefined) throw new TypeError('the redis client needs a commandTimeout (use createRedisClient)');
    redis.defineCommand('mfaIncrement', { numberOfKeys: 1, lua: INCREMENT });
    redis.defineCommand('mfaRaiseTo', { numberOfKeys: 1, lua: RAISE_TO });
    redis.defineCommand('mfaRaiseToNoting', { numberOfKeys: 2, lua: RAISE_TO });
    redis.defineCommand('mfaIncrementCapped', { numberOfKeys: 1, lua: INCREMENT_CAPPED });
    redis.defineCommand('mfaGcra', { numberOfKeys: 1, lua: GCRA });
    redis.defineCommand('mfaSetAdd', { numberOfKeys: 1, lua: SET_ADD });
    redis.defineCommand('mfaReplaceIf', { numberOfKeys: 1, lua: REPLACE_IF });
    redis.defineCommand('mfaDeleteIf', { numberOfKeys: 1, lua: DELETE_IF });
    // A call refused while disconnected says only that (OFFLINE): the connection's own error (a refused password, no
    // sentinel reachable) is what an operator needs to read.
    // Those messages name hosts and ports, not credentials; a password is taken out all the same should one be there.
    const secrets = passwordsOf(redis);
    redis.on('error', (err: Error) => {
      this.connectionError = withoutSecrets(err.message, secrets).slice(0, 300);
      this.lost(this.connectionError);
    });
    // A connection that closes after it was ready (Redis stopped or restarted, the connection cut, a failover): ioredis
    // reconnects, and an error comes only if that fails; it is down from now.
    redis.on('close', () => {
      if (this.connected) this.lost(this.dropping ?? 'the connection was closed');
      this.connected = false;
      this.dropping = undefined;
    });
    redis.on('ready', () => {
      this.connectionError = undefined;
      this.connected = true;
      if (this.down === undefined) return;
      this.down = undefined;
      for (const listener of this.connectionListeners) listener({ up: true });
    });
    this.redis = redis as ScriptedRedis;
    this.timeoutMs = timeoutMs;
    this.replicaAcks = opts instanceof Redis || opts instanceof Cluster ? 0 : (opts.replicaAcks ?? 0);
  }

  /** The client, for the audit trail's stream mirror (which fails fast on the same timeouts). */
  get client(): Redis | Cluster {
    return this.redis;
  }

  /** Resolves once connected (for start-up and tests); requests do not wait for it. */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      // Why, as a call says it (an admin command that cannot reach Redis prints this).
      const t = setTimeout(() => reject(new Error(`redis not ready${this.connectionError === undefined ? '' : ` (connection: ${this.connectionError})`}`)), timeoutMs);
      this.redis.once('ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** ioredis says 'ready' on every connection, the first and each one after (for a Cluster: once its slots are known). */
  onReady(listener: () => void): () => void {
    this.redis.on('ready', listener);
    if (this.redis.status === 'ready') listener();
    return () => void this.redis.off('ready', listener);
  }

  onConnection(listener: (change: ConnectionChange) => void): () => void {
    this.connectionListeners.add(listener);
    if (this.down !== undefined) listener({ up: false, reason: this.down });
    return () => void this.connectionListeners.delete(listener);
  }

  /** Said once per outage: ioredis retries every second at most, each retry failing with an error again. */
  private lost(reason: string): void {
    if (this.closing || this.down !== undefined) return;
    this.down = reason;
    for (const listener of this.connectionListeners) listener({ up: false, reason });
  }

  get(key: string) {
    return this.call(() => this.redis.get(key));
  }

  async set(key: string, value: string, ttlMs?: number) {
    await this.write(() => (ttlMs === undefined ? this.redis.set(key, value) : this.redis.set(key, value, 'PX', storeTtl(ttlMs))));
  }

  async setIfAbsent(key: string, value: string, ttlMs?: number) {
    return (await this.write(() => (ttlMs === undefined ? this.redis.set(key, value, 'NX') : this.redis.set(key, value, 'PX', storeTtl(ttlMs), 'NX')))) === 'OK';
  }

  // take, delete and setRemove are plain commands, which Redis still runs at maxmemory with noeviction (it refuses
  // commands that may need memory, and a script from its first such call): sessions can be ended with Redis full.
  take(key: string) {
    return this.write(() => this.redis.getdel(key));
  }

  async delete(key: string) {
    await this.write(() => this.redis.del(key));
  }

  increment(key: string, ttlMs: number) {
    return this.write(() => this.redis.mfaIncrement(key, storeTtl(ttlMs)));
  }

  async raiseTo(key: string, value: number, ttlMs: number, note?: { key: string; value: string }) {
    const ttl = storeTtl(ttlMs);
    return (await this.write(() => (note ? this.redis.mfaRaiseToNoting(key, note.key, value, ttl, note.value) : this.redis.mfaRaiseTo(key, value, ttl)))) === 1;
  }

  async incrementCapped(key: string, cap: number, ttlMs: number | null) {
    assertPositiveInteger('cap', cap);
    const [value, counted] = await this.write(() => this.redis.mfaIncrementCapped(key, cap, ttlMs === null ? '' : storeTtl(ttlMs)));
    return { value, capped: value >= cap, reached: counted === 1 && value >= cap };
  }

  async gcra(key: string, emissionIntervalMs: number, burst: number, nowMs: number) {
    assertGcraArgs(emissionIntervalMs, burst, nowMs);
    const [allowed, retryAfterMs, remaining] = await this.write(() => this.redis.mfaGcra(key, nowMs, emissionIntervalMs, burst));
    return { allowed: allowed === 1, retryAfterMs, remaining };
  }

  setAdd(key: string, member: string, ttlMs?: number) {
    return this.write(() => this.redis.mfaSetAdd(key, member, ttlMs === undefined ? '' : storeTtl(ttlMs)));
  }

  setMembers(key: string) {
    return this.call(() => this.redis.smembers(key));
  }

  async setRemove(key: string, member: string) {
    await this.write(() => this.redis.srem(key, member));
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs?: number) {
    // An empty TTL keeps the key's own.
    return (await this.write(() => this.redis.mfaReplaceIf(key, expected, value, ttlMs === undefined ? '' : String(storeTtl(ttlMs))))) === 1;
  }

  async deleteIf(key: string, expected: string) {
    return (await this.write(() => this.redis.mfaDeleteIf(key, expected))) === 1;
  }

  async *scanKeys(prefix: string): AsyncIterable<string[]> {
    // SCAN sees keys as stored: with the client's keyPrefix, which MATCH needs and results lose.
    const stored = this.redis.options.keyPrefix ?? '';
    const match = `${(stored + prefix).replace(/[*?[\]\\]/g, '\\$&')}*`;
    for (const node of this.slotMasters()) {
      let cursor = '0';
      do {
        const [next, found] = await this.call(() => node.scan(cursor, 'MATCH', match, 'COUNT', 500));
        cursor = next;
        if (found.length) yield found.map((k) => k.slice(stored.length));
      } while (cursor !== '0');
    }
  }

  async ping() {
    const redis = this.redis;
    if (redis instanceof Cluster) {
      // A Cluster node answers PING also when the cluster is down (a master lost with no replica to take its place),
      // and then refuses every command on a key: its cluster_state says which.
      const info = String(await this.call(() => redis.cluster('INFO')));
      const state = /^cluster_state:(\w+)/m.exec(info)?.[1];
      if (state !== 'ok') throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `redis: cluster_state is ${state ?? 'missing'}`);
      return;
    }
    await this.call(() => redis.ping());
  }

  /**
   * An evicting maxmemory-policy: under memory pressure Redis would drop keys that have a TTL (used TOTP steps, failure
   * counts, sessions), so a code could be replayed or a wait skipped. Checked on each master; a policy that cannot be
   * read (CONFIG is often refused on managed Redis) is said too.
   */
  async warnings(): Promise<string[]> {
    const found: string[] = [];
    for (const node of this.masters()) {
      const where = this.redis instanceof Cluster ? ` on ${node.options.host}:${node.options.port}` : '';
      try {
        const [, policy] = (await this.call(() => node.config('GET', 'maxmemory-policy'))) as string[];
        if (policy !== 'noeviction') found.push(`Redis maxmemory-policy is ${policy}${where}: when memory runs short Redis drops keys (used codes, failure counts); set noeviction`);
      } catch {
        found.push(`Redis maxmemory-policy could not be read${where}: make sure it is noeviction`);
      }
    }
    return found;
  }

  async close() {
    this.closing = true;
    this.redis.disconnect();
  }

  /** The nodes that hold the data: each master of a Cluster, or the one server. */
  private masters(): Redis[] {
    return this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
  }

  /**
   * The master of every slot, for a scan that must see every key. ioredis lets go of a node whose connection closed
   * until a slot refresh brings it back, and the masters it holds then would leave that node's keys out unsaid.
   */
  private slotMasters(): Redis[] {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) return [redis];
    const connected = new Map(redis.nodes('master').map((n) => [`${n.options.host}:${n.options.port}`, n]));
    const masters = new Set<Redis>();
    for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
      const node = connected.get(redis.slots[slot]?.[0] ?? '');
      if (!node) throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `redis: no connection to the master of slot ${slot}`);
      masters.add(node);
    }
    return [...masters];
  }

  /**
   * A write, acknowledged once `replicaAcks` replicas hold it: with asynchronous replication, a write only the master
   * had is lost when a replica takes over (a failure count, a used TOTP step). WAIT on the same connection covers it.
   * Fewer acknowledgements fail the call like a timeout (the write may still have been applied).
   */
  private write<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.replicaAcks) return this.call(fn);
    const deadline = Date.now() + this.timeoutMs;
    return this.call(async () => {
      const result = await fn();
      // Half of what is left of the call's time: Redis ends a WAIT on its clock tick (100 ms by default), not to the ms.
      const acks = await (this.redis as Redis).wait(this.replicaAcks, Math.max(10, Math.floor((deadline - Date.now()) / 2)));
      if (acks < this.replicaAcks) throw new Error(`${acks} of ${this.replicaAcks} replica(s) acknowledged the write`);
      return result;
    });
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    // ioredis times each command from when it reaches a node; in a Cluster, redirections and retries can come
    // before that, so the whole call gets its own deadline. A write that misses it may still be applied later.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      const result = await Promise.race([fn(), deadline]);
      this.silentSince = undefined;
      return result;
    } catch (cause) {
      if (TIMED_OUT.test((cause as Error).message)) this.timedOut();
      const why = this.redis.status === 'ready' || this.connectionError === undefined ? '' : ` (connection: ${this.connectionError})`;
      const what = OFFLINE.test((cause as Error).message) ? 'not connected' : (cause as Error).message;
      throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `redis: ${what}${why}`, { cause });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A connection that goes silent without closing (a node gone behind a stale route) stays "ready" until the kernel
   * gives up, about 15 minutes: calls that keep timing out, with no answer in between, for twice the call timeout
   * make a new one. A timeout also sends a ping: when it is answered (a stall that passed, or a process that was busy
   * for a while and found every waiting call timed out at once), the connection works and nothing is replaced. Not
   * in a Cluster: one silent node would cut the others off too.
   */
  private timedOut(): void {
    if (this.redis instanceof Cluster) return;
    const now = Date.now();
    this.silentSince ??= now;
    if (now - this.silentSince >= 2 * this.timeoutMs) {
      this.dropping = `no answer for ${now - this.silentSince} ms: connection replaced`;
      this.silentSince = undefined;
      this.redis.disconnect(true);
      return;
    }
    if (this.probing) return;
    this.probing = true;
    this.redis
      .ping()
      .then(() => (this.silentSince = undefined), () => undefined)
      .finally(() => (this.probing = false));
  }
}

/** The passwords a client was given (its URL's among them), for taking out of what is logged. */
function passwordsOf(redis: Redis | Cluster): string[] {
  const o = redis instanceof Cluster ? redis.options.redisOptions : redis.options;
  return [o?.password, (o as { sentinelPassword?: string } | undefined)?.sentinelPassword].filter((p): p is string => typeof p === 'string' && p.length > 0);
}

/** An error's message with no `user:password@` of a URL in it, nor any of `secrets`. */
function withoutSecrets(message: string, secrets: string[]): string {
  let out = message.replace(/\/\/[^\s/@]*@/g, '//[redacted]@');
  for (const secret of secrets) out = out.split(secret).join('[redacted]');
  return out;
}
