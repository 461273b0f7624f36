// login check's tests: portals that answer as a test says, and the command run on a config of one.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliAsync } from './cli.js';
import { rawTestConfig } from './config.js';
export interface Asked {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A portal that answers each request as `answer` says, and records every request it gets as `METHOD path body`. */
export async function startPortal(t: Tap.Test, answer: (req: Asked, port: number) => { status: number; headers?: Record<string, string | string[]>; body?: string }): Promise<{ url: string; port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      const a = answer({ method: req.method!, url: req.url!, headers: req.headers, body }, port);
      res.writeHead(a.status, { 'content-type': 'text/html', ...a.headers }).end(a.body ?? '');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((r) => server.close(r)));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, seen };
}

// Where a browser has the portal's pages with the test config: the first of server.hosts, served over plain HTTP.
export const GATEWAY = 'http://localhost';

/**
 * A portal of one login page (`page`), which refuses a password sent without its page's Origin or Referer (on the
 * gateway), as Django does over HTTPS.
 */
export function startFormPortal(t: Tap.Test, page: (port: number) => string): Promise<{ url: string; port: number; seen: string[] }> {
  return startPortal(t, (req, port) => {
    if (req.method === 'GET') return { status: 200, body: page(port) };
    if (req.headers.origin !== GATEWAY || req.headers.referer !== `${GATEWAY}/login`) return { status: 403, body: 'CSRF verification failed' };
    const right = new URLSearchParams(req.body).get('j_password') === 'right-pw';
    return { status: 302, headers: { location: right ? '/home' : '/login?error' } };
  });
}

/** login check run on a config of `portal` with these portal.login (and server) settings and `args`, the password on stdin. */
export async function checkOn(t: Tap.Test, portal: { url: string }, login: Record<string, unknown>, password: string, browserCookies = ['XSRF-TOKEN'], server: Record<string, unknown> = {}, args: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'login-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const raw = rawTestConfig(portal.url);
  raw.server = { ...raw.server, ...server };
  raw.portal.browserCookies = browserCookies;
  raw.portal.login = { paths: ['/j_security_check'], usernameField: 'j_username', passwordField: 'j_password', success: { status: [302], location: '^/home' }, ...login };
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...raw, log: { level: 'silent' } }));
  return runCliAsync(['login', 'check', '--config', file, '--user', 'alice', ...args], {}, `${password}\n`);
}
