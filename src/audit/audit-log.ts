// The audit log: appends hash-chained records to the journal and its mirrors, and seals them with signed checkpoints.
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../clock.js';
import { AuditError } from './audit-error.js';
import { checkpointSignatureValid, signCheckpoint } from './checkpoint.js';
import { refuseEvent } from './event-guard.js';
import { GENESIS, decodeRecord, encodeRecord, sha256Hex, type AuditEvent, type AuditRecord, type RecordBody } from './record.js';

/** Where the chain lives: written in order, and read back on start to continue it. */
export interface AuditJournal {
  /** Its lines, newest first; `complete` is false for bytes after the last "\n". */
  linesFromEnd(): Iterable<{ line: string; complete: boolean }>;
  /** Ends a partial last line with "\n", so that the next record starts a line of its own. */
  endPartialLine(): void;
  /** Appends one record's line (without "\n"); throws when it could not (AuditFileMoved: see there). */
  write(line: string, seq: number): void;
  /** Makes what was written durable. */
  sync(): void;
  close(): void;
}

/**
 * What a journal throws when the file it was writing was renamed, deleted or emptied by something else: records it
 * took are not in the trail. The log resumes from what is there, says how many are missing, and writes on.
 */
export class AuditFileMoved extends Error {}

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
  /**
   * Whether the journal is still this process's to write (its directory lock), asked before each record: once
   * false, the log stops as abandon() does.
   */
  owned?: () => boolean;
}

type Base = { seq: number; time: string; prev: string };

export class AuditLog {
  /** Running totals for metrics. */
  readonly counts = { appended: 0, refused: 0, fileFailures: 0, mirrorFailures: 0 };
  private readonly every: number;
  private readonly intervalMs: number;
  private readonly pending = new Set<Promise<void>>();
  // The end of the chain: seq, hash of its line (the next `prev`) and its `hash` (the next checkpoint's `head`).
  private seq = 0;
  private prevLine = GENESIS;
  private head = GENESIS;
  private unsealed = 0;
  private oldestUnsealedAt = 0;
  private needsResume = false;
  /** Records found after the last valid checkpoint on resume, not yet stated in a `resumed` record. */
  private unsealedFound = 0;
  /** Records this process wrote that a resume no longer found (see AuditFileMoved); stated in the `resumed` record. */
  private missingFound = 0;
  /**
   * Events this process could not write (a full disk), not yet stated in a `resumed` record: one that reached the file
   * not at all leaves no trace there otherwise, and the trail would look complete.
   */
  private lostFound = 0;
  /** Whether the last write that failed was an event's: the partial line a failed write may leave is then that event. */
  private lastFailedWasEvent = false;
  private closed = false;
  private stopped: AuditError | undefined;
  private readonly publicKey: KeyObject;

  /** Continues the chain from the journal's last intact record; reading the journal may throw (at start-up only). */
  constructor(private readonly opts: AuditLogOptions) {
    this.every = opts.checkpointEvery ?? 1000;
    this.intervalMs = opts.checkpointIntervalMs ?? 60_000;
    if (!Number.isSafeInteger(this.every) || this.every < 1 || !(this.intervalMs > 0)) throw new TypeError('AuditLog needs checkpointEvery >= 1 and checkpointIntervalMs > 0');
    if (opts.signingKey.asymmetricKeyType !== 'ed25519' || opts.signingKey.type !== 'private') throw new TypeError('AuditLog needs an Ed25519 private key');
    this.publicKey = createPublicKey(opts.signingKey);
    this.resume();
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
      // Not written (a failed write, or a resume that could not be written): stated at the next record that is.
      else if (!this.closed) this.lostFound++;
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

  /** Seals the unsealed records now, not when due: a gateway's start record (see openAudit). */
  seal(): void {
    if (!this.closed && this.unsealed > 0) this.checkpoint();
  }

  /** Why the log stopped writing before close() (the directory lock was lost), for readiness checks; else undefined. */
  get stoppedBy(): AuditError | undefined {
    return this.stopped;
  }

  /**
   * Stops writing at once, without a final checkpoint: the journal is no longer this process's (another writer
   * took over its directory), and any record written now, a checkpoint too, would fork that writer's chain. Later
   * events are dropped and reported as AUDIT_CLOSED.
   */
  abandon(reason: AuditError): void {
    if (this.closed) return;
    this.closed = true;
    this.stopped = reason;
    this.report(reason);
    try {
      this.opts.journal.close();
    } catch {
      // Not this process's file any more: the loss is what it reports.
    }
  }

  /**
   * Writes a final checkpoint, waits for the mirrors and closes the journal. After a failed write the checkpoint is
   * written also with nothing unsealed: the resume before it states what the trail is missing (records lost to a full
   * disk that has room again), which the next process could not.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.unsealed > 0 || this.needsResume) this.checkpoint();
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

  /**
   * Builds the next record and appends it; false (reported) when the journal refused it. A current file that was
   * renamed or deleted meanwhile is reported, the chain resumes from what the directory holds (saying what is
   * missing), and the record is written after that (once).
   */
  private write(build: (base: Base) => RecordBody, retry = true): boolean {
    if (this.opts.owned?.() === false) {
      this.abandon(new AuditError('AUDIT_LOCK_LOST'));
      return false;
    }
    let type: AuditRecord['type'] | undefined;
    try {
      if (this.needsResume) {
        this.resume();
        if (this.needsResume) return false;
      }
      const now = this.opts.clock.now();
      const { record, line } = encodeRecord(build({ seq: this.seq + 1, time: new Date(now).toISOString(), prev: this.prevLine }));
      type = record.type;
      this.opts.journal.write(line, record.seq);
      this.advance(record, line, now);
      for (const mirror of this.opts.mirrors ?? []) this.mirror(mirror, line, record.seq);
      return true;
    } catch (cause) {
      // Whatever reached the file (perhaps half a line), the next write first re-reads it: see resume().
      this.needsResume = true;
      // A failure before this record was built (the resume, ending a partial line) leaves that line's record as it was.
      if (type !== undefined) this.lastFailedWasEvent = type === 'event';
      this.counts.fileFailures++;
      this.report(new AuditError('AUDIT_WRITE_FAILED', errorText(cause), { cause, sink: 'file', seq: this.seq + 1 }));
      return cause instanceof AuditFileMoved && retry ? this.write(build, false) : false;
    }
  }

  private advance(record: AuditRecord, line: string, now: number): void {
    this.seq = record.seq;
    this.prevLine = sha256Hex(line);
    this.head = record.hash;
    if (record.type === 'checkpoint') this.unsealed = 0;
    else if (this.unsealed++ === 0) {
      this.oldestUnsealedAt = now;
      this.checkWhenDue();
    }
  }

  /**
   * A checkpoint when the oldest unsealed record has waited the interval, also when nothing else is appended: timed
   * from that record, not from a tick that may come almost a whole interval after it. Only the batch that set it
   * acts on it; a timer holds at most about 24.8 days, so a longer wait goes in steps.
   */
  private checkWhenDue(wait = this.oldestUnsealedAt + this.intervalMs - this.opts.clock.now()): void {
    const batch = this.oldestUnsealedAt;
    this.opts.clock.after(Math.min(Math.max(wait, 0), 2 ** 31 - 1), () => {
      if (this.closed || this.unsealed === 0 || this.oldestUnsealedAt !== batch) return;
      if (this.opts.clock.now() - batch < this.intervalMs) return this.checkWhenDue();
      this.checkpointIfDue();
      // Not written (a full disk): tried again an interval later, not left until the next record, which on a quiet
      // gateway may be hours away.
      if (!this.closed && this.unsealed > 0 && this.oldestUnsealedAt === batch) this.checkWhenDue(this.intervalMs);
    });
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
   * Intact is not authentic: anyone can chain a record without the key. So when the chain found is not the one this
   * process was writing (at start, always), the `resumed` record also says how many records no valid checkpoint
   * signs, before anything else: the next checkpoint signs that statement rather than vouching for them.
   */
  private resume(): void {
    this.needsResume = false;
    let anchor: { record: AuditRecord; line: string } | undefined;
    let skipped = 0;
    let partial = false;
    // Read by hand, so that the lines before the anchor can be read on from where the search stopped.
    const lines = this.opts.journal.linesFromEnd()[Symbol.iterator]();
    let unchanged: boolean;
    try {
      for (let next = lines.next(); !next.done; next = lines.next()) {
        const { line, complete } = next.value;
        const decoded = complete ? decodeRecord(line) : undefined;
        if (decoded && 'record' in decoded && decoded.intact) {
          anchor = { record: decoded.record, line };
          break;
        }
        skipped++;
        partial ||= !complete;
      }
      unchanged = anchor !== undefined && anchor.record.seq === this.seq && sha256Hex(anchor.line) === this.prevLine;
      // Records this process wrote that the directory no longer holds (its current file renamed or deleted).
      if (!unchanged && this.seq > (anchor?.record.seq ?? 0)) this.missingFound = this.seq - (anchor?.record.seq ?? 0);
      if (!unchanged) this.unsealedFound = anchor ? Math.max(0, anchor.record.seq - this.lastSealedSeq(anchor.record, lines)) : 0;
    } finally {
      lines.return?.();
    }
    if (partial) this.opts.journal.endPartialLine();
    // An event whose failed write left part of its line is in the trail as that damaged line, which the `resumed`
    // record counts among the lines it skips: not lost as well.
    if (partial && this.lastFailedWasEvent && this.lostFound > 0) this.lostFound--;
    this.lastFailedWasEvent = false;
    const now = this.opts.clock.now();
    if (!unchanged) {
      this.seq = anchor?.record.seq ?? 0;
      this.prevLine = anchor ? sha256Hex(anchor.line) : GENESIS;
      this.head = anchor?.record.hash ?? GENESIS;
      this.unsealed = this.unsealedFound > 0 ? 1 : 0;
      this.oldestUnsealedAt = now;
      if (this.unsealed > 0) this.checkWhenDue();
    }
    if (skipped > 0) this.report(new AuditError('AUDIT_TAIL_DAMAGED', `${skipped} damaged line(s) after seq ${this.seq}`, { sink: 'file', seq: this.seq + 1 }));
    // Kept until written: a failed write resumes again, from the same anchor, and states it then.
    const unsealed = this.unsealedFound;
    const missing = this.missingFound;
    const lost = this.lostFound;
    if (skipped > 0 || unsealed > 0 || missing > 0 || lost > 0) {
      const reason = skipped > 0 ? (partial ? 'truncated' : 'corrupt') : missing > 0 ? 'missing' : lost > 0 ? 'lost' : 'unsealed';
      const stated = this.write((base) => ({
        ...base,
        type: 'resumed',
        reason,
        skipped,
        ...(unsealed > 0 ? { unsealed } : {}),
        ...(missing > 0 ? { missing } : {}),
        ...(lost > 0 ? { lost } : {}),
      }));
      if (stated) this.unsealedFound = this.missingFound = this.lostFound = 0;
    }
  }

  /** Seq of the last checkpoint signed with this log's key, from `record` back (0 if none): what is sealed. */
  private lastSealedSeq(record: AuditRecord, before: Iterator<{ line: string; complete: boolean }>): number {
    if (record.type === 'checkpoint' && checkpointSignatureValid(record, this.publicKey)) return record.seq;
    for (let next = before.next(); !next.done; next = before.next()) {
      const decoded = next.value.complete ? decodeRecord(next.value.line) : undefined;
      if (decoded && 'record' in decoded && decoded.intact && decoded.record.type === 'checkpoint' && checkpointSignatureValid(decoded.record, this.publicKey)) {
        return decoded.record.seq;
      }
    }
    return 0;
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
