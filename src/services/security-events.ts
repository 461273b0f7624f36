// Every security event goes to the log, the audit trail and the metrics; users appear only by pseudonymous id.
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditEvent, AuditValue } from '../audit/record.js';
import type { Metrics } from '../metrics/metrics.js';
import type { FactorKind } from '../domain/policy.js';

/** Every security event, by name (the metrics start a zero series of each, so an alert sees the first one). */
export const SECURITY_EVENTS = [
  'password_ok',
  'password_failed',
  'enrolled',
  'mfa_ok',
  'mfa_failed',
  'mfa_replayed',
  'mfa_attempts_exhausted',
  'mfa_abandoned',
  'recovery_code_used',
  'session_started',
  'session_ended',
  'step_up_ok',
  'enrolment_code_sent',
  'enrolment_code_not_sent',
  'enrolment_code_issued',
  'enrolment_proof_ok',
  'factor_added',
  'factor_removed',
  'factor_renamed',
  'recovery_codes_regenerated',
  'other_sessions_signed_out',
  'webauthn_counter_regression',
  'access_denied',
  'legacy_auth_blocked',
  'password_throttled',
  'address_blocked',
  'login_failure_surge',
  'factor_locked',
  'lockout_cleared',
  'block_cleared',
  'factors_reset',
  'user_erased',
] as const;
export type SecurityEventName = (typeof SECURITY_EVENTS)[number];

export interface SecurityEventFields {
  pid?: string;
  ip?: string;
  factor?: FactorKind | 'enrolment-code';
  reason?: string;
  [extra: string]: unknown;
}

export type SecurityLog = (event: SecurityEventName, fields: SecurityEventFields) => void;

export function securityLog(log: Logger, audit: AuditLog | null, metrics: Metrics | null): SecurityLog {
  return (event, fields) => {
    log.info({ security: event, ...fields }, `security event: ${event}`);
    audit?.append({ kind: 'security', event, ...flat(fields) });
    metrics?.securityEvent(event, fields);
  };
}

/** Audit events are flat: a list (amr) becomes "a,b"; anything else that is not a plain value becomes its JSON. */
export function flat(fields: Readonly<Record<string, unknown>>): AuditEvent {
  const out: Record<string, AuditValue | undefined> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) out[k] = v;
    else out[k] = Array.isArray(v) ? v.join(',') : JSON.stringify(v);
  }
  return out;
}
