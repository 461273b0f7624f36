// More time for a sign-in in progress: its whole time again from now, up to its latest end, never less.
import t from 'tap';
import { latestEnd, moreTimeUntil, offersMoreTime, recoveryCodesUntil } from '../../../src/domain/session-times.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const login = (passwordAt: number | undefined, expiresAt: number, stage = 'verify') => ({ passwordAt, expiresAt, stage });

t.test('the whole time again from now', async (t) => {
  t.equal(moreTimeUntil(login(0, 5 * MIN), 4 * MIN, 5 * MIN, HOUR), 9 * MIN);
  t.equal(moreTimeUntil(login(0, 5 * MIN), 0, 5 * MIN, HOUR), null, 'at once: nothing more yet');
  t.equal(moreTimeUntil(login(0, 5 * MIN), MIN - 1, 5 * MIN, HOUR), null, 'less than a minute more: nothing');
  t.equal(moreTimeUntil(login(0, 5 * MIN), MIN, 5 * MIN, HOUR), 6 * MIN, 'a minute more');
});

t.test('the pages offer more time from the start, when asking before the end can give at least a minute', async (t) => {
  t.ok(offersMoreTime(login(0, 5 * MIN), 0, 5 * MIN, HOUR), 'at once: the button is there (the page is not drawn again by itself)');
  t.ok(offersMoreTime(login(0, 57 * MIN), 56 * MIN, 5 * MIN, HOUR), 'three minutes short of the latest end');
  t.notOk(offersMoreTime(login(0, 59 * MIN), 58 * MIN, 5 * MIN, HOUR), 'a minute short of it: asking could never give a minute');
  t.notOk(offersMoreTime(login(0, MIN), 0, MIN, HOUR), 'a time limit of a minute: each ask would give less');
  t.notOk(offersMoreTime(login(0, 5 * MIN), 0, 5 * MIN, 5 * MIN + MIN), 'a maximum only a minute past the time limit');
  t.ok(offersMoreTime(login(0, 5 * MIN), 0, 5 * MIN, 5 * MIN + 2 * MIN));
  t.notOk(offersMoreTime(login(0, 5 * MIN), 5 * MIN, 5 * MIN, HOUR), 'expired');
  t.notOk(offersMoreTime(login(undefined, 5 * MIN), 0, 5 * MIN, HOUR), 'a record from before passwordAt was kept');
  t.notOk(offersMoreTime(login(0, 5 * MIN, 'acknowledge'), 0, 5 * MIN, HOUR), 'the codes are shown once');
});

t.test('never past the latest end (mfa.pendingMaxSeconds after the password)', async (t) => {
  t.equal(moreTimeUntil(login(0, 57 * MIN), 56 * MIN, 5 * MIN, HOUR), HOUR);
  t.equal(moreTimeUntil(login(0, HOUR), 58 * MIN, 5 * MIN, HOUR), null, 'at it: no more');
  t.equal(moreTimeUntil(login(0, 59 * MIN + 1), 58 * MIN, 5 * MIN, HOUR), null, 'less than a minute from it: no more');
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

t.test('the recovery codes begin with the whole time again, as they offer no more time', async (t) => {
  t.equal(recoveryCodesUntil(login(0, 5 * MIN, 'enrol'), 4 * MIN, 5 * MIN, HOUR), 9 * MIN, 'bound with a minute left: five to write the codes down');
  t.equal(recoveryCodesUntil(login(0, 5 * MIN, 'enrol'), 30_000, 5 * MIN, HOUR), 5 * MIN + 30_000, 'even less than a minute more');
  t.equal(recoveryCodesUntil(login(0, 9 * MIN, 'enrol'), MIN, 5 * MIN, HOUR), 9 * MIN, 'more time asked for before: never less than it had');
  t.equal(recoveryCodesUntil(login(0, 58 * MIN, 'enrol'), 57 * MIN, 5 * MIN, HOUR), HOUR, 'never past the latest end');
  t.equal(recoveryCodesUntil(login(undefined, 5 * MIN, 'enrol'), 4 * MIN, 5 * MIN, HOUR), 5 * MIN, 'a record from before passwordAt was kept: its own end');
});
