// The admin commands: show, export, reset, revoke, erase and key rotation, on the memory store and on a real Redis.
// Through the real command line, each audited with its operator and reason: admin-cli.test.ts.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keysCommand, sessionsCommand, userCommand } from '../../src/cli/admin.js';
import { devicesCommand } from '../../src/cli/devices.js';
import { lockoutsCommand } from '../../src/cli/limits.js';
import { UsageError } from '../../src/cli/usage.js';
import { reportCommand } from '../../src/cli/report.js';
import type { Gateway } from '../../src/gateway.js';
import type { KvStore } from '../../src/stores/kv-store.js';
import { CredentialOwners, type WebAuthnFactor } from '../../src/stores/factor-store.js';
import { MemoryKvStore } from '../../src/stores/memory-kv-store.js';
import { Sealer } from '../../src/mechanisms/sealer.js';
import { Browser, inputValue } from '../helpers/browser.js';
import { OPERATOR, runCliAsync } from '../helpers/cli.js';
import { randomKey, rawTestConfig } from '../helpers/config.js';
import { freePort } from '../helpers/redis.js';
import { isErasureMark, signedIn } from '../helpers/admin.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { ALICE, BOB, atCodePage, jsonCall, passkeyCsrf, signInWithPasskey, signInWithTotp, signUpAndEnrol, signUpWithPasskey, startStack, submitPassword, totpAt, type Stack } from '../helpers/stack.js';

/** Every key in the store, and what every sealed record holds once opened. */
async function dump(kv: KvStore, sealer: Sealer): Promise<{ keys: string[]; opened: string[] }> {
  const keys: string[] = [];
  for await (const batch of kv.scanKeys('')) keys.push(...batch);
  const opened: string[] = [];
  for (const key of keys) {
    const value = await kv.get(key).catch(() => null);
    if (value && Sealer.keyIdOf(value)) {
      try {
        opened.push(sealer.open(value, key));
      } catch {
        // not a sealed record after all
      }
    }
  }
  return { keys, opened };
}

t.test('user show counts the recovery codes left, not the set', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { codes } = await signUpAndEnrol(s);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const page = await b.get('/_mfa/recovery');
  t.equal((await b.post('/_mfa/recovery', { csrf: inputValue(page.body, 'csrf'), code: codes[0]! })).status, 303, 'one code used');
  t.match((await userCommand(s.app.gateway, 'show', { user: 'alice' })).join('\n'), 'recovery codes: 9 of a set of 10 left');
});

t.test('memory store: show, export, revoke, reset and erase one user, leaving the others alone', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const gw = s.app.gateway;
  const alice = await signUpAndEnrol(s);
  const bob = await signUpAndEnrol(s, BOB);
  const pid = gw.pidOf(ALICE.username)!;

  const shown = (await userCommand(gw, 'show', { user: 'Alice' })).join('\n');
  t.match(shown, `user Alice (pseudonym ${pid})`);
  t.match(shown, /totp +Authenticator app/);
  t.match(shown, 'recovery codes: 10 of a set of 10 left');
  t.match(shown, /sessions:\n {2}signed in .* with totp/);
  const exported = (await userCommand(gw, 'export', { user: 'alice' }))[0]!;
  const data = JSON.parse(exported);
  t.equal(data.pid, pid);
  t.equal(data.username, 'alice');
  t.equal(JSON.parse((await userCommand(gw, 'export', { user: ' ＡＬＩＣＥ ' }))[0]!).username, 'alice', 'the account as the gateway holds it, not as typed');
  t.equal(data.factors.length, 1);
  t.equal(data.sessions.length, 1);
  t.ok(data.withheld.includes('TOTP secrets'));
  for (const secret of [alice.secret, ...alice.codes]) {
    t.notOk(shown.includes(secret) || exported.includes(secret), 'no secret or recovery code is shown or exported');
  }

  t.same(await sessionsCommand(gw, { user: 'alice' }), ['ended 1 session(s) of alice']);
  t.notOk(await signedIn(alice.b), 'her session is gone');
  t.ok(await signedIn(bob.b), "Bob's is not");

  const reset = await userCommand(gw, 'reset-factors', { user: 'alice' });
  t.match(reset[0], 'removed every factor of alice');
  t.equal((await submitPassword(s.browser(), ALICE.username, ALICE.password)).location, '/_mfa/enrol', 'her next sign-in enrols again');
  t.equal((await signInWithTotp(s, bob.secret, BOB)).final.status, 303, 'Bob still signs in with his app');

  await t.rejects(userCommand(gw, 'erase', { user: 'alice' }), /--yes/, 'erase needs --yes');
  const again = await signUpAndEnrol(s);
  // A step-up just done: its outcome is kept briefly for the same form sent again, and is erased too.
  s.clock.advance(30_000);
  const stepUp = await again.b.get('/_mfa/step-up');
  t.equal((await again.b.post('/_mfa/step-up', { csrf: inputValue(stepUp.body, 'csrf'), code: await totpAt(again.secret, s.clock.now()) })).status, 200);
  t.match((await userCommand(gw, 'erase', { user: 'alice', yes: true }))[0], 'erased alice');
  const after = await dump(s.kv, gw.stores.sealer);
  t.same(after.keys.filter((k) => k.includes(pid) && !isErasureMark(k)), [], 'no key names her');
  t.equal(after.keys.filter((k) => k.includes(pid) && isErasureMark(k)).length, 3, 'but the three marks that retire what came before (no personal data)');
  t.same(after.opened.filter((v) => v.includes(pid) || v.toLowerCase().includes('"alice"')), [], 'no record holds her');
  t.ok(after.keys.some((k) => k.includes(gw.pidOf(BOB.username)!)), 'Bob is still there');
  t.ok(await signedIn(bob.b));

  t.same(await sessionsCommand(gw, { all: true }), ['ended 2 session(s) of every user'], 'both of Bob’s');
  t.notOk(await signedIn(bob.b), 'every session ended');
});

t.test('export holds what erase deletes: sign-ins in progress, wrong codes and passwords, the addresses they came from', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.server.trustedProxies = ['127.0.0.1']) });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const { secret } = await signUpAndEnrol(s);
  const from = (address: string) => ({ 'x-forwarded-for': address });
  // A sign-in from one address: the password accepted, then two wrong codes.
  s.clock.advance(60_000);
  const b = s.browser();
  const login = await b.get('/login?continue=%2Frecords', from('198.51.100.4'));
  t.equal((await b.post('/login', { username: 'alice', password: ALICE.password, csrf: inputValue(login.body, 'csrf') }, from('198.51.100.4'))).location, '/_mfa/verify');
  const csrf = inputValue((await b.get('/_mfa/verify', from('198.51.100.4'))).body, 'csrf');
  const valid = new Set(await Promise.all([-2, -1, 0, 1, 2].map((step) => totpAt(secret, s.clock.now() + step * 30_000))));
  const wrong = ['123456', '234567', '345678', '456789'].filter((c) => !valid.has(c));
  for (const code of wrong.slice(0, 2)) t.equal((await b.post('/_mfa/verify', { csrf, code }, from('198.51.100.4'))).status, 400, 'a wrong code');
  // A wrong password from another.
  const other = s.browser();
  const page = await other.get('/login', from('203.0.113.7'));
  t.equal((await other.post('/login', { username: 'alice', password: 'wrong password', csrf: inputValue(page.body, 'csrf') }, from('203.0.113.7'))).status, 200);

  const exported = (await userCommand(gw, 'export', { user: 'alice' }))[0]!;
  const data = JSON.parse(exported);
  t.match(data.signInsInProgress, [{ stage: 'verify', address: '198.51.100.4', codesTried: 2, passwordAcceptedAt: new Date(s.clock.now()).toISOString() }], 'the sign-in in progress, where from, its wrong codes');
  t.equal(data.signInsInProgress.length, 1);
  t.same(data.failedPasswordAddresses, ['203.0.113.7'], 'the address a wrong password came from');
  t.same(
    data.failures,
    [
      { of: 'password', count: 1, lastAt: new Date(s.clock.now()).toISOString() },
      { of: 'totp', count: 2, lastAt: new Date(s.clock.now()).toISOString() },
    ],
    'the failures counted against her',
  );
  t.equal(data.totpCodeAcceptedAt, new Date(Math.floor((s.clock.now() - 60_000) / 30_000) * 30_000).toISOString(), 'when her last code was accepted (the enrolment)');
  t.equal(data.recoveryCodesUsed, 0);
  t.equal(data.passkeyCredentialIds, 0);
  t.same(data.alsoHeld, ['the first code of an authenticator app set up lately, kept a few minutes against its replay'], 'her enrolment a minute ago');
  t.ok(data.withheld.includes('the ids and form tokens of sessions and sign-ins in progress'));
  for (const secretValue of [secret, csrf, ...b.cookies.values(), ...other.cookies.values()]) t.notOk(exported.includes(secretValue), 'no secret, cookie or form token');

  t.match((await userCommand(gw, 'erase', { user: 'alice', yes: true }))[0], 'erased alice');
  t.match(JSON.parse((await userCommand(gw, 'export', { user: 'alice' }))[0]!), {
    factors: [],
    sessions: [],
    signInsInProgress: [],
    failedPasswordAddresses: [],
    failures: [],
    totpCodeAcceptedAt: null,
    recoveryCodesUsed: 0,
    passkeyCredentialIds: 0,
    alsoHeld: [],
  }, 'erased: the export holds nothing');
});

t.test('export: a passkey as its record holds it and the user handle its authenticators hold; never its public key, credential id or a recovery code hash', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const gw = s.app.gateway;
  const auth = new SoftAuthenticator({ origin: 'http://localhost', attachment: 'cross-platform', transports: ['nfc', 'usb'] });
  const { codes } = await signUpWithPasskey(s, auth);
  const copy = auth.clone();
  s.clock.advance(60_000);
  t.equal((await signInWithPasskey(s, auth)).answer.status, 200, 'signed in: its counter 1');
  s.clock.advance(60_000);
  t.equal((await signInWithPasskey(s, copy)).answer.status, 403, 'a copy answering with counter 1: the key is suspect');

  const exported = (await userCommand(gw, 'export', { user: 'alice' }))[0]!;
  const data = JSON.parse(exported);
  const at = (ms: number) => new Date(ms).toISOString();
  t.same(
    data.factors.map((f: { passkey?: unknown }) => f.passkey),
    [{ transports: ['nfc', 'usb'], deviceBound: true, countsAsDeviceBound: true, backedUp: false, userVerifiedAtRegistration: true, signCount: 1, suspectSince: at(s.clock.now()) }],
    'how it is reached, that it cannot leave its device, its counter, since when it is refused',
  );
  t.equal(data.factors[0].lastUsedAt, at(s.clock.now() - 60_000), 'used last by the genuine key');
  t.equal(data.passkeyUserHandle, auth.credentials[0]!.userHandle, 'the user handle her key holds');
  t.equal(data.hadDeviceBoundPasskey, true);
  t.ok(data.withheld.includes('passkey public keys'));
  // The factor record, opened: none of its secrets, keys or hashes is in the export.
  const record = (await gw.stores.factors.get(gw.pidOf(ALICE.username)!))!;
  const passkey = record.factors[0] as WebAuthnFactor;
  const hashes = record.recovery!.hashes.filter((h): h is string => h !== null);
  t.equal(hashes.length, 10);
  for (const [what, value] of [['public key', passkey.credential.publicKey], ['credential id', passkey.credential.id], ['recovery code salt', record.recovery!.salt], ...hashes.map((h) => ['recovery code hash', h]), ...codes.map((c) => ['recovery code', c])] as [string, string][]) {
    t.notOk(exported.includes(value), `no ${what}`);
  }
});

t.test('export: each session with its step-up codes tried and the groups the portal named, a sign-in in progress likewise, a device revoked and when', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.groups = { loginHeader: 'X-Portal-Roles' }) });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const bob = await signUpAndEnrol(s, BOB);
  const token = passkeyCsrf((await bob.b.get('/_mfa/security/passkey')).body);
  t.equal((await jsonCall(bob.b, '/_mfa/security/passkey/options', token)).status, 200, 'a passkey prompt fetched to add a key');
  s.clock.advance(60_000);
  const csrf = inputValue((await bob.b.get('/_mfa/step-up')).body, 'csrf');
  const valid = new Set(await Promise.all([-2, -1, 0, 1, 2].map((step) => totpAt(bob.secret, s.clock.now() + step * 30_000))));
  const wrong = ['123456', '234567', '345678', '456789'].filter((c) => !valid.has(c));
  for (const code of wrong.slice(0, 2)) t.equal((await bob.b.post('/_mfa/step-up', { csrf, code })).status, 400, 'a wrong code at a step-up');
  t.equal((await submitPassword(s.browser(), BOB.username, BOB.password)).location, '/_mfa/verify', 'a sign-in in progress');
  const fingerprint = 'b'.repeat(64);
  await devicesCommand(gw, 'register', { fingerprint, user: 'bob' });
  await devicesCommand(gw, 'revoke', { fingerprint });

  const data = JSON.parse((await userCommand(gw, 'export', { user: 'bob' }))[0]!);
  t.match(data.sessions, [{ factor: 'totp', codesTried: 2, groups: ['staff'] }], 'her session, its wrong step-up codes, her groups');
  t.equal(data.sessions.length, 1);
  t.notOk(data.factors.some((f: object) => 'passkey' in f), 'an app has no passkey details');
  t.match(data, { passkeyUserHandle: String, hadDeviceBoundPasskey: false }, 'the user handle made for the key he began to add, no key bound');
  t.match(data.signInsInProgress, [{ stage: 'verify', codesTried: 0, groups: ['staff'], proofCodeExpiresAt: null, factor: null, secondFactorAt: null, failureNotified: false }]);
  t.same(data.devices, [{ fingerprint, name: fingerprint.slice(0, 12), status: 'revoked', addedAt: new Date(s.clock.now()).toISOString(), revokedAt: new Date(s.clock.now()).toISOString() }]);
  t.ok(data.alsoHeld.includes('how many factors a sign-in in progress or a session tried to set up, and the passkey prompts it fetched (their limits)'), 'the prompt her session fetched');

  t.match((await userCommand(gw, 'erase', { user: 'bob', yes: true }))[0], 'erased bob');
  t.match(JSON.parse((await userCommand(gw, 'export', { user: 'bob' }))[0]!), { sessions: [], signInsInProgress: [], devices: [], alsoHeld: [] }, 'erased: none of it is held');
});

t.test('erase says what it did; a name that holds nothing (a misspelt one) is said to hold nothing, not erased', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const gw = s.app.gateway;
  const alice = await signUpAndEnrol(s);
  t.same(await devicesCommand(gw, 'register', { fingerprint: 'a'.repeat(64), user: 'alice' }), [`registered ${'a'.repeat(64)} for alice`]);
  const erased = await userCommand(gw, 'erase', { user: 'Alice', yes: true });
  t.match(erased[0], /^erased Alice: [1-9]\d* key\(s\) deleted, 1 session\(s\) ended, 1 device\(s\) bound to the user revoked; /, 'her session, her device');
  t.notOk(await signedIn(alice.b));
  const misspelt = await userCommand(gw, 'erase', { user: 'alicee', yes: true });
  t.same(misspelt, [`nothing was held about alicee: check the spelling (a name that never signed in holds nothing); the audit trail keeps its pseudonymous records of user ${gw.pidOf('alicee')}`]);
  t.match((await userCommand(gw, 'erase', { user: 'alice', yes: true }))[0], 'nothing was held about alice', 'erased already: nothing left');

  // Enrolled long ago, her sessions and their list expired: only her factors are held, and they are erased.
  const bob = await signUpAndEnrol(s, BOB);
  const bobPid = gw.pidOf(BOB.username)!;
  await sessionsCommand(gw, { user: 'bob' });
  t.notOk(await signedIn(bob.b));
  for await (const batch of s.kv.scanKeys(`user:{${bobPid}}`)) for (const key of batch) if (!key.endsWith(':factors') && !isErasureMark(key)) await s.kv.delete(key);
  t.match((await userCommand(gw, 'erase', { user: 'bob', yes: true }))[0], /^erased bob: 1 key\(s\) deleted, 0 session\(s\) ended, 0 device\(s\) bound to the user revoked/);
  t.equal(await s.kv.get(`user:{${bobPid}}:factors`), null);
});

t.test('erase: a sign-in begun before it and finishing while it runs starts no session (the marks stay throughout)', async (t) => {
  let whileSweeping: (() => Promise<void>) | null = null;
  const s = await startStack({
    kv: (clock) => {
      const kv = new MemoryKvStore(clock);
      const scan = kv.scanKeys.bind(kv);
      // The erasure's sweep over the user's keys: a sign-in finishes just after it.
      kv.scanKeys = async function* (prefix) {
        yield* scan(prefix);
        const hook = whileSweeping;
        if (hook && prefix.startsWith('user:{')) {
          whileSweeping = null;
          await hook();
        }
      };
      return kv;
    },
  });
  t.teardown(s.close);
  await signUpAndEnrol(s);
  const gw = s.app.gateway;
  const pid = gw.pidOf(ALICE.username)!;
  const passwordAt = s.clock.now() - 5000;
  let started: unknown;
  // Once the erasure has ended her sessions: then just after its sweep over her keys.
  const endAll = gw.sessions.endAll.bind(gw.sessions);
  gw.sessions.endAll = async (...args) => {
    const ended = await endAll(...args);
    whileSweeping = async () => {
      started = await gw.sessions.start({ pid, username: ALICE.username, proof: { factor: 'totp' }, jar: [] }, '192.0.2.1', passwordAt).catch((err: unknown) => err);
    };
    return ended;
  };
  await gw.admin.erase(pid);
  t.equal(whileSweeping, null, 'the sign-in finished during the sweep');
  t.match(started, { code: 'GW_ERR_LOGIN_EXPIRED', message: "the user's sessions were ended during the sign-in" }, 'it started no session: refused for the erasure');
});

/** A second gateway on the store of `s`, with a new encryption key e2 before its e1: a key rotation begun. */
async function withNewKey(t: Tap.Test, s: Stack): Promise<Stack> {
  const s2 = await startStack({
    kv: () => s.kv,
    patch: (raw) => (raw.keys = { ...raw.keys, encryption: [{ id: 'e2', secret: randomKey() }, s.config.keys.encryption[0]], signing: s.config.keys.signing, pseudonym: s.config.keys.pseudonym }),
  });
  t.teardown(async () => {
    await s2.app.close();
    await s2.portal.close();
  });
  return s2;
}

/** A store that lists every key twice, as Redis SCAN may while its table is resized. */
class ListsTwice extends MemoryKvStore {
  override async *scanKeys(prefix: string): AsyncIterable<string[]> {
    for await (const batch of super.scanKeys(prefix)) {
      yield batch;
      yield batch;
    }
  }
}

t.test('the report counts each factor once, also when the store lists a key twice (Redis SCAN does, while its table grows)', async (t) => {
  const s = await startStack({ kv: (clock) => new ListsTwice(clock) });
  t.teardown(s.close);
  await signUpAndEnrol(s);
  const report = JSON.parse(await reportCommand(s.app.gateway, { format: 'json' }));
  t.same(report.factors.held, { totp: 1, webauthn: 0, recovery: 1 }, 'her app and her recovery codes, once each');
  t.equal(report.coverage.totalEnrolled, 1);
});

t.test('key status, key rotation and erasure count each key once, also when the store lists a key twice', async (t) => {
  const s = await startStack({ kv: (clock) => new ListsTwice(clock) });
  t.teardown(s.close);
  await signUpAndEnrol(s);
  const listed = new Set<string>();
  for await (const batch of s.kv.scanKeys('')) for (const key of batch) listed.add(key);
  let sealed = 0;
  for (const key of listed) if (Sealer.keyIdOf((await s.kv.get(key).catch(() => null)) ?? '') === 'e1') sealed++;
  t.ok(sealed > 1, 'her records are sealed under e1');
  const s2 = await withNewKey(t, s);
  t.equal((await s2.app.gateway.admin.keyStatus()).find((u) => u.id === 'e1')?.records, sealed, 'each record sealed under e1 counted once');
  t.same(await s2.app.gateway.admin.rotateKeys(), { resealed: sealed, current: 0, unreadable: 0 }, 'each record re-sealed once, and not counted again as current');
  const deleted: string[] = [];
  const del = s.kv.delete.bind(s.kv);
  s.kv.delete = async (key) => (deleted.push(key), del(key));
  const { keysDeleted } = await s2.app.gateway.admin.erase(s.app.gateway.pidOf(ALICE.username)!);
  t.ok(keysDeleted > 0 && keysDeleted <= deleted.length, 'erase counts the keys it deleted…');
  t.equal(new Set(deleted).size, deleted.length, '…each once');
});

t.test('the report counts as holding recovery codes only users with a code left', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpAndEnrol(s);
  await signUpAndEnrol(s, BOB);
  const gw = s.app.gateway;
  // Bob has used every code of his set: the sign-in offers him none.
  await gw.stores.factors.update(gw.pidOf(BOB.username)!, (cur) => ({ ...cur!, recovery: { ...cur!.recovery!, hashes: cur!.recovery!.hashes.map(() => null) } }));
  const report = JSON.parse(await reportCommand(gw, { format: 'json' }));
  t.same(report.factors.held, { totp: 2, webauthn: 0, recovery: 1 }, 'alice holds codes, bob none');
});

t.test('erase also removes what no configured key opens any more (a retired encryption key)', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpAndEnrol(s);
  const pid = s.app.gateway.pidOf(ALICE.username)!;
  // What names her by value: a passkey's credential id (her factor record, which lists it, will not open), and the
  // usernames an address tried.
  t.ok(await new CredentialOwners(s.kv).claim('her-credential', pid));
  await submitPassword(s.browser(), ALICE.username, 'wrong password');
  const other = await startStack({ kv: () => s.kv, patch: (raw) => (raw.keys = { ...raw.keys, encryption: [{ id: 'e9', secret: randomKey() }], pseudonym: s.config.keys.pseudonym }) });
  t.teardown(async () => {
    await other.app.close();
    await other.portal.close();
  });
  await t.rejects(userCommand(other.app.gateway, 'show', { user: 'alice' }), /cannot be opened/, 'her factor record cannot be read');
  const report = JSON.parse(await reportCommand(other.app.gateway, { format: 'json' }));
  t.equal(report.factors.unreadableRecords, 1, 'the report counts it, and is still made');
  t.ok(report.findings.some((f: string) => /^1 user's factor record cannot be opened/.test(f)), 'a finding');
  t.match((await userCommand(other.app.gateway, 'erase', { user: 'alice', yes: true }))[0], 'erased alice');
  const left: string[] = [];
  for await (const batch of s.kv.scanKeys('')) left.push(...batch);
  t.same(left.filter((k) => k.includes(pid) && !isErasureMark(k)), [], 'no key of hers is left');
  const naming: string[] = [];
  for (const key of left) {
    const value = key.endsWith(':usernames') ? await s.kv.setMembers(key) : [await s.kv.get(key)];
    if (value.includes(pid)) naming.push(key);
  }
  t.same(naming, [], 'nor a value naming her');
});

t.test('reset-factors removes a factor record no configured key opens: the next sign-in enrols again', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpAndEnrol(s);
  const other = await startStack({ kv: () => s.kv, patch: (raw) => (raw.keys = { ...raw.keys, encryption: [{ id: 'e9', secret: randomKey() }], pseudonym: s.config.keys.pseudonym }) });
  t.teardown(async () => {
    await other.app.close();
    await other.portal.close();
  });
  t.equal((await submitPassword(other.browser(), ALICE.username, ALICE.password)).status, 503, 'her factors cannot be read: closed');
  t.match((await userCommand(other.app.gateway, 'reset-factors', { user: 'alice' }))[0], 'removed the factor record of alice, which no configured key opens');
  t.equal((await submitPassword(other.browser(), ALICE.username, ALICE.password)).location, '/_mfa/enrol', 'she enrols again');
});

t.test('the help desk: a name no sign-in can use gets nothing made for it; one that holds nothing is said to', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.portal.login.usernamePattern = '[a-z0-9._-]+') });
  t.teardown(s.close);
  const gw = s.app.gateway;
  for (const run of [
    () => devicesCommand(gw, 'register', { fingerprint: 'a'.repeat(64), user: 'alice@clinic.example' }),
    () => userCommand(gw, 'show', { user: ' \u200b ' }),
  ]) {
    await t.rejects(run(), { constructor: UsageError, message: /not a usable username/ });
  }
  await signUpAndEnrol(s);
  t.match((await userCommand(gw, 'reset-factors', { user: 'alice@clinic.example' }))[0], 'alice@clinic.example held no factor: check the spelling');
  t.match((await userCommand(gw, 'reset-factors', { user: 'alcie' }))[0], 'alcie held no factor: check the spelling');
  t.match((await lockoutsCommand(gw, 'clear', { user: 'alcie' }))[0], 'none was disabled (check the spelling)');
  // Wrong codes past the free ones: a wait, not a disabled factor.
  for (let login = 0; login < 2; login++) {
    const { b, csrf } = await atCodePage(s);
    for (let i = 0; i < 3; i++) await b.post('/_mfa/verify', { csrf, code: '000000' });
  }
  t.match((await lockoutsCommand(gw, 'clear', { user: 'alice' }))[0], 'cleared every kind of factor for alice: none was disabled');
  t.equal(s.logs.filter((l) => JSON.parse(l).security === 'lockout_cleared').length, 0, 'nothing turned back on: no lockout_cleared for the report to count');
  t.match((await userCommand(gw, 'reset-factors', { user: 'alice' }))[0], 'removed every factor of alice (1)');
});

t.test('reset-factors with invitations: a code only for a name the login accepts', async (t) => {
  const s = await startStack({ patch: (raw) => ((raw.portal.login.usernamePattern = '[a-z0-9._-]+'), (raw.enrolment = { proof: 'invite' })) });
  t.teardown(s.close);
  const refused = await userCommand(s.app.gateway, 'reset-factors', { user: 'alice@clinic.example' });
  t.notOk(refused.some((l) => l.startsWith('enrolment code')), 'none for a name no sign-in can use');
  t.match(refused.at(-1), 'no enrolment code: the name does not match portal.login.usernamePattern');
  t.match((await userCommand(s.app.gateway, 'reset-factors', { user: 'alice' })).at(-1), /^enrolment code \(give it only after checking who is asking\): [A-Z2-9-]+ {2}expires/);
});

t.test('an account whose name a pattern set since refuses is still reached by the help desk (revoke, erase)', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const later = await startStack({ kv: () => s.kv, patch: (raw) => ((raw.keys = s.config.keys), (raw.portal.login.usernamePattern = '[a-z]+@clinic\\.example')) });
  t.teardown(async () => {
    await later.app.close();
    await later.portal.close();
  });
  t.same(await sessionsCommand(later.app.gateway, { user: 'alice' }), ['ended 1 session(s) of alice']);
  t.notOk(await signedIn(alice.b));
  t.match((await userCommand(later.app.gateway, 'erase', { user: 'alice', yes: true }))[0], 'erased alice');
});

t.test('key rotation: records re-sealed with the new key; sessions and factors keep working; the old key can go', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const old = { enc: s.config.keys.encryption[0]!, sig: s.config.keys.signing[0]! };
  const fresh = { enc: { id: 'e2', secret: randomKey() }, sig: { id: 's2', secret: randomKey() } };
  /** Another gateway on the same store with other keys, sharing the browser's cookies. */
  const withKeys = async (encryption: object[], signing: object[], cookies = alice.b.cookies): Promise<{ s2: Stack; gw: Gateway; b: Browser }> => {
    const s2 = await startStack({ kv: () => s.kv, patch: (raw) => (raw.keys = { ...raw.keys, encryption, signing, pseudonym: s.config.keys.pseudonym }) });
    t.teardown(async () => {
      await s2.app.close();
      await s2.portal.close();
    });
    const b = s2.browser();
    Object.defineProperty(b, 'cookies', { value: cookies });
    return { s2, gw: s2.app.gateway, b };
  };
  // Each stack has a portal of its own: "signed in" here means the gateway let the request through to it.
  const passes = async (x: { s2: Stack; b: Browser }) => {
    const n = x.s2.portalRequests.length;
    await x.b.get('/records');
    return x.s2.portalRequests.length > n;
  };

  // (A copy of her cookies: a gateway that cannot open a session tells the browser to drop its cookie.)
  const onlyNew = await withKeys([fresh.enc], [fresh.sig, old.sig], new Map(alice.b.cookies));
  t.notOk(await passes(onlyNew), 'before rotation, a gateway without the old key cannot open her session');
  t.equal((await submitPassword(onlyNew.s2.browser(), ALICE.username, ALICE.password)).status, 503, 'before rotation, a gateway without the old key cannot read her factors: it fails closed');

  const both = await withKeys([fresh.enc, old.enc], [fresh.sig, old.sig]);
  t.ok(await passes(both), 'during rotation the old session works');
  const before = await keysCommand(both.gw, 'status');
  t.match(before.join('\n'), /encryption {2}e1 +retiring .* [1-9]\d* record\(s\)/);
  const rotated = await keysCommand(both.gw, 'rotate');
  t.match(rotated[0], /^re-sealed [1-9]\d* record\(s\) with encryption key e2/);
  t.match((await keysCommand(both.gw, 'status')).join('\n'), /encryption {2}e1 .* 0 record\(s\)/, 'nothing left under the old key');
  t.match((await keysCommand(both.gw, 'rotate'))[0], /^re-sealed 0 record/, 'a second run has nothing to do');

  const after = await withKeys([fresh.enc], [fresh.sig, old.sig]);
  t.ok(await passes(after), 'the old encryption key removed: her session (signed with the old signing key) still works');
  t.equal((await signInWithTotp(after.s2, alice.secret)).final.status, 303, 'and her authenticator app still signs her in');
});

t.test('key rotation: records under the active key id that its secret does not open are reported unreadable, not current', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  await signUpAndEnrol(s);
  // The key "rotated" by giving its id a new secret rather than adding a new id: nothing under it opens any more.
  const s2 = await startStack({
    kv: () => s.kv,
    patch: (raw) => (raw.keys = { ...raw.keys, encryption: [{ id: 'e1', secret: randomKey() }], signing: s.config.keys.signing, pseudonym: s.config.keys.pseudonym }),
  });
  t.teardown(async () => {
    await s2.app.close();
    await s2.portal.close();
  });
  const rotated = await keysCommand(s2.app.gateway, 'rotate');
  t.match(rotated[0], /^re-sealed 0 record\(s\) with encryption key e1; 0 already used it; [1-9]\d* could not be opened with any configured key$/, rotated[0]);
});

t.test('a reset or a revocation also ends the sign-ins in progress of the user', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const gw = s.app.gateway;
  // At the recovery codes of a first enrolment (the factor bound) when the help desk resets the factors.
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const page = await b.get('/_mfa/enrol/totp');
  const csrf = inputValue(page.body, 'csrf');
  const secret = /id="secret">([^<]+)</.exec(page.body)![1]!.replaceAll(' ', '');
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: await totpAt(secret, s.clock.now()) })).location, '/_mfa/recovery-codes');
  await userCommand(gw, 'reset-factors', { user: 'alice' });
  t.equal((await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).status, 403, 'no session from a sign-in begun before the reset');
  t.notOk(await signedIn(b));

  // At the code page, password accepted, when the sessions are revoked.
  const bob = await signUpAndEnrol(s, BOB);
  s.clock.advance(30_000);
  const x = s.browser();
  await submitPassword(x, BOB.username, BOB.password);
  const verify = await x.get('/_mfa/verify');
  t.same(await sessionsCommand(gw, { user: 'bob' }), ['ended 1 session(s) of bob']);
  t.equal((await x.post('/_mfa/verify', { csrf: inputValue(verify.body, 'csrf'), code: await totpAt(bob.secret, s.clock.now()) })).status, 403, 'the sign-in in progress ended too');
  t.notOk(await signedIn(x));
  t.equal((await signInWithTotp(s, bob.secret, BOB)).final.status, 303, 'a sign-in begun after it works');
});

t.test('key rotation and key status include the key of an app being set up from the security page', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const setup = await alice.b.get('/_mfa/security/totp');
  const scanned = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  const setupKeys: string[] = [];
  for await (const batch of s.kv.scanKeys('user:{')) setupKeys.push(...batch.filter((k) => k.includes(':factor-setup')));
  t.equal(setupKeys.length, 1);
  const s2 = await withNewKey(t, s);
  let sealed = 0;
  for await (const batch of s.kv.scanKeys('')) for (const key of batch) if (Sealer.keyIdOf((await s.kv.get(key).catch(() => null)) ?? '') === 'e1') sealed++;
  const status = await s2.app.gateway.admin.keyStatus();
  t.equal(status.find((u) => u.id === 'e1')?.records, sealed, 'key status counts every record sealed under the key');
  await keysCommand(s2.app.gateway, 'rotate');
  t.equal(Sealer.keyIdOf((await s.kv.get(setupKeys[0]!))!), 'e2', 're-sealed with the new key');
  const b = s2.browser();
  Object.defineProperty(b, 'cookies', { value: alice.b.cookies });
  const again = await b.get('/_mfa/security/totp');
  t.equal(/id="secret">([^<]+)</.exec(again.body)![1]!.replaceAll(' ', ''), scanned, 'the key being set up still opens');
});

t.test('an admin command that cannot reach Redis says why, as the readiness check does', async (t) => {
  const port = await freePort();
  const dir = t.testdir();
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...rawTestConfig('http://127.0.0.1:9'), store: { type: 'redis', redis: { url: `redis://127.0.0.1:${port}` } }, audit: { enabled: false } }));
  const r = await runCliAsync(['lockouts', 'list', '--config', configFile, ...OPERATOR]);
  t.equal(r.code, 1);
  t.match(r.stderr, `mfa-gateway: redis not ready (connection: connect ECONNREFUSED 127.0.0.1:${port})`);
});
