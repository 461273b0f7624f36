// More time for a sign-in in progress: its whole time again from now, up to an hour after the password, never less.
import t from 'tap';
import { moreTimeUntil } from '../../../src/services/login.js';

const MIN = 60_000;
const login = (passwordAt: number | undefined, expiresAt: number) => ({ passwordAt, expiresAt });

t.test('the whole time again from now', async (t) => {
  t.equal(moreTimeUntil(login(0, 5 * MIN), 4 * MIN, 5 * MIN), 9 * MIN);
  t.equal(moreTimeUntil(login(0, 5 * MIN), 0, 5 * MIN), 5 * MIN, 'at once: nothing more yet, but the button is there');
});

t.test('never past an hour after the password', async (t) => {
  t.equal(moreTimeUntil(login(0, 57 * MIN), 56 * MIN, 5 * MIN), 60 * MIN);
  t.equal(moreTimeUntil(login(0, 60 * MIN), 58 * MIN, 5 * MIN), null, 'at the hour: no more');
  t.equal(moreTimeUntil(login(0, 60 * MIN), 58 * MIN, 60 * MIN), null, 'also with the longest time limit');
});

t.test('none for an expired login, or one without its password time', async (t) => {
  t.equal(moreTimeUntil(login(0, 5 * MIN), 5 * MIN, 5 * MIN), null, 'expired');
  t.equal(moreTimeUntil(login(undefined, 5 * MIN), MIN, 5 * MIN), null, 'a record from before passwordAt was kept');
});
