// `mfa-gateway audit verify|who|public-key`: checking a trail, finding a user's pseudonym, the auditors' key.
import { createPublicKey } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { distinctDirs } from '../audit/file-sink.js';
import { ADMIN_TRAIL, adminTrailStarted } from '../audit/open-audit.js';
import { publicKeyPem } from '../audit/signing-key.js';
import { verifyAudit, verifyAuditDir, type AuditReport } from '../audit/verify-audit.js';
import type { Config } from '../config/schema.js';
import { DEFAULT_CHECKPOINT_INTERVAL_SECONDS, unsignedOverdue, unsignedOverdueWords } from '../domain/report.js';
import { canonicalUsername } from '../domain/username.js';
import { decodeKey } from '../config/load.js';
import { pseudonym } from '../mechanisms/random.js';
import { quoted } from '../quoted.js';
import { UsageError, readArgumentFile } from './usage.js';

/**
 * Verifies trails with the public key from a PEM file or from the config's signing key. Each directory is one trail
 * (its files in chain order), and so is the admin trail in it (`DIR/admin`), reported on its own (an admin directory
 * without audit files is no trail yet, and said to be); files named one by one form one trail, in the order given. Returns the lines to print and whether every trail verified.
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
  const isDir = (p: string) => statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;
  const given = paths.filter(isDir);
  const files = paths.filter((p) => !given.includes(p));
  // The admin commands' trail is checked with its directory's (once, should it be named as well).
  const dirs = distinctDirs(given.flatMap((d) => [d, join(d, ADMIN_TRAIL)].filter(isDir)));
  // An admin directory not named itself is checked once it holds a trail.
  const named = new Set(given.map((d) => realpathSync(d)));
  const notYet = (d: string) => !named.has(realpathSync(d)) && !adminTrailStarted(d);
  // A directory is read as one consistent reading (a running gateway may rotate its file meanwhile).
  const interval = key.config?.audit.checkpointIntervalSeconds ?? DEFAULT_CHECKPOINT_INTERVAL_SECONDS;
  const verifiedWith: KeyGiven = key.publicKeyFile ? { name: `in ${key.publicKeyFile}` } : { name: 'of this config', keyId: key.config!.audit.keyId };
  const describe = (r: AuditReport) => describeReport(r, now, interval, verifiedWith);
  // Each trail under its name when there is more than one.
  const trail = (name: string, r: { lines: string[]; ok: boolean }) => ({ ...r, block: [`${name}:`, ...r.lines.map((l) => `  ${l}`)] });
  const results = [
    ...dirs.map((d) => (notYet(d) ? { lines: [], ok: true, block: [`${d}: no admin trail yet (no audit files: no admin command has written a record here)`] } : trail(d, describe(verifyAuditDir(d, pem))))),
    ...(files.length ? [trail(files.join(' '), describe(verifyAudit(files, pem)))] : []),
  ];
  if (results.length === 1) return { lines: results[0]!.lines, ok: results[0]!.ok };
  return { lines: results.flatMap((r) => r.block), ok: results.every((r) => r.ok) };
}

/** The key a trail was verified with, as the auditor gave it: a file, or a config (which names its key id). */
interface KeyGiven {
  /** Words after "the key": "in FILE", "of this config". */
  name: string;
  keyId?: string;
}

/**
 * The problems, then OK or FAILED. Records after the last checkpoint leave the trail OK (a running gateway signs them
 * at its next checkpoint) but are named as not verified, with a warning when they have waited longer than a gateway
 * takes to sign them: a hint only, as their times are not signed either. In the assurance report's words: a record
 * by its number (its seq), a checkpoint as a signature.
 */
function describeReport(r: AuditReport, now: number, intervalSeconds: number, key: KeyGiven): { lines: string[]; ok: boolean } {
  const lines = r.problems.map((p) => `${p.file}:${p.line}${p.seq === undefined ? '' : ` (record ${p.seq})`}  ${p.kind}: ${p.message}`);
  const tail = r.problems.find((p) => p.kind === 'unsealed-tail' && p.unsigned)?.unsigned;
  if (tail && unsignedOverdue(tail.firstTime, now, intervalSeconds)) {
    lines.push(`WARNING: the ${tail.records} record(s) after the last signature, the first written ${tail.firstTime}, have ${unsignedOverdueWords(intervalSeconds)}`);
  }
  if (r.noSignatureVerifies) lines.push(wrongKeyWords(r.noSignatureVerifies, key));
  const covered = tail
    ? `verified up to the last signature, at ${tail.sealedTime} (record ${tail.sealedSeq}); ${tail.records} record(s) written since then (${tail.firstTime} to ${tail.lastTime}) are not signed yet, so not verified`
    : r.lastSealedSeq > 0
      ? `last record covered by a signature: ${r.lastSealedSeq}`
      : 'no record covered by a signature';
  const summary = `${r.records} record(s), ${r.checkpoints} signed checkpoint(s), ${covered}`;
  lines.push(r.ok ? `OK: ${summary}` : `FAILED: ${r.problems.filter((p) => p.kind !== 'unsealed-tail').length} problem(s); ${summary}`);
  return { lines, ok: r.ok };
}

/**
 * Not one checkpoint verifies with the key given: most likely a key other than the trail's (another environment's,
 * or one replaced), which must not read as tampering; the key ids they name, held against the config's, say more.
 */
function wrongKeyWords(found: NonNullable<AuditReport['noSignatureVerifies']>, key: KeyGiven): string {
  // Key ids are read from the trail: quoted, so that no character of theirs reaches the terminal as is.
  const ids = `key id${found.keyIds.length > 1 || found.more ? 's' : ''} ${found.keyIds.map(quoted).join(', ')}${found.more ? ' and others' : ''}`;
  const none = `WRONG KEY? Not one of the ${found.checkpoints} checkpoint(s) verifies with the key ${key.name}`;
  const source = '`audit public-key` with the config of the gateway that wrote it';
  if (key.keyId === undefined) return `${none}; they name ${ids}: is it this trail's public key (${source})? If it is, that gateway did not sign them.`;
  const verify = (which: string) => `Verify with ${which} (--public-key FILE, from ${source}); if they fail with that key too, that gateway did not sign them.`;
  const configured = `audit.keyId ${quoted(key.keyId)}`;
  if (found.keyIds.includes(key.keyId)) {
    return `${none}, though they name its key id (${configured}): did this audit.signingKey sign this trail (not another environment's, nor a new key under the same key id)? ${verify("the trail's public key")}`;
  }
  if (found.more) return `${none} (${configured}); they name ${ids}: did it sign this trail? ${verify("the trail's public key")}`;
  return `${none} (${configured}): they name ${ids}, so another key signed them. ${verify(`the public key of ${ids}`)}`;
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
