// The report reads the audit trail in a worker thread: the same reading as on the calling thread, only the counts
// come back, and the event loop keeps turning while a long trail is checked.
import t, { type Test } from 'tap';
import { openSync } from 'node:fs';
import { serialize } from 'node:v8';
import { join } from 'node:path';
import { auditFiles, openAuditDir } from '../../../src/audit/file-sink.js';
import { verifyTrail } from '../../../src/audit/verify-audit.js';
import { publicKeyPem } from '../../../src/audit/signing-key.js';
import { readTrail, readTrailOffThread, type TrailRequest } from '../../../src/services/report-trail.js';
import { buildReport, emptySummary } from '../../../src/domain/report.js';
import { openLog, privateKey, tempDir } from '../audit/helpers.js';

const START = 1_800_000_000_000; // the FakeClock's start
const ALL = { from: START, to: START + 365 * 86_400_000 };

/** A trail of `n` events (checkpointed as the gateway does, one second apart per hundred), as a report request. */
async function trail(t: Test, n: number): Promise<TrailRequest> {
  const dir = tempDir(t);
  const { log, clock } = openLog(dir, { maxBytes: 64 * 1024 * 1024 });
  for (let i = 1; i <= n; i++) {
    log.append({ kind: 'security', event: i % 2 ? 'password_ok' : 'mfa_ok', pid: `p${i % 97}`, ip: '192.0.2.1' });
    if (i % 100 === 0) clock.advance(1000);
  }
  await log.close();
  return { dirs: [dir], publicKeyPem: publicKeyPem(privateKey), period: ALL };
}

/** The longest gap between turns of the event loop while `work` runs (and a moment after), in ms. */
async function longestStall<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  let last = performance.now();
  let ms = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    ms = Math.max(ms, now - last);
    last = now;
  }, 5);
  const result = await work();
  await new Promise((resolve) => setTimeout(resolve, 30));
  clearInterval(tick);
  return { result, ms };
}

t.test('the worker reads what the calling thread reads', async (t) => {
  const request = await trail(t, 300);
  const here = readTrail(request);
  t.same(here.events.security, new Map([['password_ok', 150], ['mfa_ok', 150]]), 'every event');
  t.equal(here.events.usersSeen.size, 97);
  t.match(here.audit, { ok: true, records: 300 + here.audit!.checkpoints });
  t.same(await readTrailOffThread(request), here);
  t.same(await readTrailOffThread({ dirs: [], publicKeyPem: null, period: ALL }), { events: emptySummary(), audit: null }, 'audit trail disabled');
});

t.test('only the events of the period are counted; the whole trail is verified', async (t) => {
  const request = await trail(t, 300);
  // Events 1..100 at START, 101..200 a second later, 201..300 two seconds later.
  const off = await readTrailOffThread({ ...request, period: { from: START + 1000, to: START + 2000 } });
  t.same(off.events.security, new Map([['password_ok', 50], ['mfa_ok', 50]]), 'the second hundred');
  t.equal(off.audit!.records, readTrail(request).audit!.records, 'the verdict covers every record');
});

t.test('request records (audit.requests) are verified but not counted', async (t) => {
  const dir = tempDir(t);
  const { log } = openLog(dir);
  log.append({ kind: 'security', event: 'password_ok', pid: 'p1', ip: '192.0.2.1' });
  log.append({ kind: 'admin', action: 'lockout_clear', operator: 'ops', reason: 'user called', pid: 'p1' });
  for (let i = 0; i < 1000; i++) {
    log.append({ kind: 'request', pid: 'p1', ip: '192.0.2.1', method: 'GET', path: `/records/${i}`, rule: 'portal', verdict: 'allow', status: 200, ms: 3 });
  }
  await log.close();
  const request = { dirs: [dir], publicKeyPem: publicKeyPem(privateKey), period: ALL };
  const here = readTrail(request);
  t.same(here.events, { ...emptySummary(), security: new Map([['password_ok', 1]]), usersSeen: new Set(['p1']), adminActions: new Map([['lockout_clear', 1]]) }, 'what the report counts, and nothing else');
  t.match(here.audit, { ok: true, records: 1002 + here.audit!.checkpoints }, 'every record verified');
  t.same(readTrail({ ...request, publicKeyPem: null }).events, here.events, 'also with the audit trail not checked');
  t.same(await readTrailOffThread(request), here);
});

t.test('a damaged trail is reported the same way from the worker', async (t) => {
  const request = await trail(t, 50);
  const { writeFileSync, readFileSync } = await import('node:fs');
  const file = auditFiles(request.dirs[0]!)[0]!;
  writeFileSync(file, readFileSync(file, 'utf8').replace('"p7"', '"p8"'));
  const off = await readTrailOffThread(request);
  t.equal(off.audit!.ok, false);
  t.match(off.audit!.problems, [{ kind: 'edited' }]);
  t.same(off, readTrail(request));
});

/** The finding a report of these trails makes about records a restarted writer found unsigned, if any. */
function resumedFinding(dirs: string[]): string | undefined {
  const { events, audit } = readTrail({ dirs, publicKeyPem: publicKeyPem(privateKey), period: ALL });
  const store = { enrolledUsers: new Set<string>(), factorsByKind: { totp: 0, webauthn: 0, recovery: 0 }, unreadableFactorRecords: 0 };
  const policy = { rules: [], default: 'deny' as const, caseSensitivePaths: false, networks: {}, legacyEndpoints: [] };
  const report = buildReport({ period: ALL, generatedAt: START, events, store, policy, settings: [], keys: [], audit });
  return report.findings.find((f) => f.startsWith('The audit trail holds records no signature covers'));
}

t.test('several chains (one per instance): each has its own seqs and its own sealed position', async (t) => {
  const append = (log: ReturnType<typeof openLog>['log'], n: number) => {
    for (let i = 0; i < n; i++) log.append({ kind: 'security', event: 'password_ok', pid: `p${i}`, ip: '192.0.2.1' });
  };
  // Instance a stopped: everything signed, up to seq 51.
  const a = tempDir(t);
  const first = openLog(a, { checkpointEvery: 1000 });
  append(first.log, 50);
  await first.log.close();
  // Instance b runs: a checkpoint at seq 6, then 3 records its next checkpoint will sign (seqs 7..9).
  const b = tempDir(t);
  const running = openLog(b, { checkpointEvery: 5 });
  append(running.log, 8);
  const both = readTrail({ dirs: [a, b], publicKeyPem: publicKeyPem(privateKey), period: ALL });
  t.same(both.audit!.chains, [{ trail: a, lastSealedSeq: 51 }, { trail: b, lastSealedSeq: 6 }]);
  t.match(both.audit!.problems, [{ file: join(b, 'audit.jsonl'), seq: 7, kind: 'unsealed-tail' }]);
  t.equal(resumedFinding([a, b]), undefined, "a running instance's latest records are not taken for records found at a restart");

  // Instance c crashed with 2 records its next checkpoint would have signed, and started again: it says so.
  const c = tempDir(t);
  const crashed = openLog(c, { checkpointEvery: 3 });
  append(crashed.log, 5);
  await openLog(c).log.close();
  const short = tempDir(t);
  const other = openLog(short);
  append(other.log, 1);
  await other.log.close();
  t.match(resumedFinding([c]), `from record 5 in ${join(c, 'audit.jsonl')}`, 'alone');
  t.match(resumedFinding([short, c]), `from record 5 in ${join(c, 'audit.jsonl')}`, 'after a chain that sealed fewer records');
  t.match(readTrail({ dirs: [short, c], publicKeyPem: publicKeyPem(privateKey), period: ALL }).audit!.chains, [{ trail: short, lastSealedSeq: 2 }, { trail: c }]);
  await running.log.close();
});

t.test('a worker that fails rejects instead of hanging', async (t) => {
  await t.rejects(readTrailOffThread({ dirs: ['/nonexistent/audit'], publicKeyPem: null, period: ALL }), /ENOENT/);
});

t.test('a directory is read as one consistent reading: a file rotated between listing and reading is not lost', async (t) => {
  const dir = tempDir(t);
  const { log } = openLog(dir, { maxBytes: 4 * 1024, checkpointEvery: 10 });
  const append = () => log.append({ kind: 'security', event: 'password_ok', pid: 'p1', ip: '192.0.2.1' });
  for (let i = 0; i < 100; i++) append();
  let rotations = 0;
  const trail = openAuditDir(dir, (file) => {
    // The writer rotates once just before the current file (already listed) is opened.
    if (rotations === 0 && file.endsWith('audit.jsonl')) {
      for (const before = auditFiles(dir).length; auditFiles(dir).length === before; ) append();
      rotations++;
    }
    return openSync(file, 'r');
  });
  t.teardown(() => trail.close());
  // And once more after every file is open: an open file is read as far as it reached when opened.
  for (const before = auditFiles(dir).length; auditFiles(dir).length === before; ) append();
  await log.close();
  t.equal(rotations, 1);
  const report = verifyTrail(trail, publicKeyPem(privateKey));
  t.same(report.problems.filter((p) => p.kind !== 'unsealed-tail'), [], 'nothing reported missing');
  t.equal(trail.files.length, auditFiles(dir).length - 1, 'every file read, the one rotated while the files were opened too');
});

t.test('the event loop keeps turning while a long trail is checked', async (t) => {
  const request = await trail(t, 40_000);
  // The control: read on this thread, the same trail stalls the loop for the whole reading.
  const blocking = await longestStall(async () => readTrail(request));
  t.ok(blocking.ms > 200, `read on the calling thread, the loop stalls ${blocking.ms.toFixed(0)} ms`);
  const off = await longestStall(() => readTrailOffThread(request));
  t.ok(off.ms < blocking.ms / 3, `in the worker, the longest stall is ${off.ms.toFixed(0)} ms`);
  t.equal(off.result.events.security.get('password_ok')! + off.result.events.security.get('mfa_ok')!, 40_000);
});

t.test("what the worker sends back does not grow with the trail's events", async (t) => {
  const small = await readTrailOffThread(await trail(t, 300));
  const large = await readTrailOffThread(await trail(t, 10_000));
  t.equal(large.events.security.get('password_ok'), 5_000, 'every event counted');
  // As the worker posts it (structured clone): the same few counts and 97 users, whatever the number of events.
  const bytes = (answer: object) => serialize(answer).length;
  t.ok(bytes(large) < bytes(small) + 200, `${bytes(large)} bytes for 10 000 events, ${bytes(small)} for 300`);
  t.ok(bytes(large) < 4096);
});
