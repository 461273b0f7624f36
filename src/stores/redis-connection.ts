// One ioredis client for a single node, a Sentinel set or a Cluster, with the same fail-closed settings in every mode.
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export interface RedisConnectionOptions {
  mode: 'single' | 'sentinel' | 'cluster';
  /** single: redis:// or rediss:// (user:password@ in the URL allowed). */
  url?: string;
  sentinels?: { host: string; port: number }[];
  masterName?: string;
  /** cluster: seed nodes; the rest of the topology is discovered. */
  nodes?: { host: string; port: number }[];
  username?: string;
  password?: string;
  sentinelPassword?: string;
  tls?: { ca?: string; servername?: string; rejectUnauthorized?: boolean };
  /** Must not contain { or }: keys carry their own hash tags (see keys.ts). */
  keyPrefix: string;
  commandTimeoutMs: number;
}

/** Reconnect delays grow to one second and never stop: service resumes by itself once Redis is back. */
const backoff = (times: number) => Math.min(times * 100, 1000);

export function createRedisClient(opts: RedisConnectionOptions): Redis | Cluster {
  if (/[{}]/.test(opts.keyPrefix)) throw new TypeError('redis keyPrefix must not contain { or } (it would change the hash slot of every key)');
  const client = connect(opts);
  // Connection errors are reported through failing calls and readiness, not as unhandled events.
  client.on('error', () => {});
  return client;
}

function connect(opts: RedisConnectionOptions): Redis | Cluster {
  // Settings of every connection to a data node, in every mode.
  const node: RedisOptions = {
    username: opts.username,
    password: opts.password,
    tls: opts.tls,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    maxRetriesPerRequest: 0,
  };
  // A single node or a Sentinel master: one connection, which this client keeps up itself.
  const client: RedisOptions = {
    ...node,
    keyPrefix: opts.keyPrefix,
    // Never queue commands while disconnected: a request fails at once instead of waiting (fail closed).
    enableOfflineQueue: false,
    retryStrategy: backoff,
    // A demoted master answers writes with READONLY: reconnect (to the new master) without resending the command.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  };
  switch (opts.mode) {
    case 'single':
      if (!opts.url) throw new TypeError('redis mode "single" needs a url');
      return new Redis(opts.url, client);
    case 'sentinel':
      if (!opts.sentinels?.length || !opts.masterName) throw new TypeError('redis mode "sentinel" needs sentinels and a masterName');
      return new Redis({
        ...client,
        sentinels: opts.sentinels,
        name: opts.masterName,
        sentinelPassword: opts.sentinelPassword,
        sentinelTLS: opts.tls,
        enableTLSForSentinelMode: opts.tls !== undefined,
        sentinelCommandTimeout: opts.commandTimeoutMs,
        sentinelRetryStrategy: backoff,
        // Subscribes to +switch-master on the sentinels and reconnects as soon as a failover is announced.
        failoverDetector: true,
        sentinelReconnectStrategy: backoff,
      });
    case 'cluster':
      if (!opts.nodes?.length) throw new TypeError('redis mode "cluster" needs seed nodes');
      // ioredis follows MOVED/ASK and refreshes the slot map itself; it manages the node connections.
      return new Cluster(opts.nodes, {
        keyPrefix: opts.keyPrefix,
        redisOptions: node,
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        slotsRefreshTimeout: Math.max(opts.commandTimeoutMs, 1000),
        slotsRefreshInterval: 5000,
      });
    default:
      throw new TypeError(`unknown redis mode: ${String((opts as { mode: unknown }).mode)}`);
  }
}
