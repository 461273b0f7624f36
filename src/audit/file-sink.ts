// The audit journal on disk: JSON lines appended to audit.jsonl, rotated by size to audit-<first seq>.jsonl.
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AuditFileMoved, type AuditJournal } from './audit-log.js';

export interface AuditFileOptions {
  /** One writer per directory: two gateways must not share one. */
  dir: string;
  /** The current file is rotated before a line would take it past this size. */
  maxBytes: number;
}

/** The file a writer appends to; rotated files are audit-<first seq>.jsonl. */
export const CURRENT = 'audit.jsonl';
// Zero-padded so that sorting names gives chain order; "~n" (sorts after ".") only if a name is ever taken twice.
const ROTATED = /^audit-\d{12}(~\d+)?\.jsonl$/;
const CHUNK = 64 * 1024;

/** The audit files of a directory in chain order: rotated files by name, then the current file. */
export function auditFiles(dir: string): string[] {
  const names = readdirSync(dir).filter((n) => ROTATED.test(n)).sort();
  if (existsSync(join(dir, CURRENT))) names.push(CURRENT);
  return names.map((n) => join(dir, n));
}

const READ_ATTEMPTS = 5;

/**
 * The text of a directory's audit files in chain order, as one consistent reading: a writer that rotated meanwhile
 * renamed the current file, so its records would be missing from what was read (the new current file in their place).
 * The files are listed again after reading, and read again when a file was added.
 */
export function readAuditDir(dir: string, read = (file: string) => readFileSync(file, 'utf8')): { file: string; text: string }[] {
  for (let attempt = 1; ; attempt++) {
    const files = auditFiles(dir);
    let segments: { file: string; text: string }[];
    try {
      segments = files.map((file) => ({ file, text: read(file) }));
    } catch (err) {
      // Listed, then renamed before it was read.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt < READ_ATTEMPTS) continue;
      throw err;
    }
    if (attempt === READ_ATTEMPTS || auditFiles(dir).join('\n') === files.join('\n')) return segments;
  }
}

export class AuditFileSink implements AuditJournal {
  private fd: number | undefined;
  private size = 0;
  /** Seq of the first line of the current file, which names it when it is rotated. */
  private firstSeq: number | undefined;

  constructor(private readonly opts: AuditFileOptions) {
    if (!(opts.maxBytes > 0)) throw new TypeError('AuditFileSink needs maxBytes > 0');
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  }

  *linesFromEnd(): Generator<{ line: string; complete: boolean }> {
    for (const file of auditFiles(this.opts.dir).reverse()) yield* linesFromEnd(file);
  }

  endPartialLine(): void {
    const fd = this.open();
    this.size = fstatSync(fd).size;
    if (this.size === 0) return;
    const last = Buffer.alloc(1);
    const reader = openSync(this.current, 'r');
    try {
      readSync(reader, last, 0, 1, this.size - 1);
    } finally {
      closeSync(reader);
    }
    if (last[0] !== 0x0a) this.append(fd, Buffer.from('\n'));
  }

  write(line: string, seq: number): void {
    const bytes = Buffer.from(`${line}\n`);
    this.checkNotMoved();
    this.open();
    if (this.size > 0 && this.size + bytes.length > this.opts.maxBytes) this.rotate(seq);
    const fd = this.open();
    if (this.size === 0) this.firstSeq = seq;
    this.append(fd, bytes);
  }

  sync(): void {
    if (this.fd !== undefined) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The open file must still be the directory's current file: one renamed (logrotate) or deleted meanwhile would take
   * every record into a file `audit verify` never reads. Such a file is let go (the next write opens a new one) and
   * the write fails, so the log resumes from what the directory holds and says what is missing.
   */
  private checkNotMoved(): void {
    if (this.fd === undefined) return;
    const open = fstatSync(this.fd);
    let named: { ino: number; dev: number } | undefined;
    try {
      named = statSync(this.current);
    } catch {
      named = undefined;
    }
    if (named?.ino === open.ino && named.dev === open.dev) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
    throw new AuditFileMoved(`${CURRENT} was renamed or deleted while open: the records written to it since are not in the trail`);
  }

  private get current(): string {
    return join(this.opts.dir, CURRENT);
  }

  private open(): number {
    if (this.fd === undefined) {
      this.fd = openSync(this.current, 'a', 0o600);
      this.size = fstatSync(this.fd).size;
      this.firstSeq = this.size > 0 ? firstSeqOf(this.current) : undefined;
    }
    return this.fd;
  }

  private append(fd: number, bytes: Buffer): void {
    try {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
    } catch (err) {
      // The size is unknown now (part of the line may be there): reopen, and let the log resume from the file.
      this.fd = undefined;
      try {
        closeSync(fd);
      } catch {
        // already failing; the write error is the one to report
      }
      throw err;
    }
    this.size += bytes.length;
  }

  private rotate(nextSeq: number): void {
    this.close();
    // A current file whose first line is unreadable is named after the next seq: it still sorts in chain order.
    const base = join(this.opts.dir, `audit-${String(this.firstSeq ?? nextSeq).padStart(12, '0')}`);
    let target = `${base}.jsonl`;
    for (let n = 1; existsSync(target); n++) target = `${base}~${n}.jsonl`;
    renameSync(this.current, target);
  }
}

function firstSeqOf(file: string): number | undefined {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    const n = readSync(fd, buf, 0, CHUNK, 0);
    const end = buf.subarray(0, n).indexOf(0x0a);
    const seq: unknown = JSON.parse(buf.subarray(0, end === -1 ? n : end).toString('utf8')).seq;
    return Number.isSafeInteger(seq) ? (seq as number) : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A file's lines, last first, read in chunks from the end; bytes after the last "\n" are a partial line. */
function* linesFromEnd(file: string): Generator<{ line: string; complete: boolean }> {
  const fd = openSync(file, 'r');
  try {
    let pos = fstatSync(fd).size;
    let rest = Buffer.alloc(0);
    let complete: boolean | undefined;
    while (pos > 0) {
      const n = Math.min(CHUNK, pos);
      pos -= n;
      const chunk = Buffer.alloc(n);
      readSync(fd, chunk, 0, n, pos);
      rest = Buffer.concat([chunk, rest]);
      if (complete === undefined) {
        complete = rest[rest.length - 1] === 0x0a;
        if (complete) rest = rest.subarray(0, -1);
      }
      for (let nl = rest.lastIndexOf(0x0a); nl !== -1; nl = rest.lastIndexOf(0x0a)) {
        yield { line: rest.subarray(nl + 1).toString('utf8'), complete };
        complete = true;
        rest = rest.subarray(0, nl);
      }
    }
    if (complete !== undefined) yield { line: rest.toString('utf8'), complete };
  } finally {
    closeSync(fd);
  }
}
