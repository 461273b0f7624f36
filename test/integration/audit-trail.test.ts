// The audit trail of a real run: what a sign-in, a refusal and browsing leave in it (by pseudonym, never a secret),
// checked by the real command line (`audit verify`, `audit who`, `report`) and the report page.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditFiles } from '../../src/audit/file-sink.js';
import { publicKeyPem } from '../../src/audit/signing-key.js';
import { verifyAuditDir } from '../../src/audit/verify-audit.js';
import { VERSION } from '../../src/metrics/build-info.js';
import { runCli } from '../helpers/cli.js';
import { merge, rawTestConfig, testConfig } from '../helpers/config.js';
import { TestCa } from '../helpers/pki.js';
import { testRedis } from '../helpers/redis.js';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { createGateway } from '../../src/gateway.js';
import { AuditError } from '../../src/audit/audit-error.js';
import { ALICE, BOB, atCodePage, signInWithTotp, signUpAndEnrol, submitPassword, totpAt, startRedisStack, startStack } from '../helpers/stack.js';

const lines = (dir: string) =>
  auditFiles(dir)
    .flatMap((f) => readFileSync(f, 'utf8').split('\n'))
    .filter(Boolean);

t.test('a real run leaves a verifiable trail of pseudonymous events, and the report and its page count them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-trail-'));
  writeFileSync(join(dir, 'groups.yaml'), 'alice: [staff]\n');
  const s = await startRedisStack(t, {
    patch: (raw) => {
      raw.groups = { file: join(dir, 'groups.yaml') };
      raw.audit.requests = true;
      merge(raw, { limits: { secondFactor: { freeAttempts: 3, cap: 3 }, stuffing: { distinctAccounts: 3 } } });
      raw.admin.report = { groups: ['staff'] };
      raw.policy.rules.splice(1, 0, { name: 'no bulk export', paths: ['/export'], decision: 'deny' });
    },
  });
  const gw = s.app.gateway;

  // The run: two enrolments, a wrong password, a wrong code, a later sign-in, browsing, a refusal, legacy auth.
  const alice = await signUpAndEnrol(s);
  const bob = await signUpAndEnrol(s, BOB);
  t.equal((await submitPassword(s.browser(), ALICE.username, 'not her password')).status, 200, 'the portal shows its own error');
  const wrong = await atCodePage(s);
  const wrongCode = async (secret: string) => {
    const valid = new Set(await Promise.all([-2, -1, 0, 1, 2].map((step) => totpAt(secret, s.clock.now() + step * 30_000))));
    return ['123456', '654321', '111111', '222222', '333333', '444444'].find((c) => !valid.has(c))!;
  };
  t.equal((await wrong.b.post('/_mfa/verify', { csrf: wrong.csrf, code: await wrongCode(alice.secret) })).status, 400, 'a wrong code');
  const later = await signInWithTotp(s, alice.secret);
  t.equal(later.final.status, 303);
  t.equal((await later.b.get('/records')).status, 200);
  t.equal((await later.b.get('/export')).status, 403, 'the deny rule');
  t.equal((await s.browser().get('/records', { authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` })).status, 403, 'legacy auth');

  // The report page: for staff (alice), not for other users (bob), a sign-in for nobody.
  const page = await later.b.get('/_mfa/admin/report?days=7');
  t.equal(page.status, 200, 'staff see the report page');
  t.match(page.body, /100\s*%/);
  t.match(page.headers['content-security-policy'], "frame-ancestors 'none'");
  // As every gateway page: no referrer beyond the gateway, no opener, no framing in older browsers either.
  t.match(page.headers, { 'referrer-policy': 'same-origin', 'cross-origin-opener-policy': 'same-origin', 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff' });
  t.equal((await later.b.get('/_mfa/admin/report?days=7')).body, page.body, 'a reload within 5 minutes is the same page (built once)');
  s.clock.advance(5 * 60_000);
  t.not((await later.b.get('/_mfa/admin/report?days=7')).body, page.body, 'after 5 minutes it is built again');
  t.equal((await bob.b.get('/_mfa/admin/report')).status, 403, 'a user outside admin.report.groups is refused');
  t.equal((await s.browser().get('/_mfa/admin/report')).status, 302, 'signed out: to the sign-in page');
  t.equal((await later.b.get('/_mfa/admin/report?days=0')).status, 400, 'a bad period');
  for (const days of ['1e2', '0x10', '%207', '7&days=8']) t.equal((await later.b.get(`/_mfa/admin/report?days=${days}`)).status, 400, `days=${days}: digits only`);
  t.equal((await later.b.get('/_mfa/admin/report?days=10')).status, 200, 'digits are taken');

  // A lockout (bob's app codes at the cap of 3) and an address block (3 usernames failing from one address).
  const guess = await atCodePage(s, BOB);
  for (let i = 0; i < 3; i++) await guess.b.post('/_mfa/verify', { csrf: guess.csrf, code: await wrongCode(bob.secret) });
  t.equal((await guess.b.post('/_mfa/verify', { csrf: guess.csrf, code: await totpAt(bob.secret, s.clock.now()) })).status, 403, "bob's app codes are disabled");
  for (const username of ['mallory', 'eve']) await submitPassword(s.browser(), username, 'guess');
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).status, 429, 'the address is blocked');

  const pid = gw.pidOf(ALICE.username)!;
  const bobPid = gw.pidOf(BOB.username)!;
  await s.close(); // the final checkpoint

  // The records: the events above, by pseudonym, with nothing a thief or a snoop could use.
  const raw = lines(s.config.audit.dir);
  const records = raw.map((l) => JSON.parse(l));
  const events = records.filter((r) => r.type === 'event').map((r) => r.event);
  const security = (name: string) => events.filter((e) => e.kind === 'security' && e.event === name);
  t.equal(security('session_started').length, 3);
  t.ok(security('session_started').every((e) => e.factor === 'totp'), 'every session with its second factor');
  t.equal(security('password_failed')[0].pid, pid);
  t.same(security('mfa_failed').map((e) => e.pid), [pid, bobPid, bobPid, bobPid]);
  t.same(security('factor_locked').map((e) => `${e.pid} ${e.factor}`), [`${bobPid} totp`]);
  t.equal(security('address_blocked').length, 1);
  t.same(security('access_denied').map((e) => `${e.rule} ${e.path}`), ['no bulk export /export', 'default /_mfa/admin/report'], 'both refusals, bob at the report page too');
  t.equal(security('legacy_auth_blocked').length, 1);
  const browsed = events.find((e) => e.kind === 'request' && e.path === '/records' && e.status === 200);
  t.match(browsed, { pid, method: 'GET', rule: 'portal', verdict: 'allow', ms: Number }, 'a proxied request: who, what, which rule, the answer, the time');
  t.ok(records.some((r) => r.type === 'checkpoint'), 'signed checkpoints');

  const text = raw.join('\n');
  const secrets = [ALICE.password, BOB.password, alice.secret, bob.secret, ...alice.codes, ...bob.codes, ...[...later.b.cookies.values()], ...[...bob.b.cookies.values()]];
  t.same(secrets.filter((x) => text.includes(x)), [], 'no password, TOTP secret, recovery code or cookie');
  for (const name of ['alice', 'bob', 'Alice Ngata']) t.notOk(text.toLowerCase().includes(`"${name.toLowerCase()}"`), `no username or name (${name})`);
  const keys = new Set(events.flatMap((e) => Object.keys(e)));
  t.same(['username', 'user', 'password', 'code', 'secret', 'cookie', 'token'].filter((k) => keys.has(k)), [], 'no field for a name or a secret');

  // The command line: the pseudonym for an investigator, the chain verified, then broken.
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));
  const who = runCli(['audit', 'who', 'ALICE ', '--config', configFile]);
  t.equal(who.stdout.trim(), pid, 'audit who: the same pseudonym for any spelling');
  const ok = runCli(['audit', 'verify', '--config', configFile, s.config.audit.dir]);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, new RegExp(`^OK: ${records.length} record\\(s\\)`, 'm'));
  // Another environment's config, with an audit key of its own: a wrong key never passes, and is named as what it may be.
  const otherKey = join(dir, 'other-environment.json');
  writeFileSync(otherKey, JSON.stringify({ ...s.config, audit: { ...s.config.audit, signingKey: randomBytes(32).toString('base64url') }, log: { level: 'silent' } }));
  const wrongKey = runCli(['audit', 'verify', '--config', otherKey, s.config.audit.dir]);
  t.equal(wrongKey.code, 1, 'a key other than the trail\'s fails');
  t.match(wrongKey.stdout, /^WRONG KEY\? Not one of the [1-9]\d* checkpoint\(s\) verifies with the key of this config, though they name its key id \(audit\.keyId "audit-1"\)/m);
  t.notMatch(ok.stdout, /WRONG KEY/, 'the trail\'s own key: not a word of it');

  const copy = mkdtempSync(join(tmpdir(), 'mfa-trail-edited-'));
  cpSync(s.config.audit.dir, copy, { recursive: true });
  const [file] = auditFiles(copy);
  const edited = readFileSync(file!, 'utf8').split('\n');
  const target = edited.findIndex((l) => l.includes('"access_denied"'));
  edited[target] = edited[target]!.replace('"no bulk export"', '"portal"');
  writeFileSync(file!, edited.join('\n'));
  const broken = runCli(['audit', 'verify', '--config', configFile, copy]);
  t.equal(broken.code, 1, 'an edited record fails verification');
  t.match(broken.stdout, `${file}:${target + 1}`, 'and the output says where');
  t.match(broken.stdout, /edited/);
  const both = runCli(['audit', 'verify', '--config', configFile, s.config.audit.dir, copy]);
  t.equal(both.code, 1, 'several directories: each its own trail, failing if one fails');
  t.match(both.stdout, `${s.config.audit.dir}:\n  OK: ${records.length} record(s)`);
  t.match(both.stdout, `${copy}:\n  ${file}:${target + 1}`);
  t.match(runCli(['audit', 'verify', '--config', configFile, join(copy, 'nothing-here')]), { code: 2, stderr: /no such file or directory/ }, 'a path that is not there: usage error');
  const emptied = mkdtempSync(join(tmpdir(), 'mfa-emptied-'));
  writeFileSync(join(emptied, 'audit.jsonl'), '');
  t.match(runCli(['audit', 'verify', '--config', configFile, emptied]), { code: 1, stdout: /empty: no records/ }, 'an emptied trail fails');
  const notAKey = join(emptied, 'not-a-key.pem');
  writeFileSync(notAKey, 'hello\n');
  t.match(runCli(['audit', 'verify', '--public-key', notAKey, copy]), { code: 2, stderr: /not a public key/ }, 'a key that cannot be read: usage error, not a failed trail');

  // The report: the numbers of this run, from the trail and the store.
  const period = ['--from', new Date(s.clock.now() - 86_400_000).toISOString(), '--to', new Date(s.clock.now() + 86_400_000).toISOString()];
  const json = runCli(['report', '--config', configFile, '--format', 'json', ...period]);
  t.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  t.match(report.signIns, { total: 3, withSecondFactor: 3, allSecondFactor: true, secondFactorPercent: 100 });
  t.match(report.coverage, { usersSeen: 2, enrolledOfSeen: 2, totalEnrolled: 2 });
  t.equal(report.factors.held.totp, 2);
  t.match(report.failures, { passwordFailed: 3, mfaFailed: { total: 4, byFactor: [{ name: 'totp', count: 4 }] } });
  t.match(report.lockouts, { factorLocked: { total: 1, byFactor: [{ name: 'totp', count: 1 }] }, addressBlocked: 1 });
  t.equal(report.legacyAuthBlocked.total, 1);
  t.equal(report.policyDenials.total, 2);
  t.same(report.policyDenials.byRule.map((r: { rule: string; count: number }) => `${r.rule} ${r.count}`).sort(), ['default 1', 'no bulk export 1']);
  t.equal(report.audit.status, 'verified');
  t.match(runCli(['report', '--config', configFile, '--audit-dir', join(copy, 'nothing-here'), ...period]), { code: 2, stderr: /no such directory/ }, 'an --audit-dir that is not there: usage error');
  const plain = runCli(['report', '--config', configFile, ...period]);
  t.match(plain.stdout, /100 %/);
  t.match(plain.stdout, 'no bulk export');
});

t.test('a gateway whose audit directory another writer took over stops writing the trail, and is not ready', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const ready = async () => {
    const r = await request(`${s.url}/_mfa/health/ready`);
    await r.body.dump();
    return r.statusCode;
  };
  t.equal(await ready(), 200);
  s.app.gateway.audit!.abandon(new AuditError('AUDIT_LOCK_LOST', s.config.audit.dir));
  t.equal(await ready(), 503, 'not ready: it no longer records');
  t.equal((await request(`${s.url}/_mfa/health/live`)).statusCode, 200, 'still alive (a restart is what it needs)');
});

t.test('a start that fails (its port or its admin port taken) gives the audit directory back: the next start need not wait', async (t) => {
  const held = createServer();
  await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
  t.teardown(() => held.close());
  const taken = (held.address() as AddressInfo).port;
  for (const which of ['server', 'admin'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'mfa-start-'));
    const raw = merge(rawTestConfig('http://127.0.0.1:9'), { audit: { dir: join(dir, 'audit') }, [which]: { port: taken } });
    const file = join(dir, 'gateway.json');
    writeFileSync(file, JSON.stringify(raw));
    const r = runCli(['serve', '--config', file]);
    t.equal(r.code, 1, `${which} port taken: the start fails`);
    t.match(r.stderr + r.stdout, 'EADDRINUSE');
    t.notOk(existsSync(join(dir, 'audit', 'audit.lock')), `${which} port taken: no audit lock is left behind`);
  }
});

t.test('a start that fails once it holds the audit lock (a file read at start changed since the config was checked) gives the lock and the store back', async (t) => {
  const redis = await testRedis();
  t.teardown(redis.stop);
  const cert = new TestCa('server').issue('gateway', { server: true });
  const groups = join(mkdtempSync(join(tmpdir(), 'mfa-start-')), 'groups.yaml');
  writeFileSync(groups, 'alice: [staff]\n');
  const config = testConfig('http://127.0.0.1:9', (raw) => {
    raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix: `it-${randomBytes(4).toString('hex')}:` } };
    raw.server.tls = { certFile: cert.certFile, keyFile: cert.keyFile };
    raw.groups = { file: groups };
  });
  const lock = join(config.audit.dir, 'audit.lock');
  const probe = new Redis(redis.url);
  t.teardown(() => probe.disconnect());
  const clients = async () => ((await probe.client('LIST')) as string).trim().split('\n').length;
  const alone = await clients();

  // The server's key is read by the HTTP app, after the gateway took the lock.
  const key = readFileSync(cert.keyFile);
  rmSync(cert.keyFile);
  await t.rejects(buildApp(config), { code: 'ENOENT' }, 'the server key removed since the config was checked: the start fails');
  t.notOk(existsSync(lock), 'no audit lock is left behind');
  writeFileSync(cert.keyFile, key);
  // The group map is read by the gateway itself, after it took the lock: so too for an admin command.
  writeFileSync(groups, '');
  await t.rejects(buildApp(config), /group file: empty/, 'the group map emptied since: the start fails');
  t.notOk(existsSync(lock), 'no audit lock is left behind');
  await t.rejects(createGateway(config, { auditWriter: 'admin' }), /group file: empty/, "an admin command's start fails too");
  t.notOk(existsSync(join(config.audit.dir, 'admin', 'audit.lock')), 'no admin audit lock is left behind');
  // Time enough for a connection left open to be made.
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await clients(), alone, "the store's connections are closed");

  writeFileSync(groups, 'alice: [staff]\n');
  const started = Date.now();
  const app = await buildApp(config);
  // A start takes a moment (longer on a loaded machine); waiting out the lock would take 30 s.
  t.ok(Date.now() - started < 10_000, 'the next start does not wait for a lock to go stale');
  t.ok(existsSync(lock), 'a gateway that started holds the lock while it runs');
  await app.close();
  t.notOk(existsSync(lock), 'and gives it back when it stops');
});

t.test("a gateway that served nobody leaves a trail that verifies: its start, signed at once; an emptied trail still fails as empty", async (t) => {
  const config = testConfig('http://127.0.0.1:9');
  const dir = config.audit.dir;
  const publicKey = publicKeyPem(config.audit.signingKey!);
  const started = () => lines(dir).map((l) => JSON.parse(l)).filter((r) => r.type === 'event').map((r) => r.event);

  const app = await buildApp(config);
  // Sealed before anything else happens: a gateway killed now still leaves a trail that verifies, with nothing unsigned.
  const running = verifyAuditDir(dir, publicKey);
  t.match(running, { ok: true, records: 2, checkpoints: 1, lastSealedSeq: 2, problems: [] }, 'the start and its checkpoint, while it runs');
  await app.close();
  t.match(verifyAuditDir(dir, publicKey), { ok: true, records: 2, problems: [] }, 'closed: nothing more to seal');
  t.same(started(), [{ kind: 'gateway_started', version: VERSION }], 'the one event: the start, with the version and nothing else');

  const again = await buildApp(config);
  await again.close();
  t.match(verifyAuditDir(dir, publicKey), { ok: true, records: 4, checkpoints: 2, problems: [] }, 'a restart on the same directory: its own start, signed');
  t.same(started().map((e) => e.kind), ['gateway_started', 'gateway_started']);

  // An empty trail cannot be told from a deleted one: it fails as before.
  writeFileSync(join(dir, 'audit.jsonl'), '');
  t.same(verifyAuditDir(dir, publicKey).problems.map((p) => p.kind), ['empty'], 'the trail emptied afterwards');
  t.same(verifyAuditDir(mkdtempSync(join(tmpdir(), 'mfa-no-trail-')), publicKey).problems.map((p) => p.kind), ['empty'], 'a directory without a trail');
});
