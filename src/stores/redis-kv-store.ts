// The shared store: Redis through ioredis. Every failure or slow answer surfaces as a 503 (fail closed).
import { Redis } from 'ioredis';
import { GatewayError } from '../errors.js';
import type { KvStore } from './kv-store.js';

// Lua runs atomically in Redis; ioredis loads each script once and then calls it by its SHA.
const INCREMENT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;
const RAISE_TO = `local cur = tonumber(redis.call('GET', KEYS[1]))
if cur ~= nil and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

type ScriptedRedis = Redis & {
  mfaIncrement(key: string, ttlMs: number): Promise<number>;
  mfaRaiseTo(key: string, value: number, ttlMs: number): Promise<number>;
};

export interface RedisKvOptions {
  url: string;
  keyPrefix: string;
  commandTimeoutMs: number;
}

export class RedisKvStore implements KvStore {
  private readonly redis: ScriptedRedis;

  constructor(opts: RedisKvOptions) {
    const redis = new Redis(opts.url, {
      keyPrefix: opts.keyPrefix,
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
      // Never queue commands while disconnected: a request fails at once instead of waiting (fail closed).
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
    // Connection errors are reported through failing calls and readiness, not as unhandled events.
    redis.on('error', () => {});
    redis.defineCommand('mfaIncrement', { numberOfKeys: 1, lua: INCREMENT });
    redis.defineCommand('mfaRaiseTo', { numberOfKeys: 1, lua: RAISE_TO });
    this.redis = redis as ScriptedRedis;
  }

  /** Resolves once connected (for start-up and tests); requests do not wait for it. */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('redis not ready')), timeoutMs);
      this.redis.once('ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get(key: string) {
    return this.call(() => this.redis.get(key));
  }

  async set(key: string, value: string, ttlMs?: number) {
    await this.call(() => (ttlMs === undefined ? this.redis.set(key, value) : this.redis.set(key, value, 'PX', ttlMs)));
  }

  async setIfAbsent(key: string, value: string, ttlMs?: number) {
    return (await this.call(() => (ttlMs === undefined ? this.redis.set(key, value, 'NX') : this.redis.set(key, value, 'PX', ttlMs, 'NX')))) === 'OK';
  }

  async setIfPresent(key: string, value: string, ttlMs: number) {
    return (await this.call(() => this.redis.set(key, value, 'PX', ttlMs, 'XX'))) === 'OK';
  }

  take(key: string) {
    return this.call(() => this.redis.getdel(key));
  }

  async delete(key: string) {
    await this.call(() => this.redis.del(key));
  }

  increment(key: string, ttlMs: number) {
    return this.call(() => this.redis.mfaIncrement(key, ttlMs));
  }

  async raiseTo(key: string, value: number, ttlMs: number) {
    return (await this.call(() => this.redis.mfaRaiseTo(key, value, ttlMs))) === 1;
  }

  async ping() {
    await this.call(() => this.redis.ping());
  }

  async close() {
    this.redis.disconnect();
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', `redis: ${(cause as Error).message}`, { cause });
    }
  }
}
