// Shutting down while a login waits for a portal that does not answer: the login is let go within the time given,
// with an answer of its own, and its connection to the portal is closed.
import t from 'tap';
import { once } from 'node:events';
import { GatewayError } from '../../../src/errors.js';
import { InFlight } from '../../../src/upstream/in-flight.js';
import { PortalClient } from '../../../src/upstream/portal-client.js';
import { silentServer } from '../../helpers/silent-server.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

t.test('close(): a login still waiting after the time given is cut off, and its connection closed', async (t) => {
  const { url, requests: waiting } = await silentServer(t);
  const inFlight = new InFlight(1);
  const client = new PortalClient(url, 30_000, inFlight);
  const login = client.send({ method: 'POST', pathAndQuery: '/login', headers: {}, body: Buffer.from('username=alice') }).then(
    () => 'answered',
    (err: unknown) => (err instanceof GatewayError ? err.code : String(err)),
  );
  for (let i = 0; i < 100 && !waiting.length; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(waiting.length, 1, 'the login reached the portal');
  const cut = once(waiting[0]!.socket, 'close');

  const started = Date.now();
  await client.close(200);
  // Far more than the 200 ms given, for a loaded machine; far less than the portal's timeout of 30 s.
  const late = new Promise((r) => setTimeout(() => r('still waiting'), 10_000).unref());
  t.equal(await Promise.race([login, late]), 'GW_ERR_UPSTREAM_UNAVAILABLE', 'the login is answered');
  t.ok(Date.now() - started < 10_000, `within ${Date.now() - started} ms (200 ms given; the portal's timeout is 30 s)`);
  t.equal(await Promise.race([cut.then(() => 'closed'), late]), 'closed', 'its connection to the portal is closed');
  t.doesNotThrow(() => inFlight.enter(), 'its place among the requests in flight is given back');
  await client.close(200);
  t.pass('close() again does no harm');
});

t.test('a path that starts with // stays on the portal: it is a path there, not another host', async (t) => {
  const seen: string[][] = [];
  const listen = async (name: string): Promise<Server> => {
    const server = createServer((req, res) => {
      seen.push([name, req.url!]);
      res.end('ok');
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => new Promise((r) => server.close(r)));
    return server;
  };
  const portal = await listen('portal');
  const other = await listen('other');
  const client = new PortalClient(`http://127.0.0.1:${(portal.address() as AddressInfo).port}`, 5000, new InFlight(1));
  t.teardown(() => client.close(100));
  const path = `//127.0.0.1:${(other.address() as AddressInfo).port}/j_security_check`;
  t.equal((await client.send({ method: 'POST', pathAndQuery: path, headers: {}, body: Buffer.from('password=secret') })).status, 200);
  t.same(seen, [['portal', path]], 'only the portal got it, at that path');
  await t.rejects(client.send({ method: 'GET', pathAndQuery: 'login', headers: {} }), { code: 'GW_ERR_BAD_PATH' }, 'a path without its leading / is refused');
});
