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
  t.match(err, { message: 'a jar record changed 5 times while being changed' });
  t.notMatch(String((err as Error).message), 'browser-id');
  const deleting = await records.change(key, () => null).catch((e: Error) => e);
  t.match(deleting, { message: 'a change cannot delete a jar record' });
});
