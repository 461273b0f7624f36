// Enrolment codes from a CSV: a store failing part-way still prints the codes issued before it failed.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { operatorFrom } from '../../../src/cli/admin.js';
import { csvCell, csvUsernames, issueEnrolmentCodes } from '../../../src/cli/enrol-codes.js';
import { PartialOutput, UsageError } from '../../../src/cli/usage.js';
import type { Gateway } from '../../../src/gateway.js';
import { runCli } from '../../helpers/cli.js';
import { rawTestConfig } from '../../helpers/config.js';

t.test('codes issued before the store fails are printed, then the failure', async (t) => {
  const csv = join(mkdtempSync(join(tmpdir(), 'mfa-codes-')), 'users.csv');
  writeFileSync(csv, 'username\nann\nben\ncat\n');
  const down = new Error('redis: OOM command not allowed');
  let issued = 0;
  const gw = {
    config: { enrolment: { proof: 'invite' }, portal: { login: { usernameCase: 'lower' } } },
    pidOf: (user: string) => `pid-${user}`,
    enrolment: {
      issueInvite: async () => {
        if (++issued === 3) throw down;
        return { code: `CODE-000${issued}`, expiresAt: Date.UTC(2027, 0, 4) };
      },
    },
  } as unknown as Gateway;
  const err = await issueEnrolmentCodes(gw, { users: csvUsernames(csv) }).catch((e: unknown) => e);
  t.ok(err instanceof PartialOutput);
  t.same((err as PartialOutput).lines, ['username,code,expires', 'ann,CODE-0001,2027-01-04', 'ben,CODE-0002,2027-01-04'], 'the two codes that replaced earlier ones');
  t.equal((err as PartialOutput).cause, down);
  issued = 2;
  writeFileSync(csv, 'username\ncat\n');
  t.equal(await issueEnrolmentCodes(gw, { users: csvUsernames(csv) }).catch((e: unknown) => e), down, 'nothing issued: the failure alone');
});

t.test('a file saved with semicolons or tabs issues nothing (each whole line would be a username)', async (t) => {
  const csv = join(mkdtempSync(join(tmpdir(), 'mfa-codes-')), 'users.csv');
  let issued = 0;
  const gw = { config: { enrolment: { proof: 'invite' }, portal: { login: { usernameCase: 'lower' } } }, pidOf: (user: string) => `pid-${user}`, enrolment: { issueInvite: async () => ({ code: `CODE-${++issued}`, expiresAt: 0 }) } } as unknown as Gateway;
  for (const text of ['username;name\nalice;Alice Smith\n', 'username\tname\nalice\tAlice Smith\n']) {
    writeFileSync(csv, text);
    t.throws(() => csvUsernames(csv), { constructor: UsageError, message: /separated by commas/ });
  }
  writeFileSync(csv, 'username,name\nalice,"Smith; Alice"\n');
  t.same(await issueEnrolmentCodes(gw, { users: csvUsernames(csv) }), ['username,code,expires', 'alice,CODE-1,1970-01-01'], 'a semicolon in another column is fine');
  t.equal(issued, 1);
});

t.test('codes only for names the login accepts (portal.login.usernamePattern)', async (t) => {
  let issued = 0;
  const gw = {
    config: { enrolment: { proof: 'invite' }, portal: { login: { usernameCase: 'lower', usernamePattern: '[a-z]+' } } },
    pidOf: (user: string) => `pid-${user}`,
    enrolment: { issueInvite: async () => ({ code: `CODE-${++issued}`, expiresAt: 0 }) },
  } as unknown as Gateway;
  await t.rejects(issueEnrolmentCodes(gw, { user: 'alice@clinic.example' }), { constructor: UsageError, message: /not a usable username/ });
  t.equal(issued, 0);
  t.same(await issueEnrolmentCodes(gw, { user: 'Alice' }), ['username,code,expires', 'Alice,CODE-1,1970-01-01']);
});

t.test('the reason names none of the users of the file: it goes into the audit trail, which holds only pseudonyms', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-codes-'));
  const csv = join(dir, 'users.csv');
  writeFileSync(csv, 'username\nann.lee\nBen.Okafor\n');
  t.same(csvUsernames(csv), ['ann.lee', 'Ben.Okafor']);
  // A file that cannot be read, or is refused, is a usage error before anything is written to the audit trail.
  t.throws(() => csvUsernames(join(dir, 'missing.csv')), { constructor: UsageError, message: /cannot read/ });
  writeFileSync(join(dir, 'semicolons.csv'), 'username;letter\nann.lee;yes\n');
  t.throws(() => csvUsernames(join(dir, 'semicolons.csv')), { constructor: UsageError });
  const users = csvUsernames(csv);
  t.same(operatorFrom({ operator: 'Dana', reason: 'letters of March', users }), { operator: 'Dana', reason: 'letters of March' });
  t.throws(() => operatorFrom({ operator: 'Dana', reason: 'ben.okafor lost his phone', users }), { constructor: UsageError, message: /must not contain the username/ });

  // From the command line: refused before anything is run or written to the admin trail.
  const raw = rawTestConfig('http://127.0.0.1:9');
  const config = join(dir, 'gw.json');
  writeFileSync(config, JSON.stringify({ ...raw, enrolment: { proof: 'invite' } }));
  const run = runCli(['enrol-codes', 'issue', '--config', config, '--csv', csv, '--operator', 'Dana', '--reason', 'Ann.Lee moved house']);
  t.equal(run.code, 2);
  t.match(run.stderr, '--reason must not contain the username');
  t.notOk(existsSync(join(raw.audit.dir, 'admin')), 'nothing in the admin trail');
});

t.test('a cell a spreadsheet could run as a formula starts with an apostrophe, also after spaces or in full-width and small forms', async (t) => {
  for (const name of ['=1+1', '+1', '-1', '@SUM(A1)', ' =HYPERLINK("x")', '\u3000=1+1', '\uFF1D1+1', '\uFF20x', '\t=1', '\uFE661+1', '\uFE621', '\uFE631', '\uFE6Bx', '\u22121']) t.equal(csvCell(name)[0] === "'" || csvCell(name).startsWith(`"'`), true, JSON.stringify(name));
  for (const name of ['alice', 'o.brien', 'a=b', 'ann-marie', ' bob']) t.equal(csvCell(name), name, JSON.stringify(name));
});
