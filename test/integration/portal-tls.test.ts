// A portal behind HTTPS: its certificate is verified on every path to it (proxied pages and the login replay), against
// the system's CAs and NODE_EXTRA_CA_CERTS; an unverifiable portal gets a 502, and nothing is sent to it.
import t from 'tap';
import { once } from 'node:events';
import { createServer } from 'node:https';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config/load.js';
import { Browser } from '../helpers/browser.js';
import { gatewayProcess } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { TestCa } from '../helpers/pki.js';
import { freePort } from '../helpers/redis.js';

async function httpsPortal(t: Tap.Test) {
  const ca = new TestCa('portal');
  const cert = ca.issue('portal.internal', { server: true });
  const seen: string[] = [];
  const server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('portal page over TLS');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  const raw = rawTestConfig(url);
  raw.policy.rules = [{ name: 'everything', paths: ['/'], decision: 'public' }];
  return { ca, url, raw, seen };
}

t.test('a portal certificate the gateway cannot verify: 502, nothing sent', async (t) => {
  const { raw, seen } = await httpsPortal(t);
  const app = await buildApp(resolveConfig(raw));
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const b = new Browser(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
  const page = await b.get('/page');
  t.equal(page.status, 502, 'the portal is unavailable, not served unverified');
  t.notMatch(page.body, 'portal page over TLS');
  const login = await b.post('/login', { username: 'alice', password: 'x' });
  t.equal(login.status, 502, 'the login replay does not send a password to it either');
  t.same(seen, [], 'no request reached the server');
});

t.test('the same portal, its CA given to the gateway process with NODE_EXTRA_CA_CERTS: served', async (t) => {
  const { ca, raw, seen } = await httpsPortal(t);
  const port = await freePort();
  const file = join(mkdtempSync(join(tmpdir(), 'mfa-tls-')), 'gw.json');
  writeFileSync(file, JSON.stringify({ ...raw, server: { ...raw.server, port }, log: { level: 'warn' } }));
  const gw = await gatewayProcess(file, port, { NODE_EXTRA_CA_CERTS: ca.ca.certFile });
  t.teardown(() => gw.proc.kill());
  const page = await new Browser(gw.url).get('/page');
  t.equal(page.status, 200);
  t.equal(page.body, 'portal page over TLS');
  t.same(seen, ['GET /page']);
});
