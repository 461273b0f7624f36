// Redis Cluster and Sentinel sets for tests: real redis-server processes on free loopback ports, in a temp dir.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePorts, waitForPing } from './redis.js';

const HOST = '127.0.0.1';
const MASTER_NAME = 'mymaster';

export interface Addr {
  host: string;
  port: number;
}

export interface TestCluster {
  /** The three masters (each holds a third of the slots). */
  nodes: Addr[];
  /** Port of the node that holds `key` (the full key, prefix included). */
  nodeOf(key: string): Promise<number>;
  /** cluster_state of the node on `port` (ok, or fail once it counts a master with slots as down). */
  state(port: number): Promise<string | undefined>;
  pid(port: number): number;
  stop(): Promise<void>;
}

/**
 * Protection of the sentinels themselves (not of the data nodes): with a username, an ACL user (`user` in sentinel.conf)
 * and the default user off; without, `requirepass`. The sentinels also log in to each other with it.
 */
export interface SentinelAuth {
  username?: string;
  password: string;
}

export interface TestSentinel {
  sentinels: Addr[];
  masterName: string;
  /** The master's port, as the first sentinel reports it. */
  master(): Promise<number>;
  /** Resolves once the replica has applied everything the master has written so far. */
  waitForSync(): Promise<void>;
  /** SENTINEL FAILOVER (the old master stays up and becomes a replica); resolves once every sentinel reports the new master. */
  failover(): Promise<{ from: number; to: number }>;
  /** Kills the master; resolves once the sentinels have agreed it is down and every one reports the promoted replica. */
  killMaster(): Promise<{ from: number; to: number }>;
  /**
   * Stalls one sentinel (SIGSTOP): it still accepts connections but answers nothing until resumed. The other two still
   * make a quorum; until resumed, the methods above ask only them.
   */
  pause(port: number): void;
  resume(port: number): void;
  stop(): Promise<void>;
}

/** The servers of one topology and their temp dir; stopAll kills every one, also after a start-up that failed half-way. */
class Servers {
  private readonly procs = new Map<number, ChildProcess>();
  // Last resort when the test process exits without running its teardown.
  private readonly onExit = () => {
    this.procs.forEach((p) => p.kill('SIGKILL'));
    rmSync(this.dir, { recursive: true, force: true });
  };

  private constructor(readonly dir: string) {
    process.once('exit', this.onExit);
  }

  static async create(name: string): Promise<Servers> {
    return new Servers(await mkdtemp(join(tmpdir(), `mfa-redis-${name}-`)));
  }

  /**
   * Starts redis-server on `port` and waits until it answers (logging in with `auth`, if given); `args` come first, so
   * a config file may lead.
   */
  async start(port: number, args: string[], auth?: SentinelAuth): Promise<void> {
    const common = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', this.dir];
    this.procs.set(port, spawn('redis-server', [...args, ...common], { stdio: 'ignore' }));
    const login = auth ? `${encodeURIComponent(auth.username ?? '')}:${encodeURIComponent(auth.password)}@` : '';
    await waitForPing(`redis://${login}${HOST}:${port}`);
  }

  pid(port: number): number {
    const pid = this.procs.get(port)?.pid;
    if (pid === undefined) throw new Error(`no server of ours on port ${port}`);
    return pid;
  }

  async kill(port: number): Promise<void> {
    const p = this.procs.get(port);
    this.procs.delete(port);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGKILL');
    await once(p, 'exit');
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((port) => this.kill(port)));
    process.off('exit', this.onExit);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs one admin command on a fresh connection (no prefix, no retries); `{ port, ...auth }` logs in first. */
async function admin<T = string>(at: number | ({ port: number } & SentinelAuth), ...args: (string | number)[]): Promise<T> {
  const { port, username, password } = typeof at === 'number' ? { port: at, username: undefined, password: undefined } : at;
  const r = new Redis({ host: HOST, port, username, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 });
  r.on('error', () => {});
  try {
    await r.connect();
    return (await r.call(String(args[0]), ...args.slice(1))) as T;
  } finally {
    r.disconnect();
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const field = (info: string, name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();

/**
 * Three masters, no replicas; resolves once every node says cluster_state:ok. `nodeTimeoutMs`: how long a node may not
 * answer before the others count it as down (Redis's cluster-node-timeout, 15 s by default).
 */
export async function startCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<TestCluster> {
  const servers = await Servers.create('cluster');
  try {
    // The bus ports are chosen too: the default (port + 10000) may be taken or out of range.
    const [p1, p2, p3, ...bus] = await freePorts(6);
    const ports = [p1!, p2!, p3!];
    const timeout = opts.nodeTimeoutMs === undefined ? [] : ['--cluster-node-timeout', String(opts.nodeTimeoutMs)];
    await Promise.all(
      ports.map((port, i) =>
        servers.start(port, ['--cluster-enabled', 'yes', '--cluster-port', String(bus[i]), '--cluster-config-file', join(servers.dir, `nodes-${port}.conf`), ...timeout]),
      ),
    );
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    await waitUntil('cluster state ok', async () => (await Promise.all(ports.map((p) => admin(p, 'CLUSTER', 'INFO')))).every((i) => field(i, 'cluster_state') === 'ok'));
    return {
      nodes: ports.map((port) => ({ host: HOST, port })),
      async nodeOf(key) {
        const slot = await admin<number>(ports[0]!, 'CLUSTER', 'KEYSLOT', key);
        const ranges = await admin<[number, number, [string, number]][]>(ports[0]!, 'CLUSTER', 'SLOTS');
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (!range) throw new Error(`no node serves slot ${slot}`);
        return range[2][1];
      },
      state: async (port) => field(await admin(port, 'CLUSTER', 'INFO'), 'cluster_state'),
      pid: (port) => servers.pid(port),
      stop: () => servers.stopAll(),
    };
  } catch (err) {
    await servers.stopAll();
    throw err;
  }
}

/**
 * One master, one replica, three sentinels (quorum 2, down after 1 s); resolves once every sentinel sees both data nodes.
 * `auth`: the sentinels refuse clients that do not log in with it.
 */
export async function startSentinel(opts: { auth?: SentinelAuth } = {}): Promise<TestSentinel> {
  const { auth } = opts;
  const servers = await Servers.create('sentinel');
  try {
    const [masterPort, replicaPort, ...sentinelPorts] = (await freePorts(5)) as [number, number, number, number, number];
    // A full sync would otherwise wait 5 s for more replicas to join (repl-diskless-sync-delay).
    const data = ['--repl-diskless-sync-delay', '0'];
    // The master refuses writes once no replica follows it, as production should be configured: a master the
    // sentinels have replaced cannot acknowledge writes that the new master will never see. (Only the first master
    // has it: with a single replica, a promoted replica that had it would refuse writes until another one joins.)
    await servers.start(masterPort, [...data, '--min-replicas-to-write', '1']);
    await servers.start(replicaPort, [...data, '--replicaof', HOST, String(masterPort)]);
    await waitUntil('replica in sync', async () => field(await admin(replicaPort, 'INFO', 'replication'), 'master_link_status') === 'up');
    const asSentinel = (port: number) => (auth ? { port, ...auth } : port);
    await Promise.all(
      sentinelPorts.map(async (port) => {
        const conf = join(servers.dir, `sentinel-${port}.conf`);
        await writeFile(
          conf,
          [
            `sentinel monitor ${MASTER_NAME} ${HOST} ${masterPort} 2`,
            `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
            `sentinel failover-timeout ${MASTER_NAME} 2000`,
            ...sentinelProtection(auth),
            '',
          ].join('\n'),
        );
        await servers.start(port, [conf, '--sentinel'], auth);
      }),
    );
    const sentinelSees = (port: number) => async () => {
      const replicas = await admin<string[][]>(asSentinel(port), 'SENTINEL', 'REPLICAS', MASTER_NAME);
      const ok = (r: string[]) => r[r.indexOf('flags') + 1] === 'slave' && r[r.indexOf('master-link-status') + 1] === 'ok';
      return replicas.length === 1 && ok(replicas[0]!);
    };
    await Promise.all(sentinelPorts.map((port) => waitUntil(`sentinel ${port} sees the replica`, sentinelSees(port))));

    const paused = new Set<number>();
    const live = () => sentinelPorts.filter((p) => !paused.has(p));
    const masterOf = async (port: number) => Number((await admin<[string, string]>(asSentinel(port), 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME))[1]);
    const master = () => masterOf(live()[0]!);
    const dataPorts = [masterPort, replicaPort];
    const newMaster = async (from: number) => {
      const to = dataPorts.find((p) => p !== from)!;
      await waitUntil('every sentinel reports the new master', async () => (await Promise.all(live().map(masterOf))).every((p) => p === to));
      await waitUntil('new master has the master role', async () => (await admin<[string]>(to, 'ROLE'))[0] === 'master');
      return { from, to };
    };
    return {
      sentinels: sentinelPorts.map((port) => ({ host: HOST, port })),
      masterName: MASTER_NAME,
      master,
      async waitForSync() {
        const from = await master();
        const replica = dataPorts.find((p) => p !== from)!;
        const target = Number(field(await admin(from, 'INFO', 'replication'), 'master_repl_offset'));
        await waitUntil('replica offset', async () => Number(field(await admin(replica, 'INFO', 'replication'), 'slave_repl_offset')) >= target);
      },
      async failover() {
        const from = await master();
        await waitUntil('failover accepted', async () => (await admin(asSentinel(live()[0]!), 'SENTINEL', 'FAILOVER', MASTER_NAME)) === 'OK');
        return newMaster(from);
      },
      async killMaster() {
        const from = await master();
        // An objective "down" needs a quorum, so the sentinels that answer must have found each other first (hello every 2 s).
        const knowsTheOthers = async (port: number) => {
          const known = (await admin<string[][]>(asSentinel(port), 'SENTINEL', 'SENTINELS', MASTER_NAME)).map((s) => Number(s[s.indexOf('port') + 1]));
          return live().every((p) => p === port || known.includes(p));
        };
        await Promise.all(live().map((port) => waitUntil('sentinels know each other', () => knowsTheOthers(port))));
        await servers.kill(from);
        return newMaster(from);
      },
      pause(port) {
        if (!sentinelPorts.includes(port)) throw new Error(`${port} is not one of the sentinels`);
        process.kill(servers.pid(port), 'SIGSTOP');
        paused.add(port);
      },
      resume(port) {
        process.kill(servers.pid(port), 'SIGCONT');
        paused.delete(port);
      },
      stop: () => servers.stopAll(),
    };
  } catch (err) {
    await servers.stopAll();
    throw err;
  }
}

/** sentinel.conf lines that make a sentinel refuse clients without `auth`, and log in with it to the other sentinels. */
function sentinelProtection(auth: SentinelAuth | undefined): string[] {
  if (!auth) return [];
  const toOthers = [...(auth.username ? [`sentinel sentinel-user ${auth.username}`] : []), `sentinel sentinel-pass ${auth.password}`];
  if (!auth.username) return [`requirepass ${auth.password}`, ...toOthers];
  return ['user default off', `user ${auth.username} on >${auth.password} allchannels +@all`, ...toOthers];
}
