// A server that takes every request and never answers it: a portal (or receiver) that hangs.
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';

/** Listening on loopback until the test ends; `requests` are the ones taken so far, each left waiting. */
export async function silentServer(t: Tap.Test): Promise<{ url: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req) => {
    requests.push(req);
    req.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests };
}
