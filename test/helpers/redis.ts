// Test Redis: REDIS_URL when set, otherwise a redis-server the harness starts on a free port (and stops).
// Cluster and Sentinel sets live in redis-topologies.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export interface TestRedis {
  url: string;
  stop(): Promise<void>;
  /** Only for a server this harness started: start it again on the same port. */
  restart(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** `n` distinct free loopback ports (all held open at once, so none is handed out twice). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer().listen(0, '127.0.0.1'));
  await Promise.all(servers.map((s) => once(s, 'listening')));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export async function waitForPing(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return;
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

/** A redis-server of our own, which a test may stop and restart: on `port` (a free one if not given), with `args` added. */
export async function startOwnRedis(opts: { port?: number; args?: string[] } = {}): Promise<TestRedis> {
  const port = opts.port ?? (await freePort());
  const url = `redis://127.0.0.1:${port}`;
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(opts.args ?? [])], { stdio: 'ignore' });
    await waitForPing(url);
  };
  const stop = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const p = proc;
    p.kill('SIGKILL');
    await once(p, 'exit');
  };
  await start();
  return { url, stop, restart: start };
}

export async function testRedis(): Promise<TestRedis> {
  const fromEnv = process.env.REDIS_URL;
  if (!fromEnv) return startOwnRedis();
  await waitForPing(fromEnv);
  return {
    url: fromEnv,
    stop: async () => {},
    restart: async () => {
      throw new Error('cannot restart a Redis given by REDIS_URL');
    },
  };
}
