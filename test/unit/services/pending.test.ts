// Pending logins change by compare-and-set: a change never brings back a login that ended, nor undoes another's.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { FactorStore } from '../../../src/stores/factor-store.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { PendingService } from '../../../src/services/pending.js';
import type { SessionService } from '../../../src/services/sessions.js';
import { PendingLogins, type PendingLogin } from '../../../src/stores/records.js';
import { FakeClock } from '../../helpers/clock.js';

async function pendingLogin() {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  const pending = new PendingLogins(kv, sealer);
  const record: PendingLogin = { pid: 'p1', username: 'alice', jar: [], continueTo: '/', csrf: 'c', stage: 'verify', expiresAt: clock.now() + 300_000, ip: '192.0.2.1' };
  const id = await pending.create(record, clock.now());
  return { clock, pending, id, factors: new FactorStore(kv, sealer) };
}

t.test('a change after the login ended (finished or out of attempts) does not bring it back', async (t) => {
  const { clock, pending, id } = await pendingLogin();
  t.ok(await pending.take(id, clock.now()), 'finished');
  t.equal(await pending.update(id, (p) => ({ ...p, failureNotified: true }), clock.now()), null);
  t.equal(await pending.get(id, clock.now()), null, 'still gone');
  const other = await pendingLogin();
  await other.pending.delete(other.id);
  t.equal(await other.pending.update(other.id, (p) => ({ ...p, stage: 'enrol' }), other.clock.now()), null, 'deleted');
  t.equal(await other.pending.get(other.id, other.clock.now()), null);
});

t.test('changes at once each apply to the record as it is', async (t) => {
  const { clock, pending, id } = await pendingLogin();
  await Promise.all([
    pending.update(id, (p) => ({ ...p, failureNotified: true }), clock.now()),
    pending.update(id, (p) => ({ ...p, recoveryCodes: ['a', 'b'] }), clock.now()),
  ]);
  const p = (await pending.get(id, clock.now()))!;
  t.equal(p.failureNotified, true);
  t.same(p.recoveryCodes, ['a', 'b']);
});

t.test('an expired login is not changed', async (t) => {
  const { clock, pending, id } = await pendingLogin();
  t.same(await pending.update(id, (p) => p, clock.now()), await pending.get(id, clock.now()), 'a change that returns the record leaves it as it is');
  clock.advance(300_000);
  t.equal(await pending.update(id, (p) => ({ ...p, stage: 'enrol' }), clock.now()), null, 'expired');
});

t.test('a form sent twice: the same form gets the sign-in once, while it is being finished too; anything else ends the chance', async (t) => {
  const { pending, id, factors } = await pendingLogin();
  const sessions = { start: async () => 'token-1' } as unknown as SessionService;
  const service = new PendingService({ clock: new FakeClock(), pending, sessions, factors, security: () => {} });
  t.equal(await service.twin('no-such-login', 'verify', 'c\n123456'), null, 'no login finishing or finished');
  t.equal(await service.twin(undefined, 'verify', 'c\n123456'), null, 'no pending cookie');

  const done = await service.finish(id, 'verify', '192.0.2.1', { factor: 'totp' }, 'c\n123456');
  t.match(await service.twin(id, 'verify', 'c\n123456'), { ok: true, token: 'token-1', pid: 'p1', continueTo: '/' }, 'the same form: the same sign-in');
  t.equal(done.token, 'token-1');
  t.equal(await service.twin(id, 'verify', 'c\n123456'), null, 'once');

  const other = await pendingLogin();
  const second = new PendingService({ clock: other.clock, pending: other.pending, sessions, factors: other.factors, security: () => {} });
  await second.finish(other.id, 'verify', '192.0.2.1', { factor: 'totp' }, 'c\n123456');
  t.equal(await second.twin(other.id, 'acknowledge', 'c\n123456'), null, 'another stage');
  t.equal(await second.twin(other.id, 'verify', 'c\n123456'), null, 'after any other form, not even the right one');

  // The first submission still starting the session: the second waits for it.
  const third = await pendingLogin();
  const waiting = new PendingService({ clock: third.clock, pending: third.pending, sessions, factors: third.factors, security: () => {} });
  await third.pending.finished.markBusy(third.id);
  const answer = waiting.twin(third.id, 'verify', 'c\n000111');
  await new Promise((r) => setTimeout(r, 120));
  await third.pending.finished.put(third.id, 'verify\nc\n000111', { pid: 'p1', token: 'token-3', continueTo: '/x', jar: [] });
  t.match(await answer, { token: 'token-3', continueTo: '/x' });
});

t.test('the same form finishing twice at once: one session, both get it; another form gets nothing', async (t) => {
  let started = 0;
  const sessions = { start: async () => `token-${++started}` } as unknown as SessionService;
  const { clock, pending, id, factors } = await pendingLogin();
  await pending.update(id, (p) => ({ ...p, stage: 'acknowledge', factor: 'totp' }), clock.now());
  const service = new PendingService({ clock, pending, sessions, factors, security: () => {} });
  const both = await Promise.all([service.finish(id, 'acknowledge', '192.0.2.1', undefined, 'c\nyes'), service.finish(id, 'acknowledge', '192.0.2.1', undefined, 'c\nyes')]);
  t.same(both.map((d) => d.token), ['token-1', 'token-1']);
  t.equal(started, 1);

  const other = await pendingLogin();
  await other.pending.update(other.id, (p) => ({ ...p, stage: 'acknowledge', factor: 'totp' }), other.clock.now());
  const second = new PendingService({ clock: other.clock, pending: other.pending, sessions, factors: other.factors, security: () => {} });
  const [first, forged] = await Promise.allSettled([
    second.finish(other.id, 'acknowledge', '192.0.2.1', undefined, 'c\nyes'),
    second.finish(other.id, 'acknowledge', '192.0.2.1', undefined, 'c\nother'),
  ]);
  t.match(first, { status: 'fulfilled', value: { token: 'token-2' } });
  t.match(forged, { status: 'rejected', reason: { code: 'GW_ERR_LOGIN_EXPIRED' } });
});
