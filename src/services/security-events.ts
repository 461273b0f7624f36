// One structured log line per security event; users appear only by pseudonymous id.
import type { Logger } from 'pino';
import type { FactorKind } from '../domain/policy.js';

export type SecurityEventName =
  | 'password_ok'
  | 'password_failed'
  | 'enrolled'
  | 'mfa_ok'
  | 'mfa_failed'
  | 'mfa_replayed'
  | 'mfa_attempts_exhausted'
  | 'recovery_code_used'
  | 'session_started'
  | 'session_ended'
  | 'step_up_ok'
  | 'enrolment_code_sent'
  | 'enrolment_proof_ok'
  | 'factor_added'
  | 'factor_removed'
  | 'factor_renamed'
  | 'recovery_codes_regenerated'
  | 'other_sessions_signed_out'
  | 'webauthn_counter_regression'
  | 'access_denied'
  | 'legacy_auth_blocked'
  | 'password_throttled'
  | 'address_blocked'
  | 'login_failure_surge'
  | 'factor_locked'
  | 'lockout_cleared'
  | 'block_cleared';

export interface SecurityEventFields {
  pid?: string;
  ip?: string;
  factor?: FactorKind | 'enrolment-code';
  reason?: string;
  [extra: string]: unknown;
}

export type SecurityLog = (event: SecurityEventName, fields: SecurityEventFields) => void;

export function securityLog(log: Logger): SecurityLog {
  return (event, fields) => log.info({ security: event, ...fields }, `security event: ${event}`);
}
