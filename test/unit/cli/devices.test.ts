// How `devices` commands name a device: a usage error says which option is wrong and what it found.
import t from 'tap';
import { devicesCommand, fingerprintArg } from '../../../src/cli/devices.js';
import { UsageError } from '../../../src/cli/usage.js';
import type { Gateway } from '../../../src/gateway.js';
import type { DeviceRecord } from '../../../src/stores/device-registry.js';

t.test('a --fingerprint that is no SHA-256 fingerprint is named as such, with what was given', async (t) => {
  t.throws(() => fingerprintArg({ fingerprint: 'abcd' }), new UsageError('--fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed): "abcd"'));
  t.throws(() => fingerprintArg({}), new UsageError('give --cert FILE or --fingerprint SHA256 (64 hex digits, colons allowed)'), 'neither given');
  t.equal(fingerprintArg({ fingerprint: 'AB:'.repeat(31) + 'AB' }), 'ab'.repeat(32), 'colons and upper case are fine');
});

t.test('devices list --user lists only the devices bound to that person, named by pseudonym as in the full list', async (t) => {
  const device = (n: number, more: Partial<DeviceRecord>): DeviceRecord => ({ fingerprint: String(n).repeat(64), name: `device ${n}`, status: 'active', addedAt: 0, ...more });
  const devices = [device(1, { pid: 'pid-alice' }), device(2, { pid: 'pid-bob' }), device(3, {}), device(4, { pid: 'pid-alice', status: 'revoked' })];
  const pids: Record<string, string> = { alice: 'pid-alice', bob: 'pid-bob', carol: 'pid-carol' };
  const gw = { stores: { devices: { list: async () => devices } }, clock: { now: () => 0 }, pidOf: (u: string) => pids[u.toLowerCase()] ?? null } as unknown as Gateway;
  const list = (user?: string) => devicesCommand(gw, 'list', { user });
  t.equal((await list()).length, 4, 'everybody\'s, the shared one too');
  const alices = await list('Alice');
  t.same(alices.map((l) => l.split('  ')[0]), ['1'.repeat(64), '4'.repeat(64)], "Alice's two, the revoked one too");
  t.ok(alices.every((l) => l.includes('user pid-alice')));
  t.same(await list('carol'), ['no devices bound to carol'], 'a name with none bound says so (a shared device is no one\'s)');
  await t.rejects(list(' '), { constructor: UsageError, message: /not a usable username/ }, 'a name that is no name is wrong usage');
});
