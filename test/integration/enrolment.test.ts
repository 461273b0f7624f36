// The enrolment proof: with only the password, nobody can bind a first factor. Invitation codes (issued ahead,
// by the CLI too), codes sent through the vendor's webhook, and trust on first use only when chosen.
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { verifySignature } from '../../src/services/notifier.js';
import { keys } from '../../src/stores/keys.js';
import { inputValue, type Browser, type Page } from '../helpers/browser.js';
import { OPERATOR, runCli } from '../helpers/cli.js';
import { randomKey } from '../helpers/config.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { ALICE, BOB, atCodePage, enrol, jsonCall, passkeyCsrf, startStack, submitPassword, totpAt, totpEnrolmentForm, type Stack, startRedisStack } from '../helpers/stack.js';

const invite = (raw: Record<string, any>) => (raw.enrolment = { proof: 'invite', inviteDays: 30 });

/** Issues an invitation code the way the CLI does (the CLI itself has a test below). */
async function issue(s: Stack, username: string): Promise<string> {
  const gw = s.app.gateway;
  const { code } = await gw.enrolment.issueInvite(gw.pidOf(username)!);
  return code;
}

async function atProof(s: Stack, user = ALICE): Promise<{ b: Browser; csrf: string }> {
  const b = s.browser();
  const answer = await submitPassword(b, user.username, user.password);
  if (answer.location !== '/_mfa/proof') throw new Error(`expected the proof step, got ${answer.location}`);
  return { b, csrf: inputValue((await b.get('/_mfa/proof')).body, 'csrf') };
}

t.test('the first session counts its second factor from the code checked at enrolment, not from the recovery codes saved later', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const p = s.config.server.prefix;
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const checkedAt = s.clock.now();
  t.equal((await b.post(`${p}/enrol/totp`, { csrf, code: await totpAt(secret, checkedAt) })).location, `${p}/recovery-codes`);
  await b.get(`${p}/recovery-codes`);
  s.clock.advance(290_000);
  await b.post(`${p}/recovery-codes`, { csrf, saved: 'yes' });
  const active = await s.app.gateway.sessions.authenticate(b.cookies.get('__Host-mfa-session'));
  t.equal(active?.record.factorTime, checkedAt, 'the time of the code');
  t.ok(active!.record.authTime >= checkedAt + 290_000, 'the session itself begins when it is started');
});

t.test("the app set-up form sent before its page was shown (no code typed) shows the page with a key, the one the page then keeps", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const p = s.config.server.prefix;
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = inputValue((await b.get(`${p}/enrol`)).body, 'csrf');
  const early = await b.post(`${p}/enrol/totp`, { csrf, code: '' });
  t.equal(early.status, 400);
  const shown = /id="secret">([^<]+)</.exec(early.body)?.[1]?.replaceAll(' ', '');
  t.match(shown, /^[A-Z2-7]{32}$/, 'a key to set the app up with, not an empty one');
  const { secret } = await totpEnrolmentForm(s, b);
  t.equal(secret, shown, 'the page shows the same key');
  t.equal((await b.post(`${p}/enrol/totp`, { csrf, code: await totpAt(secret, s.clock.now()) })).location, `${p}/recovery-codes`);
});

t.test('the recovery codes page begins with the whole time again: a factor bound near the end leaves time to write them down', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const p = s.config.server.prefix;
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  for (const [how, user] of [['app', ALICE], ['passkey', BOB]] as const) {
    const b = s.browser();
    await submitPassword(b, user.username, user.password);
    // Four of the five minutes go on setting up the factor (finding the app, scanning, typing the code).
    let csrf: string;
    if (how === 'app') {
      const form = await totpEnrolmentForm(s, b);
      csrf = form.csrf;
      s.clock.advance(4 * 60_000);
      t.equal((await b.post(`${p}/enrol/totp`, { csrf, code: await totpAt(form.secret, s.clock.now()) })).location, `${p}/recovery-codes`);
    } else {
      csrf = passkeyCsrf((await b.get(`${p}/enrol`)).body);
      s.clock.advance(4 * 60_000);
      const options = await jsonCall(b, `${p}/enrol/passkey/options`, csrf);
      t.equal((await jsonCall(b, `${p}/enrol/passkey`, csrf, { credential: auth.register(options.json), name: 'Key' })).status, 200);
    }
    const codes = await b.get(`${p}/recovery-codes`);
    t.match(codes.body, 'You have 5 minutes left', `${how}: five minutes for the codes, not the one the sign-in had left`);
    t.match(String(codes.headers['set-cookie']), /__Host-mfa-pending=[^;]+;.*Max-Age=300/, `${how}: the pending cookie lives as long`);
    // Copying ten codes by hand takes a while: past the sign-in's first end.
    s.clock.advance(3 * 60_000);
    t.equal((await b.post(`${p}/recovery-codes`, { csrf, saved: 'yes' })).location, '/records', `${how}: signed in, not "your sign-in has expired"`);
  }
});

t.test('invite: no way to a factor without the code', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const { b, csrf } = await atProof(s);
  const page = await b.get('/_mfa/proof');
  t.match(page.body, 'enrolment code you were given');
  t.notMatch(page.body, 'autofocus', 'no field takes focus: the page is read from the top');
  // The pages of later steps lead back to the proof (by /_mfa/continue), never to a factor.
  for (const path of ['/_mfa/enrol', '/_mfa/enrol/totp']) {
    const early = await b.get(path);
    t.equal(early.location, '/_mfa/continue', `${path} before the proof`);
    t.notMatch(early.body, /id="secret"|passkey/);
  }
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: '123456' })).location, '/_mfa/continue', 'confirming a factor before the proof');
  const opts = await b.send('POST', '/_mfa/enrol/passkey/options', '{}', { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf });
  t.equal(opts.status, 403, 'passkey options before the proof');
  t.equal((await b.get('/records')).location, '/_mfa/continue', 'the portal stays closed');
  t.equal((await b.get('/_mfa/continue')).location, '/_mfa/proof');
  const empty = await b.post('/_mfa/enrol/proof', { csrf, code: '' });
  t.equal(empty.status, 400, 'sent with nothing typed');
  t.match(empty.body, 'Enter the code, then try again.', 'said so, not "did not work"');
  const half = await b.post('/_mfa/more-time', { csrf, back: 'proof', code: 'ABCD-EF' });
  t.equal(half.status, 200, '"I need more time", pressed with half the code typed: the page itself');
  t.match(half.body, /<input type="text" id="proof" name="code" required autofocus [^>]*value="ABCD-EF"/, 'with it in its field, which takes focus');
  t.match(half.body, /<button type="submit" form="code-form" formaction="\/_mfa\/more-time" formnovalidate name="back" value="proof" class="secondary">/);
  const none = await b.post('/_mfa/enrol/proof', { csrf, code: 'ABCD-EFGH-JKLM' });
  t.equal(none.status, 400, 'no code was issued for this user: any code is wrong');
  t.match(none.body, 'Attempts left: 4', 'the form sent empty used up no try');
  t.match(none.body, /<input [^>]*id="proof"[^>]* autofocus[^>]* aria-invalid="true">/, 'a wrong code: focus on the field to correct');
});

t.test('invite: the right code, once; wrong, expired and reused codes refused', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const code = await issue(s, 'Alice');
  const { b, csrf } = await atProof(s);
  const wrong = await b.post('/_mfa/enrol/proof', { csrf, code: 'AAAA-BBBB-CCCC' });
  t.equal(wrong.status, 400);
  t.equal(wrong.body.match(/aria-invalid="true"/g)?.length, 1, 'the field is marked');
  const ok = await b.post('/_mfa/enrol/proof', { csrf, code: code.toLowerCase().replaceAll('-', ' ') });
  t.equal(ok.status, 303, 'case and separators do not matter');
  t.equal(ok.location, '/_mfa/enrol');
  const { done } = await enrol(s, b);
  t.equal(done.location, '/records');
  t.ok(s.logs.some((l) => l.includes('"security":"enrolment_proof_ok"')));

  // The same code a second time does not work: her factors removed without a new letter, she is at the proof again.
  await s.app.gateway.admin.resetFactors(s.app.gateway.pidOf('alice')!, 'alice', false);
  const again = await atProof(s);
  t.equal((await again.b.post('/_mfa/enrol/proof', { csrf: again.csrf, code })).status, 400, "alice's code, used by the factor it bound");
  // Nor is one user's code another's.
  const reset = await issue(s, 'bob');
  const other = await atProof(s, BOB);
  t.equal((await other.b.post('/_mfa/enrol/proof', { csrf: other.csrf, code })).status, 400, "alice's code for bob");
  t.equal((await other.b.post('/_mfa/enrol/proof', { csrf: other.csrf, code: reset })).status, 303, "bob's own code");

  // Expired.
  const s2 = await startStack({ patch: (raw) => (raw.enrolment = { proof: 'invite', inviteDays: 1 }) });
  t.teardown(s2.close);
  const old = await issue(s2, 'alice');
  s2.clock.advance(24 * 60 * 60_000 + 1);
  const late = await atProof(s2);
  t.equal((await late.b.post('/_mfa/enrol/proof', { csrf: late.csrf, code: old })).status, 400, 'expired');
});

t.test('invite: a login that runs out of time after the code keeps the code for the next try; binding uses it up', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const code = await issue(s, 'alice');
  const first = await atProof(s);
  t.equal((await first.b.post('/_mfa/enrol/proof', { csrf: first.csrf, code })).location, '/_mfa/enrol');
  await first.b.get('/_mfa/enrol/totp');
  s.clock.advance(s.config.mfa.pendingTimeoutSeconds * 1000 + 1);
  t.equal((await first.b.get('/_mfa/enrol/totp')).status, 403, 'too slow: the login ended');
  // Two tries with the password and the letter: both get past the code, only one binds a factor.
  const again = await atProof(s);
  const twin = await atProof(s);
  t.equal((await again.b.post('/_mfa/enrol/proof', { csrf: again.csrf, code })).location, '/_mfa/enrol', 'the same code, next try');
  t.equal((await twin.b.post('/_mfa/enrol/proof', { csrf: twin.csrf, code })).location, '/_mfa/enrol', 'and in a second browser');
  t.equal((await enrol(s, again.b)).done.location, '/records', 'enrolled');
  const secret = /id="secret">([^<]+)</.exec((await twin.b.get('/_mfa/enrol/totp')).body)![1]!.replaceAll(' ', '');
  s.clock.advance(30_000); // a code of a time step not used yet
  const late = await twin.b.post('/_mfa/enrol/totp', { csrf: twin.csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(late.status, 403, 'the second cannot bind another first factor');
  t.equal(await s.app.gateway.kv.get(keys.enrolmentCode(s.app.gateway.pidOf('alice')!)), null, 'the code is used up');
});

t.test("a set-up confirmed but never bound (a stale sign-in's) leaves the user's count of wrong codes as it was", async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const code = await issue(s, 'alice');
  // Someone with the password and the letter opens the app page; the user binds first, through another sign-in.
  const stale = await atProof(s);
  t.equal((await stale.b.post('/_mfa/enrol/proof', { csrf: stale.csrf, code })).location, '/_mfa/enrol');
  const secret = /id="secret">([^<]+)</.exec((await stale.b.get('/_mfa/enrol/totp')).body)![1]!.replaceAll(' ', '');
  const user = await atProof(s);
  await user.b.post('/_mfa/enrol/proof', { csrf: user.csrf, code });
  const { secret: real } = await enrol(s, user.b);
  // Wrong codes for the user's app, over fresh sign-ins, until the user's count makes the next one wait.
  const guess = async () => {
    const { b, csrf } = await atCodePage(s);
    const wrong = (await totpAt(real, s.clock.now())) === '000000' ? '111111' : '000000';
    return (await b.post('/_mfa/verify', { csrf, code: wrong })).status;
  };
  let status = 0;
  for (let i = 0; i < 20 && status !== 429; i++) status = await guess();
  t.equal(status, 429, 'wrong codes: the user must wait');
  // The stale sign-in confirms its own app: refused (the user has a factor), and it must not wipe the count.
  s.clock.advance(1000);
  const confirmed = await stale.b.post('/_mfa/enrol/totp', { csrf: stale.csrf, code: await totpAt(secret, s.clock.now()) });
  t.equal(confirmed.status, 403, 'nothing is bound');
  t.equal(await guess(), 429, 'the next guess still waits');
});

t.test('invite: guessing is limited like codes, and a re-entered password does not reset it', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  await issue(s, 'alice');
  const statuses: number[] = [];
  const { b, csrf } = await atProof(s);
  for (let i = 0; i < 6; i++) statuses.push((await b.post('/_mfa/enrol/proof', { csrf, code: `AAAA-BBBB-CCC${i}` })).status);
  t.same(statuses, [400, 400, 400, 400, 429, 403], 'five guesses per login, then the password again');
  const failures = () => s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'mfa_failed' && l.factor === 'enrolment-code').map((l) => l.failures);
  t.same(failures(), [1, 2, 3, 4, 5], 'counted per user');
  const parallel = await atProof(s);
  const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => parallel.b.post('/_mfa/enrol/proof', { csrf: parallel.csrf, code: `ZZZZ-ZZZZ-ZZ${i % 10}${i % 3}` })));
  t.equal(burst.filter((r) => r.status === 400).length, 1, 'a new login: one more guess checked (the sixth of the user), however many are sent at once');
  t.ok(burst.every((r) => r.status === 400 || r.status === 429 || r.status === 403), 'the rest wait (or the login ended): the new password step did not reset the count');
  t.equal(failures().length, 6);
});

t.test('webhook: a code sent through the vendor, signed; typed in to enrol', async (t) => {
  const receiver = await startReceiver([500]);
  t.teardown(receiver.close);
  const secret = randomBytes(32).toString('hex');
  const s = await startStack({ patch: (raw) => (raw.enrolment = { proof: 'webhook', webhook: { url: receiver.url, secret, codeMinutes: 10 } }) });
  t.teardown(s.close);
  const { b, csrf } = await atProof(s);
  t.match((await b.get('/_mfa/proof')).body, 'Send me a code');
  const failed = await b.post('/_mfa/enrol/proof/send', { csrf });
  t.equal(failed.status, 502, 'the vendor endpoint failed: said so, nothing pretended');
  t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 303);
  t.equal(receiver.calls.length, 1);
  const call = receiver.calls[0]!;
  t.ok(verifySignature(call.body, String(call.headers['x-mfa-signature']), secret, s.clock.now()), 'signed with the configured secret');
  t.notOk(verifySignature(call.body, String(call.headers['x-mfa-signature']), 'x'.repeat(64), s.clock.now()), 'and not with another');
  t.match(call.json, { id: /^[\w-]{20,}$/, event: 'enrolment_code', user: 'alice', code: /^\d{8}$/, expiresAt: String });
  const entry = (await b.get('/_mfa/proof')).body;
  t.match(entry, 'We have sent you a code');
  // A browser cuts what is typed or pasted at maxlength: the field takes the whole code.
  const maxlength = Number(/<input[^>]* id="proof"[^>]* maxlength="(\d+)"/.exec(entry)?.[1]);
  t.ok(maxlength >= String(call.json.code).length, `the code field takes ${String(call.json.code).length} digits (maxlength ${maxlength})`);
  t.equal((await b.post('/_mfa/enrol/proof', { csrf, code: '00000000' === call.json.code ? '11111111' : '00000000' })).status, 400);
  t.equal((await b.post('/_mfa/enrol/proof', { csrf, code: String(call.json.code) })).status, 303);
  t.equal((await b.get('/_mfa/continue')).location, '/_mfa/enrol');

  // A code expires, and a new one replaces the old.
  const c = await atProof(s, BOB);
  await c.b.post('/_mfa/enrol/proof/send', { csrf: c.csrf });
  const first = String(receiver.calls.at(-1)!.json.code);
  await c.b.post('/_mfa/enrol/proof/send', { csrf: c.csrf });
  const second = String(receiver.calls.at(-1)!.json.code);
  if (first !== second) t.equal((await c.b.post('/_mfa/enrol/proof', { csrf: c.csrf, code: first })).status, 400, 'the replaced code');
  // A password alone cannot flood the user with messages: three at once, then one a minute.
  t.equal((await c.b.post('/_mfa/enrol/proof/send', { csrf: c.csrf })).status, 303, 'a third code');
  const sent = receiver.calls.length;
  const flood = await c.b.post('/_mfa/enrol/proof/send', { csrf: c.csrf });
  t.equal(flood.status, 429, 'a fourth at once is refused');
  t.ok(Number(flood.headers['retry-after']) > 0, 'with Retry-After');
  t.equal(receiver.calls.length, sent, 'and not sent');
  s.clock.advance(60_000);
  t.equal((await c.b.post('/_mfa/enrol/proof/send', { csrf: c.csrf })).status, 303, 'a minute later, one more');
  const second2 = String(receiver.calls.at(-1)!.json.code);
  s.clock.advance(10 * 60_000 + 1);
  const late = await c.b.post('/_mfa/enrol/proof', { csrf: c.csrf, code: second2 });
  t.ok([400, 403].includes(late.status), 'expired (or the login itself expired)');
});

t.test('webhook: a code the vendor did not take is not said to be sent, and the one sent before still works', async (t) => {
  const receiver = await startReceiver([500, 200, 500, 0]);
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => ((raw.enrolment = { proof: 'webhook', webhook: { url: receiver.url, secret: 'w'.repeat(64), codeMinutes: 10 } }), (raw.notify = { timeoutSeconds: 1 })) });
  t.teardown(s.close);
  const { b, csrf } = await atProof(s);
  t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 502, 'the vendor endpoint failed');
  const page = (await b.get('/_mfa/proof')).body;
  t.notMatch(page, 'We have sent you a code', 'the page does not say a code was sent');
  t.match(page, 'Send me a code');
  t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 303);
  const code = String(receiver.calls.at(-1)!.json.code);
  t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 502, 'asked again: the vendor endpoint failed');
  s.clock.advance(60_000);
  t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 502, 'and again: it did not answer');
  t.match((await b.get('/_mfa/proof')).body, 'We have sent you a code', 'the code sent before is still said to be sent');
  t.equal((await b.post('/_mfa/enrol/proof', { csrf, code })).location, '/_mfa/enrol', 'and it works');
  // For the operator: each code not sent is an event of its own, with why, and the metrics tell them from codes sent.
  const events = s.logs.map((l) => JSON.parse(l)).filter((l) => String(l.security).startsWith('enrolment_code_'));
  t.same(
    events.map((l) => [l.security, l.why ?? null]),
    [['enrolment_code_not_sent', 'status 500'], ['enrolment_code_sent', null], ['enrolment_code_not_sent', 'status 500'], ['enrolment_code_not_sent', 'TimeoutError']],
  );
  const metrics = await s.app.gateway.metrics.text();
  t.match(metrics, /^mfa_gateway_security_events_total\{event="enrolment_code_not_sent"\} 3$/m, 'counted apart, for an alert');
  t.match(metrics, /^mfa_gateway_security_events_total\{event="enrolment_code_sent"\} 1$/m);
});

t.test('a code sent before more time was asked for works as long as it says (10 minutes), in the longer login', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.enrolment = { proof: 'webhook', webhook: { url: receiver.url, secret: 'w'.repeat(64), codeMinutes: 10 } }) });
  t.teardown(s.close);
  const { b, csrf } = await atProof(s);
  s.clock.advance(60_000);
  await b.post('/_mfa/enrol/proof/send', { csrf });
  const code = String(receiver.calls.at(-1)!.json.code);
  s.clock.advance(3 * 60_000);
  t.match((await b.post('/_mfa/more-time', { csrf, back: 'proof' })).location, /^\/_mfa\/proof\?time=/);
  s.clock.advance(90_000);
  t.equal((await b.post('/_mfa/enrol/proof', { csrf, code })).location, '/_mfa/enrol', 'at 5:30, past the first end of the login');
});

t.test('first-login: only when chosen, and config check warns', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.enrolment = { proof: 'first-login' }) });
  t.teardown(s.close);
  const b = s.browser();
  t.equal((await submitPassword(b, ALICE.username, ALICE.password)).location, '/_mfa/enrol', 'straight to a factor');
  const dir = mkdtempSync(join(tmpdir(), 'mfa-tofu-'));
  writeFileSync(
    join(dir, 'gw.yaml'),
    `portal: { url: 'http://portal.internal:8080' }\naudit: { enabled: false }\nenrolment: { proof: first-login }\npolicy: { rules: [{ name: all, paths: [/], decision: mfa }] }\nkeys:\n  signing: [{ id: s, secret: ${randomKey()} }]\n  encryption: [{ id: e, secret: ${randomKey()} }]\n  pseudonym: ${randomKey()}\n`,
  );
  const check = runCli(['config', 'check', join(dir, 'gw.yaml')]);
  t.equal(check.code, 0);
  t.match(check.stdout, 'warning: enrolment.proof is first-login: anyone who knows a password can bind');
  t.equal(s.config.enrolment.proof, 'first-login');
  t.equal((await import('../helpers/config.js')).testConfig('http://x', (raw) => delete raw.enrolment).enrolment.proof, 'invite', 'the default is invite');
});

t.test('enrol-codes CLI on a shared Redis: one user and a CSV of users', async (t) => {
  const s = await startRedisStack(t, { patch: invite });
  t.teardown(s.close);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-enrol-'));
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));
  writeFileSync(join(dir, 'users.csv'), 'username,name\nAlice,Alice Ngata\nbob,Bob Smith\n');
  const bulk = runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'users.csv'), ...OPERATOR]);
  t.equal(bulk.code, 0, bulk.stderr);
  const lines = bulk.stdout.trim().split('\n');
  t.equal(lines[0], 'username,code,expires');
  t.match(lines[1], /^Alice,[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4},\d{4}-\d\d-\d\d$/);
  const aliceCode = lines[1]!.split(',')[1]!;
  // A file with one unusable name issues nothing: Alice's code, handed out above, is not replaced by one never shown.
  writeFileSync(join(dir, 'bad.csv'), 'username\nAlice\nbob\ncar\u0007ol\n');
  const bad = runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'bad.csv'), ...OPERATOR]);
  t.equal(bad.code, 2, 'a bad row: usage error');
  t.match(bad.stderr, /not a usable username \(no code was issued\): "car\\u0007ol"/);
  t.equal(bad.stdout, '', 'no codes printed');
  t.match(runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'missing.csv'), ...OPERATOR]), { code: 2, stderr: /--csv \S+missing\.csv: cannot read \(ENOENT\)/ }, 'a missing file: usage error');
  writeFileSync(join(dir, 'twice.csv'), 'username\nbob\nBOB\n');
  t.match(runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'twice.csv'), ...OPERATOR]).stdout, /^username,code,expires\nbob,[^\n]+\n?$/, 'one code per user, not one printed and then replaced');
  const { b, csrf } = await atProof(s);
  t.equal((await b.post('/_mfa/enrol/proof', { csrf, code: aliceCode })).status, 303, 'a code printed by the CLI works in the gateway');
  t.notOk(bulk.stdout.includes('pid'), 'only what is handed out');
  const one = runCli(['enrol-codes', 'issue', '--config', configFile, '--user', 'bob', ...OPERATOR]);
  t.match(one.stdout, /^username,code,expires\nbob,/);
  t.equal(runCli(['enrol-codes', 'issue', '--config', configFile, ...OPERATOR]).code, 2, 'usage');
  t.match(runCli(['enrol-codes', 'issue', '--config', configFile, '--user', 'bob', '--csv', join(dir, 'users.csv'), ...OPERATOR]), { code: 2, stdout: '', stderr: /--user USERNAME or --csv FILE, not both/ }, 'both: neither is issued');
  writeFileSync(join(dir, 'header.csv'), 'username\n');
  t.match(runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'header.csv'), ...OPERATOR]), { code: 2, stderr: /header\.csv: no usernames found \(no code was issued\)/ }, 'a file with no usernames says so');
  // RFC 4180 in (a BOM, CRLF, quoted names with commas and quotes), and out: quoted where needed, never a formula.
  writeFileSync(join(dir, 'quoted.csv'), '\uFEFFusername,name\r\n"smith, j",J Smith\r\n"o""brien",x\r\n=cmd|\' /C calc\'!A0,y\r\n');
  const quoted = runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'quoted.csv'), ...OPERATOR]);
  t.equal(quoted.code, 0, quoted.stderr);
  t.match(quoted.stdout, /^username,code,expires\n"smith, j",[A-Z2-9-]{14},[\d-]{10}\n"o""brien",[A-Z2-9-]{14},[\d-]{10}\n'=cmd\|' \/C calc'!A0,[A-Z2-9-]{14},[\d-]{10}\n$/);
  writeFileSync(join(dir, 'open.csv'), 'username\n"alice\n');
  t.match(runCli(['enrol-codes', 'issue', '--config', configFile, '--csv', join(dir, 'open.csv'), ...OPERATOR]), { code: 2, stderr: /--csv: a quoted field is not closed \(no code was issued\)/ });
});

const secretOf = (html: string) => /id="secret">([^<]+)</.exec(html)![1]!.replaceAll(' ', '');

t.test('invite: a factor reset ends a sign-in past the old code; a sign-in binds only with the code it showed', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const pid = gw.pidOf('alice')!;
  // Someone with the password and an old letter's code, at the factor step, when the help desk resets.
  const attacker = await atProof(s);
  t.equal((await attacker.b.post('/_mfa/enrol/proof', { csrf: attacker.csrf, code: await issue(s, 'alice') })).location, '/_mfa/enrol');
  const secret = secretOf((await attacker.b.get('/_mfa/enrol/totp')).body);
  const pendingKey = keys.pendingLogin(attacker.b.cookies.get('__Host-mfa-pending')!);
  t.not(await gw.kv.get(pendingKey), null);
  const { invite: fresh } = await gw.admin.resetFactors(pid, 'alice');
  t.equal(await gw.kv.get(pendingKey), null, 'the reset deleted the sign-in in progress');
  t.equal((await attacker.b.post('/_mfa/enrol/totp', { csrf: attacker.csrf, code: await totpAt(secret, s.clock.now()) })).status, 403, 'the reset ended that sign-in');
  t.equal(await gw.stores.factors.get(pid), null, 'no factor bound');

  // A sign-in whose code was replaced by a new letter meanwhile does not use up (nor bind with) the new one.
  const late = await atProof(s);
  t.equal((await late.b.post('/_mfa/enrol/proof', { csrf: late.csrf, code: fresh!.code })).location, '/_mfa/enrol');
  const lateSecret = secretOf((await late.b.get('/_mfa/enrol/totp')).body);
  const newest = await issue(s, 'alice');
  s.clock.advance(30_000);
  t.equal((await late.b.post('/_mfa/enrol/totp', { csrf: late.csrf, code: await totpAt(lateSecret, s.clock.now()) })).status, 403, 'not bound with a code it never showed');
  t.equal(await gw.stores.factors.get(pid), null, 'no factor bound');
  const user = await atProof(s);
  t.equal((await user.b.post('/_mfa/enrol/proof', { csrf: user.csrf, code: newest })).location, '/_mfa/enrol', 'the newest code still works');
  s.clock.advance(30_000);
  t.equal((await enrol(s, user.b)).done.location, '/records', 'and enrols');
});

/**
 * A first enrolment (invite: proof, then the app's first code) with `meanwhile` run whole between the sign-in's checks
 * and its write of the factor, as another instance would; the answer to the code.
 */
async function bindWith(t: Test, s: Stack, meanwhile: () => Promise<unknown>): Promise<Page> {
  const person = await atProof(s);
  t.equal((await person.b.post('/_mfa/enrol/proof', { csrf: person.csrf, code: await issue(s, 'alice') })).location, '/_mfa/enrol');
  const secret = secretOf((await person.b.get('/_mfa/enrol/totp')).body);
  const factors = s.app.gateway.stores.factors;
  const update = factors.update.bind(factors);
  let calls = 0;
  factors.update = async (id, change) => {
    if (calls++ === 0) {
      s.clock.advance(1);
      await meanwhile();
    }
    return update(id, change);
  };
  t.teardown(() => void (factors.update = update));
  const answer = await person.b.post('/_mfa/enrol/totp', { csrf: person.csrf, code: await totpAt(secret, s.clock.now()) });
  t.ok(calls > 0, 'it ran during the bind');
  return answer;
}

t.test('a factor reset while a first factor is being bound: the factor is taken back, the reset stands', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const pid = gw.pidOf('alice')!;
  // The help desk resets while someone with the password and an old letter's code binds an app.
  const bound = await bindWith(t, s, () => gw.admin.resetFactors(pid, 'alice'));
  t.equal(bound.status, 403, 'the sign-in is told it ended');
  t.equal(await gw.stores.factors.get(pid), null, 'the factors as the reset left them (none): the next sign-in enrols with the new letter');
  const user = await atProof(s);
  t.equal((await user.b.get('/_mfa/continue')).location, '/_mfa/proof', 'the person is asked for the new letter, not for a code of an app they do not have');
});

t.test('sessions revoked while a first factor is being bound: the factor stays (only a reset takes it back)', async (t) => {
  const s = await startStack({ patch: invite });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const bound = await bindWith(t, s, () => gw.admin.revokeAllSessions());
  t.equal(bound.location, '/_mfa/recovery-codes', 'bound');
  t.equal((await gw.stores.factors.get(gw.pidOf('alice')!))?.factors.length, 1, "the app is the account's factor: the letter was not spent for nothing");
});

t.test('invite: a new letter lifts the lock of too many wrong enrolment codes', async (t) => {
  const s = await startStack({ patch: (raw) => (invite(raw), (raw.limits.enrolmentCode = { freeAttempts: 5, baseSeconds: 30, maxSeconds: 3600, cap: 3 })) });
  t.teardown(s.close);
  await issue(s, 'alice');
  const { b, csrf } = await atProof(s);
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await b.post('/_mfa/enrol/proof', { csrf, code: `AAAA-BBBB-CCC${i}` })).status);
  t.same(statuses, [400, 400, 400, 403], 'locked after three');
  const code = await issue(s, 'alice');
  const again = await atProof(s);
  t.equal((await again.b.post('/_mfa/enrol/proof', { csrf: again.csrf, code })).location, '/_mfa/enrol', "the new letter's code works");
});

t.test('webhook: beyond ten enrolment codes, one every 2.4 hours, however often the password is entered again', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.enrolment = { proof: 'webhook', webhook: { url: receiver.url, secret: 'w'.repeat(64), codeMinutes: 10 } }) });
  t.teardown(s.close);
  for (let i = 0; i < 10; i++) {
    const { b, csrf } = await atProof(s);
    t.equal((await b.post('/_mfa/enrol/proof/send', { csrf })).status, 303, `code ${i + 1}`);
    s.clock.advance(2 * 60_000);
  }
  const { b, csrf } = await atProof(s);
  const refused = await b.post('/_mfa/enrol/proof/send', { csrf });
  t.equal(refused.status, 429, 'the eleventh is refused');
  t.ok(Number(refused.headers['retry-after']) > 60 * 60, 'for more than an hour');
  t.equal(receiver.calls.length, 10, 'and not sent');
});

t.test('a passkey whose binding fails leaves its credential id free', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  // Two sign-ins at the factor step; the first enrols an app, the second then tries a passkey.
  const first = s.browser();
  await submitPassword(first, ALICE.username, ALICE.password);
  const second = s.browser();
  await submitPassword(second, ALICE.username, ALICE.password);
  const csrf = passkeyCsrf((await second.get('/_mfa/enrol')).body);
  const options = await jsonCall(second, '/_mfa/enrol/passkey/options', csrf);
  t.equal((await enrol(s, first)).done.location, '/records');
  const auth = new SoftAuthenticator({ origin: 'http://localhost' });
  const refused = await jsonCall(second, '/_mfa/enrol/passkey', csrf, { credential: auth.register(options.json), name: 'Key' });
  t.equal(refused.status, 403, 'a factor was enrolled meanwhile');
  t.equal(await s.kv.get(keys.credentialOwner(auth.credentials[0]!.id)), null, 'the credential id is not kept for her');
});

t.test("the first app's code form sent twice at once (a double-click) is no replay and uses no try; its code used later elsewhere is", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const logged = (event: string) => s.logs.filter((l) => l.includes(`"security":"${event}"`)).length;
  const gw = s.app.gateway;
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const wrong = (await totpAt(secret, s.clock.now())) === '000000' ? '111111' : '000000';
  for (let i = 0; i < 2; i++) t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: wrong })).status, 400, 'a typo');
  const { id, p } = await gw.pending.at(b.cookies.get('__Host-mfa-pending'), 'enrol');
  const tries = () => gw.limits.attempts.ofLogin(id, p).tries();
  t.equal(await tries(), 2);
  // Both submissions reach the check of the code (the service itself, as the pages may not meet at that moment).
  const code = await totpAt(secret, s.clock.now());
  const results = await Promise.all([0, 1].map(() => gw.enrolment.confirmPendingTotp(id, p, code, 'Phone', '192.0.2.1')));
  t.equal(results.filter((r) => r.ok && r.recoveryCodes?.length === 10).length, 1, 'one binds the app');
  t.equal(await gw.pending.stage(id), 'acknowledge', 'both go on to the recovery codes (see the route)');
  t.same({ replayed: logged('mfa_replayed'), failed: logged('mfa_failed') }, { replayed: 0, failed: 2 }, 'no replay, no failure');
  t.equal(await tries(), 0, 'no try used: the right code gave them back');
  t.equal((await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' })).location, '/records', 'signed in');

  // Through the pages (Bob's first sign-in): both answers go on, never a replay nor a failure.
  const x = s.browser();
  await submitPassword(x, BOB.username, BOB.password);
  const form = await totpEnrolmentForm(s, x);
  const sent = { csrf: form.csrf, code: await totpAt(form.secret, s.clock.now()) };
  const answers = await Promise.all([x, x].map((y) => y.post('/_mfa/enrol/totp', sent)));
  t.same(answers.map((a) => a.location), ['/_mfa/recovery-codes', '/_mfa/recovery-codes']);
  t.same({ replayed: logged('mfa_replayed'), failed: logged('mfa_failed') }, { replayed: 0, failed: 2 }, 'no replay, no failure');

  // Alice's app's enrolment code, sent in a later sign-in: a replay, refused.
  const { b: later, csrf: c } = await atCodePage(s);
  t.equal((await later.post('/_mfa/verify', { csrf: c, code })).status, 400, 'refused');
  t.equal(logged('mfa_replayed'), 1, 'reported as replayed');
});
