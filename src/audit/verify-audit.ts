// The auditor's check of an audit trail: chain, order, completeness and checkpoint signatures, with positions.
import { KeyObject, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CURRENT } from './file-sink.js';
import { checkpointSignatureValid } from './checkpoint.js';
import { GENESIS, decodeRecord, sha256Hex, type AuditRecord } from './record.js';

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
}

/** One public key (PEM or KeyObject; a private key is accepted too) for every checkpoint, or keys by key id. */
export type AuditPublicKeys = KeyObject | string | Readonly<Record<string, KeyObject | string>>;

/** Verifies the given files, which must be the whole trail in chain order (see auditFiles). */
export function verifyAudit(files: readonly string[], publicKey: AuditPublicKeys): AuditReport {
  return verifyAuditText(
    files.map((file) => ({ file, text: readFileSync(file, 'utf8') })),
    publicKey,
  );
}

/**
 * verifyAuditText on a directory's reading (readAuditDir). A trail that has rotated ends in its current file, which
 * the record that rotated the last file starts: one that ends in a rotated file lost the current file's records, and
 * with them the checkpoint that sealed the records before them.
 */
export function verifyAuditDir(dir: string, segments: readonly { file: string; text: string }[], publicKey: AuditPublicKeys): AuditReport {
  // A directory without records is named as such in the report.
  const report = verifyAuditText(segments.length ? segments : [{ file: dir, text: '' }], publicKey);
  const last = segments.filter((s) => s.text !== '').at(-1);
  if (!last || basename(last.file) === CURRENT) return report;
  const missing: AuditProblem = {
    file: join(dir, CURRENT),
    line: 0,
    kind: 'deleted',
    message: `the trail ends in ${basename(last.file)}: the records of the current file after it are missing (the file was deleted or emptied)`,
  };
  return { ...report, ok: false, problems: [...report.problems, missing] };
}

interface Line {
  index: number;
  file: string;
  line: number;
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

/** verifyAudit on file contents already read. */
export function verifyAuditText(segments: readonly { file: string; text: string }[], publicKey: AuditPublicKeys): AuditReport {
  const keyFor = keyResolver(publicKey);
  const lines = splitLines(segments);
  const found: (AuditProblem & { index: number })[] = [];
  const report = (l: Line, kind: AuditProblemKind, message: string, seq?: number) =>
    found.push({ index: l.index, file: l.file, line: l.line, ...(seq === undefined ? {} : { seq }), kind, message });

  // Lines a `resumed` record says it skipped: damage the writer found when it restarted.
  const skippedBy = new Map<number, Line>();
  for (const l of lines) {
    if ('record' in l.decoded && l.decoded.record.type === 'resumed') {
      for (let i = Math.max(0, l.index - l.decoded.record.skipped); i < l.index; i++) skippedBy.set(i, l);
    }
  }
  const bySeq = new Map<number, number[]>();
  for (const l of lines) {
    if ('record' in l.decoded && !skippedBy.has(l.index)) bySeq.set(l.decoded.record.seq, [...(bySeq.get(l.decoded.record.seq) ?? []), l.index]);
  }

  let state: State = { expected: 1, prevLine: GENESIS, lastHash: undefined, last: undefined };
  let before = state;
  // false after a line known to be altered: the next record's `prev` cannot match it, and that is not news.
  let trusted = true;
  // A run of misplaced records (a moved record, files out of order) is reported once, where it starts.
  let lastKind: AuditProblemKind | undefined;
  let records = 0;
  let checkpoints = 0;
  let lastSealed: Line | undefined;

  for (const l of lines) {
    // Damaged lines the writer skipped on restart are reported once, and not part of the chain.
    const resumed = skippedBy.get(l.index);
    if (resumed) {
      if (skippedBy.get(l.index - 1) !== resumed) {
        const reason = 'record' in resumed.decoded && resumed.decoded.record.type === 'resumed' ? resumed.decoded.record.reason : 'corrupt';
        report(l, reason === 'truncated' ? 'truncated' : 'edited', `damaged line(s) the writer skipped when it restarted (see ${pos(resumed)})`, state.expected);
      }
      continue;
    }
    // Every line is a whole record: a partial last line is a truncation, anything else unreadable an edit.
    if (!('record' in l.decoded)) {
      const partial = l.decoded.error === PARTIAL;
      report(l, partial ? 'truncated' : 'edited', partial ? 'partial line: the file ends without a newline' : `not a record: ${l.decoded.error}`, state.expected);
      state = { ...state, expected: state.expected + 1 };
      trusted = false;
      lastKind = undefined;
      continue;
    }
    const { record: r, intact } = l.decoded;
    const current = l as Line & { decoded: { record: AuditRecord } };
    records++;

    // Every record's bytes are the canonical form of its content and match its hash (checkpoints: below).
    if (!intact && r.type !== 'checkpoint') report(l, 'edited', 'content does not match its hash', r.seq);

    // A record that takes the seq of the record just before it, and links to what that one linked to, shows
    // that one was inserted: drop it from the chain and take this one in its place.
    if (r.seq < state.expected && r.seq === state.last?.decoded.record.seq && r.prev === before.prevLine && (bySeq.get(r.seq)?.length ?? 0) > 1) {
      report(state.last, 'inserted', `seq ${r.seq} is taken again by ${pos(l)}, which follows on from the record before this one`, r.seq);
      state = before;
      lastKind = undefined;
    }

    // Every record is the next seq, and its `prev` is the hash of the line before it.
    let kind: AuditProblemKind | undefined;
    const linked = r.seq === state.expected && r.prev === state.prevLine;
    if (r.seq === state.expected) {
      if (!linked && trusted) {
        if (state.last) report(state.last, 'edited', `its line does not match the prev of seq ${r.seq} at ${pos(l)}: one of them was altered`, state.last.decoded.record.seq);
        else report(l, 'edited', 'the first record does not start from 64 zeros', r.seq);
      }
    } else if (r.seq > state.expected) {
      const elsewhere = bySeq.get(state.expected)?.[0];
      kind = elsewhere === undefined ? 'deleted' : 'reordered';
      const missing = r.seq - 1 > state.expected ? `seqs ${state.expected}..${r.seq - 1}` : `seq ${state.expected}`;
      const message =
        elsewhere === undefined
          ? `${missing} missing${l.line === 1 && state.last ? ' before this file: a file may be missing' : ''}`
          : `seq ${r.seq} where ${state.expected} was expected; ${state.expected} is at ${pos(lines[elsewhere]!)}`;
      if (kind !== lastKind) report(l, kind, message, state.expected);
    } else {
      const other = bySeq.get(r.seq)?.find((i) => i !== l.index);
      if (other !== undefined) {
        // A copy of a record found elsewhere: reported, and left out of the chain.
        report(l, 'inserted', `seq ${r.seq} is also at ${pos(lines[other]!)}`, r.seq);
        lastKind = undefined;
        continue;
      }
      kind = 'reordered';
      if (kind !== lastKind) report(l, kind, `seq ${r.seq} comes after seq ${state.expected - 1}`, r.seq);
    }
    lastKind = kind;

    // Records the writer says it wrote and the trail no longer holds (its current file renamed or deleted meanwhile).
    if (r.type === 'resumed' && r.missing) {
      report(l, 'deleted', `${r.missing} record(s) the writer had written after seq ${r.seq - 1} are missing: its current file was renamed or deleted while it ran`, r.seq);
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
      if (!key) wrong.push(`unknown key id "${r.kid}"`);
      else if (!checkpointSignatureValid(r, key)) wrong.push('signature does not verify');
      if (wrong.length > 0) report(l, 'bad-checkpoint', wrong.join('; '), r.seq);
      sealed = wrong.length === 0;
      if (sealed) {
        checkpoints++;
        lastSealed = l;
      }
    }

    before = state;
    state = { expected: r.seq + 1, prevLine: sha256Hex(l.text), lastHash: r.hash, last: current };
    trusted = intact && (r.type !== 'checkpoint' || sealed);
  }

  // Records a `resumed` record says no valid checkpoint covered when the writer started again. The checkpoints after
  // it sign that statement, not those records: they are an unsealed tail of their own (unless still in the last one).
  for (const l of lines) {
    if (!('record' in l.decoded) || !l.decoded.intact || skippedBy.has(l.index)) continue;
    const r = l.decoded.record;
    if (r.type !== 'resumed' || !r.unsealed) continue;
    const [first, last] = [r.seq - r.unsealed, r.seq - 1];
    const at = lines[bySeq.get(first)?.[0] ?? l.index]!;
    if (at.index > (lastSealed?.index ?? -1)) continue;
    const which = first === last ? `seq ${first}` : `seqs ${first}..${last}`;
    report(
      at,
      'unsealed-tail',
      `${r.unsealed} record(s) (${which}) had no valid checkpoint when the writer resumed at ${pos(l)}: later checkpoints sign that statement, ` +
        'not these records (a crash before their checkpoint, records added without the key, or a checkpoint removed)',
      first,
    );
  }

  // Records after the last valid checkpoint: intact as far as the chain shows, but no signature covers them.
  const tail = lines.filter((l) => l.index > (lastSealed?.index ?? -1) && 'record' in l.decoded && !skippedBy.has(l.index));
  const firstTail = tail[0];
  if (firstTail && 'record' in firstTail.decoded) {
    if (lastSealed && 'record' in lastSealed.decoded) {
      report(firstTail, 'unsealed-tail', `${tail.length} record(s) after the checkpoint at seq ${lastSealed.decoded.record.seq} are not covered by a signature`, firstTail.decoded.record.seq);
    } else {
      // Anyone can write a chain of hashes: without one valid signature the trail cannot be told from a forged one.
      report(firstTail, 'unsigned', `no valid checkpoint: none of the ${tail.length} record(s) is covered by a signature`, firstTail.decoded.record.seq);
    }
  }
  if (records === 0) found.push({ index: 0, file: segments[0]?.file ?? '', line: 0, kind: 'empty', message: 'no records: the trail is missing or was emptied' });

  const problems = found.sort((a, b) => a.index - b.index).map(({ index: _index, ...p }) => p);
  return {
    ok: problems.every((p) => p.kind === 'unsealed-tail'),
    records,
    checkpoints,
    lastSealedSeq: lastSealed && 'record' in lastSealed.decoded ? lastSealed.decoded.record.seq : 0,
    problems,
  };
}

const PARTIAL = 'partial line';
const pos = (l: Line) => `${l.file}:${l.line}`;

/** Every line of every file, numbered; bytes after a file's last "\n" are a partial line, whatever they hold. */
function splitLines(segments: readonly { file: string; text: string }[]): Line[] {
  const lines: Line[] = [];
  for (const { file, text } of segments) {
    if (text === '') continue;
    const parts = text.split('\n');
    const endsWithNewline = parts.at(-1) === '';
    if (endsWithNewline) parts.pop();
    parts.forEach((t, i) => {
      const partial = !endsWithNewline && i === parts.length - 1;
      lines.push({ index: lines.length, file, line: i + 1, text: t, decoded: partial ? { error: PARTIAL } : decodeRecord(t) });
    });
  }
  return lines;
}

function keyResolver(keys: AuditPublicKeys): (kid: string) => KeyObject | undefined {
  const toPublic = (k: KeyObject | string) => (k instanceof KeyObject && k.type === 'public' ? k : createPublicKey(k));
  if (typeof keys === 'string' || keys instanceof KeyObject) {
    const key = toPublic(keys);
    return () => key;
  }
  const byId = new Map(Object.entries(keys).map(([kid, k]) => [kid, toPublic(k)]));
  return (kid) => byId.get(kid);
}
