import t from 'tap';
import { quoted } from '../../src/quoted.js';

t.test('quoted: every character a terminal would not show as itself is escaped, the text given back by JSON.parse', async (t) => {
  const hostile = 'k\u001b]0;title\u0007\u007f\u0085\u009b31m\u00a0\u200b\u202eevil\u2066\u2028\ud800\u{e0001}\u{f0000}"\\';
  const shown = quoted(hostile);
  t.equal(shown, '"k\\u001b]0;title\\u0007\\u007f\\u0085\\u009b31m\\u00a0\\u200b\\u202eevil\\u2066\\u2028\\ud800\\udb40\\udc01\\udb80\\udc00\\"\\\\"');
  t.match(shown, /^[\x20-\x7e]+$/, 'printable ASCII only');
  t.equal(JSON.parse(shown), hostile);
  // The negative: printable text, in any script, stays as it is, quoted as JSON quotes it.
  for (const text of ['audit-1', 'clé 2026', '鍵 ключ', '']) t.equal(quoted(text), JSON.stringify(text));
});
