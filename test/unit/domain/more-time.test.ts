// More time for a sign-in in progress: its whole time again from now, up to its latest end, never less.
import t from 'tap';
import { latestEnd, moreTimeUntil } from '../../../src/domain/session-times.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const login = (passwordAt: number | undefined, expiresAt: number, stage = 'verify') => ({ passwordAt, expiresAt, stage });

t.test('the whole time again from now', async (t) => {
  t.equal(moreTimeUntil(login(0, 5 * MIN), 4 * MIN, 5 * MIN, HOUR), 9 * MIN);
  t.equal(moreTimeUntil(login(0, 5 * MIN), 0, 5 * MIN, HOUR), 5 * MIN, 'at once: nothing more yet, but the button is there');
});

t.test('never past the latest end (mfa.pendingMaxSeconds after the password)', async (t) => {
  t.equal(moreTimeUntil(login(0, 57 * MIN), 56 * MIN, 5 * MIN, HOUR), HOUR);
  t.equal(moreTimeUntil(login(0, HOUR), 58 * MIN, 5 * MIN, HOUR), null, 'at it: no more');
  t.equal(moreTimeUntil(login(0, 5 * MIN), 4 * MIN, 5 * MIN, 6 * MIN), 6 * MIN, 'a shorter maximum');
  t.equal(moreTimeUntil(login(0, 5 * MIN), 4 * MIN, 5 * MIN, 5 * MIN), null, 'a maximum no longer than the time limit: none');
  t.equal(latestEnd(login(0, 5 * MIN), HOUR), HOUR);
  t.equal(latestEnd(login(undefined, 5 * MIN), HOUR), 5 * MIN, 'an old record: its own end');
});

t.test('none for an expired login, one without its password time, or at the recovery codes', async (t) => {
  t.equal(moreTimeUntil(login(0, 5 * MIN), 5 * MIN, 5 * MIN, HOUR), null, 'expired');
  t.equal(moreTimeUntil(login(undefined, 5 * MIN), MIN, 5 * MIN, HOUR), null, 'a record from before passwordAt was kept');
  t.equal(moreTimeUntil(login(0, 5 * MIN, 'acknowledge'), MIN, 5 * MIN, HOUR), null, 'the codes are shown once');
});
