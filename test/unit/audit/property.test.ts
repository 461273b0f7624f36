// Random trails verify untouched, and one random tamper is always found at or before its seq.
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS, canonicalJson, encodeRecord, sha256Hex, type AuditEvent } from '../../../src/audit/record.js';
import { verifyAuditText, type AuditReport } from '../../../src/audit/verify-audit.js';
import { linesOf, openLog, publicKey, readSegments, rewrite, textOf } from './helpers.js';

// Flat events with awkward values: any UTF-16 (lone surrogates too), floats, nulls.
const value = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
);
const event = fc.dictionary(fc.constantFrom('name', 'pid', 'ip', 'factor', 'reason', 'n'), value, { maxKeys: 4 });
const steps = fc.array(fc.record({ event, advanceMs: fc.constantFrom(0, 0, 0, 1000, 60_000) }), { minLength: 1, maxLength: 25 });
const settings = fc.record({ maxBytes: fc.integer({ min: 200, max: 4000 }), checkpointEvery: fc.integer({ min: 1, max: 8 }) });
const tamper = fc.record({ op: fc.constantFrom('edit', 'edit-rehash', 'delete', 'insert', 'swap'), a: fc.nat(), b: fc.nat() });

type Steps = { event: AuditEvent; advanceMs: number }[];
type Segments = { file: string; lines: string[] }[];

async function writeTrail(list: Steps, opts: { maxBytes: number; checkpointEvery: number }): Promise<Segments> {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-audit-prop-'));
  try {
    const { log, clock, errors } = openLog(dir, opts);
    for (const s of list) {
      clock.advance(s.advanceMs);
      log.append(s.event);
    }
    await log.close();
    if (errors.length) throw new Error(`unexpected audit errors: ${errors.map((e) => e.message).join(', ')}`);
    return readSegments(dir).map((s) => ({ file: s.file, lines: linesOf(s.text) }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const verify = (segs: Segments): AuditReport => verifyAuditText(segs.map((s) => ({ file: s.file, text: textOf(s.lines) })), publicKey);
const seqOf = (line: string) => (JSON.parse(line) as { seq: number }).seq;
const later = (time: unknown) => new Date(Date.parse(time as string) + 1).toISOString();

/** Applies one tamper operation in place; returns the seq it concerns and whether it only touches the end. */
function apply(segs: Segments, { op, a, b }: { op: string; a: number; b: number }): { seq: number; atEnd: boolean } {
  const all = segs.flatMap((seg) => seg.lines.map((_, i) => ({ seg, i })));
  const n = all.length;
  const at = (k: number) => all[k]!;
  const line = (k: number) => at(k).seg.lines[at(k).i]!;
  const k = a % n;
  switch (op) {
    case 'edit': {
      const r = JSON.parse(line(k)) as Record<string, unknown>;
      at(k).seg.lines[at(k).i] = canonicalJson({ ...r, time: later(r.time) });
      return { seq: r.seq as number, atEnd: false };
    }
    case 'edit-rehash':
      at(k).seg.lines[at(k).i] = rewrite(line(k), (r) => (r.time = later(r.time)));
      return { seq: seqOf(line(k)), atEnd: false };
    case 'delete': {
      const seq = seqOf(line(k));
      at(k).seg.lines.splice(at(k).i, 1);
      return { seq, atEnd: k === n - 1 };
    }
    case 'insert': {
      // The strongest forgery without rewriting the rest: a well-formed record taking the seq of the one it
      // precedes, chained to the line before it (or, at the end, the next seq).
      const pos = a % (n + 1);
      const seq = pos < n ? seqOf(line(pos)) : seqOf(line(n - 1)) + 1;
      const prev = pos > 0 ? sha256Hex(line(pos - 1)) : GENESIS;
      const fake = encodeRecord({ seq, time: '2027-01-15T08:00:00.000Z', type: 'event', event: { name: 'forged', pid: 'x' }, prev }).line;
      if (pos < n) at(pos).seg.lines.splice(at(pos).i, 0, fake);
      else segs.at(-1)!.lines.push(fake);
      return { seq, atEnd: pos === n };
    }
    default: {
      const j = b % n === k ? (k + 1) % n : b % n;
      const [x, y] = [line(k), line(j)];
      at(k).seg.lines[at(k).i] = y;
      at(j).seg.lines[at(j).i] = x;
      return { seq: Math.min(seqOf(x), seqOf(y)), atEnd: false };
    }
  }
}

t.test('property: an untouched trail verifies; one tamper is always found at or before its seq', async (t) => {
  await fc.assert(
    fc.asyncProperty(steps, settings, tamper, async (list, opts, op) => {
      const segs = await writeTrail(list, opts);
      const clean = verify(segs);
      if (!clean.ok || clean.problems.length > 0) throw new Error(`untouched trail: ${JSON.stringify(clean.problems)}`);
      if (clean.lastSealedSeq !== clean.records) throw new Error('close() must seal everything');

      const { seq, atEnd } = apply(segs, op);
      const report = verify(segs);
      const found = report.problems.some((p) => p.seq !== undefined && p.seq <= seq);
      // At the very end (the last checkpoint removed, a record appended) only the unsealed (or unsigned) tail can tell.
      const flagged = atEnd ? report.problems.some((p) => p.kind === 'unsealed-tail' || p.kind === 'unsigned') : !report.ok;
      if (!found || !flagged) throw new Error(`${op.op} at seq ${seq} not found: ${JSON.stringify(report.problems)}`);
    }),
    { numRuns: 250 },
  );
  t.pass('250 random trails');
});
