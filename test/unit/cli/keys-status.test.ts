// keys status: a key added last for a rotation (new, not yet first) is never shown as the old key to remove.
import t from 'tap';
import { keysCommand } from '../../../src/cli/admin.js';
import type { Gateway } from '../../../src/gateway.js';
import type { KeyUse } from '../../../src/services/admin.js';

const DAY = 86_400_000;
const NOW = 100 * DAY;

/** keys status on a gateway whose store reports `uses` for the keys configured in `ids` (first: active). */
function status(ids: { encryption: string[]; signing: string[] }, uses: KeyUse[]): Promise<string[]> {
  const gw = {
    clock: { now: () => NOW },
    config: { keys: { encryption: ids.encryption.map((id) => ({ id })), signing: ids.signing.map((id) => ({ id })) } },
    admin: { keyStatus: async () => uses },
  } as unknown as Gateway;
  return keysCommand(gw, 'status');
}

const line = (lines: string[], id: string) => lines.find((l) => l.split(/\s+/)[1] === id) ?? '';

t.test('step 1 of a rotation: the new key added last is staged, not old; the active one is in use', async (t) => {
  const lines = await status({ encryption: ['e1', 'e2'], signing: ['s1', 's2'] }, [
    { purpose: 'encryption', id: 'e1', active: true, firstSeen: NOW - 400 * DAY, records: 120 },
    { purpose: 'encryption', id: 'e2', active: false, firstSeen: NOW - DAY, records: 0 },
    { purpose: 'signing', id: 's1', active: true, firstSeen: NOW - 400 * DAY },
    { purpose: 'signing', id: 's2', active: false, firstSeen: NOW - DAY },
  ]);
  t.match(line(lines, 'e1'), /^encryption {2}e1 +active +first seen 400 day\(s\) ago {2}120 record\(s\)/);
  t.match(line(lines, 'e2'), /^encryption {2}e2 +staged +first seen 1 day\(s\) ago {2}0 record\(s\); not first: decrypts only \(added for a rotation: move it first\); not the key to remove/);
  t.match(line(lines, 's2'), /^signing {5}s2 +staged .*not first: verifies only \(added for a rotation: move it first\); not the key to remove/);
  t.notMatch(lines.join('\n'), /\bold\b/, 'no key is called old');
});

t.test('after the switch: the key moved down is retiring, and says when it may go', async (t) => {
  const lines = await status({ encryption: ['e2', 'e1'], signing: ['s2', 's1'] }, [
    { purpose: 'encryption', id: 'e2', active: true, firstSeen: NOW - 3 * DAY, records: 100 },
    { purpose: 'encryption', id: 'e1', active: false, firstSeen: NOW - 400 * DAY, records: 20 },
    { purpose: 'signing', id: 's2', active: true, firstSeen: NOW - 3 * DAY },
    { purpose: 'signing', id: 's1', active: false, firstSeen: NOW - 400 * DAY },
  ]);
  t.match(line(lines, 'e1'), /^encryption {2}e1 +retiring .* 20 record\(s\); not first: decrypts only; remove it once it seals 0 \(keys rotate\)/);
  t.match(line(lines, 's1'), /^signing {5}s1 +retiring .*verifies sessions signed before the rotation; remove it once session\.absoluteTimeoutSeconds has passed/);
});

t.test('a key not first whose age is not known (no gateway has run with it) is neither called staged nor retiring', async (t) => {
  const lines = await status({ encryption: ['e1', 'e2'], signing: ['s1'] }, [
    { purpose: 'encryption', id: 'e1', active: true, firstSeen: NOW - 10 * DAY, records: 5 },
    { purpose: 'encryption', id: 'e2', active: false, firstSeen: null, records: 0 },
    { purpose: 'signing', id: 's1', active: true, firstSeen: null },
  ]);
  t.match(line(lines, 'e2'), /^encryption {2}e2 +not first +age unknown {2}0 record\(s\); decrypts only/);
  t.notMatch(line(lines, 'e2'), /staged|retiring/);
});
