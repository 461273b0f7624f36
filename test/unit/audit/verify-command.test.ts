// `audit verify` as an auditor runs it: a key other than the trail's said as such, and the admin trail in a directory.
import t from 'tap';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { signCheckpoint } from '../../../src/audit/checkpoint.js';
import { encodeRecord, sha256Hex, type RecordBody } from '../../../src/audit/record.js';
import { verifyAudit } from '../../../src/audit/verify-audit.js';
import { auditVerify } from '../../../src/cli/audit.js';
import type { Config } from '../../../src/config/schema.js';
import { linesOf, openLog, privateKey, publicKey, tempDir } from './helpers.js';

const other = generateKeyPairSync('ed25519');
const event = (n: number) => ({ name: 'password_ok', pid: `p${n}`, ip: '192.0.2.1' });

/** A trail of `records` events in `dir`, a checkpoint every 2, signed with the tests' key under `keyId`. */
async function writeTrail(dir: string, records = 5, keyId = 'audit-1') {
  const { log } = openLog(dir, { checkpointEvery: 2, keyId });
  for (let i = 1; i <= records; i++) log.append(event(i));
  await log.close();
}

function pemFile(dir: string, key: KeyObject): string {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(file, key.export({ type: 'spki', format: 'pem' }));
  return file;
}

/** What auditVerify reads of a config: its signing key and key id. */
const configWith = (key: KeyObject, keyId: string) => ({ audit: { signingKey: key.export({ type: 'pkcs8', format: 'pem' }), keyId, checkpointIntervalSeconds: 60 } }) as unknown as Config;

t.test('a key other than the trail\'s: every checkpoint fails, and one line says the key may be the wrong one', async (t) => {
  const dir = tempDir(t);
  await writeTrail(dir);
  const wrongPem = pemFile(dir, other.publicKey);

  const wrong = auditVerify([dir], { publicKeyFile: wrongPem });
  t.notOk(wrong.ok, 'a wrong key never passes');
  t.equal(wrong.lines.filter((l) => l.includes('bad-checkpoint: signature does not verify')).length, 3, 'each checkpoint still named');
  t.equal(
    wrong.lines.at(-2),
    `WRONG KEY? Not one of the 3 checkpoint(s) verifies with the key in ${wrongPem}; they name key id "audit-1": is it this trail's public key ` +
      '(`audit public-key` with the config of the gateway that wrote it)? If it is, that gateway did not sign them.',
  );
  t.match(wrong.lines.at(-1), /^FAILED: 4 problem\(s\); 8 record\(s\), 0 signed checkpoint\(s\), no record covered by a signature$/);

  // The config's key: its key id held against the one the checkpoints name.
  const sameId = auditVerify([dir], { config: configWith(other.privateKey, 'audit-1') });
  t.notOk(sameId.ok);
  t.match(sameId.lines.at(-2), /^WRONG KEY\? Not one of the 3 checkpoint\(s\) verifies with the key of this config, though they name its key id \(audit\.keyId "audit-1"\): did this audit\.signingKey sign this trail \(not another environment's, nor a new key under the same key id\)\? Verify with the trail's public key/);
  const otherId = auditVerify([dir], { config: configWith(other.privateKey, 'audit-2') });
  t.notOk(otherId.ok);
  t.match(otherId.lines.at(-2), /^WRONG KEY\? Not one of the 3 checkpoint\(s\) verifies with the key of this config \(audit\.keyId "audit-2"\): they name key id "audit-1", so another key signed them\. Verify with the public key of key id "audit-1" \(--public-key FILE/);

  // The trail's key: no such line, under any key id (a key id renamed in the config keeps its key).
  for (const key of [{ publicKeyFile: pemFile(dir, publicKey) }, { config: configWith(privateKey, 'audit-1') }, { config: configWith(privateKey, 'renamed') }]) {
    const right = auditVerify([dir], key);
    t.ok(right.ok, right.lines.join('\n'));
    t.notMatch(right.lines.join('\n'), /WRONG KEY/);
  }
});

t.test('a trail whose key verifies some checkpoints but not a forged one reads as tampering, not as a wrong key', async (t) => {
  const dir = tempDir(t);
  await writeTrail(dir, 2);
  const file = join(dir, 'audit.jsonl');
  const last = linesOf(readFileSync(file, 'utf8')).at(-1)!;
  const head = JSON.parse(last) as { seq: number; hash: string };
  const forged = signCheckpoint({ seq: head.seq + 1, time: '2027-01-15T08:00:00.000Z', prev: sha256Hex(last), type: 'checkpoint', upTo: head.seq, head: head.hash, kid: 'audit-1' }, other.privateKey);
  writeFileSync(file, `${encodeRecord(forged as RecordBody).line}\n`, { flag: 'a' });

  const r = auditVerify([dir], { publicKeyFile: pemFile(dir, publicKey) });
  t.notOk(r.ok);
  t.match(r.lines.join('\n'), 'bad-checkpoint: signature does not verify');
  t.notMatch(r.lines.join('\n'), /WRONG KEY/, 'one checkpoint verifies: the key is the trail\'s');
  t.equal(verifyAudit([file], publicKey).noSignatureVerifies, undefined);
});

t.test('the key ids named: each once, the first three, then "and others"', async (t) => {
  const dir = tempDir(t);
  for (const [i, keyId] of ['k1', 'k2', 'k1', 'k3', 'k4', 'k2'].entries()) {
    const { log } = openLog(dir, { keyId, checkpointEvery: 100 });
    log.append(event(i));
    await log.close();
  }
  const report = verifyAudit([join(dir, 'audit.jsonl')], other.publicKey);
  t.same(report.noSignatureVerifies, { checkpoints: 6, keyIds: ['k1', 'k2', 'k3'], more: true });
  const wrong = auditVerify([dir], { config: configWith(other.privateKey, 'k4') });
  t.match(wrong.lines.at(-2), /^WRONG KEY\? Not one of the 6 checkpoint\(s\) verifies with the key of this config \(audit\.keyId "k4"\); they name key ids "k1", "k2", "k3" and others: did it sign this trail\? Verify with the trail's public key/, 'k4 may be among the others: no verdict on it');
  const named = auditVerify([dir], { config: configWith(other.privateKey, 'k2') });
  t.match(named.lines.at(-2), /verifies with the key of this config, though they name its key id \(audit\.keyId "k2"\)/, 'k2 is among the first named');
});

t.test('key ids read from the trail reach the terminal quoted, every character not shown as itself escaped', async (t) => {
  const dir = tempDir(t);
  // A forged trail's key id: a terminal's title set, C1 CSI (U+009B, as ESC [), DEL, a right-to-left override.
  const forged = 'k\u001b]0;ok\u0007\u009b2J\u007f\u202eevil';
  const escaped = '"k\\u001b]0;ok\\u0007\\u009b2J\\u007f\\u202eevil"';
  await writeTrail(dir, 1, forged);
  const shown = (lines: string[]) => lines.filter((l) => /[\p{C}]/u.test(l));

  const wrong = auditVerify([dir], { publicKeyFile: pemFile(dir, other.publicKey) });
  t.match(wrong.lines.at(-2), `they name key id ${escaped}:`);
  t.same(shown(wrong.lines), [], 'no line holds a character a terminal would not show as itself');
  const config = auditVerify([dir], { config: configWith(other.privateKey, forged) });
  t.match(config.lines.at(-2), `though they name its key id (audit.keyId ${escaped})`);
  t.same(shown(config.lines), []);

  // Keys by key id: the one named is not among them.
  const unknown = verifyAudit([join(dir, 'audit.jsonl')], { 'audit-1': publicKey });
  t.match(unknown.problems.find((p) => p.kind === 'bad-checkpoint')?.message, `unknown key id ${escaped}`);
  t.same(shown(unknown.problems.map((p) => p.message)), []);

  // The negative: under that key id, the trail's key verifies it.
  t.ok(verifyAudit([join(dir, 'audit.jsonl')], { [forged]: publicKey }).ok);
});

t.test('a directory: its trail and the admin trail in it, each reported on its own', async (t) => {
  const dir = tempDir(t);
  await writeTrail(dir, 5);
  const admin = join(dir, 'admin');
  mkdirSync(admin);
  await writeTrail(admin, 3);
  const key = { publicKeyFile: pemFile(dir, publicKey) };

  const both = auditVerify([dir], key);
  t.ok(both.ok, both.lines.join('\n'));
  t.same(both.lines, [`${dir}:`, '  OK: 8 record(s), 3 signed checkpoint(s), last record covered by a signature: 8', `${admin}:`, '  OK: 5 record(s), 2 signed checkpoint(s), last record covered by a signature: 5']);
  t.same(auditVerify([dir, `${admin}/`, dir], key).lines, both.lines, 'each trail once, also when named as well');
  t.same(auditVerify([admin], key).lines, ['OK: 5 record(s), 2 signed checkpoint(s), last record covered by a signature: 5'], 'the admin trail alone');

  // An edited admin record fails the command, and is named under its trail.
  const file = join(admin, 'audit.jsonl');
  writeFileSync(file, readFileSync(file, 'utf8').replace('"p2"', '"p9"'));
  const broken = auditVerify([dir], key);
  t.notOk(broken.ok);
  t.match(broken.lines.join('\n'), `${dir}:\n  OK: 8 record(s)`);
  t.match(broken.lines.join('\n'), `${admin}:\n  ${file}:2 (record 2)  edited: content does not match its hash`);

  // A directory without an admin trail: its own report alone, as before.
  const alone = tempDir(t);
  await writeTrail(alone, 1);
  t.same(auditVerify([alone], key).lines, ['OK: 2 record(s), 1 signed checkpoint(s), last record covered by a signature: 2']);
});

t.test('an admin directory without audit files is no admin trail yet; one emptied, or named itself, fails', async (t) => {
  const dir = tempDir(t);
  await writeTrail(dir, 1);
  const key = { publicKeyFile: pemFile(dir, publicKey) };
  const admin = join(dir, 'admin');
  const gateway = [`${dir}:`, '  OK: 2 record(s), 1 signed checkpoint(s), last record covered by a signature: 2'];

  // As an admin command that stopped before its record leaves it (its lock left by a crash, too).
  mkdirSync(admin);
  writeFileSync(join(admin, 'audit.lock'), '{}');
  const notYet = auditVerify([dir], key);
  t.ok(notYet.ok, notYet.lines.join('\n'));
  t.same(notYet.lines, [...gateway, `${admin}: no admin trail yet (no audit files: no admin command has written a record here)`]);

  // Named itself, it is the trail asked for: one without records fails.
  const named = auditVerify([dir, admin], key);
  t.notOk(named.ok);
  t.match(named.lines.join('\n'), `${admin}:\n  ${admin}:0  empty: no records: the trail is missing or was emptied\n  FAILED`);
  t.notOk(auditVerify([`${admin}/`], key).ok);

  // An audit file whose records were deleted is a trail emptied.
  writeFileSync(join(admin, 'audit.jsonl'), '');
  const emptied = auditVerify([dir], key);
  t.notOk(emptied.ok);
  t.match(emptied.lines.join('\n'), `${admin}:\n  ${join(admin, 'audit.jsonl')}:0  empty: no records`);
});
