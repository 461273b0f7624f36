// Redis failing at one chosen call of a step (its connection cut, or the server stopped for longer than a command may
// take): the step fails closed, and what it leaves behind does not turn against the user.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { inputValue } from '../helpers/browser.js';
import { startOwnRedis } from '../helpers/redis.js';
import { ALICE, BOB, atCodePage, signUpAndEnrol, startStack, totpAt } from '../helpers/stack.js';

/** A store whose next delete or raiseTo of a key matching a pattern meets a fault. */
class FaultyStore extends RedisKvStore {
  /** Every connection is cut before the DEL is sent (a Redis restart, a failover): it never arrives. */
  cutBeforeDelete: RegExp | null = null;
  /** Redis stops (SIGSTOP) just before the call, for longer than the command timeout, then goes on: applied late. */
  stallRaise: RegExp | null = null;
  constructor(
    opts: ConstructorParameters<typeof RedisKvStore>[0],
    private readonly admin: Redis,
    private readonly serverPid: number,
  ) {
    super(opts);
  }
  override async delete(key: string) {
    if (this.cutBeforeDelete?.test(key)) {
      this.cutBeforeDelete = null;
      await this.admin.client('KILL', 'TYPE', 'normal');
    }
    return super.delete(key);
  }
  override raiseTo(...args: Parameters<RedisKvStore['raiseTo']>) {
    if (this.stallRaise?.test(args[0])) {
      this.stallRaise = null;
      process.kill(this.serverPid, 'SIGSTOP');
      setTimeout(() => process.kill(this.serverPid, 'SIGCONT'), 400);
    }
    return super.raiseTo(...args);
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
  await new Promise((r) => setTimeout(r, 600));
  await kv.ready();
  const logged = s.logs.length;
  const again = await b.post(`${s.config.server.prefix}/verify`, { csrf, code });
  t.equal(again.status, 400, 'the code is not accepted twice');
  const after = s.logs.slice(logged).join('\n');
  t.notMatch(after, /"security":"mfa_replayed"/, 'not taken for a replay (nor told as one)');
  t.notMatch(after, /"security":"mfa_failed"/, 'nor counted as a failure');
});
