// login check reads the password from stdin, never from a terminal, which would show it as typed, and never prints it.
import t from 'tap';
import { readPassword, withoutPasswords } from '../../../src/cli/login-check.js';
import { UsageError } from '../../../src/cli/usage.js';

t.test('a terminal on stdin is wrong usage, before anything is read', async (t) => {
  t.throws(() => readPassword({ isTTY: true }), { constructor: UsageError, message: /stdin, which is a terminal here: pipe it in/ });
});

t.test('a password in what is printed becomes [password], however a URL or a form spells it', async (t) => {
  const pw = 'pa ss/wörd+&=1%Z';
  const form = new URLSearchParams({ p: pw }).toString().slice(2);
  for (const spelt of [
    pw,
    encodeURIComponent(pw),
    form,
    encodeURIComponent(pw).toLowerCase().replace('z', 'Z'),
    encodeURIComponent(encodeURIComponent(pw)),
    new URL(`http://portal/?pw=${pw}`).search.slice(4),
    `pa%20ss%2Fw%C3%B6rd%2B%26%3D1%25Z`,
  ]) {
    t.equal(withoutPasswords(`Location /home?pw=${spelt}&x=1`, [pw]), 'Location /home?pw=[password]&x=1', spelt);
  }
  // A portal (PHP's header()) writes a header's non-ASCII characters as their UTF-8 bytes, which the portal client, as
  // HTTP has it, reads one character a byte: wörd comes as wÃ¶rd.
  const bytewise = Buffer.from(pw).toString('latin1');
  for (const spelt of [bytewise, new URL(`http://portal/?pw=${bytewise}`).search.slice(4)]) {
    t.equal(withoutPasswords(`Location /home?pw=${spelt}&x=1`, [pw]), 'Location /home?pw=[password]&x=1', `its UTF-8 read byte by byte: ${spelt}`);
  }
  // A servlet writes a header's characters as Latin-1 bytes (ö is F6), which the gateway percent-encodes as it reads a
  // Location (headerUrl).
  t.equal(withoutPasswords('Location /home?pw=w%F6rd&x=1', ['wörd']), 'Location /home?pw=[password]&x=1', 'its Latin-1 bytes, percent-encoded');
  t.equal(withoutPasswords('/a?p=PA ss/wörd+&=1%Z', [pw]), '/a?p=PA ss/wörd+&=1%Z', 'another text is left as it is');
  t.equal(withoutPasswords('x=one&y=two.2', ['one', 'two.2']), 'x=[password]&y=[password]', 'each password given');
  t.equal(withoutPasswords('a.b', ['a*']), 'a.b', 'a password is text, never a pattern');
});
