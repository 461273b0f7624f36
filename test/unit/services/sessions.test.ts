// Session writes are compared and set: answers finishing at once each keep their portal cookies, and a step-up keeps
// the ones saved while it ran.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { SessionTokens } from '../../../src/mechanisms/session-token.js';
import { newTotpSecret } from '../../../src/mechanisms/totp.js';
import { Attempts } from '../../../src/services/ceremony.js';
import type { Notifier } from '../../../src/services/notifier.js';
import { amrOf, SessionService, type Proof } from '../../../src/services/sessions.js';
import { TotpChecks } from '../../../src/services/totp-checks.js';
import { ReplayGuard } from '../../../src/stores/counters.js';
import { FactorStore } from '../../../src/stores/factor-store.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { PendingLogins, Sessions } from '../../../src/stores/records.js';
import { FakeClock } from '../../helpers/clock.js';
import { testConfig } from '../../helpers/config.js';

async function signedIn() {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const sessions = new Sessions(kv, new Sealer([{ id: 'e1', key: randomBytes(32) }]), 43_200_000);
  const d = { clock, sessions, tokens: new SessionTokens([{ id: 's1', key: randomBytes(32) }], 43_200), limits: { idleMs: 900_000, absoluteMs: 43_200_000 }, security: () => {} };
  const service = new SessionService(d);
  const cookie = await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [{ name: 'PORTALSESSID', value: 'a', path: '/' }] }, '192.0.2.1', clock.now());
  const active = (await service.authenticate(cookie))!;
  return { clock, sessions, service, active, d, cookie };
}

const add = (name: string) => (jar: readonly { name: string; value: string; path: string }[]) => [...jar, { name, value: '1', path: '/' }];

t.test("two saves at once: both answers' cookies are kept, and the idle clock moves", async (t) => {
  const { clock, sessions, service, active } = await signedIn();
  clock.advance(60_000);
  await Promise.all([service.save(active, add('first')), service.save(active, add('second'))]);
  const record = (await sessions.get(active.sid))!;
  t.same(record.jar.map((c) => c.name).sort(), ['PORTALSESSID', 'first', 'second']);
  t.equal(record.lastSeen, clock.now());
});

t.test('a page load whose requests all find the idle clock due: the one cookie among them is kept, no save fails', async (t) => {
  for (let load = 0; load < 20; load++) {
    const { clock, sessions, service, active } = await signedIn();
    clock.advance(60_000);
    const requests = Array.from({ length: 10 }, (_, i) => service.save(active, i === 7 ? add('renewed') : undefined));
    const results = await Promise.allSettled(requests);
    t.same(results.filter((r) => r.status === 'rejected'), [], `load ${load}: every save went through`);
    t.ok((await sessions.get(active.sid))!.jar.some((c) => c.name === 'renewed'), `load ${load}: the cookie is kept`);
  }
});

t.test('a save that only moves the idle clock keeps cookies saved after the request began', async (t) => {
  const { sessions, service, active } = await signedIn();
  await service.save(active, add('meanwhile'));
  await service.save(active);
  t.same((await sessions.get(active.sid))!.jar.map((c) => c.name), ['PORTALSESSID', 'meanwhile']);
});

t.test('a portal answer that comes after a step-up moved the session: its cookies go to the new session', async (t) => {
  const { service, active } = await signedIn();
  // A request begins (it holds the session as it was), then a step-up moves the session to a new id.
  const moved = (await service.authenticate((await service.reverified(active, { factor: 'totp' }, '192.0.2.1'))!))!;
  await service.save(active, add('rotated'));
  const now = (await service.authenticate((await service.reverified(moved, { factor: 'totp' }, '192.0.2.1'))!))!;
  t.ok(now.record.jar.some((c) => c.name === 'rotated'), 'kept, also through a later step-up');
  await service.end(now, 'logout');
  await service.save(moved, add('late'));
  t.equal(await service.authenticate((await service.reverified(now, { factor: 'totp' }, '192.0.2.1')) ?? undefined), null, 'an ended session stays ended');
});

t.test('a session ended meanwhile stays ended', async (t) => {
  const { sessions, service, active } = await signedIn();
  await service.end(active, 'logout');
  await service.save(active, add('late'));
  t.equal(await sessions.get(active.sid), null);
});

t.test('a step-up keeps the portal cookies another answer saved while it ran', async (t) => {
  const { service, active } = await signedIn();
  // Another tab's portal answer rotates the portal session cookie after this request read the session.
  await service.save(active, () => [{ name: 'PORTALSESSID', value: 'rotated', path: '/' }]);
  const token = await service.reverified(active, { factor: 'webauthn', deviceBound: true }, '192.0.2.1');
  const moved = (await service.authenticate(token!))!;
  t.same(moved.record.jar, [{ name: 'PORTALSESSID', value: 'rotated', path: '/' }], 'the rotated cookie, not the one read at the start');
  t.same(amrOf(moved.record), ['pwd', 'hwk'], 'with the new factor');
  t.equal(moved.record.deviceBound, true);
  t.not(moved.sid, active.sid, 'under a fresh id');
});

t.test('a portal answer saved while a step-up is moving the session: its cookies reach the new session', async (t) => {
  const rotate = () => [{ name: 'PORTALSESSID', value: 'rotated', path: '/' }];
  // The answer of a request begun on the old id is saved at each moment of the move: the old record just taken (the
  // move not yet noted), or the move noted and the new record not yet written.
  for (const moment of ['take', 'create'] as const) {
    const { sessions, service, active } = await signedIn();
    let saved: Promise<void> | undefined;
    const step = sessions[moment].bind(sessions) as (...args: unknown[]) => Promise<unknown>;
    (sessions as unknown as Record<string, unknown>)[moment] = async (...args: unknown[]) => {
      const result = moment === 'take' ? await step(...args) : undefined;
      saved = service.save(active, rotate);
      // Its first look at the store goes before the step-up's next write.
      await new Promise((r) => setImmediate(r));
      return moment === 'take' ? result : step(...args);
    };
    const token = await service.reverified(active, { factor: 'totp' }, '192.0.2.1');
    await saved;
    const moved = (await service.authenticate(token!))!;
    t.same(moved.record.jar, rotate(), `saved just after the ${moment}: the rotated cookie is kept`);
  }
});

t.test('a portal answer saved after a logout ended the session does not wait for a move', async (t) => {
  const { sessions, service, active } = await signedIn();
  await service.end(active, 'logout');
  let looks = 0;
  const movedTo = sessions.movedTo.bind(sessions);
  sessions.movedTo = (sid) => (looks++, movedTo(sid));
  await service.save(active, add('late'));
  t.equal(looks, 1, 'one look for a move, then done');
  t.equal(await sessions.get(active.sid), null);
  // Ended otherwise (signed out from another device), with no note: one more look, for a step-up between its steps.
  const { sessions: others, service: other, active: first } = await signedIn();
  await other.endAll(first.record.pid, 'signed out elsewhere');
  let again = 0;
  const movedAgain = others.movedTo.bind(others);
  others.movedTo = (sid) => (again++, movedAgain(sid));
  await other.save(first, add('late'));
  t.equal(again, 2, 'two looks for a move, then done');
});

t.test('a passkey that can be synced is recorded as one, also after a step-up with a device-bound one', async (t) => {
  const { clock, service, active } = await signedIn();
  const step = async (from: typeof active, proof: Proof) => (await service.authenticate((await service.reverified(from, proof, '192.0.2.1'))!))!;
  const bound = await step(active, { factor: 'webauthn', deviceBound: true });
  const app = await step(bound, { factor: 'totp' });
  t.same([amrOf(app.record), app.record.deviceBound], [['pwd', 'otp'], undefined], 'an app code replaces the device-bound proof');
  const synced = await step(await step(app, { factor: 'webauthn', deviceBound: true }), { factor: 'webauthn', deviceBound: false });
  t.same(amrOf(synced.record), ['pwd', 'swk'], 'RFC 8176: a software-secured key');
  t.equal(synced.record.deviceBound, undefined, 'the earlier proof does not carry over');
  const fresh = (await service.authenticate(await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'webauthn', deviceBound: false }, jar: [] }, '192.0.2.1', clock.now())))!;
  t.same([amrOf(fresh.record), fresh.record.deviceBound], [['pwd', 'swk'], undefined]);
});

t.test('a step-up of a session that ended meanwhile starts nothing', async (t) => {
  const { service, active } = await signedIn();
  await service.end(active, 'logout');
  t.equal(await service.reverified(active, { factor: 'totp' }, '192.0.2.1'), null);
});

t.test('ending all sessions: a sign-in begun before, finishing while they are being ended, starts no session', async (t) => {
  const { clock, sessions, service } = await signedIn();
  const passwordAt = clock.now();
  const other = await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.1', passwordAt);
  clock.advance(1000);
  // A sign-in of the same user (password given before the ending) finishes just after the list of sessions was read.
  const list = sessions.listIds.bind(sessions);
  let late: Promise<string> | undefined;
  sessions.listIds = async (pid) => {
    const ids = await list(pid);
    late ??= service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.2', passwordAt);
    return ids;
  };
  t.equal(await service.endAll('p1', 'revoked'), 2, 'the two listed');
  await t.rejects(late!, { code: 'GW_ERR_LOGIN_EXPIRED' }, 'the late sign-in starts no session');
  t.equal(await service.authenticate(other), null);
  t.same(await list('p1'), [], 'nothing left, nor any id of a session gone');
  clock.advance(1000);
  const after = await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.2', clock.now());
  t.ok(await service.authenticate(after), 'a sign-in begun after the ending works');
});

t.test('ending all sessions: the order of a sign-in and the ending does not matter (the session is listed, or refused)', async (t) => {
  // Every interleaving of create (record, list, look at the mark) with endAll (mark, list, end), by yielding at each step.
  for (let delay = 0; delay < 8; delay++) {
    const { clock, sessions, service } = await signedIn();
    const passwordAt = clock.now();
    clock.advance(1000);
    const signIn = (async () => {
      for (let i = 0; i < delay; i++) await Promise.resolve();
      return service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.2', passwordAt).catch(() => null);
    })();
    await service.endAll('p1', 'revoked');
    const cookie = await signIn;
    t.equal(cookie && (await service.authenticate(cookie)), null, `yielding ${delay} times first: no live session`);
  }
});

t.test('ending all sessions also ends one that a step-up moved to a new id while they were being ended', async (t) => {
  const { sessions, service, active } = await signedIn();
  // The step-up takes the listed session just before endAll does, and its new session is listed only afterwards.
  const take = sessions.take.bind(sessions);
  let moved: string | null | undefined;
  sessions.take = async (sid) => {
    if (moved === undefined && sid === active.sid) {
      moved = null;
      moved = await service.reverified(active, { factor: 'totp' }, '192.0.2.1');
    }
    return take(sid);
  };
  t.equal(await service.endAll('p1', 'revoked'), 1, 'the moved session');
  t.ok(moved, 'the step-up went through');
  t.equal(await service.authenticate(moved!), null, 'and its session is ended');
});

t.test("a step-up that begins while the user's sessions are being ended starts no session", async (t) => {
  const { clock, sessions, service, active } = await signedIn();
  clock.advance(1000);
  // The ending marks its time, then lists the sessions. In between, a step-up begins: it takes the session (no longer
  // listed) and has not listed its new one yet when the list is read.
  const create = sessions.create.bind(sessions);
  let atCreate!: () => void;
  const reachedCreate = new Promise<void>((r) => (atCreate = r));
  let goOn!: () => void;
  const created = new Promise<void>((r) => (goOn = r));
  sessions.create = async (...args) => {
    atCreate();
    await created;
    return create(...args);
  };
  const listIds = sessions.listIds.bind(sessions);
  let stepUp: Promise<string | null> | undefined;
  sessions.listIds = async (pid) => {
    if (!stepUp) {
      clock.advance(1000);
      stepUp = service.reverified(active, { factor: 'totp' }, '192.0.2.1');
      await reachedCreate;
    }
    return listIds(pid);
  };
  await service.endAll('p1', 'revoked');
  goOn();
  t.equal(await stepUp, null, 'the step-up starts no session');
  t.same(await listIds('p1'), [], 'none is left');
});

t.test('all sessions ended (revoke --all): a session signed in before cannot step up into a new one, even after the mark', async (t) => {
  const { clock, sessions, service, active } = await signedIn();
  clock.advance(1000);
  await sessions.markEnded(null, clock.now());
  clock.advance(1000);
  t.equal(await service.reverified(active, { factor: 'totp' }, '192.0.2.1'), null, 'refused (the sweep over the session keys may have missed both ids)');
});

t.test('"sign out other sessions": the session that did it goes on, and can step up later', async (t) => {
  const { clock, service, active } = await signedIn();
  const other = await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.9', clock.now());
  clock.advance(1000);
  t.equal(await service.endOthers(active, 'signed-out-elsewhere'), 1);
  t.equal(await service.authenticate(other), null, 'the other one ended');
  clock.advance(1000);
  const moved = await service.reverified(active, { factor: 'totp' }, '192.0.2.1');
  t.ok(moved && (await service.authenticate(moved)), 'a step-up of the one kept starts its new session');
});

t.test('all sessions ended (revoke --all): a sign-in or step-up begun before starts no session; later ones do', async (t) => {
  const { clock, sessions, service, active } = await signedIn();
  const passwordAt = clock.now();
  // The mark comes first, then the sweep over every session key; these finish while the sweep runs.
  await sessions.markEnded(null, clock.now() + 1);
  await t.rejects(service.start({ pid: 'p2', username: 'bob', proof: { factor: 'totp' }, jar: [] }, '192.0.2.2', passwordAt), { code: 'GW_ERR_LOGIN_EXPIRED' }, 'a sign-in of any user');
  t.equal(await service.reverified(active, { factor: 'totp' }, '192.0.2.1'), null, 'a step-up');
  clock.advance(5000);
  t.ok(await service.authenticate(await service.start({ pid: 'p2', username: 'bob', proof: { factor: 'totp' }, jar: [] }, '192.0.2.2', clock.now())), 'a sign-in begun after');
});

t.test('a logout racing a step-up (two tabs): neither order leaves the person signed in', async (t) => {
  // The logout's request found the session, then a step-up moved it to a new id, then the logout ended "it".
  {
    const { service, active } = await signedIn();
    const moved = (await service.reverified(active, { factor: 'totp' }, '192.0.2.1'))!;
    t.ok(await service.authenticate(moved), 'the step-up made a new session');
    await service.end(active, 'logout');
    t.equal(await service.authenticate(moved), null, 'the logout ended the session the step-up moved it to');
  }
  // Two step-ups (two more tabs) moved it twice while the logout was on its way.
  {
    const { service, active } = await signedIn();
    const once = (await service.authenticate((await service.reverified(active, { factor: 'totp' }, '192.0.2.1'))!))!;
    const twice = (await service.reverified(once, { factor: 'totp' }, '192.0.2.1'))!;
    await service.end(active, 'logout');
    t.equal(await service.authenticate(twice), null, 'the logout ended the session the second step-up moved it to');
  }
  // The logout lands while the step-up runs: after the step-up noted its move, before it looked for an ending.
  {
    const { sessions, service, active, d } = await signedIn();
    const racing = Object.create(sessions) as Sessions;
    racing.noteMove = async (from, to) => {
      await sessions.noteMove(from, to);
      await service.end(active, 'logout');
    };
    const stepping = new SessionService({ ...d, sessions: racing });
    t.equal(await stepping.reverified(active, { factor: 'totp' }, '192.0.2.1'), null, 'the step-up starts no session');
    t.same(await sessions.listIds('p1'), [], 'none is left');
  }
});

t.test('a logout that finds its session gone (a step-up in another tab took it): what the step-up made ends too', async (t) => {
  // The step-up finished first: the logout's cookie, the old one, leads to no session.
  {
    const { service, active, cookie } = await signedIn();
    const moved = (await service.reverified(active, { factor: 'totp' }, '192.0.2.1'))!;
    t.equal(await service.authenticate(cookie), null, "the logout's cookie finds nothing");
    await service.endByCookie(cookie, 'logout');
    t.equal(await service.authenticate(moved), null, 'the session the step-up made is ended');
  }
  // The logout comes between the step-up's taking of the session and its new one.
  {
    const { sessions, service, active, d, cookie } = await signedIn();
    const racing = Object.create(sessions) as Sessions;
    racing.create = async (record, ttl, sid) => {
      await service.endByCookie(cookie, 'logout');
      return sessions.create(record, ttl, sid);
    };
    const stepping = new SessionService({ ...d, sessions: racing });
    t.equal(await stepping.reverified(active, { factor: 'totp' }, '192.0.2.1'), null, 'the step-up starts no session');
    t.same(await sessions.listIds('p1'), [], 'none is left');
  }
  // A cookie that is not the gateway's ends nothing.
  {
    const { service, active } = await signedIn();
    const moved = (await service.reverified(active, { factor: 'totp' }, '192.0.2.1'))!;
    await service.endByCookie('not-a-token', 'logout');
    await service.endByCookie(undefined, 'logout');
    t.ok(await service.authenticate(moved), 'the session goes on');
  }
});

t.test('ending all sessions with the store full: a mark it refuses still leaves every listed session ended, then fails', async (t) => {
  const { clock, sessions, service, active } = await signedIn();
  const start = () => service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.9', clock.now());
  const other = await start();
  // The store refuses new keys (full), as the marks are; it still deletes.
  const refused = new Error('OOM command not allowed');
  sessions.markEnded = async () => {
    throw refused;
  };
  await t.rejects(service.endOthers(active, 'signed-out-elsewhere'), refused, 'signing out the others fails');
  t.equal(await service.authenticate(other), null, 'but the other session ended');
  t.ok(await sessions.get(active.sid), 'the one kept goes on');
  const third = await start();
  await t.rejects(service.endAll('p1', 'revoked'), refused, 'ending them all fails');
  t.equal(await service.authenticate(third), null, 'but every one ended');
  t.equal(await sessions.get(active.sid), null);
  t.same(await sessions.listIds('p1'), [], 'none is left');
});

t.test('a session written without a request (the others signed out, a passkey removed) is kept no longer than its timeouts', async (t) => {
  for (const write of ['signed out the others', 'forgot the device-bound passkey'] as const) {
    const { clock, sessions, service, active } = await signedIn();
    // 29 s after the last write of the idle clock (not due again yet), the record is written for another reason.
    clock.advance(29_000);
    if (write === 'signed out the others') await service.endOthers(active, 'signed-out-elsewhere');
    else await service.forgetDeviceBound(active);
    clock.advance(15 * 60_000 - 29_000);
    t.equal(await sessions.get(active.sid), null, `${write}: the store let it go at its idle timeout`);
    t.equal(await service.endAll('p1', 'revoked'), 0, `${write}: a revocation after that counts it as ended already`);
  }
});

t.test("wrong step-up codes: the session's end is logged once, also when a try found the session before it ended", async (t) => {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  const events: string[] = [];
  const security = (event: string, details: { reason?: string }) => void events.push(event === 'session_ended' ? `${event} ${details.reason}` : event);
  const limits = { idleMs: 900_000, absoluteMs: 43_200_000 };
  const sessions = new Sessions(kv, sealer, limits.absoluteMs);
  const service = new SessionService({ clock, sessions, tokens: new SessionTokens([{ id: 's1', key: randomBytes(32) }], 43_200), limits, security });
  const notifier = { notify: () => {} } as unknown as Notifier;
  const attempts = new Attempts({ config: testConfig('http://127.0.0.1:9'), clock, kv, pending: new PendingLogins(kv, sealer), sessions: service, security, notifier });
  const factors = new FactorStore(kv, sealer);
  await factors.update('p1', () => ({ factors: [{ id: 'phone', kind: 'totp', name: 'Phone', addedAt: clock.now(), secret: newTotpSecret() }] }));
  const checks = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors, security, notifier });
  const cookie = await service.start({ pid: 'p1', username: 'alice', proof: { factor: 'totp' }, jar: [] }, '192.0.2.1', clock.now());
  // Every code below is one request that found the session live (a flood: each read it before the first was checked).
  const c = attempts.ofSession((await service.authenticate(cookie))!);
  const wrong = (i: number) => checks.checkUser(c, String(100000 + i), '192.0.2.1').then((r) => (r.ok ? 'signed in' : 'wrong code'), (e: { code: string }) => e.code);
  for (let i = 0; i < 4; i++) t.equal(await wrong(i), 'wrong code');
  t.equal(await wrong(4), 'GW_ERR_TOO_MANY_ATTEMPTS', 'the fifth ends the session');
  t.equal(await service.authenticate(cookie), null, 'ended');
  t.equal(await wrong(5), 'GW_ERR_TOO_MANY_ATTEMPTS', 'a code counted after the end');
  t.same(events.filter((e) => e.startsWith('session_ended')), ['session_ended too-many-wrong-codes'], 'the end logged once');
  t.equal(events.filter((e) => e === 'mfa_attempts_exhausted').length, 1, 'the tries used up logged once');
});

t.test('a logout sent twice at once (a double click) logs the end once', async (t) => {
  const { service, active, d } = await signedIn();
  const ended: unknown[] = [];
  const logged = new SessionService({ ...d, security: (event, details) => void (event === 'session_ended' && ended.push(details)) });
  await Promise.all([logged.end(active, 'logout'), logged.end(active, 'logout')]);
  t.equal(await service.authenticate((await d.tokens.sign({ sub: 'p1', sid: active.sid }, d.clock.now()))), null);
  t.same(ended, [{ pid: 'p1', reason: 'logout' }]);
});
