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
  /** sentinel: ACL user and password of the sentinels (not of the data nodes: those are username and password). */
  sentinelUsername?: string;
  sentinelPassword?: string;
  tls?: { ca?: string; servername?: string; rejectUnauthorized?: boolean };
  /** Must not contain { or }: keys carry their own hash tags (see keys.ts). */
  keyPrefix: string;
  commandTimeoutMs: number;
}

/** The message of ioredis' CONNECTION_CLOSED_ERROR_MSG (not exported from the package root). */
const CONNECTION_CLOSED = 'Connection is closed.';

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
    // Redis 6 puts a script's inside its own error (`ERR Error running script … -READONLY …`).
    reconnectOnError: (err) => /^READONLY|: -READONLY /.test(err.message),
  };
  switch (opts.mode) {
    case 'single':
      if (!opts.url) throw new TypeError('redis mode "single" needs a url');
      return new Redis(opts.url, client);
    case 'sentinel':
      if (!opts.sentinels?.length || !opts.masterName) throw new TypeError('redis mode "sentinel" needs sentinels and a masterName');
      return retryInterruptedConnects(new Redis({
        ...client,
        sentinels: opts.sentinels,
        name: opts.masterName,
        sentinelUsername: opts.sentinelUsername,
        sentinelPassword: opts.sentinelPassword,
        sentinelTLS: opts.tls,
        enableTLSForSentinelMode: opts.tls !== undefined,
        sentinelCommandTimeout: opts.commandTimeoutMs,
        sentinelRetryStrategy: backoff,
        // Subscribes to +switch-master on the sentinels and reconnects as soon as a failover is announced.
        failoverDetector: true,
        sentinelReconnectStrategy: backoff,
      }));
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

/**
 * Works around an ioredis bug (seen in 5.11.1, still in 6.0.0) that ends a Sentinel client for good after a failover.
 *
 * On +switch-master the failover detector calls the connector's disconnect(), which is also how the client is closed
 * on purpose: it clears `connector.connecting`. When the message arrives while the client is between two connections
 * (status "connecting": asking the sentinels for the master, or waiting out sentinelRetryStrategy, as it does while a
 * killed master is being replaced), the connector's connect() then rejects with "Connection is closed." once the
 * sentinel answers, and Redis#connect turns any rejected connect into status "end" without asking retryStrategy: no
 * reconnection, every later call fails with "Connection is closed.".
 *
 * So an attempt cut short that way starts over (the new master is then asked for afresh), unless the client itself is
 * being closed: disconnect() and QUIT set `manuallyClosing` first, and then the rejection goes through as before. (The
 * first connect, which the constructor starts, is not wrapped; no detector exists yet to cut it short.)
 *
 * This reaches into two ioredis internals, `connector` and `manuallyClosing`. The test "a failover announced while the
 * client is asking the sentinels does not end the client" (test/integration/redis-topologies.test.ts) reproduces the
 * race every time, and fails if an ioredis upgrade breaks this workaround.
 */
function retryInterruptedConnects(redis: Redis): Redis {
  const internals = redis as unknown as { connector: { connect(emit: unknown): Promise<unknown> }; manuallyClosing: boolean };
  const { connector } = internals;
  const connectOnce = connector.connect.bind(connector);
  connector.connect = async (emit) => {
    for (;;) {
      try {
        return await connectOnce(emit);
      } catch (err) {
        if (internals.manuallyClosing || (err as Error).message !== CONNECTION_CLOSED) throw err;
      }
      // Never a busy loop, whatever the connector does.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  return redis;
}
