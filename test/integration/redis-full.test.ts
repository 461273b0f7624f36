// Redis full (maxmemory reached, noeviction): it refuses every write that needs memory, a mark among them, and
// still deletes. What ends sessions still ends them, and says it did not finish; the gateway fails closed.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { auditFiles } from '../../src/audit/file-sink.js';
import { PartlyDone } from '../../src/services/best-effort.js';
import { RedisKvStore } from '../../src/stores/redis-kv-store.js';
import { inputValue, type Browser } from '../helpers/browser.js';
import { OPERATOR, runCli } from '../helpers/cli.js';
import { startOwnRedis } from '../helpers/redis.js';
import { ALICE, BOB, atCodePage, signUpAndEnrol, startStack, submitPassword, totpAt, type Stack } from '../helpers/stack.js';

const signedIn = async (b: Browser) => (await b.get('/records')).status === 200;

/**
 * A stack on a redis-server of its own (its maxmemory is changed), with Alice and Bob signed in, and a second sign-in
 * of Alice's in progress (password accepted, code outstanding). `fill` makes Redis full: maxmemory below what it
 * holds, by more than any command here deletes (so no deletion makes room for a mark); `room` lifts the limit.
 */
async function fullStack(t: Test) {
  const redis = await startOwnRedis();
  t.teardown(redis.stop);
  const control = new Redis(redis.url);
  t.teardown(() => control.disconnect());
  await control.config('SET', 'maxmemory-policy', 'noeviction');
  const keyPrefix = `full-${randomBytes(4).toString('hex')}:`;
  const kv = new RedisKvStore({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 });
  await kv.ready();
  const s = await startStack({ kv: () => kv, patch: (raw) => (raw.store = { type: 'redis', redis: { url: redis.url, keyPrefix } }) });
  t.teardown(s.close);
  const alice = await signUpAndEnrol(s);
  const bob = await signUpAndEnrol(s, BOB);
  s.clock.advance(30_000);
  const signingIn = await atCodePage(s);
  const fill = async () => {
    const used = Number(/used_memory:(\d+)/.exec(await control.info('memory'))![1]);
    await control.config('SET', 'maxmemory', String(Math.max(1, used - 256 * 1024)));
    await t.rejects(control.set(`${keyPrefix}probe`, 'x'), /^OOM/, 'Redis is full');
  };
  const room = async () => void (await control.config('SET', 'maxmemory', '0'));
  t.teardown(room);
  return { s, alice, bob, signingIn, fill, room };
}

/** A sign-in at its code page, finished now: its answer, whether it says the sign-in has ended, and whether it started a session. */
async function finish(s: Stack, signingIn: { b: Browser; csrf: string }, secret: string): Promise<{ status: number; ended: boolean; signedIn: boolean }> {
  const answer = await signingIn.b.post(`${s.config.server.prefix}/verify`, { csrf: signingIn.csrf, code: await totpAt(secret, s.clock.now()) });
  return { status: answer.status, ended: answer.body.includes('Your sign-in has expired. Please sign in again.'), signedIn: await signedIn(signingIn.b) };
}

// Each command on Alice (or everybody), and what it reports it did before failing.
const commands: { name: string; run: (s: Stack, pid: string) => Promise<unknown>; done: (done: any) => boolean }[] = [
  { name: 'sessions revoke --user', run: (s, pid) => s.app.gateway.admin.revokeSessions(pid), done: (ended) => ended === 1 },
  { name: 'sessions revoke --all', run: (s) => s.app.gateway.admin.revokeAllSessions(), done: (ended) => ended === 2 },
  { name: 'user reset-factors', run: (s, pid) => s.app.gateway.admin.resetFactors(pid, 'alice'), done: (r) => r.sessionsEnded === 1 && r.invite === null },
  { name: 'user erase', run: (s, pid) => s.app.gateway.admin.erase(pid), done: (r) => r.keysDeleted > 0 },
];

for (const c of commands) {
  t.test(`${c.name} with Redis full: the sessions and sign-ins in progress end, and the command fails`, async (t) => {
    const { s, alice, bob, signingIn, fill, room } = await fullStack(t);
    await fill();
    t.ok(await signedIn(alice.b), 'a session still works (reads)');
    const err = await c.run(s, s.app.gateway.pidOf(ALICE.username)!).then(
      () => null,
      (e: unknown) => e,
    );
    t.type(err, PartlyDone, 'the command fails');
    t.match(((err as PartlyDone<unknown>).cause as Error).message, /OOM/, 'with the first failure');
    t.ok(c.done((err as PartlyDone<unknown>).done), 'saying what it did');
    t.notOk(await signedIn(alice.b), "Alice's session ended");
    const all = c.name.endsWith('--all');
    t.equal(await signedIn(bob.b), !all, all ? "and Bob's" : "Bob's goes on");
    await room();
    t.notOk(await signedIn(alice.b), 'and stays ended once Redis has room again');
    t.same(await finish(s, signingIn, alice.secret), { status: 403, ended: true, signedIn: false }, 'a sign-in begun before the command was ended: it starts no session');
  });
}

const cliCommands = [
  { args: ['sessions', 'revoke'], said: /^ended 1 session\(s\) of alice\nnot finished: a step failed/, action: 'sessions revoke' },
  // Its keys counted before they are deleted: not all of them are gone.
  { args: ['user', 'erase', '--yes'], said: /^erased alice in part: \d+ key\(s\) held, not all of them deleted, 1 session\(s\) ended, 0 device\(s\) bound to the user revoked\nnot finished: a step failed/, action: 'user erase' },
];
for (const c of cliCommands) t.test(`the command line with Redis full (${c.action}): the sessions end; it prints how many and exits 1, recorded as failed`, async (t) => {
  const { s, alice, fill } = await fullStack(t);
  const dir = mkdtempSync(join(tmpdir(), 'mfa-full-'));
  const configFile = join(dir, 'gw.json');
  writeFileSync(configFile, JSON.stringify({ ...s.config, audit: { ...s.config.audit, dir: join(dir, 'audit') }, log: { level: 'silent' } }));
  await fill();
  const revoked = runCli([...c.args, '--user', 'alice', '--config', configFile, ...OPERATOR]);
  t.equal(revoked.code, 1, revoked.stderr);
  t.match(revoked.stdout, c.said);
  t.match(revoked.stderr, /^mfa-gateway: redis: OOM command not allowed/);
  t.notOk(await signedIn(alice.b), 'her session ended');
  const text = auditFiles(join(dir, 'audit', 'admin')).map((f) => readFileSync(f, 'utf8')).join('');
  const actions = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'event' && r.event.kind === 'admin').map((r) => r.event);
  t.same(actions.map((a) => `${a.action} ${a.outcome}`), [`${c.action} failed`]);
});

t.test("with Redis full, the person's own logout and the gateway still fail closed", async (t) => {
  const { s, alice, fill } = await fullStack(t);
  await fill();
  const p = s.config.server.prefix;
  const security = await alice.b.get(`${p}/security`);
  t.equal(security.status, 200);
  const out = await alice.b.post(`${p}/logout`, { csrf: inputValue(security.body, 'csrf') });
  t.equal(out.status, 503, 'the logout says the store failed');
  t.notOk(await signedIn(alice.b), 'her session ended all the same');
  const again = s.browser();
  t.equal((await submitPassword(again, BOB.username, BOB.password)).status, 503, 'a new sign-in is refused (its records cannot be written)');
  t.notOk(await signedIn(again));
});
