// The auditor's check of an audit trail: chain, order, completeness and checkpoint signatures, with positions.
import { KeyObject, createPublicKey } from 'node:crypto';
import { basename, join } from 'node:path';
import { quoted } from '../quoted.js';
import { CURRENT, openAuditDir, openAuditFiles, type OpenAuditFiles } from './file-sink.js';
import { checkpointSignatureValid } from './checkpoint.js';
import { GENESIS, decodeRecord, parseRecord, sha256Hex, type AuditRecord, type ResumedRecord } from './record.js';

/**
 * `unsealed-tail` is the one warning: records no signature of their writer covers, at the end of the trail or where a
 * `resumed` record says the writer found them on restart (normal after a crash, suspicious otherwise).
 */
export type AuditProblemKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'bad-checkpoint' | 'unsealed-tail' | 'unsigned' | 'empty';

/** Where a problem first shows: file, 1-based line, and the seq at that point of the chain. */
export interface AuditProblem {
  file: string;
  line: number;
  seq?: number;
  kind: AuditProblemKind;
  message: string;
  /** On an `unsealed-tail` a `resumed` record states: records found when the writer started again, not its latest records. */
  resumed?: true;
  /** The directory read, when verifyAuditDir read one. */
  trail?: string;
  /**
   * On the trail's final `unsealed-tail` or `unsigned`: how many records no signature covers, the times they state
   * (which nothing vouches for) and the last checkpoint before them, if any.
   */
  unsigned?: { records: number; firstTime: string; lastTime: string; sealedSeq?: number; sealedTime?: string };
}

export interface AuditReport {
  /** No problem other than `unsealed-tail` (a trail with no record, or none signed, is not ok: it could be forged). */
  ok: boolean;
  /** Lines that are records. */
  records: number;
  /** Checkpoints that verified. */
  checkpoints: number;
  /** Seq of the last checkpoint that verified (it seals itself and everything before it); 0 if none. */
  lastSealedSeq: number;
  /** In file order. */
  problems: AuditProblem[];
  /**
   * Set when the trail has checkpoints and the signature of not one verifies with the key given: the key ids they
   * name, the first KEY_IDS_NAMED of them (`more` when they name others too). A key other than the trail's gives this
   * (another environment's, one replaced), and so do checkpoints that are all forged.
   */
  noSignatureVerifies?: { checkpoints: number; keyIds: string[]; more: boolean };
}

/** How many of the key ids named by checkpoints that do not verify a report gives. */
const KEY_IDS_NAMED = 3;

/** One public key (PEM or KeyObject; a private key is accepted too) for every checkpoint, or keys by key id. */
export type AuditPublicKeys = KeyObject | string | Readonly<Record<string, KeyObject | string>>;

/** A trail to check: its files in chain order, each read line by line as often as asked (a check reads it twice). */
export type Trail = Pick<OpenAuditFiles, 'files' | 'lines'>;

/**
 * A trail's records as they are read, each with its bytes checked (damaged and misplaced ones too), each once: a copy
 * of a record read before (the same seq and hash, put in again) is not seen again, so that the report counts it once.
 */
export type RecordVisitor = (record: AuditRecord) => void;

/** Verifies the given files, which must be the whole trail in chain order (see auditFiles). */
export function verifyAudit(files: readonly string[], publicKey: AuditPublicKeys): AuditReport {
  const trail = openAuditFiles(files);
  try {
    return verifyTrail(trail, publicKey);
  } finally {
    trail.close();
  }
}

/**
 * Verifies a directory's trail, read as one consistent reading (openAuditDir); `visit` sees each record on the way (see RecordVisitor). A
 * trail that has rotated ends in its current file, which the record that rotated the last file starts: one that ends
 * in a rotated file lost the current file's records, and with them the checkpoint that sealed the records before them.
 */
export function verifyAuditDir(dir: string, publicKey: AuditPublicKeys, visit?: RecordVisitor): AuditReport {
  const trail = openAuditDir(dir);
  try {
    // A directory without records is named as such in the report.
    const report = verifyTrail(trail.files.length ? trail : textTrail([{ file: dir, text: '' }]), publicKey, visit);
    const last = trail.files.filter((f) => f.size > 0).at(-1);
    if (!last || basename(last.name) === CURRENT) return { ...report, problems: report.problems.map((p) => ({ ...p, trail: dir })) };
    const missing: AuditProblem = {
      file: join(dir, CURRENT),
      line: 0,
      kind: 'deleted',
      message: `the trail ends in ${basename(last.name)}: the records of the current file after it are missing (the file was deleted or emptied)`,
    };
    return { ...report, ok: false, problems: [...report.problems, missing].map((p) => ({ ...p, trail: dir })) };
  } finally {
    trail.close();
  }
}

/** verifyAudit on file contents already read. */
export function verifyAuditText(segments: readonly { file: string; text: string }[], publicKey: AuditPublicKeys): AuditReport {
  return verifyTrail(textTrail(segments), publicKey);
}

function textTrail(segments: readonly { file: string; text: string }[]): Trail {
  return {
    files: segments.map(({ file, text }) => ({ name: file, size: text.length })),
    *lines(i) {
      const { text } = segments[i]!;
      if (text === '') return;
      const parts = text.split('\n');
      const last = parts.pop()!;
      for (const line of parts) yield { line, complete: true };
      if (last !== '') yield { line: last, complete: false };
    },
  };
}

interface Line {
  index: number;
  text: string;
  decoded: { record: AuditRecord; intact: boolean } | { error: string };
}

/** The end of the chain as followed so far. */
interface State {
  expected: number;
  prevLine: string;
  lastHash: string | undefined;
  last: (Line & { decoded: { record: AuditRecord } }) | undefined;
}

/**
 * The check, in two readings of the trail. The first notes a few numbers a line (what the second needs to know ahead:
 * where each seq is, which lines a later `resumed` record skipped); the second follows the chain with one line in
 * hand. Memory grows with the number of lines by about 20 bytes each, not with the trail's size.
 */
export function verifyTrail(trail: Trail, publicKey: AuditPublicKeys, visit?: RecordVisitor): AuditReport {
  const keyFor = keyResolver(publicKey);
  const ix = indexTrail(trail);
  const found: (AuditProblem & { index: number })[] = [];
  const report = (index: number, kind: AuditProblemKind, message: string, seq?: number) =>
    found.push({ index, ...ix.where(index), ...(seq === undefined ? {} : { seq }), kind, message });
  const pos = (index: number) => {
    const { file, line } = ix.where(index);
    return `${file}:${line}`;
  };

  let state: State = { expected: 1, prevLine: GENESIS, lastHash: undefined, last: undefined };
  let before = state;
  // false after a line known to be altered: the next record's `prev` cannot match it, and that is not news.
  let trusted = true;
  // A run of misplaced records (a moved record, files out of order) is reported once, where it starts.
  let lastKind: AuditProblemKind | undefined;
  let records = 0;
  let checkpoints = 0;
  let lastSealed: { index: number; seq: number; time: string } | undefined;
  // The records after the last valid checkpoint so far: how many, the first, and the last one's time.
  let tail = 0;
  let firstTail: { index: number; seq: number; time: string } | undefined;
  let lastTailTime = '';
  // Intact `resumed` records that count records no valid checkpoint covered (checked once the last checkpoint is known).
  const unsealedClaims: { index: number; seq: number; unsealed: number }[] = [];
  // Checkpoints read, those whose signature verifies (whatever else is wrong with them), and the key ids named.
  let signatures = 0;
  let verifiedSignatures = 0;
  const keyIds = new Set<string>();
  let moreKeyIds = false;

  let read = 0;
  for (const l of linesOf(trail, decodeRecord)) {
    // The second reading must be the first one's: files changed in between (by hand: a running writer's appends are
    // not read) would make every position a guess.
    if (l.index >= ix.count || !Object.is('record' in l.decoded ? l.decoded.record.seq : NaN, ix.seqAt(l.index))) throw changedWhileRead();
    read++;
    // Damaged lines the writer skipped on restart are reported once, and not part of the chain.
    const resumed = ix.skippedBy[l.index]!;
    if (resumed !== -1) {
      if (l.index === 0 || ix.skippedBy[l.index - 1] !== resumed) {
        report(l.index, ix.skipReasons.get(resumed) === 'truncated' ? 'truncated' : 'edited', `damaged line(s) the writer skipped when it restarted (see ${pos(resumed)})`, state.expected);
      }
      if ('record' in l.decoded && !ix.copyOfEarlier(l.index, l.decoded.record)) visit?.(l.decoded.record);
      continue;
    }
    // Every line is a whole record: a partial last line is a truncation, anything else unreadable an edit.
    if (!('record' in l.decoded)) {
      const partial = l.decoded.error === PARTIAL;
      report(l.index, partial ? 'truncated' : 'edited', partial ? 'partial line: the file ends without a newline' : `not a record: ${l.decoded.error}`, state.expected);
      state = { ...state, expected: state.expected + 1 };
      trusted = false;
      lastKind = undefined;
      continue;
    }
    const { record: r, intact } = l.decoded;
    const current = l as Line & { decoded: { record: AuditRecord } };
    if (!ix.copyOfEarlier(l.index, r)) visit?.(r);
    records++;
    tail++;
    firstTail ??= { index: l.index, seq: r.seq, time: r.time };
    lastTailTime = r.time;
    if (r.type === 'resumed' && r.unsealed && intact) unsealedClaims.push({ index: l.index, seq: r.seq, unsealed: r.unsealed });

    // Every record's bytes are the canonical form of its content and match its hash (checkpoints: below).
    if (!intact && r.type !== 'checkpoint') report(l.index, 'edited', 'content does not match its hash', r.seq);

    // A record that takes the seq of the record just before it, and links to what that one linked to, shows
    // that one was inserted: drop it from the chain and take this one in its place.
    if (r.seq < state.expected && r.seq === state.last?.decoded.record.seq && r.prev === before.prevLine && ix.withSeq(r.seq).length > 1) {
      report(state.last.index, 'inserted', `record number ${r.seq} is taken again by ${pos(l.index)}, which follows on from the record before this one`, r.seq);
      state = before;
      lastKind = undefined;
    }

    // Every record is the next seq, and its `prev` is the hash of the line before it.
    let kind: AuditProblemKind | undefined;
    const linked = r.seq === state.expected && r.prev === state.prevLine;
    if (r.seq === state.expected) {
      if (!linked && trusted) {
        if (state.last) report(state.last.index, 'edited', `its line does not match the prev of record ${r.seq} at ${pos(l.index)}: one of them was altered`, state.last.decoded.record.seq);
        else report(l.index, 'edited', 'the first record does not start from 64 zeros', r.seq);
      }
    } else if (r.seq > state.expected) {
      const elsewhere = ix.withSeq(state.expected)[0];
      kind = elsewhere === undefined ? 'deleted' : 'reordered';
      const missing = r.seq - 1 > state.expected ? `records ${state.expected}..${r.seq - 1}` : `record ${state.expected}`;
      const message =
        elsewhere === undefined
          ? `${missing} missing${ix.where(l.index).line === 1 && state.last ? ' before this file: a file may be missing' : ''}`
          : `record ${r.seq} where ${state.expected} was expected; record ${state.expected} is at ${pos(elsewhere)}`;
      if (kind !== lastKind) report(l.index, kind, message, state.expected);
    } else {
      const other = ix.withSeq(r.seq).find((i) => i !== l.index);
      if (other !== undefined) {
        // A copy of a record found elsewhere: reported, and left out of the chain.
        report(l.index, 'inserted', `record ${r.seq} is also at ${pos(other)}`, r.seq);
        lastKind = undefined;
        continue;
      }
      kind = 'reordered';
      if (kind !== lastKind) report(l.index, kind, `record ${r.seq} comes after record ${state.expected - 1}`, r.seq);
    }
    lastKind = kind;

    // Records the writer says it wrote and the trail no longer holds (its current file renamed or deleted meanwhile).
    if (r.type === 'resumed' && r.missing) {
      report(l.index, 'deleted', `${r.missing} record(s) the writer had written after record ${r.seq - 1} are missing: its current file was renamed or deleted while it ran`, r.seq);
    }
    // Records the writer could not write at all (a full disk): the trail never held them, and says so here only.
    if (r.type === 'resumed' && r.lost) {
      report(l.index, 'deleted', `${r.lost} record(s) could not be written after record ${r.seq - 1}: the writes failed (a full disk, a failing volume), so the trail does not hold them`, r.seq);
    }

    // Every checkpoint carries a valid signature of the configured key and covers the record just before it.
    // (Where it is out of place, the problem above says so already: its upTo and head are not held against it.)
    let sealed = false;
    if (r.type === 'checkpoint') {
      const wrong: string[] = [];
      if (!intact) wrong.push('content does not match its hash');
      if (r.upTo !== r.seq - 1 || (linked && r.upTo !== state.last?.decoded.record.seq)) wrong.push(`upTo ${r.upTo} is not the record before it`);
      if (linked && r.head !== state.lastHash) wrong.push('head is not the hash of the record before it');
      const key = keyFor(r.kid);
      const verifies = key !== undefined && checkpointSignatureValid(r, key);
      if (!key) wrong.push(`unknown key id ${quoted(r.kid)}`);
      else if (!verifies) wrong.push('signature does not verify');
      signatures++;
      if (verifies) verifiedSignatures++;
      if (keyIds.size < KEY_IDS_NAMED) keyIds.add(r.kid);
      else moreKeyIds ||= !keyIds.has(r.kid);
      if (wrong.length > 0) report(l.index, 'bad-checkpoint', wrong.join('; '), r.seq);
      sealed = wrong.length === 0;
      if (sealed) {
        checkpoints++;
        lastSealed = { index: l.index, seq: r.seq, time: r.time };
        tail = 0;
        firstTail = undefined;
      }
    }

    before = state;
    state = { expected: r.seq + 1, prevLine: sha256Hex(l.text), lastHash: r.hash, last: current };
    trusted = intact && (r.type !== 'checkpoint' || sealed);
  }

  if (read !== ix.count) throw changedWhileRead();

  // Records a `resumed` record says no valid checkpoint covered when the writer started again. The checkpoints after
  // it sign that statement, not those records: they are an unsealed tail of their own (unless still in the last one).
  for (const { index, seq, unsealed } of unsealedClaims) {
    const [first, last] = [seq - unsealed, seq - 1];
    const at = ix.withSeq(first)[0] ?? index;
    if (at > (lastSealed?.index ?? -1)) continue;
    const which = first === last ? `record ${first}` : `records ${first}..${last}`;
    report(
      at,
      'unsealed-tail',
      `${unsealed} record(s) (${which}) had no valid checkpoint when the writer resumed at ${pos(index)}: later checkpoints sign that statement, ` +
        'not these records (a crash before their checkpoint, records added without the key, or a checkpoint removed)',
      first,
    );
    found.at(-1)!.resumed = true;
  }

  // Records after the last valid checkpoint: intact as far as the chain shows, but no signature covers them.
  // Anyone holding the files can rewrite them (drop records, chain the rest again) without the key: nothing vouches for them.
  if (firstTail) {
    const unsigned = { records: tail, firstTime: firstTail.time, lastTime: lastTailTime };
    if (lastSealed) {
      report(firstTail.index, 'unsealed-tail', `${tail} record(s) after the last signature (record ${lastSealed.seq}) are not covered by one`, firstTail.seq);
      found.at(-1)!.unsigned = { ...unsigned, sealedSeq: lastSealed.seq, sealedTime: lastSealed.time };
    } else {
      // Anyone can write a chain of hashes: without one valid signature the trail cannot be told from a forged one.
      report(firstTail.index, 'unsigned', `no valid checkpoint: none of the ${tail} record(s) is covered by a signature`, firstTail.seq);
      found.at(-1)!.unsigned = unsigned;
    }
  }
  if (records === 0) found.push({ index: 0, file: trail.files[0]?.name ?? '', line: 0, kind: 'empty', message: 'no records: the trail is missing or was emptied' });

  const problems = found.sort((a, b) => a.index - b.index).map(({ index: _index, ...p }) => p);
  const noSignatureVerifies = signatures > 0 && verifiedSignatures === 0 ? { noSignatureVerifies: { checkpoints: signatures, keyIds: [...keyIds], more: moreKeyIds } } : {};
  return { ok: problems.every((p) => p.kind === 'unsealed-tail'), records, checkpoints, lastSealedSeq: lastSealed?.seq ?? 0, problems, ...noSignatureVerifies };
}

const PARTIAL = 'partial line';

const changedWhileRead = () => new Error('the audit files changed between the two readings of the check: check them again');

/** Every line of every file, numbered from 0 across the files; a partial line is not decoded. */
function* linesOf<D extends { error: string } | { record: AuditRecord }>(trail: Trail, decode: (text: string) => D): Generator<{ index: number; text: string; decoded: D | { error: string } }> {
  let index = 0;
  for (let f = 0; f < trail.files.length; f++) {
    for (const { line, complete } of trail.lines(f)) yield { index: index++, text: line, decoded: complete ? decode(line) : { error: PARTIAL } };
  }
}

/** What the check needs to know ahead, from a first reading: a few numbers a line. */
interface TrailIndex {
  /** Lines read. */
  count: number;
  /** The seq of a line that is a record; NaN for the others. */
  seqAt(index: number): number;
  /** For each line a `resumed` record says it skipped, the index of that record (the last such); -1 otherwise. */
  skippedBy: Int32Array;
  /** The reason of each `resumed` record that skipped lines, by its index. */
  skipReasons: Map<number, ResumedRecord['reason']>;
  /** Indices of the records that are not skipped and have this seq, first to last. */
  withSeq(seq: number): number[];
  /** Whether a record that is not skipped, before this line, has this record's seq and hash (by its first 32 bits). */
  copyOfEarlier(index: number, record: AuditRecord): boolean;
  /** File and 1-based line of a line index. */
  where(index: number): { file: string; line: number };
}

function indexTrail(trail: Trail): TrailIndex {
  const starts: number[] = [];
  // The seq of each line that is a record (NaN for the others), grown as lines come.
  let seqs = new Float64Array(1024);
  // The first 32 bits of each record's hash (0 for the others), to tell a copy of a record from another with its seq.
  let heads = new Uint32Array(1024);
  const resumed: { index: number; skipped: number; reason: ResumedRecord['reason'] }[] = [];
  let count = 0;
  for (let f = 0; f < trail.files.length; f++) {
    starts.push(count);
    for (const { line, complete } of trail.lines(f)) {
      if (count === seqs.length) {
        const grown = new Float64Array(2 * count);
        grown.set(seqs);
        seqs = grown;
        const grownHeads = new Uint32Array(2 * count);
        grownHeads.set(heads);
        heads = grownHeads;
      }
      const parsed = complete ? parseRecord(line) : undefined;
      const r = parsed && 'record' in parsed ? parsed.record : undefined;
      seqs[count] = r ? r.seq : NaN;
      heads[count] = r ? headOf(r.hash) : 0;
      if (r?.type === 'resumed' && r.skipped > 0) resumed.push({ index: count, skipped: r.skipped, reason: r.reason });
      count++;
    }
  }
  const skippedBy = new Int32Array(count).fill(-1);
  for (const { index, skipped } of resumed) skippedBy.fill(index, Math.max(0, index - skipped), index);

  // The records in the chain, by seq and then by position: already so in a trail whose seqs never go back.
  const chain: number[] = [];
  for (let i = 0; i < count; i++) if (!Number.isNaN(seqs[i]) && skippedBy[i] === -1) chain.push(i);
  const bySeq = Uint32Array.from(chain);
  if (!bySeq.every((i, k) => k === 0 || seqs[bySeq[k - 1]!]! <= seqs[i]!)) bySeq.sort((a, b) => seqs[a]! - seqs[b]! || a - b);
  const firstWith = (seq: number) => {
    let [lo, hi] = [0, bySeq.length];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[bySeq[mid]!]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return {
    count,
    seqAt: (index) => seqs[index]!,
    skippedBy,
    skipReasons: new Map(resumed.map((r) => [r.index, r.reason])),
    withSeq(seq) {
      const out: number[] = [];
      for (let k = firstWith(seq); k < bySeq.length && seqs[bySeq[k]!] === seq; k++) out.push(bySeq[k]!);
      return out;
    },
    copyOfEarlier(index, record) {
      const head = headOf(record.hash);
      for (let k = firstWith(record.seq); k < bySeq.length && seqs[bySeq[k]!] === record.seq && bySeq[k]! < index; k++) if (heads[bySeq[k]!] === head) return true;
      return false;
    },
    where(index) {
      // The last file whose first line is at or before this one (empty files share the next file's start).
      let [lo, hi] = [0, starts.length - 1];
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (starts[mid]! <= index) lo = mid;
        else hi = mid - 1;
      }
      return { file: trail.files[lo]?.name ?? '', line: index - (starts[lo] ?? 0) + 1 };
    },
  };
}

const headOf = (hash: string) => Number.parseInt(hash.slice(0, 8), 16);

function keyResolver(keys: AuditPublicKeys): (kid: string) => KeyObject | undefined {
  const toPublic = (k: KeyObject | string) => (k instanceof KeyObject && k.type === 'public' ? k : createPublicKey(k));
  if (typeof keys === 'string' || keys instanceof KeyObject) {
    const key = toPublic(keys);
    return () => key;
  }
  const byId = new Map(Object.entries(keys).map(([kid, k]) => [kid, toPublic(k)]));
  return (kid) => byId.get(kid);
}
