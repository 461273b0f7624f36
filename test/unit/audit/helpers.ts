// Audit test helpers: a temporary audit directory, a log on it with a fake clock, and the files read back.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Test } from 'tap';
import type { AuditError } from '../../../src/audit/audit-error.js';
import { AuditLog, type AuditJournal, type AuditLogOptions } from '../../../src/audit/audit-log.js';
import { AuditFileSink, auditFiles } from '../../../src/audit/file-sink.js';
import { canonicalJson, sha256Hex } from '../../../src/audit/record.js';
import { FakeClock } from '../../helpers/clock.js';

export const { privateKey, publicKey } = generateKeyPairSync('ed25519');

export function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export type TestLogOptions = Partial<Omit<AuditLogOptions, 'journal' | 'onError'>> & { maxBytes?: number };

/** An audit log on `dir`; every error it reports is kept in `errors`. */
export function openLog(dir: string, opts: TestLogOptions = {}) {
  const errors: AuditError[] = [];
  const clock = (opts.clock as FakeClock | undefined) ?? new FakeClock();
  const log = new AuditLog({
    journal: new AuditFileSink({ dir, maxBytes: opts.maxBytes ?? 1_000_000 }),
    signingKey: privateKey,
    keyId: 'audit-1',
    checkpointIntervalMs: 60_000,
    ...opts,
    clock,
    onError: (e) => errors.push(e),
  });
  return { log, clock, errors };
}

/**
 * The file journal of `dir`, whose writes fail with `message` while `failing()` says so, with not one byte of the line
 * written (a full disk, a failing volume).
 */
export function failingJournal(dir: string, failing: () => boolean, message = 'ENOSPC: no space left on device, write'): AuditJournal {
  const sink = new AuditFileSink({ dir, maxBytes: 1_000_000 });
  return {
    linesFromEnd: () => sink.linesFromEnd(),
    endPartialLine: () => sink.endPartialLine(),
    sync: () => sink.sync(),
    close: () => sink.close(),
    write(line, seq) {
      if (failing()) throw new Error(message);
      sink.write(line, seq);
    },
  };
}

/** The audit files of `dir` in chain order, named by their base name (positions in problems use it too). */
export function readSegments(dir: string): { file: string; text: string }[] {
  return auditFiles(dir).map((f) => ({ file: basename(f), text: readFileSync(f, 'utf8') }));
}

/** Every line of `dir` that parses, as an object. */
export function recordsOf(dir: string): Record<string, unknown>[] {
  return readSegments(dir).flatMap((s) =>
    s.text.split('\n').flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    }),
  );
}

/** Lines of a segment, and back. */
export const linesOf = (text: string) => text.split('\n').slice(0, -1);
export const textOf = (lines: readonly string[]) => lines.map((l) => `${l}\n`).join('');

/** What an attacker with write access does: change a record's content and recompute its hash. */
export function rewrite(line: string, change: (r: Record<string, unknown>) => void): string {
  const { hash: _hash, ...body } = JSON.parse(line) as Record<string, unknown>;
  change(body);
  return canonicalJson({ ...body, hash: sha256Hex(canonicalJson(body)) });
}
