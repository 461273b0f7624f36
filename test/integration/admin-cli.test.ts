// The admin commands through the real command line on a real Redis: each in the admin audit chain with its operator
// and reason, their failures (the trail, the store) and wrong usage. (The commands themselves: admin.test.ts.)
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { operatorFrom } from '../../src/cli/admin.js';
import type { Config } from '../../src/config/schema.js';
import { auditFiles } from '../../src/audit/file-sink.js';
import { isErasureMark, signedIn } from '../helpers/admin.js';
import { OPERATOR, SIGNAL_SELF, TS_LOADER, runCli, runCliAsync } from '../helpers/cli.js';
import { TestCa } from '../helpers/pki.js';
import { randomKey, rawTestConfig } from '../helpers/config.js';
import { ALICE, BOB, signUpAndEnrol, startRedisStack, submitPassword } from '../helpers/stack.js';

t.test('real Redis, real command line: every admin command, each in the admin audit chain with operator and reason', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const bob = await signUpAndEnrol(s, BOB);
  const gw = s.app.gateway;
  const pid = gw.pidOf(ALICE.username)!;
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));
  const cli = (...args: string[]) => runCliAsync([...args, '--config', configFile, ...OPERATOR]);

  const shown = await cli('user', 'show', '--user', 'alice');
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, /totp +Authenticator app/);
  const exported = await cli('user', 'export', '--user', 'alice');
  t.equal(JSON.parse(exported.stdout).pid, pid);
  t.match(JSON.parse(exported.stdout), { totpCodeAcceptedAt: String, failures: [], signInsInProgress: [] }, 'what her sign-ins left, read from Redis too');
  t.notOk(exported.stdout.includes(alice.secret), 'no secret exported');

  t.match((await cli('sessions', 'revoke', '--user', 'alice')).stdout, 'ended 1 session(s) of alice');
  t.notOk(await signedIn(alice.b));
  t.match((await cli('user', 'reset-factors', '--user', 'alice')).stdout, 'removed every factor of alice');
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).location, '/_mfa/enrol');

  const erased = await cli('user', 'erase', '--user', 'alice', '--yes');
  t.equal(erased.code, 0, erased.stderr);
  const left: string[] = [];
  for await (const batch of s.kv.scanKeys('')) left.push(...batch);
  t.same(left.filter((k) => k.includes(pid) && !isErasureMark(k)), [], 'no key of hers in Redis');
  t.ok(left.some((k) => k.includes(gw.pidOf(BOB.username)!)));

  t.ok(await signedIn(bob.b));
  t.match((await cli('sessions', 'revoke', '--all')).stdout, 'ended 1 session(s) of every user', "Bob's");
  t.notOk(await signedIn(bob.b));

  // Refused: no operator, a reason naming the user, erase without --yes.
  t.equal((await runCliAsync(['user', 'show', '--config', configFile, '--user', 'bob'])).code, 2, 'no --operator/--reason');
  const naming = await runCliAsync(['user', 'show', '--config', configFile, '--user', 'bob', '--operator', 'Dana', '--reason', 'Bob called']);
  t.equal(naming.code, 2);
  t.match(naming.stderr, '--reason must not contain the username');
  t.equal((await cli('user', 'erase', '--user', 'bob')).code, 2, 'erase without --yes');
  // A device named by its certificate file is recorded by its fingerprint.
  const laptop = new TestCa('admin-devices').issue('laptop');
  t.equal((await cli('devices', 'register', '--cert', laptop.certFile, '--shared')).code, 0);
  t.equal((await cli('devices', 'revoke', '--cert', laptop.certFile)).code, 0);
  // A certificate from a pipe (`--cert <(…)`) can be read once only: it is, and checked, registered and recorded as read
  // (a second reading would wait for a writer that never comes).
  const fifo = join(dir, 'cert.fifo');
  execFileSync('mkfifo', [fifo]);
  createWriteStream(fifo).end(readFileSync(laptop.certFile));
  const piped = await cli('devices', 'register', '--cert', fifo, '--shared');
  t.equal(piped.code, 0, piped.stderr);
  t.match(piped.stdout, /^registered [0-9a-f]{64}/);
  const bare = await cli('user', '--user', 'bob');
  t.equal(bare.code, 2, 'no action');
  t.match(bare.stderr, 'mfa-gateway: user needs an action');

  // Rotation on Redis: a config with a new first encryption key (Bob's factors are left to re-seal).
  const rotatedFile = join(dir, 'rotated.json');
  writeFileSync(rotatedFile, JSON.stringify({ ...s.config, keys: { ...s.config.keys, encryption: [{ id: 'e2', secret: randomKey() }, ...s.config.keys.encryption] }, log: { level: 'silent' } }));
  const rot = await runCliAsync(['keys', 'rotate', '--config', rotatedFile, ...OPERATOR]);
  t.match(rot.stdout, /^re-sealed [1-9]\d* record\(s\) with encryption key e2/, rot.stderr);
  t.match((await runCliAsync(['keys', 'status', '--config', rotatedFile, ...OPERATOR])).stdout, /encryption {2}e1 .* 0 record\(s\)/);

  // The admin chain: one record per command, with operator, reason, the pseudonym and the outcome; no names.
  const adminDir = join(s.config.audit.dir, 'admin');
  t.ok(existsSync(adminDir));
  const text = auditFiles(adminDir).map((f) => readFileSync(f, 'utf8')).join('');
  const actions = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'event' && r.event.kind === 'admin').map((r) => r.event);
  t.same(
    actions.map((a) => `${a.action} ${a.outcome}`),
    ['user show ok', 'user export ok', 'sessions revoke ok', 'user reset-factors ok', 'user erase ok', 'sessions revoke ok', 'devices register ok', 'devices revoke ok', 'devices register ok', 'keys rotate ok', 'keys status ok'],
  );
  t.same(actions.filter((a) => a.action.startsWith('devices')).map((a) => a.fingerprint), [laptop.fingerprint, laptop.fingerprint, laptop.fingerprint], 'the device, by the fingerprint of the certificate given (from a pipe too)');
  t.equal(actions.find((a) => a.action === 'devices register').shared, true, 'a device made managed for every account says so');
  t.ok(actions.every((a) => a.operator === 'Dana Helpdesk' && a.reason === 'ticket 4711'));
  t.equal(actions[0].pid, pid, 'the user by pseudonym');
  t.notOk(/"(alice|bob)"/i.test(text), 'no username in the admin chain');
  t.ok(text.includes('"event":"factors_reset"') && text.includes('"event":"user_erased"'), 'the security events of the commands are in the chain too');
  const verified = await runCliAsync(['audit', 'verify', '--config', configFile, adminDir]);
  t.equal(verified.code, 0, verified.stdout);
  t.match(verified.stdout, /^OK: \d+ record\(s\), [1-9]\d* signed checkpoint\(s\)/m);
  // The gateway's directory: its trail and the admin trail in it, each with its own verdict.
  const whole = await runCliAsync(['audit', 'verify', '--config', configFile, s.config.audit.dir]);
  t.match(whole.stdout, `${s.config.audit.dir}:\n  `);
  t.match(whole.stdout, `${adminDir}:\n  ${verified.stdout.trim()}\n`, 'the admin trail checked too');
});

t.test('an admin command whose audit record cannot be written exits 1, saying the action was carried out', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  // The admin trail of its own directory, whose journal is a full disk: every write fails (ENOSPC), reading finds nothing.
  const auditDir = join(dir, 'audit');
  mkdirSync(join(auditDir, 'admin'), { recursive: true });
  symlinkSync('/dev/full', join(auditDir, 'admin', 'audit.jsonl'));
  writeFileSync(configFile, JSON.stringify({ ...s.config, audit: { ...s.config.audit, dir: auditDir }, log: { level: 'silent' } }));
  const revoked = runCli(['sessions', 'revoke', '--user', 'alice', '--config', configFile, ...OPERATOR]);
  t.equal(revoked.code, 1, revoked.stderr);
  t.match(revoked.stdout, 'ended 1 session(s) of alice', 'the action itself was done');
  t.match(revoked.stderr, 'the command was carried out, but its audit record could not be written');
  t.notOk(await signedIn(alice.b));
});

t.test('an admin command that cannot reach the store fails, and is recorded as failed', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  const auditDir = join(dir, 'audit');
  // Nothing listens on port 1.
  writeFileSync(configFile, JSON.stringify({ ...s.config, store: { ...s.config.store, redis: { ...s.config.store.redis, url: 'redis://127.0.0.1:1' } }, audit: { ...s.config.audit, dir: auditDir }, log: { level: 'silent' } }));
  const revoked = runCli(['sessions', 'revoke', '--user', 'alice', '--config', configFile, ...OPERATOR]);
  t.not(revoked.code, 0, 'fails');
  const text = auditFiles(join(auditDir, 'admin')).map((f) => readFileSync(f, 'utf8')).join('');
  const actions = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'event' && r.event.kind === 'admin').map((r) => r.event);
  t.same(actions.map((a) => `${a.action} ${a.outcome}`), ['sessions revoke failed'], 'the attempt is in the admin trail');
});

/** A config file for the command line with an audit directory of its own (and its admin trail's). */
function ownAuditDir(config: Config): { dir: string; configFile: string; auditDir: string; adminDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  const auditDir = join(dir, 'audit');
  writeFileSync(configFile, JSON.stringify({ ...config, audit: { ...config.audit, dir: auditDir }, log: { level: 'silent' } }));
  return { dir, configFile, auditDir, adminDir: join(auditDir, 'admin') };
}

t.test('an admin command that stops before its record leaves no admin trail, which audit verify says, not fails', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const { configFile, auditDir, adminDir } = ownAuditDir(s.config);
  // Killed just after it took the admin trail's lock (SIGKILL: a SIGTERM there is taken as the command's interruption,
  // and recorded).
  const stopped = spawn(process.execPath, [TS_LOADER, SIGNAL_SELF, 'src/main.ts', 'devices', 'list', '--config', configFile, ...OPERATOR], {
    stdio: 'ignore',
    env: { ...process.env, SIGNAL_SELF: 'SIGKILL', SIGNAL_SELF_AT: 'lock' },
  });
  t.same(await once(stopped, 'close'), [null, 'SIGKILL'], 'ended by the signal');
  t.ok(existsSync(adminDir), 'the admin trail was opened');
  t.same(auditFiles(adminDir), [], 'and has no file');
  const verified = await runCliAsync(['audit', 'verify', '--config', configFile, auditDir]);
  t.match(verified.stdout, `\n${adminDir}: no admin trail yet (no audit files: no admin command has written a record here)\n`);
  t.notMatch(verified.stdout, `${adminDir}:\n`, 'no verdict on it');
  // The report reads it no more than audit verify checks it.
  const report = async () => JSON.parse((await runCliAsync(['report', '--config', configFile, '--days', '1', '--format', 'json'])).stdout).audit;
  t.same((await report()).chains.map((c: { trail: string }) => c.trail), [auditDir], 'the report reads the gateway\'s trail alone');
  // The negative: an audit file there, emptied, is a trail that fails.
  writeFileSync(join(adminDir, 'audit.jsonl'), '');
  t.match((await runCliAsync(['audit', 'verify', '--config', configFile, auditDir])).stdout, `${adminDir}:\n  ${join(adminDir, 'audit.jsonl')}:0  empty: no records`);
  t.ok((await report()).empty.includes(adminDir), 'and the report says so');
});

t.test('an admin command stopped by a signal while it acts records what it did as interrupted, its trail sealed and its lock given back', async (t) => {
  const s = await startRedisStack(t, { patch: (raw) => (raw.enrolment = { proof: 'invite', inviteDays: 30 }) });
  t.teardown(s.close);
  const { dir, configFile, adminDir } = ownAuditDir(s.config);
  // Codes for many users: minutes of work, stopped (Ctrl+C) once the first are issued.
  writeFileSync(join(dir, 'users.csv'), `username\n${Array.from({ length: 5000 }, (_, i) => `user${i}`).join('\n')}\n`);
  const issuing = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'enrol-codes', 'issue', '--csv', join(dir, 'users.csv'), '--config', configFile, ...OPERATOR], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  issuing.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  issuing.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const closed = once(issuing, 'close');
  const adminText = () => auditFiles(adminDir).map((f) => readFileSync(f, 'utf8')).join('');
  for (let i = 0; i < 600 && !(existsSync(adminDir) && adminText().includes('"enrolment_code_issued"')); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(adminText().includes('"enrolment_code_issued"'), 'codes being issued');
  issuing.kill('SIGINT');
  t.same(await closed, [null, 'SIGINT'], 'ended by the signal, as without it');
  t.match(stderr, 'mfa-gateway: stopped by SIGINT\n');
  const events = adminText().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'event').map((r) => r.event);
  t.same(events.filter((e) => e.kind === 'admin').map((e) => `${e.action} ${e.outcome}`), ['enrol-codes issue interrupted'], 'the run is in the admin trail');
  const issued = events.filter((e) => e.event === 'enrolment_code_issued').length;
  t.ok(issued > 0 && issued < 5000, 'stopped before the end');
  // Stopped between two codes: each code issued is in the trail, and printed.
  const printed = stdout.trim().split('\n');
  t.same([printed[0], printed.length - 1], ['username,code,expires', issued], 'the codes issued so far are printed');
  let stored = 0;
  for await (const batch of s.kv.scanKeys('user:{')) stored += batch.filter((k) => k.endsWith(':enrolment-code')).length;
  t.equal(stored, issued, 'as many codes in the store as in the trail');
  t.notOk(existsSync(join(adminDir, 'audit.lock')), 'the lock given back');
  const verified = await runCliAsync(['audit', 'verify', '--config', configFile, adminDir]);
  t.equal(verified.code, 0, verified.stdout);
  t.notMatch(verified.stdout, 'unsealed', 'sealed: nothing left for the next writer to sign');
});

t.test('a signal while an admin command waits for its trail\'s lock (another admin command holds it) ends it at once, nothing done', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const { configFile, adminDir } = ownAuditDir(s.config);
  // The lock of a live writer of this host (this test's process): a command waits up to 10 s for it.
  mkdirSync(adminDir, { recursive: true });
  writeFileSync(join(adminDir, 'audit.lock'), JSON.stringify({ host: hostname(), pid: process.pid, token: 'held' }));
  const waiting = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'sessions', 'revoke', '--all', '--config', configFile, ...OPERATOR], { stdio: 'ignore' });
  const closed = once(waiting, 'close');
  await new Promise((r) => setTimeout(r, 4000));
  const sent = Date.now();
  waiting.kill('SIGINT');
  t.same(await closed, [null, 'SIGINT'], 'ended by the signal');
  t.ok(Date.now() - sent < 5000, 'at once, not when the wait is over');
  t.same(auditFiles(adminDir), [], 'nothing recorded');
});

t.test('an action a command does not have is wrong usage, and is neither in the admin trail nor in the report', async (t) => {
  const s = await startRedisStack(t);
  t.teardown(s.close);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));
  for (const action of ['x\n\nFindings: none', '<script>alert(1)</script>', 'list x']) {
    const r = await runCliAsync(['lockouts', action, '--config', configFile, ...OPERATOR]);
    t.equal(r.code, 2, JSON.stringify(action));
    t.match(r.stderr, 'mfa-gateway: unknown lockouts action');
  }
  // The negative: a known action is still recorded.
  t.equal((await runCliAsync(['lockouts', 'list', '--config', configFile, ...OPERATOR])).code, 0);
  const report = await runCliAsync(['report', '--config', configFile, '--days', '1', '--format', 'text']);
  t.equal(report.code, 0, report.stderr);
  t.match(report.stdout, /lockouts list +1/);
  t.notMatch(report.stdout, /Findings: none|<script>|lockouts (x|list x)/, 'no refused action in the report');
});

t.test('wrong arguments are refused before the store or the audit trail is opened: no record, no admin trail', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-admin-'));
  const configFile = join(dir, 'gw.json');
  const auditDir = join(dir, 'audit');
  // Nothing listens on port 1: a command that went as far as the store would fail there, and be recorded as failed.
  const raw = rawTestConfig('http://127.0.0.1:1');
  writeFileSync(configFile, JSON.stringify({ ...raw, enrolment: { proof: 'invite' }, store: { type: 'redis', redis: { url: 'redis://127.0.0.1:1' } }, audit: { ...raw.audit, dir: auditDir }, log: { level: 'silent' } }));
  const notACert = join(dir, 'laptop.pem');
  writeFileSync(notACert, 'not a certificate');
  for (const [args, said] of [
    [['user', 'show'], 'user show needs --user USERNAME'],
    [['user', 'erase', '--user', 'bob'], 'add --yes'],
    [['user', 'export', '--user', '\u200b'], 'not a usable username'],
    [['sessions', 'revoke', '--user', 'bob', '--all'], 'not both'],
    [['devices', 'register', '--cert', notACert], 'laptop.pem: no certificate'],
    [['devices', 'register', '--fingerprint', 'b'.repeat(64), '--user', 'bob', '--shared'], 'not both'],
    [['blocks', 'clear', '--ip', '300.1.2.3'], '--ip is not an IP address'],
    [['lockouts', 'clear', '--user', 'bob', '--factor', 'sms'], '--factor is one of'],
    [['enrol-codes', 'issue'], 'give --user USERNAME or --csv FILE'],
  ] as const) {
    const r = await runCliAsync([...args, '--config', configFile, ...OPERATOR]);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, said);
  }
  t.notOk(existsSync(auditDir), 'the audit trail was never opened');
});

t.test('operator and reason are required and free of control characters', async (t) => {
  t.same(operatorFrom({ operator: ' Dana ', reason: 'ticket 1' }), { operator: 'Dana', reason: 'ticket 1' });
  t.throws(() => operatorFrom({ reason: 'x' }), /--operator/);
  t.throws(() => operatorFrom({ operator: 'Dana', reason: '' }), /--reason/);
  t.throws(() => operatorFrom({ operator: 'Dana\nforged', reason: 'x' }), /--operator/);
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'x'.repeat(201) }), /--reason/);
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'ALICE asked', user: 'alice' }), /must not contain the username/);
  // The name as the sign-in reads it (Unicode NFKC, trimmed): `--user ＡＬＩＣＥ` acts on alice, and a reason naming her
  // in either spelling names her.
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'alice asked', user: 'ＡＬＩＣＥ' }), /must not contain the username/);
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'ａｌｉｃｅ asked', user: 'alice' }), /must not contain the username/);
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'letters for ben.okafor', users: ['Ｂｅｎ.Okafor'] }), /must not contain the username/);
  t.same(operatorFrom({ operator: 'Dana', reason: 'ticket 1', user: 'ＡＬＩＣＥ' }), { operator: 'Dana', reason: 'ticket 1' }, 'a reason that does not name her');
  // A blank --user names nobody: the command says so itself (not a usable username), not that the reason names it.
  t.same(operatorFrom({ operator: 'Dana', reason: 'ticket 1', user: '  ' }), { operator: 'Dana', reason: 'ticket 1' });
});
