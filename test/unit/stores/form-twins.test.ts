// The outcome of a form kept for a second submission of the same form: once, only for that form, waited for only
// while it is being reached.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { FormTwins } from '../../../src/stores/form-twins.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';

function twins() {
  const clock = new FakeClock();
  const kv = new MemoryKvStore(clock);
  let takes = 0;
  const take = kv.take.bind(kv);
  kv.take = (key: string) => (takes++, take(key));
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  const store = new FormTwins<{ token: string }>(kv, sealer, { outcome: (id) => `t:${id}`, busy: (id) => `t:${id}:busy` });
  return { clock, kv, sealer, store, takes: () => takes };
}

t.test('the same form gets the outcome once; another form ends the chance', async (t) => {
  const { store, kv, sealer } = twins();
  await store.put('a', 'csrf\n123456', { token: 'x' });
  t.match(JSON.parse(sealer.open((await kv.get('t:a'))!, 't:a')), { token: 'x', form: /^[0-9a-f]{64}$/ }, 'the form is kept as a digest, sealed');
  t.same(await store.take('a', 'csrf\n123456'), { token: 'x' });
  t.equal(await store.take('a', 'csrf\n123456'), null, 'once');
  await store.put('b', 'csrf\n123456', { token: 'y' });
  t.equal(await store.take('b', 'csrf\n654321'), null, 'another form');
  t.equal(await store.take('b', 'csrf\n123456'), null, 'then not even the same one');
});

t.test('nothing being reached: answered at once; being reached: waited for; kept for 30 s', async (t) => {
  const { store, clock, takes } = twins();
  t.equal(await store.take('none', 'f'), null);
  t.equal(takes(), 1, 'one look, no waiting');
  await store.markBusy('c');
  const answer = store.take('c', 'f');
  await new Promise((r) => setTimeout(r, 120));
  await store.put('c', 'f', { token: 'z' });
  t.same(await answer, { token: 'z' });
  t.ok(takes() > 2, 'looked again while it was being reached');
  await store.put('d', 'f', { token: 'w' });
  clock.advance(30_001);
  t.equal(await store.take('d', 'f'), null, 'gone after 30 s');
});

t.test('a twin that marked itself busy after the outcome was put takes it and leaves no mark behind', async (t) => {
  const { store, kv, takes } = twins();
  await store.put('d', 'f', { token: 'w' });
  await store.markBusy('d');
  t.same(await store.take('d', 'f'), { token: 'w' });
  t.equal(await kv.get('t:d:busy'), null, 'the mark is gone');
  const before = takes();
  t.equal(await store.take('d', 'f'), null);
  t.equal(takes() - before, 1, 'so a later look does not wait on it');
});
