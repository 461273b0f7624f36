// Pending logins change by compare-and-set: a change never brings back a login that ended, nor undoes another's.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { PendingLogins, type PendingLogin } from '../../../src/stores/records.js';
import { FakeClock } from '../../helpers/clock.js';

async function pendingLogin() {
  const clock = new FakeClock();
  const pending = new PendingLogins(new MemoryKvStore(clock), new Sealer([{ id: 'e1', key: randomBytes(32) }]));
  const record: PendingLogin = { pid: 'p1', username: 'alice', jar: [], continueTo: '/', csrf: 'c', stage: 'verify', expiresAt: clock.now() + 300_000, ip: '192.0.2.1' };
  const id = await pending.create(record, clock.now());
  return { clock, pending, id };
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
