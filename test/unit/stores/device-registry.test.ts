// The registry of managed devices: its index lists every device added, also when they were added at once.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { DeviceRegistry } from '../../../src/stores/device-registry.js';
import { MemoryKvStore } from '../../../src/stores/memory-kv-store.js';
import { FakeClock } from '../../helpers/clock.js';

t.test('devices added at once by two commands are all listed', async (t) => {
  const kv = new MemoryKvStore(new FakeClock());
  const sealer = new Sealer([{ id: 'e1', key: randomBytes(32) }]);
  // Two `devices add` run together: two processes, each with its own registry, on one store.
  const registries = [new DeviceRegistry(kv, sealer), new DeviceRegistry(kv, sealer)];
  const fingerprints = Array.from({ length: 10 }, (_, i) => `${i}`.padStart(64, 'a'));
  await Promise.all(fingerprints.map((fingerprint, i) => registries[i % 2]!.put({ fingerprint, name: `device ${i}`, status: 'active', addedAt: 1 })));
  t.same((await registries[0]!.list()).map((d) => d.fingerprint).sort(), fingerprints);
  // Replaced (revoked), a device is listed once, as it now is.
  await registries[1]!.put({ fingerprint: fingerprints[3]!, name: 'device 3', status: 'revoked', addedAt: 1, revokedAt: 2 });
  const listed = await registries[0]!.list();
  t.equal(listed.length, 10);
  t.equal(listed.find((d) => d.fingerprint === fingerprints[3])?.status, 'revoked');
});
