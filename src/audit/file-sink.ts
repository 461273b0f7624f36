// The audit journal on disk: JSON lines appended to audit.jsonl, rotated by size to audit-<first seq>.jsonl.
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, renameSync, statSync, writeSync } from 'node:fs';
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

/** Each directory once, as first named: the same trail named twice (`t1` and `t1/`, a link to it) would count twice. */
export function distinctDirs(dirs: readonly string[]): string[] {
  const seen = new Set<string>();
  return dirs.filter((d) => {
    const real = realpathSync(d);
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}

const READ_ATTEMPTS = 5;

/** Audit files open for reading, each as far as it reached when opened (a writer may go on appending). */
export interface OpenAuditFiles {
  readonly files: readonly { name: string; size: number }[];
  /** The lines of file i, first to last, read afresh on each call; bytes after its last "\n" are a partial line. */
  lines(i: number): Generator<{ line: string; complete: boolean }>;
  close(): void;
}

/** Opens the given files, in the order given. */
export function openAuditFiles(files: readonly string[], open = (file: string) => openSync(file, 'r')): OpenAuditFiles {
  const fds: number[] = [];
  const close = () => fds.forEach((fd) => closeSync(fd));
  try {
    for (const file of files) fds.push(open(file));
  } catch (err) {
    close();
    throw err;
  }
  let sizes: number[];
  try {
    sizes = fds.map((fd) => fstatSync(fd).size);
  } catch (err) {
    close();
    throw err;
  }
  return { files: files.map((name, i) => ({ name, size: sizes[i]! })), lines: (i) => linesFrom(fds[i]!, sizes[i]!), close };
}

/**
 * A directory's audit files in chain order, open as one consistent reading: a writer that rotated between the listing
 * and the opening renamed the current file, so its records would be missing (the new current file in their place).
 * The files are listed again once open, and opened again when a file was added. A rotation after that changes
 * nothing: an open file is read under any name, as far as it reached when opened.
 */
export function openAuditDir(dir: string, open?: (file: string) => number): OpenAuditFiles {
  for (let attempt = 1; ; attempt++) {
    const files = auditFiles(dir);
    let opened: OpenAuditFiles;
    try {
      opened = openAuditFiles(files, open);
    } catch (err) {
      // Listed, then renamed before it was opened.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt < READ_ATTEMPTS) continue;
      throw err;
    }
    let same: boolean;
    try {
      same = attempt === READ_ATTEMPTS || auditFiles(dir).join('\n') === files.join('\n');
    } catch (err) {
      // The directory went away meanwhile.
      opened.close();
      throw err;
    }
    if (same) return opened;
    opened.close();
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
   * The open file must still be the directory's current file, with every line written to it: one renamed (logrotate)
   * or deleted meanwhile would take every record into a file `audit verify` never reads, and one emptied or cut short
   * in place (logrotate's copytruncate) has lost the records it held. Such a file is let go (the next write opens the
   * directory's current file again) and the write fails, so the log resumes from what the directory holds and says
   * what is missing.
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
    if (named?.ino === open.ino && named.dev === open.dev && open.size >= this.size) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
    throw new AuditFileMoved(`${CURRENT} was renamed or deleted while open (or emptied, as logrotate's copytruncate does): records written to it are not in the trail`);
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

/** A file's first `size` bytes as lines, read in chunks; bytes after the last "\n" are a partial line. */
function* linesFrom(fd: number, size: number): Generator<{ line: string; complete: boolean }> {
  const chunk = Buffer.alloc(Math.min(CHUNK, size));
  // The pieces of a line begun in earlier chunks (copied: the chunk is read into again), joined once it ends.
  const begun: Buffer[] = [];
  for (let pos = 0; pos < size; ) {
    const n = readSync(fd, chunk, 0, Math.min(CHUNK, size - pos), pos);
    if (n === 0) break; // cut short since it was opened
    pos += n;
    const bytes = chunk.subarray(0, n);
    let start = 0;
    for (let nl = bytes.indexOf(0x0a); nl !== -1; nl = bytes.indexOf(0x0a, start)) {
      const piece = bytes.subarray(start, nl);
      yield { line: (begun.length ? Buffer.concat([...begun.splice(0), piece]) : piece).toString('utf8'), complete: true };
      start = nl + 1;
    }
    if (start < n) begun.push(Buffer.from(bytes.subarray(start)));
  }
  if (begun.length) yield { line: Buffer.concat(begun).toString('utf8'), complete: false };
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
