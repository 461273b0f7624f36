// The admin listener on a port of its own: GET /metrics, /health/live and /health/ready, and 404 for anything else.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from '../metrics/metrics.js';

export interface AdminServerOptions {
  host: string;
  /** 0: any free port (see `url`). */
  port: number;
  metrics: Metrics;
  /** Resolves when the gateway can serve (store answers, keys loaded); rejects with the reason when it cannot. */
  ready: () => Promise<unknown>;
  /** A readiness check slower than this counts as failed (default READY_TIMEOUT_MS). */
  readyTimeoutMs?: number;
}

export interface AdminServer {
  /** http://host:port, with a wildcard host replaced by loopback. */
  url: string;
  close(): Promise<void>;
}

type Probe = { ok: true } | { ok: false; reason: string };

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const probe = readinessProbe(opts.ready, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  // The timeouts below are checked every second (Node's default: every 30 s, which let a half request sit 30 s).
  const server = createServer({ maxHeaderSize: 8192, connectionsCheckingInterval: 1000 }, (req, res) => {
    handle(req, res, opts.metrics, probe).catch(() => send(res, 500, { status: 'error' }));
  });
  // Scrapers and probes are quick; slow or idle connections are cut off.
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    url: urlOf(server.address() as AddressInfo),
    // A request still arriving (half its headers sent) would hold the close: Node stops checking its timeouts once
    // the server closes. Answers take at most the readiness timeout; what is still open after that is cut off.
    close: () =>
      new Promise<void>((resolve, reject) => {
        const cut = setTimeout(() => server.closeAllConnections(), (opts.readyTimeoutMs ?? READY_TIMEOUT_MS) + 1000);
        server.close((err) => {
          clearTimeout(cut);
          return err ? reject(err) : resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, metrics: Metrics, probe: () => Promise<Probe>): Promise<void> {
  const path = (req.url ?? '').split('?', 1)[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 404, { status: 'not found' });
  switch (path) {
    case '/health/live':
      return send(res, 200, { status: 'ok' });
    case '/health/ready': {
      const r = await probe();
      metrics.readiness(r.ok);
      return r.ok ? send(res, 200, { status: 'ready' }) : send(res, 503, { status: 'unavailable', reason: r.reason });
    }
    case '/metrics': {
      // Each scrape also checks readiness, so mfa_gateway_ready is fresh even when nothing probes it.
      metrics.readiness((await probe()).ok);
      const text = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(text);
      return;
    }
    default:
      return send(res, 404, { status: 'not found' });
  }
}

function send(res: ServerResponse, status: number, body: Record<string, string>): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(body));
}

/** How long a readiness check may take before it counts as failed (a Redis that hangs must not hang the probe). */
export const READY_TIMEOUT_MS = 2000;

/** The ready callback with a time limit; a rejection becomes its reason (first line, at most 200 characters). */
export function readinessProbe(ready: () => Promise<unknown>, timeoutMs: number): () => Promise<Probe> {
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`readiness check took longer than ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([ready(), timeout]);
      return { ok: true };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, reason: (message.split('\n', 1)[0] ?? '').slice(0, 200) || 'not ready' };
    } finally {
      clearTimeout(timer);
    }
  };
}

function urlOf(a: AddressInfo): string {
  const host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
}
