// The audit log: appends hash-chained records to the journal and its mirrors, and seals them with signed checkpoints.
import type { KeyObject } from 'node:crypto';
import type { Clock } from '../clock.js';
import { AuditError } from './audit-error.js';
import { signCheckpoint } from './checkpoint.js';
import { refuseEvent } from './event-guard.js';
import { GENESIS, decodeRecord, encodeRecord, sha256Hex, type AuditEvent, type AuditRecord, type RecordBody } from './record.js';

/** Where the chain lives: written in order, and read back on start to continue it. */
export interface AuditJournal {
  /** Its lines, newest first; `complete` is false for bytes after the last "\n". */
  linesFromEnd(): Iterable<{ line: string; complete: boolean }>;
  /** Ends a partial last line with "\n", so that the next record starts a line of its own. */
  endPartialLine(): void;
  /** Appends one record's line (without "\n"); throws when it could not. */
  write(line: string, seq: number): void;
  /** Makes what was written durable. */
  sync(): void;
  close(): void;
}

/** A copy of the chain elsewhere (the Redis stream). It may miss lines; the journal is the record. */
export interface AuditMirror {
  readonly name: string;
  write(line: string): Promise<void>;
}

export interface AuditLogOptions {
  journal: AuditJournal;
  mirrors?: readonly AuditMirror[];
  signingKey: KeyObject;
  keyId: string;
  clock: Clock;
  /** A checkpoint once this many records are unsealed (default 1000). */
  checkpointEvery?: number;
  /** A checkpoint once the oldest unsealed record is this old (default 60 000): checked on append and every interval. */
  checkpointIntervalMs?: number;
  /** Every refused event and failed write, for the app's log and metrics. Never called with a username or a secret. */
  onError?: (err: AuditError) => void;
}

type Base = { seq: number; time: string; prev: string };

export class AuditLog {
  /** Running totals for metrics. */
  readonly counts = { appended: 0, refused: 0, fileFailures: 0, mirrorFailures: 0 };
  private readonly every: number;
  private readonly intervalMs: number;
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();
  // The end of the chain: seq, hash of its line (the next `prev`) and its `hash` (the next checkpoint's `head`).
  private seq = 0;
  private prevLine = GENESIS;
  private head = GENESIS;
  private unsealed = 0;
  private oldestUnsealedAt = 0;
  private needsResume = false;
  private closed = false;

  /** Continues the chain from the journal's last intact record; reading the journal may throw (at start-up only). */
  constructor(private readonly opts: AuditLogOptions) {
    this.every = opts.checkpointEvery ?? 1000;
    this.intervalMs = opts.checkpointIntervalMs ?? 60_000;
    if (!Number.isSafeInteger(this.every) || this.every < 1 || !(this.intervalMs > 0)) throw new TypeError('AuditLog needs checkpointEvery >= 1 and checkpointIntervalMs > 0');
    if (opts.signingKey.asymmetricKeyType !== 'ed25519' || opts.signingKey.type !== 'private') throw new TypeError('AuditLog needs an Ed25519 private key');
    this.resume();
    // Node timers hold at most 2^31-1 ms (about 24.8 days); longer intervals still count on append.
    this.timer = setInterval(() => this.checkpointIfDue(), Math.min(this.intervalMs, 2 ** 31 - 1)).unref();
  }

  /** Adds an event to the chain. Never throws: refusals and failures go to onError and the counts. */
  append(event: AuditEvent): void {
    try {
      if (this.closed) return this.report(new AuditError('AUDIT_CLOSED'));
      const refusal = refuseEvent(event);
      if (refusal) {
        this.counts.refused++;
        return this.report(new AuditError('AUDIT_EVENT_REFUSED', refusal));
      }
      if (this.write((base) => ({ ...base, type: 'event', event: { ...event } }))) this.counts.appended++;
      this.checkpointIfDue();
    } catch (cause) {
      this.report(new AuditError('AUDIT_WRITE_FAILED', 'unexpected failure', { cause }));
    }
  }

  /** Seals the unsealed records if enough are waiting or the oldest has waited long enough. */
  checkpointIfDue(): void {
    if (this.closed || this.unsealed === 0) return;
    if (this.unsealed >= this.every || this.opts.clock.now() - this.oldestUnsealedAt >= this.intervalMs) this.checkpoint();
  }

  /** Writes a final checkpoint, waits for the mirrors and closes the journal. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    if (this.unsealed > 0) this.checkpoint();
    this.closed = true;
    await Promise.all(this.pending);
    try {
      this.opts.journal.close();
    } catch (cause) {
      this.counts.fileFailures++;
      this.report(new AuditError('AUDIT_WRITE_FAILED', 'closing the journal', { cause, sink: 'file' }));
    }
  }

  private checkpoint(): void {
    const { signingKey, keyId } = this.opts;
    const written = this.write((base) => signCheckpoint({ ...base, type: 'checkpoint', upTo: base.seq - 1, head: this.head, kid: keyId }, signingKey));
    if (!written) return;
    try {
      this.opts.journal.sync();
    } catch (cause) {
      this.counts.fileFailures++;
      this.report(new AuditError('AUDIT_WRITE_FAILED', 'fsync after a checkpoint', { cause, sink: 'file', seq: this.seq }));
    }
  }

  /** Builds the next record and appends it; false (reported) when the journal refused it. */
  private write(build: (base: Base) => RecordBody): boolean {
    try {
      if (this.needsResume) {
        this.resume();
        if (this.needsResume) return false;
      }
      const now = this.opts.clock.now();
      const { record, line } = encodeRecord(build({ seq: this.seq + 1, time: new Date(now).toISOString(), prev: this.prevLine }));
      this.opts.journal.write(line, record.seq);
      this.advance(record, line, now);
      for (const mirror of this.opts.mirrors ?? []) this.mirror(mirror, line, record.seq);
      return true;
    } catch (cause) {
      // Whatever reached the file (perhaps half a line), the next write first re-reads it: see resume().
      this.needsResume = true;
      this.counts.fileFailures++;
      this.report(new AuditError('AUDIT_WRITE_FAILED', errorText(cause), { cause, sink: 'file', seq: this.seq + 1 }));
      return false;
    }
  }

  private advance(record: AuditRecord, line: string, now: number): void {
    this.seq = record.seq;
    this.prevLine = sha256Hex(line);
    this.head = record.hash;
    if (record.type === 'checkpoint') this.unsealed = 0;
    else if (this.unsealed++ === 0) this.oldestUnsealedAt = now;
  }

  private mirror(mirror: AuditMirror, line: string, seq: number): void {
    let sent: Promise<void>;
    try {
      sent = mirror.write(line);
    } catch (cause) {
      sent = Promise.reject(cause);
    }
    const settled = sent
      .catch((cause: unknown) => {
        this.counts.mirrorFailures++;
        this.report(new AuditError('AUDIT_MIRROR_FAILED', errorText(cause), { cause, sink: mirror.name, seq }));
      })
      .finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  /**
   * Finds the last intact record (complete line, valid hash) and continues after it. Damaged lines after it (a
   * partial line from a crash, or lines failing their own hash) are not continued from: the partial line is ended
   * with "\n" and a `resumed` record, chained to the intact record, says how many lines it skips and why.
   */
  private resume(): void {
    this.needsResume = false;
    let anchor: { record: AuditRecord; line: string } | undefined;
    let skipped = 0;
    let partial = false;
    for (const { line, complete } of this.opts.journal.linesFromEnd()) {
      const decoded = complete ? decodeRecord(line) : undefined;
      if (decoded && 'record' in decoded && decoded.intact) {
        anchor = { record: decoded.record, line };
        break;
      }
      skipped++;
      partial ||= !complete;
    }
    if (partial) this.opts.journal.endPartialLine();
    const now = this.opts.clock.now();
    const unchanged = anchor !== undefined && anchor.record.seq === this.seq && sha256Hex(anchor.line) === this.prevLine;
    if (!unchanged) {
      this.seq = anchor?.record.seq ?? 0;
      this.prevLine = anchor ? sha256Hex(anchor.line) : GENESIS;
      this.head = anchor?.record.hash ?? GENESIS;
      // How many records after the last checkpoint is not known without reading back further: "some".
      this.unsealed = anchor && anchor.record.type !== 'checkpoint' ? 1 : 0;
      this.oldestUnsealedAt = now;
    }
    if (skipped > 0) {
      this.report(new AuditError('AUDIT_TAIL_DAMAGED', `${skipped} damaged line(s) after seq ${this.seq}`, { sink: 'file', seq: this.seq + 1 }));
      this.write((base) => ({ ...base, type: 'resumed', reason: partial ? 'truncated' : 'corrupt', skipped }));
    }
  }

  private report(err: AuditError): void {
    try {
      this.opts.onError?.(err);
    } catch {
      // A failing error handler must not reach the request path either.
    }
  }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
