// Each Metrics method moves exactly the series it should; labels stay few, bounded and free of users and addresses.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { register as globalRegister } from 'prom-client';
import { measuredStore } from '../../../src/metrics/measured-store.js';
import { Metrics } from '../../../src/metrics/metrics.js';

/** Every non-zero sample of the registry as "name{a="x",b="y"} value" lines, default metrics and the build info left out. */
async function samples(m: Metrics): Promise<string[]> {
  const out: string[] = [];
  for (const metric of await m.registry.getMetricsAsJSON()) {
    for (const v of (metric as unknown as { values: { metricName?: string; labels: Record<string, string | number>; value: number }[] }).values) {
      // The build info is 1 from the start, whatever happens.
      if (v.value === 0 || metric.name === 'mfa_gateway_build_info') continue;
      const labels = Object.entries(v.labels)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, l]) => `${k}="${l}"`)
        .join(',');
      out.push(`${v.metricName ?? metric.name}${labels ? `{${labels}}` : ''} ${v.value}`);
    }
  }
  return out.sort();
}

const fresh = () => new Metrics({ defaultMetrics: false });

t.test('password events count by outcome, and every event by name', async (t) => {
  const m = fresh();
  m.securityEvent('password_ok', { pid: 'p1', ip: '192.0.2.1' });
  m.securityEvent('password_failed', { pid: 'p1', ip: '192.0.2.1' });
  m.securityEvent('password_failed', { pid: 'p2', ip: '192.0.2.2' });
  m.securityEvent('password_throttled', { ip: '192.0.2.2', reason: 'account failures' });
  t.same(await samples(m), [
    'mfa_gateway_password_checks_total{outcome="failed"} 2',
    'mfa_gateway_password_checks_total{outcome="ok"} 1',
    'mfa_gateway_password_checks_total{outcome="throttled"} 1',
    'mfa_gateway_security_events_total{event="password_failed"} 2',
    'mfa_gateway_security_events_total{event="password_ok"} 1',
    'mfa_gateway_security_events_total{event="password_throttled"} 1',
  ]);
});

t.test('second-factor events count by factor and outcome', async (t) => {
  const m = fresh();
  m.securityEvent('mfa_ok', { factor: 'totp' });
  m.securityEvent('step_up_ok', { factor: 'webauthn' });
  m.securityEvent('enrolment_proof_ok', { proof: 'invite' });
  m.securityEvent('mfa_failed', { factor: 'recovery', reason: 'wrong code', failures: 3 });
  m.securityEvent('mfa_failed', { factor: 'enrolment-code', reason: 'wrong, expired or used enrolment code' });
  m.securityEvent('mfa_failed', { factor: 'sms', reason: 'signature' });
  m.securityEvent('mfa_replayed', { factor: 'totp' });
  m.securityEvent('mfa_attempts_exhausted', {});
  const s = (await samples(m)).filter((l) => !l.startsWith('mfa_gateway_security_events_total'));
  t.same(s, [
    'mfa_gateway_second_factor_checks_total{factor="enrolment-code",outcome="failed"} 1',
    'mfa_gateway_second_factor_checks_total{factor="enrolment-code",outcome="ok"} 1',
    'mfa_gateway_second_factor_checks_total{factor="recovery",outcome="failed"} 1',
    'mfa_gateway_second_factor_checks_total{factor="totp",outcome="ok"} 1',
    'mfa_gateway_second_factor_checks_total{factor="totp",outcome="replayed"} 1',
    'mfa_gateway_second_factor_checks_total{factor="unknown",outcome="failed"} 1',
    'mfa_gateway_second_factor_checks_total{factor="webauthn",outcome="ok"} 1',
    'mfa_gateway_second_factor_exhausted_total 1',
  ]);
});

t.test('sign-ins, enrolments, lockouts, blocks and surges', async (t) => {
  const m = fresh();
  m.securityEvent('session_started', { pid: 'p1', ip: '192.0.2.1', amr: ['pwd', 'otp'] });
  m.securityEvent('enrolled', { factor: 'webauthn' });
  m.securityEvent('factor_locked', { factor: 'totp' });
  m.securityEvent('factor_locked', { factor: 'enrolment-code' });
  m.securityEvent('address_blocked', { ip: '203.0.113.0/24', accounts: 20, minutes: 60 });
  m.securityEvent('login_failure_surge', { attempts: 200, failures: 190, percent: 20 });
  const s = (await samples(m)).filter((l) => !l.startsWith('mfa_gateway_security_events_total'));
  t.same(s, [
    'mfa_gateway_address_blocks_total 1',
    'mfa_gateway_enrolments_total{factor="webauthn"} 1',
    'mfa_gateway_factor_lockouts_total{factor="enrolment-code"} 1',
    'mfa_gateway_factor_lockouts_total{factor="totp"} 1',
    'mfa_gateway_login_failure_surges_total 1',
    'mfa_gateway_sign_ins_total 1',
  ]);
});

t.test('policy denials and legacy-auth blocks count by rule and reason, never by user, address or path', async (t) => {
  const m = fresh();
  m.securityEvent('access_denied', { pid: 'pid-secret', ip: '198.51.100.7', rule: 'admin', reason: 'rule', path: '/admin/users/42' });
  m.securityEvent('access_denied', { ip: '198.51.100.7', rule: 'admin', reason: 'unmanaged-device', path: '/admin/' });
  m.securityEvent('legacy_auth_blocked', { ip: '198.51.100.8', rule: 'legacy endpoints', reason: 'legacy-endpoint', path: '/api/login' });
  m.securityEvent('legacy_auth_blocked', { rule: 'the portal', reason: 'something new' });
  const s = (await samples(m)).filter((l) => !l.startsWith('mfa_gateway_security_events_total'));
  t.same(s, [
    'mfa_gateway_access_denied_total{reason="rule",rule="admin"} 1',
    'mfa_gateway_access_denied_total{reason="unmanaged-device",rule="admin"} 1',
    'mfa_gateway_legacy_auth_blocked_total{reason="legacy-endpoint",rule="legacy endpoints"} 1',
    'mfa_gateway_legacy_auth_blocked_total{reason="other",rule="the portal"} 1',
  ]);
  const text = await m.text();
  for (const leak of ['pid-secret', '198.51.100', '/admin/users', '/api/login']) t.notMatch(text, leak, `${leak} is not in the metrics`);
});

t.test('events without a metric of their own only count by name', async (t) => {
  const m = fresh();
  m.securityEvent('factor_removed', { pid: 'p', factor: 'totp' });
  m.securityEvent('session_ended', { pid: 'p', reason: 'logout' });
  t.same(await samples(m), ['mfa_gateway_security_events_total{event="factor_removed"} 1', 'mfa_gateway_security_events_total{event="session_ended"} 1']);
});

t.test('request: latency by rule and status class, decisions by rule and verdict', async (t) => {
  const m = fresh();
  m.request('the portal', 'allow', 200, 0.02);
  m.request('the portal', 'sign-in', 303, 0.003);
  m.request('admin', 'deny', 403, 0.001);
  m.request(undefined, undefined, 404, 0.001);
  m.request('odd', 'maybe', 999, 0.001);
  const s = await samples(m);
  t.same(
    s.filter((l) => l.startsWith('mfa_gateway_policy_decisions_total')),
    [
      'mfa_gateway_policy_decisions_total{rule="admin",verdict="deny"} 1',
      'mfa_gateway_policy_decisions_total{rule="odd",verdict="other"} 1',
      'mfa_gateway_policy_decisions_total{rule="the portal",verdict="allow"} 1',
      'mfa_gateway_policy_decisions_total{rule="the portal",verdict="sign-in"} 1',
    ],
  );
  t.same(
    s.filter((l) => l.startsWith('mfa_gateway_request_duration_seconds_count')),
    [
      'mfa_gateway_request_duration_seconds_count{rule="admin",status_class="4xx"} 1',
      'mfa_gateway_request_duration_seconds_count{rule="none",status_class="4xx"} 1',
      'mfa_gateway_request_duration_seconds_count{rule="odd",status_class="other"} 1',
      'mfa_gateway_request_duration_seconds_count{rule="the portal",status_class="2xx"} 1',
      'mfa_gateway_request_duration_seconds_count{rule="the portal",status_class="3xx"} 1',
    ],
  );
  t.ok(s.includes('mfa_gateway_request_duration_seconds_bucket{le="0.025",rule="the portal",status_class="2xx"} 1'));
  t.ok(s.includes('mfa_gateway_request_duration_seconds_sum{rule="the portal",status_class="2xx"} 0.02'));
});

t.test('upstream errors by kind, audit failures by kind', async (t) => {
  const m = fresh();
  m.upstreamError('timeout');
  m.upstreamError('timeout');
  m.upstreamError('busy');
  m.auditFailure('AUDIT_WRITE_FAILED');
  t.same(await samples(m), [
    'mfa_gateway_audit_failures_total{kind="AUDIT_WRITE_FAILED"} 1',
    'mfa_gateway_upstream_errors_total{kind="busy"} 1',
    'mfa_gateway_upstream_errors_total{kind="timeout"} 2',
  ]);
  t.match(await m.text(), 'mfa_gateway_upstream_errors_total{kind="unavailable"} 0', 'every kind has a series from the start');
});

t.test('notifications never delivered, by reason', async (t) => {
  const m = fresh();
  m.notificationFailure('failed');
  m.notificationFailure('failed');
  m.notificationFailure('shutdown');
  m.notificationFailure('refused');
  t.same(await samples(m), [
    'mfa_gateway_notification_failures_total{reason="failed"} 2',
    'mfa_gateway_notification_failures_total{reason="refused"} 1',
    'mfa_gateway_notification_failures_total{reason="shutdown"} 1',
  ]);
  t.match(await m.text(), 'mfa_gateway_notification_failures_total{reason="dropped"} 0', 'every reason has a series from the start');
});

t.test('store calls: latency of every call, errors counted; measuredStore passes results through', async (t) => {
  const m = fresh();
  m.storeCall(true, 0.002);
  m.storeCall(false, 1.0);
  let closed = false;
  const store = {
    prefix: 'mfa:',
    async get(key: string) {
      return `${this.prefix}${key}`;
    },
    async fail() {
      throw new Error('down');
    },
    size() {
      return 1;
    },
    async close() {
      closed = true;
    },
  };
  const measured = measuredStore(store, m);
  t.equal(await measured.get('k'), 'mfa:k', 'methods run on the store itself');
  await t.rejects(measured.fail(), { message: 'down' });
  t.equal(measured.size(), 1, 'synchronous methods pass through');
  t.equal(measured.prefix, 'mfa:');
  await measured.close();
  t.ok(closed);
  const s = await samples(m);
  t.ok(s.includes('mfa_gateway_store_call_duration_seconds_count 4'), 'storeCall ×2, measured get and fail; close not counted');
  t.ok(s.includes('mfa_gateway_store_errors_total 2'));
  t.ok(s.includes('mfa_gateway_store_call_duration_seconds_bucket{le="0.5"} 3'), 'the 1-second call is above 0.5 s, the others below');
});

t.test('measuredStore times the methods of a class instance too, and is still one', async (t) => {
  const m = fresh();
  class Store {
    readonly prefix = 'mfa:';
    async get(key: string) {
      return `${this.prefix}${key}`;
    }
  }
  class Bigger extends Store {
    async set() {
      return 'set';
    }
  }
  const measured = measuredStore(new Bigger(), m);
  t.ok(measured instanceof Store);
  t.equal(await measured.get('k'), 'mfa:k', 'an inherited method, on the store itself');
  t.equal(await measured.set(), 'set');
  t.ok((await samples(m)).includes('mfa_gateway_store_call_duration_seconds_count 2'), 'both calls timed');
});

t.test('readiness gauge', async (t) => {
  const m = fresh();
  m.readiness(true);
  t.match(await m.text(), /^mfa_gateway_ready 1$/m);
  m.readiness(false);
  t.match(await m.text(), /^mfa_gateway_ready 0$/m);
});

t.test('free-text labels are bounded: past the limit, new values count as "other"', async (t) => {
  const m = new Metrics({ defaultMetrics: false, maxLabelValues: 3 });
  for (let i = 0; i < 10; i++) m.request(`rule ${i}`, 'allow', 200, 0.01);
  for (let i = 0; i < 10; i++) m.securityEvent(`made_up_${i}`, {});
  for (let i = 0; i < 10; i++) m.auditFailure(`KIND_${i}`);
  const s = await samples(m);
  t.same(
    s.filter((l) => l.startsWith('mfa_gateway_policy_decisions_total')),
    [
      'mfa_gateway_policy_decisions_total{rule="other",verdict="allow"} 7',
      'mfa_gateway_policy_decisions_total{rule="rule 0",verdict="allow"} 1',
      'mfa_gateway_policy_decisions_total{rule="rule 1",verdict="allow"} 1',
      'mfa_gateway_policy_decisions_total{rule="rule 2",verdict="allow"} 1',
    ],
  );
  t.equal(s.filter((l) => l.startsWith('mfa_gateway_security_events_total')).length, 4);
  t.equal(s.filter((l) => l.startsWith('mfa_gateway_audit_failures_total')).length, 4);
});

t.test('label names are few and never name a user, an address or a path', async (t) => {
  const m = new Metrics();
  const allowed = new Set(['event', 'outcome', 'factor', 'rule', 'reason', 'status_class', 'verdict', 'kind', 'version']);
  const ours = (await m.registry.getMetricsAsJSON()).filter((x) => x.name.startsWith('mfa_gateway_'));
  t.ok(ours.length >= 18);
  for (const metric of ours) {
    const names = (m.registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] }).labelNames;
    for (const l of names) t.ok(allowed.has(l), `${metric.name}: label ${l}`);
    t.ok(names.length <= 2, `${metric.name} has at most two labels`);
  }
});

t.test('a registry of its own: the global one stays empty, two instances do not share', async (t) => {
  const a = new Metrics();
  const b = new Metrics();
  a.securityEvent('session_started', {});
  t.equal(globalRegister.getSingleMetric('mfa_gateway_sign_ins_total'), undefined);
  t.match(await a.text(), /^mfa_gateway_sign_ins_total 1$/m);
  t.match(await b.text(), /^mfa_gateway_sign_ins_total 0$/m);
  t.match(await a.text(), /^process_cpu_user_seconds_total /m, 'default process metrics');
  t.match(await a.text(), /^nodejs_heap_size_used_bytes /m);
  t.match(a.contentType, /^text\/plain; version=0\.0\.4/);
});

t.test('a fresh registry has a zero series of each known label value: an event that comes once still fires its alert', async (t) => {
  // increase() sees a series rise only from a value scraped before: a series born at 1 never fires `increase(…) > 0`.
  const text = await fresh().text();
  const zero = (series: string) => text.split('\n').includes(`${series} 0`);
  for (const series of [
    'mfa_gateway_security_events_total{event="webauthn_counter_regression"}',
    'mfa_gateway_audit_failures_total{kind="AUDIT_TAIL_DAMAGED"}',
    'mfa_gateway_audit_failures_total{kind="AUDIT_LOCK_LOST"}',
    'mfa_gateway_audit_failures_total{kind="AUDIT_WRITE_FAILED"}',
    'mfa_gateway_factor_lockouts_total{factor="totp"}',
    'mfa_gateway_second_factor_checks_total{factor="totp",outcome="replayed"}',
    'mfa_gateway_enrolments_total{factor="webauthn"}',
  ]) {
    t.ok(zero(series), series);
  }
  // Every label value the shipped alert rules select on.
  const rules = readFileSync(new URL('../../../docs/alerts/mfa-gateway.rules.yml', import.meta.url), 'utf8');
  const selected = [...rules.matchAll(/(mfa_gateway_\w+_total)\{(\w+)="(\w+)"\}/g)];
  t.ok(selected.length >= 4, 'the rules select on label values');
  for (const [, name, label, value] of selected) t.match(text, `${name}{${label}="${value}"`, `${name}{${label}="${value}"} exists before its first event`);
});

t.test('mfa_gateway_build_info says which version runs: 1, with the version of package.json', async (t) => {
  const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  t.match(await fresh().registry.metrics(), `\nmfa_gateway_build_info{version="${version}"} 1\n`);
});
