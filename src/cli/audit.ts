// `mfa-gateway audit verify|who|public-key`: checking a trail, finding a user's pseudonym, the auditors' key.
import { createPublicKey } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { publicKeyPem } from '../audit/signing-key.js';
import { verifyAudit, verifyAuditDir, type AuditReport } from '../audit/verify-audit.js';
import type { Config } from '../config/schema.js';
import { DEFAULT_CHECKPOINT_INTERVAL_SECONDS, unsignedOverdue, unsignedOverdueWords } from '../domain/report.js';
import { canonicalUsername } from '../domain/username.js';
import { decodeKey } from '../config/load.js';
import { pseudonym } from '../mechanisms/random.js';
import { UsageError, readArgumentFile } from './usage.js';

/**
 * Verifies trails with the public key from a PEM file or from the config's signing key. Each directory is one
 * trail (its files in chain order; not its subdirectories, such as the admin trail); files named one by one form
 * one trail, in the order given. Returns the lines to print and whether every trail verified.
 */
export function auditVerify(paths: readonly string[], key: { publicKeyFile?: string; config?: Config }, now = Date.now()): { lines: string[]; ok: boolean } {
  if (!paths.length) throw new UsageError('audit verify needs FILE… (audit files in chain order) or DIR… (audit directories)');
  const pem = key.publicKeyFile ? readArgumentFile(key.publicKeyFile, '--public-key') : key.config?.audit.signingKey ? publicKeyPem(key.config.audit.signingKey) : null;
  if (!pem) throw new UsageError('audit verify needs --public-key FILE, or --config FILE with audit.signingKey');
  // A key that cannot be read is the command's fault (exit 2), never a trail that fails to verify (exit 1).
  try {
    createPublicKey(pem);
  } catch {
    throw new UsageError(`--public-key ${key.publicKeyFile}: not a public key (PEM)`);
  }
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length) throw new UsageError(`audit verify: no such file or directory: ${missing.join(', ')}`);
  const dirs = paths.filter((p) => statSync(p).isDirectory());
  const files = paths.filter((p) => !dirs.includes(p));
  // A directory is read as one consistent reading (a running gateway may rotate its file meanwhile).
  const interval = key.config?.audit.checkpointIntervalSeconds ?? DEFAULT_CHECKPOINT_INTERVAL_SECONDS;
  const describe = (r: AuditReport) => describeReport(r, now, interval);
  const results = [
    ...dirs.map((d) => ({ name: d, ...describe(verifyAuditDir(d, pem)) })),
    ...(files.length ? [{ name: files.join(' '), ...describe(verifyAudit(files, pem)) }] : []),
  ];
  if (results.length === 1) return results[0]!;
  return { lines: results.flatMap((r) => [`${r.name}:`, ...r.lines.map((l) => `  ${l}`)]), ok: results.every((r) => r.ok) };
}

/**
 * The problems, then OK or FAILED. Records after the last checkpoint leave the trail OK (a running gateway signs them
 * at its next checkpoint) but are named as not verified, with a warning when they have waited longer than a gateway
 * takes to sign them: a hint only, as their times are not signed either. In the assurance report's words: a record
 * by its number (its seq), a checkpoint as a signature.
 */
function describeReport(r: AuditReport, now: number, intervalSeconds: number): { lines: string[]; ok: boolean } {
  const lines = r.problems.map((p) => `${p.file}:${p.line}${p.seq === undefined ? '' : ` (record ${p.seq})`}  ${p.kind}: ${p.message}`);
  const tail = r.problems.find((p) => p.kind === 'unsealed-tail' && p.unsigned)?.unsigned;
  if (tail && unsignedOverdue(tail.firstTime, now, intervalSeconds)) {
    lines.push(`WARNING: the ${tail.records} record(s) after the last signature, the first written ${tail.firstTime}, have ${unsignedOverdueWords(intervalSeconds)}`);
  }
  const covered = tail
    ? `verified up to the last signature, at ${tail.sealedTime} (record ${tail.sealedSeq}); ${tail.records} record(s) written since then (${tail.firstTime} to ${tail.lastTime}) are not signed yet, so not verified`
    : r.lastSealedSeq > 0
      ? `last record covered by a signature: ${r.lastSealedSeq}`
      : 'no record covered by a signature';
  const summary = `${r.records} record(s), ${r.checkpoints} signed checkpoint(s), ${covered}`;
  lines.push(r.ok ? `OK: ${summary}` : `FAILED: ${r.problems.filter((p) => p.kind !== 'unsealed-tail').length} problem(s); ${summary}`);
  return { lines, ok: r.ok };
}

/** The pseudonym a username has in the audit trail, the logs and the store. */
export function auditWho(config: Config, username: string | undefined): string {
  const name = username === undefined ? null : canonicalUsername(username, config.portal.login.usernameCase);
  if (name === null) throw new UsageError('audit who needs a USERNAME');
  return pseudonym(decodeKey(config.keys.pseudonym), name);
}

/** The public key auditors verify checkpoints with (SPKI PEM). */
export function auditPublicKey(config: Config): string {
  if (!config.audit.signingKey) throw new UsageError('audit public-key needs audit.signingKey in the config');
  return publicKeyPem(config.audit.signingKey).trimEnd();
}
