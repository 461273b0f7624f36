// The audit trail's failures: each has a stable code so the app can count and log them by kind.

export const AUDIT_ERRORS = {
  /** The signing key in the configuration is not an Ed25519 PKCS#8 PEM or a 32-byte seed. */
  AUDIT_KEY_INVALID: 'the audit signing key is not an Ed25519 private key or a 32-byte seed',
  /** An event was dropped: it had a forbidden field (username, secret…) or was not flat JSON. */
  AUDIT_EVENT_REFUSED: 'audit event refused',
  /** The audit file could not be written: the record was not added to the chain. */
  AUDIT_WRITE_FAILED: 'audit file write failed',
  /** A mirror (the Redis stream) missed a line; the file still has it. */
  AUDIT_MIRROR_FAILED: 'audit mirror write failed',
  /** On start, the end of the audit file was damaged; a `resumed` record notes it in the chain. */
  AUDIT_TAIL_DAMAGED: 'audit file tail damaged; chain resumed from the last intact record',
  /** Another writer took over this process's audit directory lock (or it cannot be read): this process stopped writing the trail. */
  AUDIT_LOCK_LOST: 'audit directory lock taken over by another writer, or no longer readable; audit trail closed',
  /** append() after close(): the event was dropped. */
  AUDIT_CLOSED: 'audit log closed',
} as const;

export type AuditErrorCode = keyof typeof AUDIT_ERRORS;

export class AuditError extends Error {
  override readonly name = 'AuditError';
  /** Which sink failed (`file`, or a mirror's name), for per-sink metrics. */
  readonly sink: string | undefined;
  /** The chain position concerned, when there is one. */
  readonly seq: number | undefined;

  constructor(
    readonly code: AuditErrorCode,
    detail?: string,
    options?: { cause?: unknown; sink?: string; seq?: number },
  ) {
    super(detail ? `${AUDIT_ERRORS[code]}: ${detail}` : AUDIT_ERRORS[code], options);
    this.sink = options?.sink;
    this.seq = options?.seq;
  }
}
