// Webhook delivery against receivers that misbehave: a delivery never takes longer than its timeout, and deliveries
// waiting on a dead endpoint do not pile up; what is sent is what the README shows.
import t from 'tap';
import { createServer, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { systemClock } from '../../../src/clock.js';
import { Metrics, type NotificationFailure } from '../../../src/metrics/metrics.js';
import { Notifier, Webhooks } from '../../../src/services/notifier.js';
import { startReceiver } from '../../helpers/webhook-receiver.js';

const target = (url: string) => ({ url, secret: 'k'.repeat(40) });

function webhooks(timeoutMs: number, retries = 0, retryDelayMs = 10) {
  const lines: string[] = [];
  const log = pino(new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) }));
  const metrics = new Metrics({ defaultMetrics: false });
  return { hooks: new Webhooks({ clock: systemClock, log, metrics, timeoutMs, retries, retryDelayMs }), lines, metrics };
}

/** Waits until `done` holds (polling), at most 10 s: far longer than anything here takes, even on a loaded machine. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; !done(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what}`);
  }
}

/** Events counted as never delivered, for that reason. */
async function lost(metrics: Metrics, reason: NotificationFailure): Promise<number> {
  return Number(new RegExp(`^mfa_gateway_notification_failures_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics.text())![1]);
}

t.test('a receiver that answers 200 and then sends its body a byte at a time: delivered, within the timeout', async (t) => {
  const open = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-length': '100000' });
    open.add(res);
    const drip = setInterval(() => res.write('x'), 50);
    res.on('close', () => (clearInterval(drip), open.delete(res)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const res of open) res.destroy();
    server.close();
  });
  const { hooks } = webhooks(500);
  const started = Date.now();
  t.same(await hooks.post(target(`http://127.0.0.1:${(server.address() as { port: number }).port}/hook`), { event: 'x' }), { delivered: true }, 'its status said delivered');
  // Ten times the timeout, for a loaded machine; the body alone would take 100 000 × 50 ms.
  t.ok(Date.now() - started < 5000, `answered after ${Date.now() - started} ms (timeout 500 ms)`);
});

t.test('a receiver that sends its headers a byte at a time: not delivered, within the timeout', async (t) => {
  const server = createServer();
  server.on('connection', (socket) => {
    // A valid start, so that it is the time that runs out and not the parser that gives up.
    socket.write('HTTP/1.1 200 OK\r\nX-Slow: ');
    const drip = setInterval(() => socket.write('a'), 50);
    socket.on('close', () => clearInterval(drip));
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.closeAllConnections() ?? server.close());
  const { hooks } = webhooks(500);
  const started = Date.now();
  t.match(await hooks.post(target(`http://127.0.0.1:${(server.address() as { port: number }).port}/hook`), { event: 'x' }), { delivered: false, why: 'TimeoutError' });
  // Ten times the timeout, for a loaded machine; the headers alone would never end (undici waits 300 s for them).
  t.ok(Date.now() - started < 5000, `answered after ${Date.now() - started} ms (timeout 500 ms)`);
});

t.test('deliveries waiting on an endpoint that never answers are capped; the ones beyond are dropped and logged', async (t) => {
  const hung = await startReceiver(Array.from({ length: 250 }, () => 0));
  t.teardown(hung.close);
  const { hooks, lines, metrics } = webhooks(30_000);
  for (let i = 0; i < 210; i++) hooks.send(target(hung.url), { event: 'address_blocked' });
  await hung.waitForHanging(200);
  // A moment for any delivery beyond the cap to arrive too.
  await new Promise((r) => setTimeout(r, 200));
  t.equal(hung.hanging(), 200, 'two hundred reach the endpoint and wait');
  const dropped = lines.filter((l) => l.includes('too many deliveries waiting'));
  t.equal(dropped.length, 10, 'the other ten are dropped, each logged');
  t.match(JSON.parse(dropped[0]!), { webhook: 'address_blocked', waiting: 200 });
  t.equal(await lost(metrics, 'dropped'), 10, 'and counted');
});

t.test('an event still not delivered after its retries: logged and counted once', async (t) => {
  const down = await startReceiver([503, 500, 502]);
  t.teardown(down.close);
  const { hooks, lines, metrics } = webhooks(1000, 2, 10);
  hooks.send(target(down.url), { event: 'factor_added' });
  await until(() => lines.some((l) => l.includes('giving up')), 'the giving up');
  t.equal(down.all.length, 3, 'tried three times');
  t.equal(lines.filter((l) => l.includes('webhook delivery failed')).length, 3, 'each failure logged');
  t.match(JSON.parse(lines.find((l) => l.includes('webhook not delivered: giving up'))!), { webhook: 'factor_added' });
  t.equal(await lost(metrics, 'failed'), 1, 'one event lost');
  await hooks.settle();
  t.equal(await lost(metrics, 'shutdown'), 0, 'not counted again at shutdown');
});

t.test('a failed delivery is logged with why: the receiver’s status, or the error’s code, never the URL', async (t) => {
  const refusing = createServer((req, res) => {
    req.resume();
    res.writeHead(401).end();
  });
  refusing.listen(0, '127.0.0.1');
  await once(refusing, 'listening');
  t.teardown(() => refusing.close());
  const { hooks, lines } = webhooks(2000);
  const secretUrl = `http://127.0.0.1:${(refusing.address() as { port: number }).port}/hook?token=hush`;
  hooks.send(target(secretUrl), { event: 'factor_added' });
  await hooks.settle();
  t.match(JSON.parse(lines.find((l) => l.includes('webhook not delivered: refused'))!), { webhook: 'factor_added', attempt: 1, why: 'status 401' });
  // Nothing listens on the port once it is closed.
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as { port: number }).port;
  closed.close();
  await once(closed, 'close');
  t.same(await hooks.post(target(`http://127.0.0.1:${port}/hook?token=hush`), { event: 'x' }), { delivered: false, why: 'ECONNREFUSED', retry: true });
  // A receiver that takes the call and never answers.
  const silent = createServer((req) => req.resume());
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => silent.closeAllConnections() ?? silent.close());
  const { hooks: quick } = webhooks(300);
  t.same(await quick.post(target(`http://127.0.0.1:${(silent.address() as { port: number }).port}/hook`), { event: 'x' }), { delivered: false, why: 'TimeoutError', retry: true });
  t.notOk(lines.join('\n').includes('hush'), 'the URL is not logged');
});

t.test('a refusal for good (a 4xx but 408 and 429) is not tried again: one line, counted; 408, 429 and 5xx are', async (t) => {
  for (const status of [400, 401, 403, 404, 410, 422]) {
    const refusing = await startReceiver([status]);
    t.teardown(refusing.close);
    const { hooks, lines, metrics } = webhooks(1000, 3, 10);
    hooks.send(target(refusing.url), { event: 'factor_added' });
    await until(() => refusing.all.length >= 1, 'the delivery');
    // Long enough for the three retries, 10, 20 and 40 ms apart.
    await new Promise((r) => setTimeout(r, 200));
    t.equal(refusing.all.length, 1, `${status}: sent once`);
    await hooks.settle();
    t.same(
      lines.map((l) => JSON.parse(l)).map((l) => [l.msg, l.why]),
      [['webhook not delivered: refused', `status ${status}`]],
      `${status}: one line says it`,
    );
    t.equal(await lost(metrics, 'refused'), 1, `${status}: counted`);
    t.equal(await lost(metrics, 'shutdown'), 0, `${status}: and not as lost at shutdown`);
  }
  for (const status of [408, 429, 500, 503]) {
    const busy = await startReceiver([status, status]);
    t.teardown(busy.close);
    const { hooks, metrics } = webhooks(1000, 3, 10);
    hooks.send(target(busy.url), { event: 'factor_added' });
    await busy.waitFor(1);
    t.equal(busy.all.length, 3, `${status}: tried again until delivered`);
    t.equal(await lost(metrics, 'refused'), 0, `${status}: not counted`);
  }
});

t.test('a redirect is not followed, nor tried again: refused, one line with its status, never where it points', async (t) => {
  for (const status of [301, 302, 303, 307, 308]) {
    let calls = 0;
    const moved = createServer((req, res) => {
      calls++;
      req.resume();
      res.writeHead(status, { location: 'https://new.example/hook?token=hush' }).end();
    });
    moved.listen(0, '127.0.0.1');
    await once(moved, 'listening');
    t.teardown(() => moved.close());
    const { hooks, lines, metrics } = webhooks(1000, 3, 10);
    hooks.send(target(`http://127.0.0.1:${(moved.address() as { port: number }).port}/hook`), { event: 'factor_added' });
    await until(() => calls >= 1, 'the delivery');
    // Long enough for the three retries, 10, 20 and 40 ms apart.
    await new Promise((r) => setTimeout(r, 200));
    await hooks.settle();
    t.equal(calls, 1, `${status}: sent once`);
    t.same(
      lines.map((l) => JSON.parse(l)).map((l) => [l.msg, l.why]),
      [['webhook not delivered: refused', `status ${status} (redirect not followed)`]],
      `${status}: one line says it`,
    );
    t.notOk(lines.join('\n').includes('new.example'), `${status}: the Location is not logged`);
    t.equal(await lost(metrics, 'refused'), 1, `${status}: counted as refused`);
  }
});

/**
 * Until the delivery's failed attempt is logged: it then waits for its retry, in the same step. (The endpoint having
 * answered is not enough: a shutdown begun before the delivery has read that answer finds an attempt under way, not
 * one waiting, and that attempt is its last.)
 */
const waitingForRetry = (lines: string[], event: string) =>
  until(() => lines.some((l) => l.includes('webhook delivery failed') && l.includes(`"webhook":"${event}"`)), `the failed attempt of ${event}`);

t.test('at shutdown, a delivery waiting for its retry tries at once; one still not delivered is logged', async (t) => {
  const lines: string[] = [];
  const log = pino(new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) }));
  const flaky = await startReceiver([500]);
  t.teardown(flaky.close);
  const hooks = new Webhooks({ clock: systemClock, log, metrics: new Metrics({ defaultMetrics: false }), timeoutMs: 1000, retries: 3, retryDelayMs: 60_000 });
  hooks.send(target(flaky.url), { event: 'factors_reset' });
  await waitingForRetry(lines, 'factors_reset');
  const started = Date.now();
  // Time enough for the try at once on a loaded machine (settle gives up on it after maxMs, 2 s by default).
  await hooks.settle(30_000);
  t.ok(Date.now() - started < 10_000, 'without waiting for the minute');
  t.equal(flaky.calls.length, 1, 'delivered by the retry made at once');
  t.notOk(lines.some((l) => l.includes('shutting down')));

  const dead = await startReceiver([500, 0]);
  t.teardown(dead.close);
  const metrics = new Metrics({ defaultMetrics: false });
  const closing = new Webhooks({ clock: systemClock, log, metrics, timeoutMs: 5000, retries: 3, retryDelayMs: 60_000 });
  closing.send(target(dead.url), { event: 'factor_added' });
  await waitingForRetry(lines, 'factor_added');
  await closing.settle(500);
  // The try at once goes on after settle gave up on it (it hangs until its 5 s timeout): it reaches the endpoint long
  // before the retry's minute.
  await until(() => dead.hanging() > 0, 'the try at once');
  t.equal(dead.hanging(), 1, 'tried again at once (and that one hangs)');
  t.match(JSON.parse(lines.find((l) => l.includes('webhook not delivered: shutting down'))!), { webhook: 'factor_added' }, 'the event left undelivered is logged');
  t.equal(await lost(metrics, 'shutdown'), 1, 'and counted');
});

t.test('at shutdown, a delivery whose try at once fails too is logged as lost to the shutdown, once', async (t) => {
  const lines: string[] = [];
  const log = pino(new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) }));
  const failing = await startReceiver([500, 500]);
  t.teardown(failing.close);
  const metrics = new Metrics({ defaultMetrics: false });
  const hooks = new Webhooks({ clock: systemClock, log, metrics, timeoutMs: 1000, retries: 3, retryDelayMs: 60_000 });
  hooks.send(target(failing.url), { event: 'factors_reset' });
  await waitingForRetry(lines, 'factors_reset');
  await hooks.settle(30_000);
  t.equal(failing.all.length, 2, 'tried again at once, and refused again');
  const gone = lines.map((l) => JSON.parse(l)).filter((l) => /^webhook not delivered/.test(l.msg));
  t.same(gone.map((l) => [l.msg, l.webhook]), [['webhook not delivered: shutting down', 'factors_reset']], 'one line says the event is lost to the shutdown');
  t.equal(await lost(metrics, 'shutdown'), 1, 'counted once');
});

t.test("the README's examples of a notification and an alert have the fields sent, no more and no fewer", async (t) => {
  const section = /^## Notifications\n([\s\S]+?)^## /m.exec(readFileSync('README.md', 'utf8'))![1]!;
  const examples = [...section.matchAll(/^```json\n(.+)\n```$/gm)].map((m) => JSON.parse(m[1]!));
  const notification = examples.find((e) => !e.alert);
  const alert = examples.find((e) => e.alert);
  t.ok(notification && alert, 'an example of each');
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const notifier = new Notifier(webhooks(1000).hooks, target(receiver.url), systemClock);
  notifier.notify({ event: notification.event, user: notification.user, ip: notification.ip, details: notification.details });
  notifier.alert(alert.event, alert.details);
  await receiver.waitFor(2);
  for (const example of [notification, alert]) {
    const sent = receiver.calls.find((c) => c.json.event === example.event)!.json;
    t.same(Object.keys(sent).sort(), Object.keys(example).sort(), `${example.event}: its fields`);
  }
});
