// Known-browser tokens: made with the first signing key, accepted under any configured one, by its id.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { knownBrowserId, knownBrowserToken } from '../../../src/mechanisms/known-browser.js';

const now = Date.UTC(2026, 11, 1);
const [oldKey, newKey] = [{ id: 's.1', key: randomBytes(32) }, { id: 's2', key: randomBytes(32) }];

t.test('a token works for its account and epoch under any configured signing key, and not once its key is gone', async (t) => {
  const token = knownBrowserToken([oldKey], 'pid-a', 'e0', now);
  const id = token.split('.')[0];
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e0', token, now), id);
  t.equal(knownBrowserId([newKey, oldKey], 'pid-a', 'e0', token, now + 1000), id, 'after the new key was put first: still known');
  t.equal(knownBrowserId([newKey], 'pid-a', 'e0', token, now), null, 'its key removed: a new browser again');
  t.equal(knownBrowserId([oldKey], 'pid-b', 'e0', token, now), null, "another account's");
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e1', token, now), null, 'retired by a new epoch');
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e0', token, now + 181 * 86_400_000), null, 'too old');
  t.match(knownBrowserToken([newKey, oldKey], 'pid-a', 'e0', now), /\.s2$/, 'new tokens name the first key');
  const [bid, , tag, ...kid] = token.split('.');
  const reissued = `${bid}.${Math.floor((now + 86_400_000) / 1000).toString(36)}.${tag}.${kid.join('.')}`;
  t.equal(kid.join('.'), 's.1', '(a key id with a dot)');
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e0', reissued, now + 86_400_000), null, 'the time it was given is covered: a token cannot be made younger');
});

t.test('a token MACed with another key under a configured key id is refused (the pseudonym key makes none)', async (t) => {
  const pseudonymKey = randomBytes(32);
  const forged = knownBrowserToken([{ id: oldKey.id, key: pseudonymKey }], 'pid-a', 'e0', now);
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e0', forged, now), null);
  t.equal(knownBrowserId([oldKey], 'pid-a', 'e0', forged.split('.').slice(0, 3).join('.'), now), null, 'nor one without a key id');
});
