// Every kind of tampering the verifier must find, each at its exact position.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { signCheckpoint, type CheckpointClaims } from '../../../src/audit/checkpoint.js';
import { GENESIS, canonicalJson, encodeRecord, sha256Hex } from '../../../src/audit/record.js';
import { cpSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditFiles, openAuditDir } from '../../../src/audit/file-sink.js';
import { verifyAudit, verifyAuditDir, verifyAuditText, verifyTrail, type AuditReport, type Trail } from '../../../src/audit/verify-audit.js';
import { linesOf, openLog, publicKey, readSegments, rewrite, tempDir, textOf } from './helpers.js';

// One trail for every case: 15 events, a checkpoint every 4 records (seq 5, 10, 15) and on close (seq 19),
// rotated into several files.
const dir = tempDir(t);
const { log } = openLog(dir, { maxBytes: 1100, checkpointEvery: 4 });
for (let i = 1; i <= 15; i++) log.append({ name: i % 2 ? 'password_ok' : 'mfa_ok', pid: `p${i}`, ip: '192.0.2.7' });
await log.close();
const trail = readSegments(dir);

type Segments = { file: string; lines: string[] }[];
const copy = (): Segments => trail.map((s) => ({ file: s.file, lines: linesOf(s.text) }));
const verify = (segs: Segments, text = (s: Segments[number]) => textOf(s.lines)): AuditReport =>
  verifyAuditText(segs.map((s) => ({ file: s.file, text: text(s) })), publicKey);
const parse = (line: string) => JSON.parse(line) as Record<string, unknown> & { seq: number; type: string };
const summary = (r: AuditReport) => r.problems.map((p) => [p.kind, p.file, p.line, p.seq]);

/** The n-th (0-based) record of a type, where it is. */
function find(segs: Segments, type: string, n = 0) {
  const h = segs.flatMap((seg) => seg.lines.map((l, i) => ({ seg, i, l })).filter((h) => parse(h.l).type === type))[n]!;
  return { seg: h.seg, i: h.i, seq: parse(h.l).seq };
}

t.test('the untouched trail verifies', async (t) => {
  t.ok(trail.length >= 4, `${trail.length} files`);
  const report = verify(copy());
  t.same(report, { ok: true, records: 19, checkpoints: 4, lastSealedSeq: 19, problems: [] });
});

t.test('edited: content changed, with or without the hash recomputed, reported at the record', async (t) => {
  const cases: [string, (line: string) => string][] = [
    ['content only', (l) => l.replace(/"pid":"p\d+"/, '"pid":"p99"')],
    ['one byte of whitespace', (l) => l.replace('{"event"', '{ "event"')],
    ['content and a recomputed hash', (l) => rewrite(l, (r) => ((r.event as Record<string, unknown>).pid = 'p99'))],
    ['the time, hash recomputed', (l) => rewrite(l, (r) => (r.time = '2020-01-01T00:00:00.000Z'))],
  ];
  for (const [name, edit] of cases) {
    const segs = copy();
    const { seg, i, seq } = find(segs, 'event', 2);
    seg.lines[i] = edit(seg.lines[i]!);
    const report = verify(segs);
    t.equal(report.ok, false, name);
    t.same(summary(report), [['edited', seg.file, i + 1, seq]], `${name}: one problem, at the record`);
  }
});

t.test('deleted: a missing record is reported where the gap shows, with the missing seq', async (t) => {
  const segs = copy();
  const { seg, i, seq } = find(segs, 'event', 2);
  seg.lines.splice(i, 1);
  const report = verify(segs);
  t.same(summary(report)[0], ['deleted', seg.file, i + 1, seq]);
  t.match(report.problems[0]!.message, `record ${seq} missing`);
});

t.test('inserted: a forged record taking a seq, or a copied record, is reported where it sits', async (t) => {
  const forged = copy();
  const at = find(forged, 'event', 3);
  const before = at.i > 0 ? sha256Hex(at.seg.lines[at.i - 1]!) : GENESIS;
  const fake = encodeRecord({ seq: at.seq, time: '2027-01-15T08:00:00.000Z', type: 'event', event: { name: 'mfa_ok', pid: 'p1' }, prev: before }).line;
  at.seg.lines.splice(at.i, 0, fake);
  t.same(summary(verify(forged)), [['inserted', at.seg.file, at.i + 1, at.seq]], 'forged, chained to the record before it');

  const copied = copy();
  const original = find(copied, 'event', 0);
  const later = find(copied, 'event', 5);
  later.seg.lines.splice(later.i, 0, original.seg.lines[original.i]!);
  t.same(summary(verify(copied)), [['inserted', later.seg.file, later.i + 1, original.seq]], 'a copy of an earlier record');
});

t.test('a copy of a record put in again is reported, and seen once by the reading the report counts from', async (t) => {
  const seen = (segs: Segments) => {
    const d = tempDir(t);
    for (const s of segs) writeFileSync(join(d, s.file), textOf(s.lines));
    const seqs: number[] = [];
    const report = verifyAuditDir(d, publicKey, (r) => seqs.push(r.seq));
    return { report, seqs: seqs.sort((a, b) => a - b) };
  };
  const all = Array.from({ length: 19 }, (_, i) => i + 1);
  t.same(seen(copy()).seqs, all, 'untouched: each record once');
  const cases: [string, (segs: Segments) => void][] = [
    ['right after itself', (segs) => {
      const { seg, i } = find(segs, 'event', 2);
      seg.lines.splice(i + 1, 0, seg.lines[i]!);
    }],
    ['further on', (segs) => {
      const original = find(segs, 'event', 0);
      const later = find(segs, 'event', 5);
      later.seg.lines.splice(later.i, 0, original.seg.lines[original.i]!);
    }],
    ['before its original', (segs) => {
      const original = find(segs, 'event', 5);
      const earlier = find(segs, 'event', 3);
      earlier.seg.lines.splice(earlier.i, 0, original.seg.lines[original.i]!);
    }],
  ];
  for (const [name, put] of cases) {
    const segs = copy();
    put(segs);
    const { report, seqs } = seen(segs);
    t.equal(report.ok, false, `${name}: reported`);
    t.same(seqs, all, `${name}: each record seen once`);
  }
});

t.test('reordered: two records swapped, near or far', async (t) => {
  for (const [a, b] of [[1, 2], [2, 3], [1, 6]] as const) {
    const segs = copy();
    const x = find(segs, 'event', a);
    const y = find(segs, 'event', b);
    [x.seg.lines[x.i], y.seg.lines[y.i]] = [y.seg.lines[y.i]!, x.seg.lines[x.i]!];
    const report = verify(segs);
    t.same(summary(report)[0], ['reordered', x.seg.file, x.i + 1, x.seq], `seq ${x.seq} and ${y.seq}`);
    t.ok(report.problems.every((p) => p.kind === 'reordered'), 'only reordered');
    if (b - a === 1) t.equal(report.problems.length, 1, 'one problem for one swap');
  }
});

t.test('truncated: a partial final line', async (t) => {
  const segs = copy();
  const last = segs.at(-1)!;
  const line = last.lines.at(-1)!;
  const report = verify(segs, (s) => (s === last ? textOf(s.lines).slice(0, -1 - Math.floor(line.length / 2)) : textOf(s.lines)));
  t.equal(report.ok, false);
  t.same(summary(report).at(-1), ['truncated', last.file, last.lines.length, 19]);
  t.equal(report.lastSealedSeq, 15, 'the checkpoint before is the last seal');
  t.same(report.problems[0]!.kind, 'unsealed-tail');
  t.equal(report.problems[0]!.seq, 16);
});

t.test('bad-checkpoint: forged with another key, or altered', async (t) => {
  const other = generateKeyPairSync('ed25519').privateKey;
  const resign = (line: string, change: (c: CheckpointClaims) => void, key = other) => {
    const { hash: _hash, sig: _sig, ...claims } = JSON.parse(line) as CheckpointClaims & { hash: string; sig: string };
    change(claims);
    return encodeRecord(signCheckpoint(claims, key)).line;
  };
  const cases: [string, (line: string) => string, RegExp][] = [
    ['re-signed with another key', (l) => resign(l, () => {}), /signature does not verify/],
    ['upTo altered, hash recomputed', (l) => rewrite(l, (r) => (r.upTo = (r.upTo as number) - 1)), /upTo .* signature does not verify/],
    ['upTo altered and re-signed with another key', (l) => resign(l, (c) => (c.upTo -= 1)), /upTo/],
    ['head altered, hash kept', (l) => l.replace(/"head":"[0-9a-f]{4}/, '"head":"0000'), /content does not match its hash.*head is not/],
  ];
  for (const [name, edit, message] of cases) {
    const segs = copy();
    const { seg, i, seq } = find(segs, 'checkpoint', 1);
    seg.lines[i] = edit(seg.lines[i]!);
    const report = verify(segs);
    t.same(summary(report), [['bad-checkpoint', seg.file, i + 1, seq]], name);
    t.match(report.problems[0]!.message, message, name);
    t.same([report.checkpoints, report.lastSealedSeq], [3, 19], `${name}: later checkpoints still seal`);
  }
});

t.test('files: one missing in the middle, or given out of order', async (t) => {
  const missing = copy();
  const [gone] = missing.splice(2, 1);
  const firstGone = parse(gone!.lines[0]!).seq;
  const report = verify(missing);
  t.same(summary(report), [['deleted', missing[2]!.file, 1, firstGone]]);
  t.match(report.problems[0]!.message, /a file may be missing/);

  const swapped = copy();
  [swapped[1], swapped[2]] = [swapped[2]!, swapped[1]!];
  const out = verify(swapped);
  t.equal(out.ok, false);
  t.same(summary(out)[0], ['reordered', swapped[1]!.file, 1, parse(swapped[2]!.lines[0]!).seq]);
  t.ok(out.problems.every((p) => p.kind === 'reordered'));
});

t.test('unsealed-tail: records after the last checkpoint are reported, and ok stays true', async (t) => {
  const segs = copy();
  const last = segs.at(-1)!;
  last.lines.pop();
  const appended = encodeRecord({ seq: 19, time: '2027-01-15T09:00:00.000Z', type: 'event', event: { name: 'forged' }, prev: sha256Hex(last.lines.at(-1)!) }).line;
  last.lines.push(appended);
  const report = verify(segs);
  t.equal(report.ok, true, 'the chain itself is intact');
  t.equal(report.lastSealedSeq, 15);
  const unsealed = segs.find((s) => s.lines.some((l) => parse(l).seq === 16))!;
  t.same(summary(report), [['unsealed-tail', unsealed.file, unsealed.lines.findIndex((l) => parse(l).seq === 16) + 1, 16]]);
  t.match(report.problems[0]!.message, /^4 record\(s\) after the last signature \(record 15\) are not covered/);
  const sealed = parse(segs.flatMap((s) => s.lines).find((l) => parse(l).seq === 15)!).time as string;
  const first = parse(segs.flatMap((s) => s.lines).find((l) => parse(l).seq === 16)!).time as string;
  t.same(report.problems[0]!.unsigned, { records: 4, firstTime: first, lastTime: '2027-01-15T09:00:00.000Z', sealedSeq: 15, sealedTime: sealed }, 'with their times, which nothing vouches for');
});

t.test('records and lines that are not records', async (t) => {
  const segs = copy();
  const { seg, i, seq } = find(segs, 'event', 1);
  seg.lines[i] = 'not json';
  t.same(summary(verify(segs)), [['edited', seg.file, i + 1, seq]], 'garbage in place of a record');
  const extra = copy();
  extra[0]!.lines[0] = canonicalJson({ ...parse(extra[0]!.lines[0]!), note: 'x' });
  t.same(summary(verify(extra))[0], ['edited', extra[0]!.file, 1, 1], 'an unknown field');
  // A time that is not the writer's: it would be printed (the times of records no signature covers yet).
  const escape = copy();
  const { seg: last, i: at } = find(escape, 'event', 1);
  const record = parse(last.lines[at]!);
  const { hash: _, ...body } = { ...record, time: '\u009b31mforged' };
  last.lines[at] = canonicalJson({ ...body, hash: sha256Hex(canonicalJson(body)) });
  const found = verify(escape).problems.find((p) => p.kind === 'edited');
  t.match(found, { message: /not a record: time is not an ISO-8601 UTC time/ }, 'a time that is no time: not a record');
  // Names read from a forged line reach the message quoted, with no character a terminal would act on.
  const named = copy();
  named[0]!.lines[0] = canonicalJson({ ...parse(named[0]!.lines[0]!), '\u001b]0;x\u0007': 1 });
  const message = verify(named).problems[0]!.message;
  t.match(message, 'unexpected field "\\u001b]0;x\\u0007"');
  t.notMatch(message, /\p{C}/u, 'no control character');
});

t.test('a trail with no record, or with no valid checkpoint, does not verify: it could be forged', async (t) => {
  const empty = verifyAuditText([{ file: 'audit.jsonl', text: '' }], publicKey);
  t.same([empty.ok, empty.problems.map((p) => p.kind)], [false, ['empty']], 'an emptied file');
  t.same(verifyAuditText([], publicKey).problems.map((p) => p.kind), ['empty'], 'no file at all');
  // A chain of records with correct hashes but no checkpoint: anyone could have written it.
  const lines = copy().flatMap((s) => s.lines);
  const firstCheckpoint = lines.findIndex((l) => parse(l).type === 'checkpoint');
  const forged = [{ file: 'audit.jsonl', lines: lines.slice(0, firstCheckpoint) }];
  const report = verify(forged);
  t.equal(report.ok, false, 'records but no signature: not ok');
  t.same(summary(report), [['unsigned', 'audit.jsonl', 1, 1]], 'said as such, at the first record');
  const sealed = verify([{ file: 'audit.jsonl', lines: lines.slice(0, firstCheckpoint + 1) }]);
  t.same([sealed.ok, sealed.problems], [true, []], 'the same records with their checkpoint verify');
});

t.test('a directory whose trail ends in a rotated file lost its current file: deleted, not an unsealed tail', async (t) => {
  const check = (d: string) => verifyAuditDir(d, publicKey);
  t.same([check(dir).ok, check(dir).problems], [true, []], 'the directory as written');
  for (const [name, damage] of [
    ['deleted', (d: string) => rmSync(join(d, 'audit.jsonl'))],
    ['emptied', (d: string) => writeFileSync(join(d, 'audit.jsonl'), '')],
  ] as const) {
    const cut = join(tempDir(t), 'trail');
    cpSync(dir, cut, { recursive: true });
    damage(cut);
    const report = check(cut);
    t.equal(report.ok, false, `current file ${name}`);
    t.same(report.problems.at(-1), {
      file: join(cut, 'audit.jsonl'),
      line: 0,
      kind: 'deleted',
      message: `the trail ends in ${trail.at(-2)!.file}: the records of the current file after it are missing (the file was deleted or emptied)`,
      trail: cut,
    });
    t.same(verifyAudit(auditFiles(cut), publicKey).ok, true, 'its records alone seem intact');
  }
  const none = tempDir(t);
  t.same(check(none).problems, [{ file: none, line: 0, kind: 'empty', message: 'no records: the trail is missing or was emptied', trail: none }], 'a directory without audit files is named');
});

t.test('read from its files in chunks, a trail gets the report its text gets, damage at chunk edges included', async (t) => {
  const big = tempDir(t);
  const { log: writer } = openLog(big, { maxBytes: 200_000, checkpointEvery: 50 });
  // Two-, three- and four-byte characters, so that chunk edges fall inside characters too.
  for (let i = 1; i <= 1500; i++) writer.append({ name: 'note', pid: `p${i}`, text: `é€😀 ${'x'.repeat(i % 97)}` });
  await writer.close();
  const files = auditFiles(big);
  t.ok(files.length >= 2, `${files.length} files`);
  const fromText = () => verifyAuditText(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })), publicKey);
  const check = (what: string) => {
    const report = verifyAudit(files, publicKey);
    t.same(report, fromText(), what);
    return report;
  };
  t.same(check('untouched').problems, []);
  const bytes = readFileSync(files[0]!);
  // The line across the first chunk edge (64 KiB), edited inside a character; a line deleted after the second edge.
  const edge = 64 * 1024;
  const [start, end] = [bytes.lastIndexOf(0x0a, edge) + 1, bytes.indexOf(0x0a, edge)];
  const euro = bytes.indexOf('€', start);
  t.ok(euro > start && euro < end, 'the line holds the characters');
  const next = bytes.indexOf(0x0a, 2 * edge);
  const cut = Buffer.concat([bytes.subarray(0, euro + 1), Buffer.from([0x41]), bytes.subarray(euro + 2, next + 1), bytes.subarray(bytes.indexOf(0x0a, next + 1) + 1)]);
  writeFileSync(files[0]!, cut);
  // The current file ends in the middle of a four-byte character.
  const last = readFileSync(files.at(-1)!);
  writeFileSync(files.at(-1)!, last.subarray(0, last.indexOf('😀', last.length - 200) + 2));
  t.same(
    check('damaged').problems.map((p) => p.kind),
    ['edited', 'deleted', 'unsealed-tail', 'truncated'],
  );
});

t.test('files changed between the two readings of the check: an error, never a verdict on positions that moved', async (t) => {
  const segments = copy();
  let readings = 0;
  const changing: Trail = {
    files: segments.map((s) => ({ name: s.file, size: 1 })),
    *lines(i) {
      if (i === 0) readings++;
      // The second reading lost a line of the second file.
      const lines = readings > 1 && i === 1 ? segments[i]!.lines.slice(1) : segments[i]!.lines;
      for (const line of lines) yield { line, complete: true };
    },
  };
  try {
    verifyTrail(changing, publicKey);
    t.fail('no error');
  } catch (err) {
    t.match(err, { message: /changed between the two readings/ });
  }
  readings = -10;
  t.same(verifyTrail(changing, publicKey).problems, [], 'the same files read the same twice verify');
});

t.test('a directory that goes away while its files are opened: the error, and none of them left open', async (t) => {
  const gone = join(tempDir(t), 'trail');
  cpSync(dir, gone, { recursive: true });
  const openFds = () => readdirSync('/proc/self/fd').length;
  const before = openFds();
  let opened = 0;
  const files = auditFiles(gone).length;
  const open = (file: string) => {
    const fd = openSync(file, 'r');
    // Once every file is open, before they are listed again.
    if (++opened === files) renameSync(gone, `${gone}-moved`);
    return fd;
  };
  try {
    openAuditDir(gone, open);
    t.fail('no error');
  } catch (err) {
    t.match(err, { code: 'ENOENT' });
  }
  t.equal(openFds(), before, 'every file it opened is closed');
});
