// login check reads the password from stdin, never from a terminal, which would show it as typed.
import t from 'tap';
import { readPassword } from '../../../src/cli/login-check.js';
import { UsageError } from '../../../src/cli/usage.js';

t.test('a terminal on stdin is wrong usage, before anything is read', async (t) => {
  t.throws(() => readPassword({ isTTY: true }), { constructor: UsageError, message: /stdin, which is a terminal here: pipe it in/ });
});
