// Redis failing at one chosen call of a step (its connection cut, or the server stopped for longer than a command may
// take): the step fails closed, and what it leaves behind does not turn against the user.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { inputValue } from '../helpers/browser.js';
import { startOwnRedis } from '../helpers/redis.js';
import { ALICE, BOB, atCodePage, signUpAndEnrol, startStack, submitPassword, totpAt, totpEnrolmentForm } from '../helpers/stack.js';

/** A store whose next delete (or take), replaceIf, raiseTo or setIfAbsent of a key matching a pattern meets a fault. */
class FaultyStore extends RedisKvStore {
  /** Every connection is cut before the DEL (or GETDEL) is sent (a Redis restart, a failover): it never arrives. */
  cutBeforeDelete: RegExp | null = null;
  /** Likewise before a compare-and-set (a record's change)… */
  cutBeforeReplace: RegExp | null = null;
  /** …once a key matching this was written (null: at once). */
  cutOnceWritten: RegExp | null = null;
  /** Redis stops (SIGSTOP) just before the call, for longer than the command timeout, then goes on: applied late. */
  stallRaise: RegExp | null = null;
  /** Likewise for a SET NX. */
  stallSetIfAbsent: RegExp | null = null;
  constructor(
    opts: ConstructorParameters<typeof RedisKvStore>[0],
    private readonly admin: Redis,
    private readonly serverPid: number,
  ) {
    super(opts);
  }
  override async delete(key: string) {
    await this.cutIfDeleting(key);
    return super.delete(key);
  }
  override async take(key: string) {
    await this.cutIfDeleting(key);
    return super.take(key);
  }
  private async cutIfDeleting(key: string) {
    if (this.cutBeforeDelete?.test(key)) {
      this.cutBeforeDelete = null;
      await this.admin.client('KILL', 'TYPE', 'normal');
    }
  }
  override async replaceIf(...args: Parameters<RedisKvStore['replaceIf']>) {
    if (this.cutBeforeReplace?.test(args[0]) && this.cutOnceWritten === null) {
      this.cutBeforeReplace = null;
      await this.admin.client('KILL', 'TYPE', 'normal');
    }
    return this.written(args[0], await super.replaceIf(...args));
  }
  private written(key: string, done: boolean) {
    if (done && this.cutOnceWritten?.test(key)) this.cutOnceWritten = null;
    return done;
  }
  override raiseTo(...args: Parameters<RedisKvStore['raiseTo']>) {
    if (this.stallRaise?.test(args[0])) {
      this.stallRaise = null;
      this.stall();
    }
    return super.raiseTo(...args);
  }
  override async setIfAbsent(...args: Parameters<RedisKvStore['setIfAbsent']>) {
    if (this.stallSetIfAbsent?.test(args[0])) {
      this.stallSetIfAbsent = null;
      this.stall();
    }
    return this.written(args[0], await super.setIfAbsent(...args));
  }
  private stall() {
    process.kill(this.serverPid, 'SIGSTOP');
    setTimeout(() => process.kill(this.serverPid, 'SIGCONT'), 400);
  }
}

async function stack(t: Test) {
  const redis = await startOwnRedis();
  const admin = new Redis(redis.url);
  const serverPid = Number(/process_id:(\d+)/.exec(await admin.info('server'))![1]);
  const kv = new FaultyStore({ url: redis.url, keyPrefix: `faults-${randomBytes(4).toString('hex')}:`, commandTimeoutMs: 300 }, admin, serverPid);
  await kv.ready();
  const s = await startStack({ kv: () => kv });
  t.teardown(async () => {
    await s.close();
    admin.disconnect();
    await redis.stop();
  });
  return { s, kv };
}

t.test('a sign-out whose session end fails mid-way (the connection cut) still clears the session cookie', async (t) => {
  const { s, kv } = await stack(t);
  const p = s.config.server.prefix;
  for (const [name, user, logout] of [
    ['the gateway sign-out', ALICE, async (b: ReturnType<typeof s.browser>) => b.post(`${p}/logout`, { csrf: inputValue((await b.get(`${p}/security`)).body, 'csrf') })],
    ['the portal logout path', BOB, (b: ReturnType<typeof s.browser>) => b.get('/logout')],
  ] as const) {
    const { b } = await signUpAndEnrol(s, user);
    kv.cutBeforeDelete = /^session:\{[^}]+\}$/;
    const out = await logout(b);
    t.equal(out.status, 503, `${name}: the answer says it did not work`);
    t.notOk(b.cookies.has('__Host-mfa-session'), `${name}: the browser forgets the session`);
    t.equal(kv.cutBeforeDelete, null, `${name}: the fault was met`);
    await kv.ready();
  }
});

t.test('a TOTP claim that timed out but was applied: the same code sent again is no replay', async (t) => {
  const { s, kv } = await stack(t);
  const { secret } = await signUpAndEnrol(s);
  s.clock.advance(30_000);
  const { b, csrf } = await atCodePage(s);
  const code = await totpAt(secret, s.clock.now());
  kv.stallRaise = /:totp-step$/;
  const first = await b.post(`${s.config.server.prefix}/verify`, { csrf, code });
  t.equal(first.status, 503, 'Redis too slow: 503');
  t.equal(kv.stallRaise, null, 'the fault was met');
  await new Promise((r) => setTimeout(r, 600));
  await kv.ready();
  const logged = s.logs.length;
  const again = await b.post(`${s.config.server.prefix}/verify`, { csrf, code });
  t.equal(again.status, 400, 'the code is not accepted twice');
  const after = s.logs.slice(logged).join('\n');
  t.notMatch(after, /"security":"mfa_replayed"/, 'not taken for a replay (nor told as one)');
  t.notMatch(after, /"security":"mfa_failed"/, 'nor counted as a failure');
});

t.test('a recovery code claim that timed out but was applied: the same code sent again in the same sign-in signs in', async (t) => {
  const { s, kv } = await stack(t);
  const { codes } = await signUpAndEnrol(s);
  const { b, csrf } = await atCodePage(s, ALICE, 'recovery');
  kv.stallSetIfAbsent = /:recovery-used:/;
  const first = await b.post(`${s.config.server.prefix}/recovery`, { csrf, code: codes[0]! });
  t.equal(first.status, 503, 'Redis too slow: 503');
  t.equal(kv.stallSetIfAbsent, null, 'the fault was met');
  await new Promise((r) => setTimeout(r, 600));
  await kv.ready();
  const logged = s.logs.length;
  const again = await b.post(`${s.config.server.prefix}/recovery`, { csrf, code: codes[0]! });
  t.equal(again.status, 303, 'signed in');
  t.ok(b.cookies.has('__Host-mfa-session'), 'with a session');
  const after = s.logs.slice(logged).join('\n');
  t.notMatch(after, /"security":"mfa_failed"/, 'not counted as a failure');
  t.match(after, /"security":"recovery_code_used"[^\n]*"remaining":9/, 'the code is counted as used');
});

t.test('a recovery code claim that timed out but was applied: another sign-in cannot use the code', async (t) => {
  const { s, kv } = await stack(t);
  const { codes } = await signUpAndEnrol(s);
  const first = await atCodePage(s, ALICE, 'recovery');
  kv.stallSetIfAbsent = /:recovery-used:/;
  t.equal((await first.b.post(`${s.config.server.prefix}/recovery`, { csrf: first.csrf, code: codes[0]! })).status, 503, 'Redis too slow: 503');
  t.equal(kv.stallSetIfAbsent, null, 'the fault was met');
  await new Promise((r) => setTimeout(r, 600));
  await kv.ready();
  const other = await atCodePage(s, ALICE, 'recovery');
  const logged = s.logs.length;
  const refused = await other.b.post(`${s.config.server.prefix}/recovery`, { csrf: other.csrf, code: codes[0]! });
  t.equal(refused.status, 400, 'refused');
  t.notOk(other.b.cookies.has('__Host-mfa-session'), 'no session');
  t.match(s.logs.slice(logged).join('\n'), /"security":"mfa_failed"[^\n]*"reason":"code already used"/, 'as a used code');
});

/** A first enrolment whose factor is written and whose move on to the recovery codes then fails (the connection cut). */
async function enrolmentCut(s: Awaited<ReturnType<typeof stack>>['s'], kv: FaultyStore, b: ReturnType<typeof s.browser>) {
  const { secret, csrf } = await totpEnrolmentForm(s, b);
  const code = await totpAt(secret, s.clock.now());
  kv.cutBeforeReplace = /^pending:\{[^}]+\}$/;
  kv.cutOnceWritten = /:factors$/;
  const first = await b.post(`${s.config.server.prefix}/enrol/totp`, { csrf, code });
  await kv.ready();
  return { first, csrf, code, met: kv.cutBeforeReplace === null };
}

const shownCodes = (html: string) => [...html.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);

t.test('a first enrolment whose move on to the recovery codes failed: the same code sent again goes on to the recovery codes, which work', async (t) => {
  const { s, kv } = await stack(t);
  const p = s.config.server.prefix;
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { first, csrf, code, met } = await enrolmentCut(s, kv, b);
  t.equal(first.status, 503, 'the answer says it did not work');
  t.ok(met, 'the fault was met');
  const again = await b.post(`${p}/enrol/totp`, { csrf, code });
  t.equal(again.location, `${p}/recovery-codes`, 'the same code sent again goes on');
  const codes = shownCodes((await b.get(`${p}/recovery-codes`)).body);
  t.equal(codes.length, 10, 'the codes are shown');
  t.equal((await b.post(`${p}/recovery-codes`, { csrf, saved: 'yes' })).location, '/records', 'signed in');
  const later = await atCodePage(s, ALICE, 'recovery');
  const used = await later.b.post(`${p}/recovery`, { csrf: later.csrf, code: codes[0]! });
  t.equal(used.status, 303, 'a code shown signs in');
});

t.test('a first enrolment whose move on to the recovery codes failed: no other sign-in gets codes for the factor bound', async (t) => {
  const { s, kv } = await stack(t);
  const p = s.config.server.prefix;
  // Someone else with the password, whose sign-in began before the factor was bound: at the same stage.
  const other = s.browser();
  await submitPassword(other, ALICE.username, ALICE.password);
  const otherForm = await totpEnrolmentForm(s, other);
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const { first, met } = await enrolmentCut(s, kv, b);
  t.equal(first.status, 503, 'the enrolment failed');
  t.ok(met, 'the fault was met');
  const reloaded = await other.get(`${p}/enrol`);
  t.same([reloaded.status, reloaded.location], [200, undefined], 'the earlier sign-in does not go on from its page');
  t.match(reloaded.body, '<h1>Choose your second step', 'it stays at its enrolment');
  s.clock.advance(30_000);
  const tried = await other.post(`${p}/enrol/totp`, { csrf: otherForm.csrf, code: await totpAt(otherForm.secret, s.clock.now()) });
  t.equal(tried.status, 403, 'nor with a code of its own');
  t.match(tried.body, 'Your sign-in has expired. Please sign in again.', 'the factor bound meanwhile ended it');
  const codesPage = await other.get(`${p}/recovery-codes`);
  t.same([codesPage.location, shownCodes(codesPage.body)], [`${p}/continue`, []], 'and is shown no codes');
  // And one begun after: the account has a factor, so the sign-in asks for it.
  const later = s.browser();
  t.equal((await submitPassword(later, ALICE.username, ALICE.password)).location, `${p}/verify`, 'a later sign-in asks for the factor');
  t.equal((await later.get(`${p}/enrol`)).location, `${p}/continue`, 'and does not enrol');
  const laterCodes = await later.get(`${p}/recovery-codes`);
  t.same([laterCodes.location, shownCodes(laterCodes.body)], [`${p}/continue`, []], 'nor is shown codes');
});
