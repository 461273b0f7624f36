// Sealed records: what their errors say never names the record's key (it holds an id that is a credential).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { SealedRecords } from '../../../src/stores/sealed-records.js';
import { FakeClock } from '../../helpers/clock.js';

t.test('a change that keeps losing to other writers gives up, naming the kind of record, not its key', async (t) => {
  const kv = new MemoryKvStore(new FakeClock());
  // Another writer always lands first.
  kv.replaceIf = async () => false;
  const records = new SealedRecords<{ n: number }>(kv, new Sealer([{ id: 'e1', key: randomBytes(32) }]));
  const key = 'jar:{browser-id-that-is-a-credential}';
  await records.put(key, { n: 1 });
  const err = await records.change(key, (cur) => ({ n: (cur?.n ?? 0) + 1 })).catch((e: Error) => e);
  t.match(err, { message: 'a jar record changed 20 times while being changed' });
  t.notMatch(String((err as Error).message), 'browser-id');
  const deleting = await records.change(key, () => null).catch((e: Error) => e);
  t.match(deleting, { message: 'a change cannot delete a jar record' });
});

t.test('changes of one record from several instances at once: none is lost', async (t) => {
  const store = new MemoryKvStore(new FakeClock());
  // Calls that take a moment, each a different one, as over a network.
  const kv = Object.create(store) as MemoryKvStore;
  const lag = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
  kv.get = async (k) => (await lag(), store.get(k));
  kv.replaceIf = async (k, expected, value, ttl) => (await lag(), store.replaceIf(k, expected, value, ttl));
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  // Four gateway processes, each with its own in-process queue, on one store.
  const instances = Array.from({ length: 4 }, () => new SealedRecords<{ names: string[] }>(kv, sealer));
  const key = 'session:{s1}';
  await instances[0]!.put(key, { names: [] });
  const changes = Array.from({ length: 80 }, (_, i) => instances[i % 4]!.change(key, (cur) => ({ names: [...(cur?.names ?? []), `c${i}`] })));
  const results = await Promise.allSettled(changes);
  t.same(results.filter((r) => r.status === 'rejected'), [], 'every change went through');
  t.equal((await instances[0]!.get(key))!.names.length, 80, 'and every one is kept');
});

t.test('a record no configured key opens cannot be changed: said at once, without rounds of waiting', async (t) => {
  const kv = new MemoryKvStore(new FakeClock());
  const key = 'jar:{b1}';
  await new SealedRecords<{ n: number }>(kv, new Sealer([{ id: 'old', key: randomBytes(32) }])).put(key, { n: 1 });
  const records = new SealedRecords<{ n: number }>(kv, new Sealer([{ id: 'new', key: randomBytes(32) }]));
  let rounds = 0;
  const err = await records.change(key, (cur) => (rounds++, { n: (cur?.n ?? 0) + 1 })).catch((e: Error) => e);
  t.match(err, { message: 'a jar record that cannot be opened cannot be changed' });
  t.equal(rounds, 0, 'no round tried');
});

t.test('deleteIf: only the record as it was asked about', async (t) => {
  const kv = new MemoryKvStore(new FakeClock());
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  const records = new SealedRecords<{ n: number }>(kv, sealer);
  const key = 'user:{p1}:factors';
  t.notOk(await records.deleteIf(key, () => true), 'none: nothing deleted');
  await records.put(key, { n: 1 });
  t.notOk(await records.deleteIf(key, (r) => r.n === 2), 'not as wanted: kept');
  t.same(await records.get(key), { n: 1 });
  // Written again between the look and the delete (another instance): kept.
  const racing = Object.create(kv) as MemoryKvStore;
  racing.deleteIf = async (k, expected) => (await records.put(key, { n: 1 }), kv.deleteIf(k, expected));
  t.notOk(await new SealedRecords<{ n: number }>(racing, sealer).deleteIf(key, () => true), 'written since: kept');
  t.same(await records.get(key), { n: 1 });
  t.ok(await records.deleteIf(key, (r) => r.n === 1));
  t.equal(await records.get(key), null, 'deleted');
});
