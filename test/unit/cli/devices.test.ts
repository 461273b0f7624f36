// How `devices` commands name a device: a usage error says which option is wrong and what it found.
import t from 'tap';
import { fingerprintArg } from '../../../src/cli/devices.js';
import { UsageError } from '../../../src/cli/usage.js';

t.test('a --fingerprint that is no SHA-256 fingerprint is named as such, with what was given', async (t) => {
  t.throws(() => fingerprintArg({ fingerprint: 'abcd' }), new UsageError('--fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed): "abcd"'));
  t.throws(() => fingerprintArg({}), new UsageError('give --cert FILE or --fingerprint SHA256 (64 hex digits, colons allowed)'), 'neither given');
  t.equal(fingerprintArg({ fingerprint: 'AB:'.repeat(31) + 'AB' }), 'ab'.repeat(32), 'colons and upper case are fine');
});
