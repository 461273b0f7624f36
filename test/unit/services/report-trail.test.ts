// The report reads the audit trail in a worker thread: the same reading as on the calling thread, and the event
// loop keeps turning while a long trail is checked.
import t, { type Test } from 'tap';
import { openSync } from 'node:fs';
import { auditFiles, openAuditDir } from '../../../src/audit/file-sink.js';
import { verifyTrail } from '../../../src/audit/verify-audit.js';
import { publicKeyPem } from '../../../src/audit/signing-key.js';
import { readTrail, readTrailOffThread, type TrailRequest } from '../../../src/services/report-trail.js';
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
  t.equal(here.records.length, 300, 'every event');
  t.match(here.audit, { ok: true, records: 300 + here.audit!.checkpoints });
  t.same(await readTrailOffThread(request), here);
  t.same(await readTrailOffThread({ dirs: [], publicKeyPem: null, period: ALL }), { records: [], audit: null }, 'audit trail disabled');
});

t.test('only the events of the period come back; the whole trail is verified', async (t) => {
  const request = await trail(t, 300);
  // Events 1..100 at START, 101..200 a second later, 201..300 two seconds later.
  const off = await readTrailOffThread({ ...request, period: { from: START + 1000, to: START + 2000 } });
  t.equal(off.records.length, 100, 'the second hundred');
  t.ok(off.records.every((r) => r.time === new Date(START + 1000).toISOString()));
  t.equal(off.audit!.records, readTrail(request).audit!.records, 'the verdict covers every record');
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
  t.equal(off.result.records.length, 40_000);
});
