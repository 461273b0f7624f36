// A vendor's webhook endpoint for tests: records every call it answers 200 (`calls`; `all`: every call that came);
// answers with the statuses it is given, then 200 (status 0: never answers, like a hung endpoint).
import { createServer } from 'node:http';
import { once } from 'node:events';

export interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: Record<string, unknown>;
}

export async function startReceiver(
  statuses: number[] = [],
): Promise<{
  url: string;
  calls: Received[];
  all: Received[];
  hanging: () => number;
  /** Until `n` calls were answered 200 (at most 10 s). */
  waitFor(n: number): Promise<void>;
  /** Until `n` calls are left waiting (at most 10 s). */
  waitForHanging(n: number): Promise<void>;
  close(): Promise<void>;
}> {
  const calls: Received[] = [];
  const all: Received[] = [];
  let hanging = 0;
  const queue = [...statuses];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const status = queue.shift() ?? 200;
      all.push({ headers: req.headers, body, json: JSON.parse(body) });
      if (status === 0) {
        hanging++;
        return;
      }
      if (status === 200) calls.push({ headers: req.headers, body, json: JSON.parse(body) });
      res.writeHead(status).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  const reach = async (n: number, count: () => number, what: string) => {
    const deadline = Date.now() + 10_000;
    while (count() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (count() < n) throw new Error(`expected ${n} webhook calls ${what}, got ${count()}`);
  };
  return {
    url,
    calls,
    all,
    hanging: () => hanging,
    waitFor: (n) => reach(n, () => calls.length, 'answered'),
    waitForHanging: (n) => reach(n, () => hanging, 'left waiting'),
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
