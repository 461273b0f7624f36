// The notify webhook: signed events for the vendor to tell the user ("was this you?"), retried a bounded number
// of times, never holding up a sign-in.
import t, { type Test } from 'tap';
import { signatureHeader, verifySignature } from '../../src/services/notifier.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { inputValue, type Browser } from '../helpers/browser.js';
import { ALICE, BOB, atCodePage, copyOf, signInWithTotp, signUpAndEnrol, startRedisStack, startStack, submitPassword, totpAt, totpEnrolmentForm } from '../helpers/stack.js';

const SECRET = 'k'.repeat(40);

/** A gateway that notifies a receiver, with alice enrolled (her `enrolled` event already received). */
async function enrolledWithReceiver(t: Test) {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: receiver.url, secret: SECRET }) });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  await receiver.waitFor(1);
  return { receiver, s, secret };
}

t.test('a correct password followed by wrong codes: one signed event per login', async (t) => {
  const { receiver, s, secret } = await enrolledWithReceiver(t);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  for (let i = 0; i < 3; i++) await b.post('/_mfa/verify', { csrf, code: '000000' });
  t.equal((await b.post('/_mfa/verify', { csrf, code: await totpAt(secret, s.clock.now()) })).status, 303);
  await receiver.waitFor(2);
  await new Promise((r) => setTimeout(r, 200));
  const failed = receiver.calls.filter((c) => c.json.event === 'second_factor_failed');
  t.equal(failed.length, 1, 'once per login, not per wrong code');
  t.match(failed[0]!.json, { user: 'alice', ip: '127.0.0.1', details: { factor: 'totp' }, time: String });
  t.ok(verifySignature(failed[0]!.body, String(failed[0]!.headers['x-mfa-signature']), SECRET, Date.now()), 'signed');
  t.notOk(JSON.stringify(receiver.calls).includes('000000'), 'no code in any event');
  t.equal(new Set(receiver.calls.map((c) => c.json.id)).size, receiver.calls.length, 'each event its own id');
});

t.test('a code sent again after it was accepted: told each time, without the code', async (t) => {
  const { receiver, s, secret } = await enrolledWithReceiver(t);
  s.clock.advance(30_000);
  const code = await totpAt(secret, s.clock.now());
  const { final } = await signInWithTotp(s, secret);
  t.equal(final.status, 303, 'the code signs in once');
  for (let i = 0; i < 2; i++) {
    const { b, csrf } = await atCodePage(s);
    t.equal((await b.post('/_mfa/verify', { csrf, code })).status, 400, 'the same code again: refused');
  }
  // Enrolled, then each of the two sign-ins: a failed second step and the replay, sent side by side (in either order).
  await receiver.waitFor(5);
  await new Promise((r) => setTimeout(r, 200));
  const replayed = receiver.calls.filter((c) => c.json.event === 'second_factor_replayed');
  t.equal(replayed.length, 2, 'each replay');
  t.match(replayed[0]!.json, { user: 'alice', ip: '127.0.0.1', details: { factor: 'totp' }, time: String });
  t.notOk(JSON.stringify(receiver.calls).includes(code), 'no code in any event');
});

t.test('the code a session was signed in with, typed again at a step-up a moment later: refused as just used, no replay told', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({
    patch: (raw) => {
      raw.notify = { url: receiver.url, secret: SECRET };
      raw.policy.rules.splice(raw.policy.rules.length - 1, 0, { name: 'prescriptions', paths: ['/prescriptions/'], decision: 'step-up', maxAgeSeconds: 20, factors: ['totp'] });
    },
  });
  t.teardown(s.close);
  const stepUp = async (b: Browser, code: string) => {
    const page = await b.get((await b.get('/prescriptions/')).location!);
    return b.post('/_mfa/step-up', { csrf: inputValue(page.body, 'csrf'), to: inputValue(page.body, 'to'), factors: inputValue(page.body, 'factors'), code });
  };
  const justUsed = /That code was used a moment ago/;
  // Enrolled: the code that set the app up, typed again at once (its time step still open).
  const enrolledAt = s.clock.now();
  const { b, secret } = await signUpAndEnrol(s);
  await receiver.waitFor(1);
  s.clock.advance(21_000);
  const again = await stepUp(b, await totpAt(secret, enrolledAt));
  t.equal(again.status, 400, 'refused');
  t.match(again.body, justUsed, 'as the code just used');
  // A step-up, then its code once more at the next one.
  s.clock.advance(30_000);
  const code = await totpAt(secret, s.clock.now());
  t.equal((await stepUp(b, code)).location, '/prescriptions/');
  s.clock.advance(21_000);
  t.match((await stepUp(b, code)).body, justUsed, "the step-up's own code, typed again");
  // Another session's code is no one's own: told, as a replay.
  const { b: other } = await signInWithTotp(s, secret);
  const theirs = await totpAt(secret, s.clock.now());
  s.clock.advance(21_000);
  const replay = await stepUp(b, theirs);
  t.equal(replay.status, 400);
  t.notMatch(replay.body, justUsed, "another session's code: a wrong code");
  t.equal((await other.get('/records')).status, 200);
  await receiver.waitFor(2);
  await new Promise((r) => setTimeout(r, 200));
  t.same(receiver.calls.map((c) => c.json.event).filter((e) => e === 'second_factor_replayed').length, 1, 'one replay told: the other session\'s code');
});

t.test('a correct password whose second step never came: told once, when the login has expired', async (t) => {
  const { receiver, s, secret } = await enrolledWithReceiver(t);
  const abandoned = () => receiver.calls.filter((c) => c.json.event === 'second_factor_abandoned');
  await atCodePage(s);
  s.clock.advance(4 * 60_000);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(abandoned().length, 0, 'not while the login can still be finished');
  s.clock.advance(60_000 + 1000);
  await receiver.waitFor(2);
  t.equal(abandoned().length, 1);
  t.match(abandoned()[0]!.json, { user: 'alice', ip: '127.0.0.1', details: { passwordAt: String }, time: String });
  t.ok(s.logs.some((l) => l.includes('"security":"mfa_abandoned"')), 'and a security event');

  // Finished, replaced by a new password step, or already told about for a wrong code: nothing more.
  const calls = receiver.calls.length;
  const finished = await signInWithTotp(s, secret);
  t.equal(finished.final.status, 303);
  const again = s.browser();
  await submitPassword(again, ALICE.username, ALICE.password);
  t.equal((await submitPassword(again, ALICE.username, ALICE.password)).location, '/_mfa/verify', 'back, and the password again');
  s.clock.advance(30_000);
  const verify = await again.post('/_mfa/verify', { csrf: inputValue((await again.get('/_mfa/verify')).body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(verify.status, 303);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  await b.post('/_mfa/verify', { csrf, code: '000000' });
  await receiver.waitFor(calls + 1);
  s.clock.advance(6 * 60_000);
  await new Promise((r) => setTimeout(r, 300));
  t.same(receiver.calls.slice(calls).map((c) => c.json.event), ['second_factor_failed'], 'only the wrong code was told');
});

t.test('delivery is retried, then given up and logged; sign-in never waits for it', async (t) => {
  const hung = await startReceiver([0]);
  t.teardown(hung.close);
  const s0 = await startStack({ patch: (raw) => (raw.notify = { url: hung.url, secret: SECRET, timeoutSeconds: 30 }) });
  t.teardown(s0.close);
  const { b: signedIn } = await signUpAndEnrol(s0);
  t.equal((await signedIn.get('/records')).status, 200, 'signed in');
  // The endpoint never answers: whenever the event reaches it, the sign-in above did not wait for the answer.
  await hung.waitForHanging(1);
  t.equal(hung.hanging(), 1, 'while the vendor endpoint has still not answered');

  const flaky = await startReceiver([500]);
  t.teardown(flaky.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: flaky.url, secret: SECRET, retries: 1 }) });
  t.teardown(s.close);
  await signUpAndEnrol(s);
  await flaky.waitFor(1);
  t.equal(flaky.calls[0]!.json.event, 'enrolled', 'delivered on the second attempt');
  t.same(flaky.all.map((c) => c.json.id), [flaky.calls[0]!.json.id, flaky.calls[0]!.json.id], 'with the id of the first: the same event');
  t.match(flaky.calls[0]!.json.id, /^[\w-]{43}$/);

  const dead = await startReceiver([500, 500, 500]);
  t.teardown(dead.close);
  const s2 = await startStack({ patch: (raw) => (raw.notify = { url: dead.url, secret: SECRET, retries: 1 }) });
  t.teardown(s2.close);
  await signUpAndEnrol(s2);
  const deadline = Date.now() + 15_000;
  while (!s2.logs.some((l) => l.includes('webhook not delivered')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const failures = s2.logs.filter((l) => l.includes('webhook delivery failed')).map((l) => JSON.parse(l) as { webhook: string; attempt: number });
  t.same(failures.map((f) => `${f.webhook} ${f.attempt}`), ['enrolled 1', 'enrolled 2'], 'each failure logged');
  t.ok(s2.logs.some((l) => l.includes('webhook not delivered: giving up')), 'and the giving up');
  t.same([dead.all.length, dead.calls.length], [2, 0], 'both attempts came, neither was taken');
  t.match(await s2.app.gateway.metrics.text(), /^mfa_gateway_notification_failures_total\{reason="failed"\} 1$/m, 'counted, for an alert');
});

t.test('signatures: what a receiver checks', async (t) => {
  const now = 1_800_000_000_000;
  const body = '{"event":"factor_added"}';
  const header = signatureHeader(body, SECRET, now);
  t.match(header, /^t=1800000000,v1=[0-9a-f]{64}$/);
  t.ok(verifySignature(body, header, SECRET, now));
  t.ok(verifySignature(body, header, SECRET, now + 299_000), 'within 5 minutes');
  t.notOk(verifySignature(body, header, SECRET, now + 301_000), 'too old: a replayed call');
  t.notOk(verifySignature(`${body} `, header, SECRET, now), 'body changed');
  t.notOk(verifySignature(body, header.replace('t=1800000000', 't=1800000001'), SECRET, now), 'timestamp changed');
  t.notOk(verifySignature(body, 'v1=abc', SECRET, now), 'malformed');
});

t.test("an operator's factor reset: the person is told, unless the account held no factor", async (t) => {
  const { receiver, s } = await enrolledWithReceiver(t);
  const { userCommand } = await import('../../src/cli/admin.js');
  await userCommand(s.app.gateway, 'reset-factors', { user: ' Alice' });
  await receiver.waitFor(2);
  t.match(receiver.calls[1]!.json, { event: 'factors_reset', user: 'alice', time: String });
  t.notOk('ip' in receiver.calls[1]!.json, 'no address: an operator did it');
  await userCommand(s.app.gateway, 'reset-factors', { user: 'alice' });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(receiver.calls.length, 2, 'nothing left to reset: nothing told');
});

t.test("a right password followed, in the same browser, by another account's: the first is told as abandoned at once", async (t) => {
  const { receiver, s } = await enrolledWithReceiver(t);
  const b = s.browser();
  t.equal((await submitPassword(b, ALICE.username, ALICE.password)).location, '/_mfa/verify');
  t.equal((await submitPassword(b, ALICE.username, ALICE.password)).location, '/_mfa/verify', 'her own again: only replaced');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(receiver.calls.length, 1, 'nothing told');
  await submitPassword(b, BOB.username, BOB.password);
  await receiver.waitFor(2);
  t.match(receiver.calls[1]!.json, { event: 'second_factor_abandoned', user: 'alice', ip: '127.0.0.1', details: { passwordAt: String } });
  s.clock.advance(6 * 60_000);
  // Bob's, then a moment for any other to come.
  await receiver.waitFor(3);
  await new Promise((r) => setTimeout(r, 300));
  t.same(receiver.calls.slice(1).map((c) => `${c.json.event}:${c.json.user}`), ['second_factor_abandoned:alice', 'second_factor_abandoned:bob'], 'once each');
});

t.test('a typo while setting up the first app is no failed second step; the sign-in left there is told as abandoned', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startStack({ patch: (raw) => (raw.notify = { url: receiver.url, secret: SECRET }) });
  t.teardown(s.close);
  const b = s.browser();
  t.equal((await submitPassword(b, ALICE.username, ALICE.password)).location, '/_mfa/enrol');
  const { csrf } = await totpEnrolmentForm(s, b);
  t.equal((await b.post('/_mfa/enrol/totp', { csrf, code: '000000' })).status, 400);
  await new Promise((r) => setTimeout(r, 300));
  t.same(receiver.calls, [], 'nothing told');
  s.clock.advance(6 * 60_000);
  await receiver.waitFor(1);
  t.equal(receiver.calls[0]!.json.event, 'second_factor_abandoned');

  // Set-up tries until the sign-in ends: told, as it is never found abandoned.
  const c = s.browser();
  await submitPassword(c, ALICE.username, ALICE.password);
  const form = await totpEnrolmentForm(s, c);
  const statuses: number[] = [];
  for (let i = 0; i < 8 && statuses.at(-1) !== 403; i++) {
    s.clock.advance(20_000);
    statuses.push((await c.post('/_mfa/enrol/totp', { csrf: form.csrf, code: '000000' })).status);
  }
  t.equal(statuses.at(-1), 403, 'the sign-in ended');
  await receiver.waitFor(2);
  t.match(receiver.calls[1]!.json, { event: 'second_factor_failed', user: 'alice' });
});

t.test('a code form sent twice (a double tap), on Redis: one sign-in for both, and nobody is told of a replay or a failure', async (t) => {
  const receiver = await startReceiver();
  t.teardown(receiver.close);
  const s = await startRedisStack(t, { patch: (raw) => (raw.notify = { url: receiver.url, secret: SECRET }) });
  t.teardown(s.close);
  const { secret } = await signUpAndEnrol(s);
  await receiver.waitFor(1);
  for (let round = 0; round < 5; round++) {
    s.clock.advance(30_000);
    const { b, csrf } = await atCodePage(s);
    const code = await totpAt(secret, s.clock.now());
    const answers = await Promise.all([b, copyOf(s, b)].map((x) => x.post('/_mfa/verify', { csrf, code })));
    t.same(answers.map((a) => a.status), [303, 303], 'both taps sign in');
    if (round) continue;
    // And a step-up sent twice.
    s.clock.advance(30_000);
    const form = { csrf: inputValue((await b.get('/_mfa/step-up')).body, 'csrf'), code: await totpAt(secret, s.clock.now()) };
    const stepUps = await Promise.all([b, copyOf(s, b)].map((x) => x.post('/_mfa/step-up', form)));
    t.same(stepUps.map((a) => a.status), [200, 200], 'both taps step up');
  }
  // A code used, then sent in another sign-in: that one is a replay, told.
  const { b } = await atCodePage(s);
  const again = await b.post('/_mfa/verify', { csrf: inputValue((await b.get('/_mfa/verify')).body, 'csrf'), code: await totpAt(secret, s.clock.now()) });
  t.equal(again.status, 400);
  await receiver.waitFor(3);
  await new Promise((r) => setTimeout(r, 300));
  t.same(receiver.calls.slice(1).map((c) => c.json.event).sort(), ['second_factor_failed', 'second_factor_replayed'], 'only the replay (a failure of its sign-in)');
});
