// The audit log: chaining, checkpoints, resume after restarts and crashes, rotation, privacy, failures.
import t from 'tap';
import { appendFileSync, copyFileSync, readFileSync, readdirSync, renameSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { AuditFileSink, auditFiles } from '../../../src/audit/file-sink.js';
import { checkpointSignatureValid, signCheckpoint } from '../../../src/audit/checkpoint.js';
import { GENESIS, canonicalJson, encodeRecord, sha256Hex, type CheckpointRecord, type RecordBody } from '../../../src/audit/record.js';
import { verifyAudit, verifyAuditText } from '../../../src/audit/verify-audit.js';
import { auditVerify } from '../../../src/cli/audit.js';
import { FakeClock } from '../../helpers/clock.js';
import { failingJournal, linesOf, openLog, privateKey, publicKey, readSegments, recordsOf, tempDir } from './helpers.js';

const event = (n: number) => ({ name: 'password_ok', pid: `p${n}`, ip: '192.0.2.1' });

t.test('chaining: seq, time, prev and hash link every record', async (t) => {
  const dir = tempDir(t);
  const { log, clock } = openLog(dir);
  log.append(event(1));
  clock.advance(1000);
  log.append({ name: 'mfa_ok', pid: 'p1', factor: 'totp', n: 1.5, ok: true, none: null });
  log.append(event(2));
  await log.close();

  const lines = linesOf(readFileSync(join(dir, 'audit.jsonl'), 'utf8'));
  const records = lines.map((l) => JSON.parse(l));
  t.same(records.map((r) => [r.seq, r.type]), [[1, 'event'], [2, 'event'], [3, 'event'], [4, 'checkpoint']]);
  t.same(records[1].event, { name: 'mfa_ok', pid: 'p1', factor: 'totp', n: 1.5, ok: true, none: null });
  t.equal(records[0].time, '2027-01-15T08:00:00.000Z');
  t.equal(records[1].time, '2027-01-15T08:00:01.000Z', 'time from the injected clock');
  t.equal(records[0].prev, GENESIS);
  lines.forEach((line, i) => {
    const { hash, ...body } = records[i];
    t.equal(line, canonicalJson(records[i]), `line ${i + 1} is canonical JSON`);
    t.equal(hash, sha256Hex(canonicalJson(body)), `hash of record ${i + 1}`);
    if (i > 0) t.equal(records[i].prev, sha256Hex(lines[i - 1]!), `record ${i + 1} chained to the line before`);
  });
  t.same(verifyAudit(auditFiles(dir), publicKey), { ok: true, records: 4, checkpoints: 1, lastSealedSeq: 4, problems: [] });
});

t.test('a checkpoint comes T after the oldest unsealed record, with nothing else appended (not up to a tick later)', async (t) => {
  const dir = tempDir(t);
  const { log, clock } = openLog(dir, { checkpointEvery: 1000, checkpointIntervalMs: 60_000 });
  clock.advance(59_000);
  log.append(event(1));
  clock.advance(59_999);
  t.equal(recordsOf(dir).filter((r) => r.type === 'checkpoint').length, 0, 'not yet');
  clock.advance(1);
  t.same(recordsOf(dir).at(-1), { ...recordsOf(dir).at(-1), type: 'checkpoint', upTo: 1 }, 'T after it, by itself');
  log.append(event(2));
  clock.advance(30_000);
  log.append(event(3));
  clock.advance(30_000);
  t.match(recordsOf(dir).at(-1), { type: 'checkpoint', upTo: 4 }, 'timed from the oldest of the next batch');
  clock.advance(120_000);
  t.equal(recordsOf(dir).filter((r) => r.type === 'checkpoint').length, 2, 'nothing unsealed: no more');
  await log.close();
});

t.test('checkpoints: every N records, after T ms, on close; signed over their content', async (t) => {
  const dir = tempDir(t);
  const { log, clock } = openLog(dir, { checkpointEvery: 3, checkpointIntervalMs: 60_000 });
  for (let i = 1; i <= 7; i++) log.append(event(i));
  const types = () => recordsOf(dir).map((r) => (r.type === 'checkpoint' ? `C${String(r.upTo)}` : String(r.seq)));
  t.same(types(), ['1', '2', '3', 'C3', '5', '6', '7', 'C7', '9'], 'every 3 records');

  log.checkpointIfDue();
  clock.advance(59_999);
  log.checkpointIfDue();
  t.equal(recordsOf(dir).length, 9, 'not yet: the oldest unsealed record is younger than T');
  clock.advance(1);
  log.checkpointIfDue();
  t.same(types().slice(-2), ['9', 'C9'], 'T after the oldest unsealed record');
  log.checkpointIfDue();
  t.equal(recordsOf(dir).length, 10, 'nothing unsealed: no checkpoint');

  log.append(event(8));
  clock.advance(60_000);
  t.same(types().slice(-2), ['11', 'C11'], 'T after the oldest unsealed record, without an append');
  log.append(event(9));
  log.append(event(10));
  await log.close();
  await log.close();
  t.same(types().slice(-3), ['13', '14', 'C14'], 'close seals the rest, once');

  const checkpoints = recordsOf(dir).filter((r) => r.type === 'checkpoint') as unknown as CheckpointRecord[];
  const other = generateKeyPairSync('ed25519').publicKey;
  for (const c of checkpoints) {
    t.equal(c.kid, 'audit-1');
    t.equal(c.head, (recordsOf(dir)[c.upTo - 1] as { hash: string }).hash, 'head is the hash of the record before');
    t.ok(checkpointSignatureValid(c, publicKey), `checkpoint ${c.seq} verifies`);
    t.notOk(checkpointSignatureValid(c, other), 'not with another key');
    t.notOk(checkpointSignatureValid({ ...c, upTo: c.upTo - 1 }, publicKey), 'the signature covers upTo');
  }
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.same([report.ok, report.checkpoints, report.lastSealedSeq, report.problems], [true, 5, 15, []]);
});

t.test('resume after a restart: the chain continues; records no checkpoint sealed are said to be so', async (t) => {
  const dir = tempDir(t);
  const first = openLog(dir);
  first.log.append(event(1));
  await first.log.close();
  const second = openLog(dir);
  second.log.append(event(2));
  // A crash before close: the file as it was before the final checkpoint.
  const file = join(dir, 'audit.jsonl');
  const beforeClose = readFileSync(file);
  await second.log.close();
  writeFileSync(file, beforeClose);
  const third = openLog(dir);
  t.same(third.errors, [], 'an unsealed tail is not damage');
  third.log.append(event(3));
  await third.log.close();
  t.same(recordsOf(dir).map((r) => `${String(r.seq)}${String(r.type)[0]}`), ['1e', '2c', '3e', '4r', '5e', '6c']);
  t.match(recordsOf(dir)[3], { type: 'resumed', reason: 'unsealed', skipped: 0, unsealed: 1 }, 'before anything else');
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.ok(report.ok, 'a crash is not tampering');
  t.equal(report.lastSealedSeq, 6);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['unsealed-tail', 3, 3]], 'but its unsealed record stays visible');

  // After a clean shutdown (a final checkpoint) there is nothing to say.
  const fourth = openLog(dir);
  await fourth.log.close();
  t.equal(recordsOf(dir).length, 6);
});

t.test('audit verify: records after the last checkpoint are named as not verified, with a warning once overdue', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'audit.jsonl');
  const { log, clock } = openLog(dir, { checkpointEvery: 3 });
  for (let i = 1; i <= 5; i++) log.append(event(i));
  await log.close();
  // Without the key: the final checkpoint deleted (or records dropped and the rest chained again).
  const lines = linesOf(readFileSync(file, 'utf8'));
  t.same(lines.map((l) => JSON.parse(l).type), ['event', 'event', 'event', 'checkpoint', 'event', 'event', 'checkpoint']);
  writeFileSync(file, lines.slice(0, -1).map((l) => `${l}\n`).join(''));
  const pem = join(dir, 'public.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const time = new Date(clock.now()).toISOString();

  const soon = auditVerify([file], { publicKeyFile: pem }, clock.now() + 30_000);
  t.ok(soon.ok, 'a running gateway signs them at its next checkpoint');
  // In the assurance report's words (its audit section: "verified up to its last signature, at … (record 4)").
  t.equal(soon.lines.at(-1), `OK: 6 record(s), 1 signed checkpoint(s), verified up to the last signature, at ${time} (record 4); 2 record(s) written since then (${time} to ${time}) are not signed yet, so not verified`);
  t.notMatch(soon.lines.join('\n'), /\bseqs?\b|checkpoint of|\bsealed/, 'no word of its own for them');
  t.notOk(soon.lines.some((l) => l.startsWith('WARNING')));

  const later = auditVerify([file], { publicKeyFile: pem }, clock.now() + 3_600_000);
  t.ok(later.ok, 'a warning: a crash leaves the same, and the times are not signed');
  t.match(later.lines.at(-2), /^WARNING: the 2 record\(s\) after the last signature, the first written \S+, have waited over 3 minutes \(two checkpoint intervals and a minute\) without a signature/);
});

t.test('a record appended by someone without the key is not signed as if the writer had written it', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'audit.jsonl');
  const first = openLog(dir);
  first.log.append(event(1));
  await first.log.close();
  // Correctly chained after the final checkpoint: anyone with write access to the directory can do this.
  const forge = (seq: number, body: Record<string, unknown>) => {
    const last = linesOf(readFileSync(file, 'utf8')).at(-1)!;
    appendFileSync(file, `${encodeRecord({ seq, time: '2027-01-15T08:00:00.000Z', prev: sha256Hex(last), ...body } as RecordBody).line}\n`);
  };
  forge(3, { type: 'event', event: { name: 'session_started', pid: 'mallory' } });

  const second = openLog(dir);
  second.log.append(event(2));
  await second.log.close();
  t.same(recordsOf(dir).map((r) => `${String(r.seq)}${String(r.type)[0]}`), ['1e', '2c', '3e', '4r', '5e', '6c']);
  t.match(recordsOf(dir)[3], { reason: 'unsealed', skipped: 0, unsealed: 1 }, 'the restart says so, and its checkpoint signs that');
  const report = verifyAudit([file], publicKey);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['unsealed-tail', 3, 3]], 'the forged record is not taken as signed');
  t.match(report.problems[0]!.message, `1 record(s) (record 3) had no valid checkpoint when the writer resumed at ${file}:4`);
  t.equal(report.problems[0]!.resumed, true, 'told from the records after the last checkpoint');
  // What an operator sees: the warning, and OK (a crash leaves the same).
  const pem = join(dir, 'public.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const cli = auditVerify([file], { publicKeyFile: pem });
  t.ok(cli.ok);
  t.match(cli.lines, [`${file}:3 (record 3)  unsealed-tail: 1 record(s) (record 3) had no valid checkpoint`, /^OK: 6 record\(s\), 2 signed checkpoint\(s\), last record covered by a signature: 6$/]);

  // A forged checkpoint does not seal: only one that verifies with the writer's key does.
  const other = generateKeyPairSync('ed25519').privateKey;
  forge(7, { type: 'event', event: { name: 'factor_removed', pid: 'victim' } });
  const head = (JSON.parse(linesOf(readFileSync(file, 'utf8')).at(-1)!) as { hash: string }).hash;
  forge(8, signCheckpoint({ seq: 8, time: '2027-01-15T08:00:00.000Z', prev: sha256Hex(linesOf(readFileSync(file, 'utf8')).at(-1)!), type: 'checkpoint', upTo: 7, head, kid: 'audit-1' }, other));
  const third = openLog(dir);
  await third.log.close();
  t.match(recordsOf(dir)[8], { seq: 9, type: 'resumed', unsealed: 2 });
  t.match(
    verifyAudit([file], publicKey).problems.map((p) => [p.kind, p.line, p.seq]),
    [['unsealed-tail', 3, 3], ['unsealed-tail', 7, 7], ['bad-checkpoint', 8, 8]],
  );
});

t.test('the statement of an unsealed tail is kept until written: a failed write states it at the next', async (t) => {
  const dir = tempDir(t);
  const first = openLog(dir);
  first.log.append(event(1));
  await first.log.close();
  const second = openLog(dir);
  second.log.append(event(2)); // then a crash, before its checkpoint
  let fail = true;
  const errors: string[] = [];
  const log = new AuditLog({
    journal: failingJournal(dir, () => fail, 'EIO: i/o error, write'),
    signingKey: privateKey,
    keyId: 'audit-1',
    clock: new FakeClock(),
    onError: (e) => errors.push(e.code),
  });
  t.same(errors, ['AUDIT_WRITE_FAILED'], 'the resumed record could not be written at start');
  fail = false;
  log.append(event(3));
  await log.close();
  t.same(recordsOf(dir).map((r) => `${String(r.seq)}${String(r.type)[0]}`), ['1e', '2c', '3e', '4r', '5e', '6c'], 'written before the next record');
  t.match(recordsOf(dir)[3], { reason: 'unsealed', unsealed: 1 });
});

t.test('a crash mid-write after unsealed records: one resumed record says both', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'audit.jsonl');
  const first = openLog(dir);
  first.log.append(event(1));
  await first.log.close();
  const second = openLog(dir);
  second.log.append(event(2));
  second.log.append(event(3));
  // A crash: no final checkpoint, half a line.
  appendFileSync(file, '{"event":{"name":"mfa_ok"');
  const third = openLog(dir);
  await third.log.close();
  t.match(recordsOf(dir)[4], { seq: 5, type: 'resumed', reason: 'truncated', skipped: 1, unsealed: 2 });
  const report = verifyAudit([file], publicKey);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['unsealed-tail', 3, 3], ['truncated', 5, 5]]);
  t.match(report.problems[0]!.message, /^2 record\(s\) \(records 3\.\.4\) had no valid checkpoint/);
});

t.test('resume after a crash mid-write: a resumed record, never a continuation of the partial line', async (t) => {
  const dir = tempDir(t);
  const first = openLog(dir);
  first.log.append(event(1));
  first.log.append(event(2));
  await first.log.close();
  const file = join(dir, 'audit.jsonl');
  const intact = linesOf(readFileSync(file, 'utf8'));
  appendFileSync(file, '{"event":{"name":"mfa_ok","pid":"p2"},"hash":"ab');

  const second = openLog(dir);
  t.same(second.errors.map((e) => [e.code, e.seq]), [['AUDIT_TAIL_DAMAGED', 4]]);
  second.log.append(event(3));
  await second.log.close();
  const lines = linesOf(readFileSync(file, 'utf8'));
  t.equal(lines.length, 7, 'the partial line is kept, ended by a newline');
  const resumed = JSON.parse(lines[4]!);
  t.match(resumed, { seq: 4, type: 'resumed', reason: 'truncated', skipped: 1, prev: sha256Hex(intact[2]!) });
  t.same(JSON.parse(lines[5]!).seq, 5);

  const report = verifyAudit([file], publicKey);
  t.notOk(report.ok, 'the lost record stays visible');
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['truncated', 4, 4]]);
  t.equal(report.lastSealedSeq, 6, 'the chain after the restart verifies');
});

t.test('resume after a corrupt last line: skipped and reported, whatever it holds', async (t) => {
  const dir = tempDir(t);
  const first = openLog(dir);
  first.log.append(event(1));
  await first.log.close();
  const file = join(dir, 'audit.jsonl');
  const lines = linesOf(readFileSync(file, 'utf8'));
  writeFileSync(file, `${lines[0]}\n${lines[1]!.replace('"upTo":1', '"upTo":9')}\n`);
  const second = openLog(dir);
  await second.log.close();
  // The damaged line was the checkpoint of seq 1: no valid signature covers that record any more.
  t.match(recordsOf(dir)[2], { seq: 2, type: 'resumed', reason: 'corrupt', skipped: 1, unsealed: 1, prev: sha256Hex(lines[0]!) });
  t.match(recordsOf(dir)[3], { seq: 3, type: 'checkpoint' }, 'close seals the resumed record');
  const report = verifyAudit([file], publicKey);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['unsealed-tail', 1, 1], ['edited', 2, 2]]);
});

t.test('rotation: files named by their first seq, the chain continuing across files and restarts', async (t) => {
  const dir = tempDir(t);
  const maxBytes = 700;
  const first = openLog(dir, { maxBytes, checkpointEvery: 4 });
  for (let i = 1; i <= 10; i++) first.log.append(event(i));
  await first.log.close();
  const second = openLog(dir, { maxBytes, checkpointEvery: 4 });
  for (let i = 11; i <= 20; i++) second.log.append(event(i));
  await second.log.close();

  const names = readdirSync(dir).sort();
  t.ok(names.length >= 4, `rotated into ${names.length} files`);
  t.equal(names.at(-1), 'audit.jsonl');
  for (const s of readSegments(dir)) {
    t.ok(statSync(join(dir, s.file)).size <= maxBytes, `${s.file} within maxBytes`);
    const firstSeq = JSON.parse(linesOf(s.text)[0]!).seq as number;
    if (s.file !== 'audit.jsonl') t.equal(s.file, `audit-${String(firstSeq).padStart(12, '0')}.jsonl`, 'named by its first seq');
  }
  t.same(recordsOf(dir).map((r) => r.seq), Array.from({ length: recordsOf(dir).length }, (_, i) => i + 1), 'one chain over all files');
  const report = verifyAuditText(readSegments(dir), publicKey);
  t.same([report.ok, report.problems], [true, []]);
});

t.test('privacy: events with a username or a secret are refused and reported, never written', async (t) => {
  const dir = tempDir(t);
  const { log, errors } = openLog(dir);
  const refused = [
    { name: 'password_ok', username: 'alice' },
    { name: 'password_ok', user: 'alice' },
    { name: 'password_failed', password: 'Correct-Horse-9' },
    { name: 'mfa_failed', code: '123456' },
    { name: 'session_started', token: 'eyJhbGciOi.secret-token' },
    { name: 'enrolled', secret: 'JBSWY3DPEHPK3PXP' },
    { name: 'proxied', cookie: 'PORTALSESSID=deadbeef' },
    { name: 'password_ok', User_Name: 'alice' },
    { name: 'password_ok', Password: 'Correct-Horse-9' },
    { name: 'nested', pid: { username: 'alice' } },
    { name: 'not finite', n: Number.NaN },
  ];
  for (const e of refused) log.append(e as never);
  log.append({ name: 'password_ok', pid: 'p1', ip: undefined });
  await log.close();
  t.equal(errors.length, refused.length);
  t.same(recordsOf(dir)[0]!.event, { name: 'password_ok', pid: 'p1' }, 'an undefined field is left out');
  t.ok(errors.every((e) => e.code === 'AUDIT_EVENT_REFUSED'));
  t.match(errors[0]!.message, /"username"/, 'the field is named');
  t.same(log.counts, { appended: 1, refused: refused.length, fileFailures: 0, mirrorFailures: 0 });
  const written = readSegments(dir).map((s) => s.text).join('');
  for (const value of ['alice', 'Correct-Horse-9', '123456', 'secret-token', 'JBSWY3DPEHPK3PXP', 'deadbeef']) {
    t.notMatch(written, value, `${value} not in the audit file`);
    t.notOk(errors.some((e) => e.message.includes(value)), `${value} not in the errors`);
  }
  t.equal(recordsOf(dir).length, 2, 'the good event and the final checkpoint');
});

t.test('a timed checkpoint that could not be written is tried again an interval later, with nothing else appended', async (t) => {
  const dir = tempDir(t);
  let fail = false;
  const clock = new FakeClock();
  const log = new AuditLog({ journal: failingJournal(dir, () => fail), signingKey: privateKey, keyId: 'audit-1', clock, checkpointEvery: 1000, checkpointIntervalMs: 60_000, onError: () => {} });
  log.append(event(1));
  fail = true;
  clock.advance(60_000);
  t.equal(recordsOf(dir).filter((r) => r.type === 'checkpoint').length, 0, 'the disk full when it was due');
  fail = false;
  clock.advance(59_999);
  t.equal(recordsOf(dir).filter((r) => r.type === 'checkpoint').length, 0, 'not before the interval');
  clock.advance(1);
  t.match(recordsOf(dir).at(-1), { type: 'checkpoint', upTo: 1 }, 'sealed by itself once it can be written');
  await log.close();
});

t.test('append never throws: failed writes are reported and the chain resumes from the file', async (t) => {
  const dir = tempDir(t);
  const sink = new AuditFileSink({ dir, maxBytes: 1_000_000 });
  let fail: 'no' | 'whole' | 'half' = 'no';
  const journal = {
    linesFromEnd: () => sink.linesFromEnd(),
    endPartialLine: () => sink.endPartialLine(),
    sync: () => sink.sync(),
    close: () => sink.close(),
    write(line: string, seq: number) {
      if (fail === 'half') {
        // What a failing write leaves: part of the line, and a sink that reopens the file.
        appendFileSync(join(dir, 'audit.jsonl'), line.slice(0, 40));
        sink.close();
      }
      if (fail !== 'no') throw new Error('ENOSPC: no space left on device');
      sink.write(line, seq);
    },
  };
  const errors: string[] = [];
  const log = new AuditLog({
    journal,
    signingKey: privateKey,
    keyId: 'audit-1',
    clock: new FakeClock(),
    onError: (e) => {
      errors.push(`${e.code} ${e.sink} ${e.seq}`);
      throw new Error('a failing error handler');
    },
  });
  log.append(event(1));
  fail = 'whole';
  t.doesNotThrow(() => log.append(event(2)));
  fail = 'no';
  log.append(event(3));
  fail = 'half';
  log.append(event(4));
  fail = 'no';
  log.append(event(5));
  await log.close();
  log.append(event(6));
  // p2, not written at all, is stated by a `resumed` record (seq 2) before p3; p4 left half its line.
  t.same(errors, ['AUDIT_WRITE_FAILED file 2', 'AUDIT_WRITE_FAILED file 4', 'AUDIT_TAIL_DAMAGED file 4', 'AUDIT_CLOSED undefined undefined']);
  t.same(log.counts, { appended: 3, refused: 0, fileFailures: 2, mirrorFailures: 0 });
  t.same(recordsOf(dir).filter((r) => r.type === 'event').map((r) => (r.event as { pid: string }).pid), ['p1', 'p3', 'p5']);
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['deleted', 2, 2], ['truncated', 4, 4]], 'the lost record, and the half-written line (counted once)');
  t.match(recordsOf(dir)[1], { seq: 2, type: 'resumed', reason: 'lost', lost: 1 });
  t.match(recordsOf(dir)[3], { seq: 4, type: 'resumed', reason: 'truncated', skipped: 1 }, 'the half-written p4 is its damaged line, not also lost');
  t.notOk('lost' in recordsOf(dir)[3]!);
  t.equal(report.lastSealedSeq, 6);
});

t.test('records lost to failed writes (a full disk) are counted in the trail once it can be written, and verify reports them', async (t) => {
  const dir = tempDir(t);
  let full = false;
  const log = new AuditLog({
    journal: failingJournal(dir, () => full),
    signingKey: privateKey,
    keyId: 'audit-1',
    clock: new FakeClock(),
  });
  log.append(event(1));
  full = true;
  log.append(event(2));
  log.append(event(3));
  full = false;
  log.append(event(4));
  await log.close();
  const records = recordsOf(dir);
  t.same(records.map((r) => `${String(r.seq)}${String(r.type)[0]}`), ['1e', '2r', '3e', '4c'], 'the next record written says what is missing');
  t.match(records[1], { type: 'resumed', reason: 'lost', skipped: 0, lost: 2 });
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.equal(report.ok, false, 'a trail missing records does not verify');
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['deleted', 2, 2]]);
  t.match(report.problems[0]!.message, /^2 record\(s\) could not be written after record 1/);
});

t.test('records lost after a checkpoint, the disk recovered before shutdown with nothing else written: the shutdown says so', async (t) => {
  const dir = tempDir(t);
  let full = false;
  const log = new AuditLog({ journal: failingJournal(dir, () => full), signingKey: privateKey, keyId: 'audit-1', clock: new FakeClock(), checkpointEvery: 1 });
  log.append(event(1));
  full = true;
  log.append(event(2));
  full = false;
  await log.close();
  const records = recordsOf(dir);
  t.same(records.map((r) => `${String(r.seq)}${String(r.type)[0]}`), ['1e', '2c', '3r', '4c'], 'stated, and signed, before the process ends');
  t.match(records[2], { type: 'resumed', reason: 'lost', skipped: 0, lost: 1 });
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.equal(report.ok, false);
  t.same(report.problems.map((p) => [p.kind, p.line, p.seq]), [['deleted', 3, 3]]);

  // Nothing lost: a clean shutdown after a checkpoint writes nothing more.
  const again = openLog(dir, { checkpointEvery: 1 });
  again.log.append(event(3));
  await again.log.close();
  t.equal(recordsOf(dir).length, 6);
});

t.test('an event that left half its line on a full disk is its damaged line, not also lost, when ending that line failed too', async (t) => {
  const dir = tempDir(t);
  const sink = new AuditFileSink({ dir, maxBytes: 1_000_000 });
  let full: 'no' | 'half' | 'yes' = 'no';
  const log = new AuditLog({
    journal: {
      linesFromEnd: () => sink.linesFromEnd(),
      endPartialLine: () => {
        if (full !== 'no') throw new Error('ENOSPC: no space left on device, write');
        sink.endPartialLine();
      },
      sync: () => sink.sync(),
      close: () => sink.close(),
      write(line, seq) {
        if (full === 'half') {
          appendFileSync(join(dir, 'audit.jsonl'), line.slice(0, 40));
          sink.close();
          full = 'yes';
        }
        if (full !== 'no') throw new Error('ENOSPC: no space left on device, write');
        sink.write(line, seq);
      },
    },
    signingKey: privateKey,
    keyId: 'audit-1',
    clock: new FakeClock(),
    onError: () => {},
  });
  log.append(event(1));
  full = 'half';
  log.append(event(2)); // half its line reaches the file
  log.append(event(3)); // not a byte: the half line cannot even be ended
  full = 'no';
  log.append(event(4));
  await log.close();
  t.match(recordsOf(dir)[1], { seq: 2, type: 'resumed', reason: 'truncated', skipped: 1, lost: 1 }, 'p2 is the damaged line, p3 alone is lost');
  const report = verifyAudit(auditFiles(dir), publicKey);
  t.same(report.problems.map((p) => p.kind), ['truncated', 'deleted']);
});

t.test('a current file renamed (logrotate), deleted or emptied (copytruncate) while the writer runs: reported, the gap stated, verify fails', async (t) => {
  for (const how of ['renamed', 'deleted', 'emptied'] as const) {
    const dir = tempDir(t);
    const { log, errors } = openLog(dir, { checkpointEvery: 1000 });
    for (let n = 1; n <= 4; n++) log.append(event(n));
    if (how === 'renamed') renameSync(join(dir, 'audit.jsonl'), join(dir, 'audit.jsonl.1'));
    else if (how === 'deleted') unlinkSync(join(dir, 'audit.jsonl'));
    else {
      // logrotate's copytruncate: the records copied to a file the trail does not read, and the file emptied in place.
      copyFileSync(join(dir, 'audit.jsonl'), join(dir, 'audit.jsonl.1'));
      truncateSync(join(dir, 'audit.jsonl'), 0);
    }
    log.append(event(5));
    log.append(event(6));
    await log.close();
    t.same(errors.map((e) => e.code), ['AUDIT_WRITE_FAILED'], `${how}: reported at the next write`);
    t.match(errors[0]!.message, /renamed or deleted/);
    const records = recordsOf(dir);
    t.match(records[0], { type: 'resumed', reason: 'missing', missing: 4, seq: 1 }, `${how}: the new file starts by saying what is missing`);
    t.same(records.filter((r) => r.type === 'event').map((r) => (r.event as { pid: string }).pid), ['p5', 'p6'], `${how}: the records after it are kept`);
    const report = verifyAuditText(readSegments(dir), publicKey);
    t.equal(report.ok, false, `${how}: verify fails`);
    t.match(report.problems, [{ kind: 'deleted', message: /4 record\(s\) the writer had written after record 0 are missing/ }]);
  }
});
