// The admin server on a real socket: a scripted run's exact counters on /metrics, liveness, readiness, 404 elsewhere.
import { once } from 'node:events';
import { connect } from 'node:net';
import t from 'tap';
import { startAdminServer } from '../../src/http/admin-server.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { startStack } from '../helpers/stack.js';

/** What the app reports for one complete sign-in with an authenticator app. */
function signIn(m: Metrics, pid: string): void {
  m.securityEvent('password_ok', { pid, ip: '192.0.2.10', next: 'verify' });
  m.securityEvent('mfa_ok', { pid, ip: '192.0.2.10', factor: 'totp' });
  m.securityEvent('session_started', { pid, ip: '192.0.2.10', amr: ['pwd', 'otp'] });
}

t.test('a scripted run: 3 sign-ins, 2 failures, 1 lockout, 5 proxied requests', async (t) => {
  const metrics = new Metrics();
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics, ready: async () => {} });
  t.teardown(admin.close);
  t.match(admin.url, /^http:\/\/127\.0\.0\.1:\d+$/);

  for (const pid of ['p1', 'p2', 'p3']) signIn(metrics, pid);
  metrics.securityEvent('password_failed', { pid: 'p4', ip: '192.0.2.11' });
  metrics.securityEvent('password_failed', { pid: 'p4', ip: '192.0.2.11' });
  metrics.securityEvent('mfa_failed', { pid: 'p1', ip: '192.0.2.10', factor: 'totp', reason: 'wrong code', failures: 100 });
  metrics.securityEvent('factor_locked', { pid: 'p1', ip: '192.0.2.10', factor: 'totp' });
  for (const [status, seconds] of [[200, 0.004], [200, 0.012], [200, 0.03], [304, 0.002], [200, 0.2]] as const) metrics.request('the portal', 'allow', status, seconds);
  metrics.request('sign-in page', 'allow', 200, 0.003);
  metrics.request('the portal', 'sign-in', 303, 0.001);
  metrics.request(undefined, undefined, 200, 0.001);
  metrics.upstreamError('timeout');
  for (let i = 0; i < 10; i++) metrics.storeCall(true, 0.001);
  metrics.storeCall(false, 1);
  metrics.auditFailure('AUDIT_MIRROR_FAILED');

  const res = await fetch(`${admin.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const lines = new Set(text.split('\n'));
  for (const line of [
    'mfa_gateway_password_checks_total{outcome="ok"} 3',
    'mfa_gateway_password_checks_total{outcome="failed"} 2',
    'mfa_gateway_password_checks_total{outcome="throttled"} 0',
    'mfa_gateway_second_factor_checks_total{factor="totp",outcome="ok"} 3',
    'mfa_gateway_second_factor_checks_total{factor="totp",outcome="failed"} 1',
    'mfa_gateway_sign_ins_total 3',
    'mfa_gateway_factor_lockouts_total{factor="totp"} 1',
    'mfa_gateway_security_events_total{event="password_ok"} 3',
    'mfa_gateway_security_events_total{event="password_failed"} 2',
    'mfa_gateway_security_events_total{event="factor_locked"} 1',
    'mfa_gateway_policy_decisions_total{rule="the portal",verdict="allow"} 5',
    'mfa_gateway_policy_decisions_total{rule="the portal",verdict="sign-in"} 1',
    'mfa_gateway_policy_decisions_total{rule="sign-in page",verdict="allow"} 1',
    'mfa_gateway_request_duration_seconds_count{rule="the portal",status_class="2xx"} 4',
    'mfa_gateway_request_duration_seconds_count{rule="the portal",status_class="3xx"} 2',
    'mfa_gateway_request_duration_seconds_count{rule="none",status_class="2xx"} 1',
    'mfa_gateway_request_duration_seconds_bucket{le="0.01",rule="the portal",status_class="2xx"} 1',
    'mfa_gateway_request_duration_seconds_bucket{le="0.05",rule="the portal",status_class="2xx"} 3',
    'mfa_gateway_request_duration_seconds_bucket{le="+Inf",rule="the portal",status_class="2xx"} 4',
    'mfa_gateway_upstream_errors_total{kind="timeout"} 1',
    'mfa_gateway_upstream_errors_total{kind="unavailable"} 0',
    'mfa_gateway_store_call_duration_seconds_count 11',
    'mfa_gateway_store_call_duration_seconds_bucket{le="0.001"} 10',
    'mfa_gateway_store_errors_total 1',
    'mfa_gateway_audit_failures_total{kind="AUDIT_MIRROR_FAILED"} 1',
    'mfa_gateway_ready 1',
    '# TYPE mfa_gateway_request_duration_seconds histogram',
    '# TYPE mfa_gateway_sign_ins_total counter',
  ]) {
    t.ok(lines.has(line), line);
  }
  t.match(text, /^process_resident_memory_bytes \d+/m, 'default process metrics');
  t.notMatch(text, /p1|p4|192\.0\.2/, 'no user or address in any series');
});

t.test('liveness, readiness, and nothing else on the port', async (t) => {
  let failure: Error | null = null;
  const metrics = new Metrics({ defaultMetrics: false });
  const admin = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    ready: async () => {
      if (failure) throw failure;
    },
  });
  t.teardown(admin.close);
  const get = async (path: string, init?: RequestInit) => {
    const r = await fetch(`${admin.url}${path}`, init);
    return { status: r.status, body: await r.text(), type: r.headers.get('content-type'), cache: r.headers.get('cache-control') };
  };

  t.match(await get('/health/live'), { status: 200, body: '{"status":"ok"}', type: /^application\/json/, cache: 'no-store' });
  t.match(await get('/health/ready'), { status: 200, body: '{"status":"ready"}' });
  t.match(await get('/health/ready?verbose=1'), { status: 200 }, 'a query string changes nothing');
  t.match(await get('/metrics'), { status: 200, body: /^mfa_gateway_ready 1$/m });

  failure = new Error('store unavailable: connect ECONNREFUSED 127.0.0.1:6390\n    at stack frames');
  const down = await get('/health/ready');
  t.equal(down.status, 503);
  t.same(JSON.parse(down.body), { status: 'unavailable', reason: 'store unavailable: connect ECONNREFUSED 127.0.0.1:6390' });
  t.match(await get('/metrics'), { status: 200, body: /^mfa_gateway_ready 0$/m }, 'metrics still served while not ready');
  t.match(await get('/health/live'), { status: 200 }, 'live while not ready');

  failure = null;
  t.match(await get('/health/ready'), { status: 200 }, 'ready again once the callback resolves');

  const head = await fetch(`${admin.url}/health/live`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(await head.text(), '');

  for (const path of ['/', '/metrics/', '/health', '/health/live/x', '/_mfa/health/live', '/login', '/favicon.ico', '/METRICS']) {
    t.match(await get(path), { status: 404, body: '{"status":"not found"}' }, `GET ${path}`);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) t.equal((await get('/metrics', { method })).status, 404, `${method} /metrics`);
});

t.test('a readiness check that hangs counts as not ready', async (t) => {
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics: new Metrics({ defaultMetrics: false }), ready: () => new Promise(() => {}), readyTimeoutMs: 50 });
  t.teardown(admin.close);
  const r = await fetch(`${admin.url}/health/ready`);
  t.equal(r.status, 503);
  t.same(await r.json(), { status: 'unavailable', reason: 'readiness check took longer than 50 ms' });
});

t.test("a store that hangs makes the gateway's own readiness probe answer 503 in time, as the admin listener's does", async (t) => {
  class Hangs extends MemoryKvStore {
    hanging = false;
    override ping(): Promise<void> {
      return this.hanging ? new Promise(() => {}) : super.ping();
    }
  }
  let kv: Hangs | undefined;
  const s = await startStack({ kv: (clock) => (kv = new Hangs(clock)) });
  t.teardown(s.close);
  t.equal((await fetch(`${s.url}/_mfa/health/ready`)).status, 200);
  kv!.hanging = true;
  const started = Date.now();
  const r = await fetch(`${s.url}/_mfa/health/ready`, { signal: AbortSignal.timeout(5000) });
  t.equal(r.status, 503);
  t.same(await r.json(), { status: 'unavailable' }, 'no reason on the public listener');
  t.ok(Date.now() - started < 4000, 'within the probe time limit');
});

t.test('close() stops the listener; a port in use is an error at start', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  const a = await startAdminServer({ host: '127.0.0.1', port: 0, metrics, ready: async () => {} });
  const port = Number(new URL(a.url).port);
  await t.rejects(startAdminServer({ host: '127.0.0.1', port, metrics, ready: async () => {} }), { code: 'EADDRINUSE' });
  await fetch(`${a.url}/health/live`);
  await a.close();
  await t.rejects(fetch(`${a.url}/health/live`));
});

t.test('closing the admin listener does not wait for a client that never finishes its request', async (t) => {
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics: new Metrics(), ready: async () => {}, readyTimeoutMs: 200 });
  const { port } = new URL(admin.url);
  const socket = connect(Number(port), '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  t.teardown(() => socket.destroy());
  await new Promise((r) => setTimeout(r, 100));
  const closed = await Promise.race([admin.close().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  t.ok(closed, 'closed within 5 s');
});

t.test('a request whose headers never end is cut off at headersTimeout (408), not at the 30 s sweep of Node', async (t) => {
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics: new Metrics({ defaultMetrics: false }), ready: async () => {} });
  t.teardown(admin.close);
  const socket = connect(Number(new URL(admin.url).port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  const started = Date.now();
  socket.write('GET /metrics HTTP/1.1\r\n');
  await once(socket, 'close');
  t.match(answer, /^HTTP\/1\.1 408/);
  // headersTimeout is 5 s, checked every second (Node's default sweep, every 30 s, took up to 30): at most 6 s, and
  // room for a loaded machine.
  t.ok(Date.now() - started < 15_000, `cut off after ${Date.now() - started} ms`);
});
