// Prometheus metrics of one gateway process, in a registry of its own; the app calls the small methods below.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { AUDIT_ERRORS } from '../audit/audit-error.js';
import { SECURITY_EVENTS } from '../services/security-events.js';
import { VERSION } from './build-info.js';
import { HotCounter, HotHistogram } from './hot-metrics.js';

/*
 * | Metric                                    | Type      | Labels                                | Meaning                                                          |
 * |-------------------------------------------|-----------|---------------------------------------|------------------------------------------------------------------|
 * | mfa_gateway_security_events_total         | counter   | event                                 | Every security event, by name (password_ok, factor_locked, …)    |
 * | mfa_gateway_password_checks_total         | counter   | outcome: ok, failed, throttled        | Password step: the portal said yes or no, or a limit refused it  |
 * | mfa_gateway_second_factor_checks_total    | counter   | factor, outcome: ok, failed, replayed | Second-factor checks: sign-in, step-up, enrolment codes          |
 * | mfa_gateway_second_factor_exhausted_total | counter   | –                                     | Logins or step-ups ended after too many wrong codes              |
 * | mfa_gateway_sign_ins_total                | counter   | –                                     | Sessions started: sign-ins completed with both factors           |
 * | mfa_gateway_enrolments_total              | counter   | factor                                | First factors bound at enrolment                                 |
 * | mfa_gateway_factor_lockouts_total         | counter   | factor                                | A kind of factor disabled for a user after too many failures     |
 * | mfa_gateway_address_blocks_total          | counter   | –                                     | Client addresses blocked for credential stuffing                 |
 * | mfa_gateway_login_failure_surges_total    | counter   | –                                     | Gateway-wide password failure surges (global rate tightened)     |
 * | mfa_gateway_legacy_auth_blocked_total     | counter   | rule, reason                          | Legacy authentication refused (legacy-auth, legacy-endpoint)     |
 * | mfa_gateway_access_denied_total           | counter   | rule, reason                          | Policy denials (rule, unknown-address, unmanaged-device, method-override) |
 * | mfa_gateway_request_duration_seconds      | histogram | rule, status_class                    | Time to answer a request, by deciding rule ("none": no rule)     |
 * | mfa_gateway_policy_decisions_total        | counter   | rule, verdict                         | Access decisions (allow, deny, sign-in, managed-device, step-up) |
 * | mfa_gateway_upstream_errors_total         | counter   | kind: unavailable, timeout, busy      | Portal unreachable (502), too slow (504), too many waiting (503) |
 * | mfa_gateway_store_call_duration_seconds   | histogram | –                                     | Time of each store (Redis) call, failed ones included            |
 * | mfa_gateway_store_errors_total            | counter   | –                                     | Failed store calls: Redis errors and timeouts, full memory store |
 * | mfa_gateway_audit_failures_total          | counter   | kind                                  | Audit trail failures by AuditError code (AUDIT_WRITE_FAILED, …)  |
 * | mfa_gateway_notification_failures_total   | counter   | reason                                | Notify events lost: refused, failed (retries), dropped, shutdown |
 * | mfa_gateway_ready                         | gauge     | –                                     | 1 when the latest readiness check passed, 0 when it failed       |
 * | mfa_gateway_build_info                    | gauge     | version                               | Always 1; its label is the version that runs (package.json's)    |
 * | process_*, nodejs_*                       | various   | prom-client defaults                  | CPU, memory, heap, event-loop lag, handles, GC                   |
 *
 * Labels never carry a user, an address or a path. Free-text values (rule names, event names, audit kinds) are
 * bounded: past `maxLabelValues` distinct values per label (the known event names and audit kinds aside), further
 * ones are counted as "other". Every known label value has its series from the start, at 0.
 */

export type UpstreamErrorKind = 'unavailable' | 'timeout' | 'busy';
/**
 * Why a notify event was never delivered: refused (a 3xx or 4xx that a retry would get again), failed (its retries too),
 * dropped (too many deliveries waiting), shutdown (the process ended first).
 */
export type NotificationFailure = 'refused' | 'failed' | 'dropped' | 'shutdown';

export interface MetricsOptions {
  /** Collect prom-client's process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
  /** Distinct values kept per free-text label before "other" (default 100). */
  maxLabelValues?: number;
}

const FACTORS = new Set(['totp', 'webauthn', 'recovery', 'enrolment-code']);
const VERDICTS = new Set(['allow', 'deny', 'sign-in', 'managed-device', 'step-up']);
const DENY_REASONS = new Set(['rule', 'unknown-address', 'unmanaged-device', 'method-override', 'legacy-auth', 'legacy-endpoint']);
const UPSTREAM_KINDS = new Set<string>(['unavailable', 'timeout', 'busy']);
const NOTIFICATION_FAILURES = new Set<string>(['refused', 'failed', 'dropped', 'shutdown']);
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Status classes by the status's first digit (1xx to 5xx); anything else is 'other'. */
const STATUS_CLASSES: readonly (string | undefined)[] = [undefined, '1xx', '2xx', '3xx', '4xx', '5xx'];
const oneOf = (set: ReadonlySet<string>, v: unknown, fallback = 'other'): string => (typeof v === 'string' && set.has(v) ? v : fallback);

/** The known values and the first `max` other distinct values of a free-text label pass; later ones become "other". */
class BoundedValues {
  private readonly seen = new Set<string>();
  constructor(
    private readonly max: number,
    readonly known: ReadonlySet<string> = new Set(),
  ) {}

  of(v: unknown): string {
    const s = typeof v === 'string' && v !== '' ? v.slice(0, 120) : 'none';
    if (this.known.has(s) || this.seen.has(s)) return s;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(s);
    return s;
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly events: BoundedValues;
  private readonly rules: BoundedValues;
  private readonly auditKinds: BoundedValues;

  private readonly securityEvents = this.counter('mfa_gateway_security_events_total', 'Security events, by name.', ['event']);
  private readonly passwordChecks = this.counter('mfa_gateway_password_checks_total', 'Password step outcomes: ok, failed (the portal said no), throttled (refused by a limit).', ['outcome']);
  private readonly secondFactorChecks = this.counter('mfa_gateway_second_factor_checks_total', 'Second-factor checks at sign-in, step-up and enrolment proof, by factor and outcome.', ['factor', 'outcome']);
  private readonly exhausted = this.counter('mfa_gateway_second_factor_exhausted_total', 'Logins or step-ups ended after too many wrong second-factor attempts.');
  private readonly signIns = this.counter('mfa_gateway_sign_ins_total', 'Sessions started: sign-ins completed with both factors.');
  private readonly enrolments = this.counter('mfa_gateway_enrolments_total', 'First factors bound at enrolment, by factor.', ['factor']);
  private readonly lockouts = this.counter('mfa_gateway_factor_lockouts_total', 'Kinds of factor disabled for a user after too many failures, by factor.', ['factor']);
  private readonly addressBlocks = this.counter('mfa_gateway_address_blocks_total', 'Client addresses blocked for credential stuffing.');
  private readonly surges = this.counter('mfa_gateway_login_failure_surges_total', 'Gateway-wide password failure surges (global login rate tightened).');
  private readonly legacyBlocked = this.counter('mfa_gateway_legacy_auth_blocked_total', 'Legacy authentication refused, by rule and reason.', ['rule', 'reason']);
  private readonly accessDenied = this.counter('mfa_gateway_access_denied_total', 'Requests denied by the access policy, by rule and reason.', ['rule', 'reason']);
  // Updated on every request: the cheaper kind (hot-metrics.ts).
  private readonly requestDuration = new HotHistogram(
    'mfa_gateway_request_duration_seconds',
    'Time to answer a request, by the rule that decided it ("none" when no rule did) and status class.',
    ['rule', 'status_class'],
    REQUEST_BUCKETS,
    this.registry,
  );
  private readonly decisions = new HotCounter('mfa_gateway_policy_decisions_total', 'Access policy decisions, by rule and verdict.', ['rule', 'verdict'], this.registry);
  private readonly upstreamErrors = this.counter('mfa_gateway_upstream_errors_total', 'Portal errors: unavailable (502), timeout (504), busy (503, too many requests waiting).', ['kind']);
  private readonly storeDuration = new HotHistogram('mfa_gateway_store_call_duration_seconds', 'Time of each Redis call, failed ones included.', [], STORE_BUCKETS, this.registry);
  private readonly storeErrors = this.counter('mfa_gateway_store_errors_total', 'Store calls that failed: Redis calls that failed or timed out, writes refused by a full memory store.');
  private readonly auditFailures = this.counter('mfa_gateway_audit_failures_total', 'Audit trail failures, by AuditError code.', ['kind']);
  private readonly notificationFailures = this.counter(
    'mfa_gateway_notification_failures_total',
    'Notify webhook events never delivered: refused (a 3xx, or a 4xx but 408 and 429: not retried), failed (after their retries), dropped (too many waiting), shutdown (lost at a stop).',
    ['reason'],
  );
  private readonly readyGauge = new Gauge({ name: 'mfa_gateway_ready', help: '1 when the last readiness check passed, 0 when it failed.', registers: [this.registry] });

  constructor(opts: MetricsOptions = {}) {
    const max = opts.maxLabelValues ?? 100;
    this.events = new BoundedValues(max, new Set(SECURITY_EVENTS));
    this.rules = new BoundedValues(max);
    this.auditKinds = new BoundedValues(max, new Set(Object.keys(AUDIT_ERRORS)));
    // A zero series of every known label value: `increase()` sees a series rise only from a value scraped before, so
    // an event that comes once (a damaged audit tail, a cloned passkey) would never fire its alert if its series were
    // born at 1; and the ratios alerts divide by exist before the first failure.
    for (const outcome of ['ok', 'failed', 'throttled']) this.passwordChecks.inc({ outcome }, 0);
    for (const factor of FACTORS) {
      for (const outcome of ['ok', 'failed']) this.secondFactorChecks.inc({ factor, outcome }, 0);
      this.lockouts.inc({ factor }, 0);
    }
    this.secondFactorChecks.inc({ factor: 'totp', outcome: 'replayed' }, 0);
    for (const factor of ['totp', 'webauthn']) this.enrolments.inc({ factor }, 0);
    for (const event of this.events.known) this.securityEvents.inc({ event }, 0);
    for (const kind of this.auditKinds.known) this.auditFailures.inc({ kind }, 0);
    for (const kind of UPSTREAM_KINDS) this.upstreamErrors.inc({ kind }, 0);
    for (const reason of NOTIFICATION_FAILURES) this.notificationFailures.inc({ reason }, 0);
    this.storeErrors.inc(0);
    new Gauge({ name: 'mfa_gateway_build_info', help: 'Always 1: the version of mfa-gateway that runs, in its label.', labelNames: ['version'], registers: [this.registry] }).set({ version: VERSION }, 1);
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** One security event (name as in services/security-events.ts); only its factor, reason and rule are read. */
  securityEvent(name: string, fields: Readonly<Record<string, unknown>> = {}): void {
    this.securityEvents.inc({ event: this.events.of(name) });
    const factor = oneOf(FACTORS, fields.factor, 'unknown');
    switch (name) {
      case 'password_ok':
        return this.passwordChecks.inc({ outcome: 'ok' });
      case 'password_failed':
        return this.passwordChecks.inc({ outcome: 'failed' });
      case 'password_throttled':
        return this.passwordChecks.inc({ outcome: 'throttled' });
      case 'mfa_ok':
      case 'step_up_ok':
        return this.secondFactorChecks.inc({ factor, outcome: 'ok' });
      case 'enrolment_proof_ok':
        return this.secondFactorChecks.inc({ factor: 'enrolment-code', outcome: 'ok' });
      case 'mfa_failed':
        return this.secondFactorChecks.inc({ factor, outcome: 'failed' });
      case 'mfa_replayed':
        return this.secondFactorChecks.inc({ factor: oneOf(FACTORS, fields.factor, 'totp'), outcome: 'replayed' });
      case 'mfa_attempts_exhausted':
        return this.exhausted.inc();
      case 'session_started':
        return this.signIns.inc();
      case 'enrolled':
        return this.enrolments.inc({ factor });
      case 'factor_locked':
        return this.lockouts.inc({ factor });
      case 'address_blocked':
        return this.addressBlocks.inc();
      case 'login_failure_surge':
        return this.surges.inc();
      case 'legacy_auth_blocked':
        return this.legacyBlocked.inc({ rule: this.rules.of(fields.rule), reason: oneOf(DENY_REASONS, fields.reason) });
      case 'access_denied':
        return this.accessDenied.inc({ rule: this.rules.of(fields.rule), reason: oneOf(DENY_REASONS, fields.reason) });
    }
  }

  /** One answered request: the deciding rule and verdict (undefined when no rule decided), its status and duration. */
  request(rule: string | undefined, verdict: string | undefined, status: number, seconds: number): void {
    const r = rule === undefined ? 'none' : this.rules.of(rule);
    this.requestDuration.observe(seconds, r, STATUS_CLASSES[Math.floor(status / 100)] ?? 'other');
    if (rule !== undefined && verdict !== undefined) this.decisions.inc(r, oneOf(VERDICTS, verdict));
  }

  /** The portal could not be reached (502), was too slow (504), or too many requests were waiting for it (503). */
  upstreamError(kind: UpstreamErrorKind): void {
    this.upstreamErrors.inc({ kind: oneOf(UPSTREAM_KINDS, kind) });
  }

  /** One store call and how long it took; failures (errors and timeouts) are counted too. */
  storeCall(ok: boolean, seconds: number): void {
    this.storeDuration.observe(seconds);
    if (!ok) this.storeErrors.inc();
  }

  /** A write the embedded store refused because it is full (store.memory.maxEntries). */
  storeRefused(): void {
    this.storeErrors.inc();
  }

  /** An audit trail failure, by its AuditError code (e.g. AUDIT_WRITE_FAILED, AUDIT_MIRROR_FAILED). */
  auditFailure(kind: string): void {
    this.auditFailures.inc({ kind: this.auditKinds.of(kind) });
  }

  /** A notify event that will never reach the receiver, and why. */
  notificationFailure(reason: NotificationFailure): void {
    this.notificationFailures.inc({ reason: oneOf(NOTIFICATION_FAILURES, reason) });
  }

  /** The outcome of the latest readiness check (the admin server sets it). */
  readiness(ok: boolean): void {
    this.readyGauge.set(ok ? 1 : 0);
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counter(name: string, help: string, labelNames: string[] = []): Counter<string> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}
