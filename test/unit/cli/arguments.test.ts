// Command-line arguments refused before anything runs: report periods, sessions revoke's choice; --help; what a refusal shows.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sessionsCommand } from '../../../src/cli/admin.js';
import { reportPeriod } from '../../../src/cli/report.js';
import { UsageError, usageOf } from '../../../src/cli/usage.js';
import type { Gateway } from '../../../src/gateway.js';
import { runCliAsync } from '../../helpers/cli.js';
import { rawTestConfig } from '../../helpers/config.js';

const DAY = 86_400_000;

function refused(run: () => unknown): boolean {
  try {
    run();
    return false;
  } catch (err) {
    return err instanceof UsageError;
  }
}

t.test('report periods: UTC days with --to included, times with their offset, nothing rolled over', async (t) => {
  const now = Date.UTC(2026, 5, 15, 12);
  t.same(reportPeriod({}, now), { from: now - 30 * DAY, to: now }, 'the last 30 days');
  t.same(reportPeriod({ days: '7' }, now), { from: now - 7 * DAY, to: now });
  t.same(reportPeriod({ days: '36500' }, now), { from: now - 36500 * DAY, to: now }, 'a hundred years');
  t.same(reportPeriod({ from: '2026-05-01', to: '2026-05-04' }, now), { from: Date.UTC(2026, 4, 1), to: Date.UTC(2026, 4, 5) }, '1 to 4 May, the 4th included');
  t.same(reportPeriod({ from: '2026-05-01', to: '2026-05-01' }, now), { from: Date.UTC(2026, 4, 1), to: Date.UTC(2026, 4, 2) }, 'one day');
  t.same(reportPeriod({ from: '2026-05-01T08:00+02:00', to: '2026-05-01T10:30:00.5Z' }, now), { from: Date.UTC(2026, 4, 1, 6), to: Date.UTC(2026, 4, 1, 10, 30, 0, 500) }, 'times as given');
  t.same(reportPeriod({ to: '2026-05-04' }, now), { from: Date.UTC(2026, 4, 5) - 30 * DAY, to: Date.UTC(2026, 4, 5) }, '30 days up to a day');
  for (const bad of [
    { from: '2026-02-01', to: '2026-02-30' },
    { from: '2026-05-01T00:00', to: '2026-05-02' },
    { from: 'May 1 2026', to: '2026-05-02' },
    { from: '2026-05-03', to: '2026-05-02' },
    { days: '7', from: '2026-05-01', to: '2026-05-02' },
    { days: '0' },
    { days: '36501' },
    { days: '100000000000' },
    { days: '1e2' },
    { days: '0x10' },
    { days: ' 7' },
    { days: '7.0' },
    { days: '' },
  ])
    t.ok(refused(() => reportPeriod(bad, now)), JSON.stringify(bad));
});

t.test('sessions revoke takes --user or --all, not both', async (t) => {
  const outcome = await sessionsCommand({} as Gateway, { user: 'alice', all: true }).then(
    () => 'ran',
    (err: unknown) => (err instanceof UsageError ? 'usage error' : String(err)),
  );
  t.equal(outcome, 'usage error');
});

t.test('--help and -h print the usage and exit 0, as help does, running nothing else', async (t) => {
  // Side by side: each start of the command line compiles it anew.
  const asked = [['--help'], ['-h'], ['serve', '--help'], ['config', 'check', 'no-such-file.yaml', '-h']];
  const [help, unknown, ...answers] = await Promise.all([['help'], ['--helpme'], ...asked].map((args) => runCliAsync(args)));
  t.equal(help!.code, 0);
  t.match(help!.stdout, /^Usage:/);
  answers.forEach((r, i) => t.same({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout: help!.stdout, stderr: '' }, asked[i]!.join(' ')));
  // The negative: an option still unknown is still a usage error.
  t.equal(unknown!.code, 2);
  t.same(unknown!.stderr, 'mfa-gateway: unknown option --helpme\nRun `mfa-gateway help` for every command.\n');
});

t.test('--version and version print the version of package.json and exit 0, whatever else is on the line', async (t) => {
  const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  const asked = [['--version'], ['version'], ['serve', '--version']];
  const answers = await Promise.all(asked.map((args) => runCliAsync(args)));
  answers.forEach((r, i) => t.same({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout: `mfa-gateway ${version}\n`, stderr: '' }, asked[i]!.join(' ')));
});

t.test("wrong usage shows the message and that command's usage, not the whole text", async (t) => {
  const text = ['Usage:', '  mfa-gateway serve --config FILE    run', '  Admin note.', '  mfa-gateway keys rotate|status', '                                     keys', '  mfa-gateway devices list', '', '  mfa-gateway help   this'].join('\n');
  const pointer = 'Run `mfa-gateway help` for every command.';
  t.same(usageOf(text, 'serve'), ['Usage:', '  mfa-gateway serve --config FILE    run', pointer]);
  t.same(usageOf(text, 'keys'), ['Usage:', '  Admin note.', '  mfa-gateway keys rotate|status', '                                     keys', pointer], 'with its lines beneath and the note above');
  t.same(usageOf(text, 'help'), ['Usage:', '  mfa-gateway help   this', pointer], 'a note ends at a blank line');
  t.same(usageOf(text, 'frob'), [pointer]);
  t.same(usageOf(text, undefined), [pointer]);

  const [serve, lockouts, unknownOption, unknownCommand, optionFirst, flagFirst, optionOnly, wordFirst, unknownBoth] = await Promise.all(
    [['serve'], ['lockouts', 'clear'], ['serve', '--port', '8080'], ['frob'], ['--port', '8080', 'serve'], ['--verbose', 'serve'], ['--port', '8080'], ['8080', 'serve'], ['frob', '--port', '1']].map((args) => runCliAsync(args)),
  );
  t.same(serve, { code: 2, stdout: '', stderr: `mfa-gateway: serve needs --config FILE\nUsage:\n  mfa-gateway serve --config FILE    run the gateway with a config file\n${pointer}\n` });
  t.equal(lockouts!.code, 2);
  t.match(lockouts!.stderr, /^mfa-gateway: lockouts needs --config FILE\nUsage:\n  Admin commands .* --operator NAME --reason TEXT\.\n  mfa-gateway lockouts list .*\n  mfa-gateway lockouts clear .*\n +factors disabled after too many failures\n/);
  t.notMatch(lockouts!.stderr, /blocks|sessions|serve/, "no other command's usage");
  const serveUsage = `Usage:\n  mfa-gateway serve --config FILE    run the gateway with a config file\n${pointer}\n`;
  t.same(unknownOption, { code: 2, stdout: '', stderr: `mfa-gateway: serve does not take --port\n${serveUsage}` }, 'an option parseArgs refuses: said as the others are, with the usage of the command named');
  t.same(unknownCommand, { code: 2, stdout: '', stderr: `mfa-gateway: unknown command frob\n${pointer}\n` });
  // Before the command, an unknown option's value (8080) may stand where the command would: the command is still found.
  t.same(optionFirst, unknownOption, 'an option before the command: the same');
  t.same(flagFirst, { code: 2, stdout: '', stderr: `mfa-gateway: serve does not take --verbose\n${serveUsage}` }, 'one without a value, too');
  t.same(optionOnly, { code: 2, stdout: '', stderr: `mfa-gateway: unknown option --port\n${pointer}\n` }, 'no command: none named');
  t.same(wordFirst, { code: 2, stdout: '', stderr: `mfa-gateway: unknown command 8080\n${pointer}\n` }, 'a word before the command, after no option: the command the line names');
  t.same(unknownBoth, unknownCommand, 'an unknown command with an unknown option: the command is said');
});

t.test('an option given twice is wrong usage, not its last value taken', async (t) => {
  const configFile = join(t.testdir(), 'gateway.json');
  writeFileSync(configFile, JSON.stringify(rawTestConfig('http://127.0.0.1:9')));
  const explain = ['policy', 'explain', '--config', configFile, '--path', '/'];
  const [once, twice, spelt, config] = await Promise.all(
    [
      [...explain, '--user', 'alice'],
      [...explain, '--user', 'alice', '--user', 'bob'],
      [...explain, '--user=alice', '--user=bob'],
      [...explain, '-c', configFile],
    ].map((args) => runCliAsync(args)),
  );
  t.equal(once!.code, 0);
  t.match(once!.stdout, /alice \(groups/);
  for (const [r, option] of [[twice, 'user'], [spelt, 'user'], [config, 'config']] as const) {
    t.equal(r!.code, 2, `--${option} twice`);
    t.equal(r!.stdout, '');
    t.match(r!.stderr, `--${option} is given more than once`);
  }
});

t.test('a word more than a command takes is wrong usage, not left out', async (t) => {
  const dir = t.testdir();
  const configFile = join(dir, 'gateway.json');
  writeFileSync(configFile, JSON.stringify(rawTestConfig('http://127.0.0.1:9')));
  const invalid = join(dir, 'invalid.json');
  writeFileSync(invalid, '{}');
  const [one, two, who, whoTwo, key] = await Promise.all(
    [
      ['config', 'check', configFile],
      ['config', 'check', configFile, invalid],
      ['audit', 'who', '--config', configFile, 'alice'],
      ['audit', 'who', '--config', configFile, 'alice', 'bob'],
      ['audit', 'public-key', '--config', configFile, 'alice'],
    ].map((args) => runCliAsync(args)),
  );
  t.equal(one!.code, 0);
  t.equal(who!.code, 0);
  for (const [r, word] of [[two, invalid], [whoTwo, 'bob'], [key, 'alice']] as const) {
    t.equal(r!.code, 2, word);
    t.equal(r!.stdout, '');
    t.match(r!.stderr, `unexpected argument ${JSON.stringify(word)}`);
  }
});

t.test('an option the command does not take is wrong usage, not left out', async (t) => {
  const configFile = join(t.testdir(), 'gateway.json');
  writeFileSync(configFile, JSON.stringify({ ...rawTestConfig('http://127.0.0.1:9'), store: { type: 'redis', redis: { url: 'redis://127.0.0.1:1' } } }));
  const admin = ['--config', configFile, '--operator', 'Dana', '--reason', 'ticket 4711'];
  const asked = [
    [['lockouts', 'list', ...admin, '--user', 'alice'], 'lockouts list does not take --user'],
    [['blocks', 'list', ...admin, '--ip', '192.0.2.7'], 'blocks list does not take --ip'],
    [['devices', 'revoke', ...admin, '--fingerprint', 'ab'.repeat(32), '--user', 'bob'], 'devices revoke does not take --user'],
    [['devices', 'list', ...admin, '--user', 'bob'], 'devices list does not take --user'],
    [['user', 'erase', ...admin, '--user', 'alice', '--all', '--yes'], 'user does not take --all'],
    [['audit', 'who', '--config', configFile, 'alice', '--user', 'bob'], 'audit who does not take --user'],
    [['audit', 'verify', '--config', configFile, '--days', '1', configFile], 'audit verify does not take --days'],
  ] as const;
  const answers = await Promise.all(asked.map(([args]) => runCliAsync([...args])));
  answers.forEach((r, i) => t.match({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 2, stdout: '', stderr: `mfa-gateway: ${asked[i]![1]}` }, asked[i]![0].join(' ')));
  // An empty value is no value: not the option left out (the config's key used instead of the one meant).
  for (const args of [['audit', 'verify', '--public-key=', configFile], ['policy', 'explain', '--config', configFile, '--path', '/', '--user', ' '], ['report', '--config', configFile, '--audit-dir=']]) {
    const r = await runCliAsync(args);
    t.match({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 2, stdout: '', stderr: /mfa-gateway: --(public-key|user|audit-dir) is empty/ }, args.join(' '));
  }
  // A command named as a property every object has is an unknown command, not a crash in the lookup of its options.
  for (const name of ['constructor', 'toString', '__proto__']) {
    const r = await runCliAsync([name, '--config', configFile]);
    t.match({ code: r.code, stderr: r.stderr }, { code: 2, stderr: `mfa-gateway: unknown command ${name}` }, name);
  }
});

t.test('a word that is no action of its command is named as such, not refused for what the action needs', async (t) => {
  const configFile = join(t.testdir(), 'gateway.json');
  writeFileSync(configFile, JSON.stringify(rawTestConfig('http://127.0.0.1:9')));
  const asked = [
    [['config', 'chek', configFile], 'unknown config action "chek"'],
    [['policy', 'explian', '--config', configFile, '--path', '/'], 'unknown policy action "explian"'],
    [['login', 'chek', '--config', configFile, '--user', 'alice'], 'unknown login action "chek"'],
    [['audit', 'veify', configFile], 'unknown audit action "veify"'],
    [['enrol-codes', 'isue', '--config', configFile, '--user', 'alice', '--operator', 'Dana', '--reason', 'ticket 4711'], 'unknown enrol-codes action "isue"'],
    [['lockouts', 'lsit'], 'unknown lockouts action "lsit"'],
    [['config'], 'config needs an action: check'],
    [['audit', '--config', configFile], 'audit needs an action: verify, who, public-key'],
  ] as const;
  const [valid, ...answers] = await Promise.all([['config', 'check', configFile], ...asked.map(([args]) => args)].map((args) => runCliAsync([...args])));
  answers.forEach((r, i) => t.match({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 2, stdout: '', stderr: `mfa-gateway: ${asked[i]![1]}\nUsage:\n` }, asked[i]![0].join(' ')));
  // The negative: the action itself still runs.
  t.equal(valid!.code, 0);
});

t.test('config check takes its file as a word or as --config FILE (-c FILE), as every other command takes it', async (t) => {
  const dir = t.testdir();
  const configFile = join(dir, 'gateway.json');
  writeFileSync(configFile, JSON.stringify(rawTestConfig('http://127.0.0.1:9')));
  const invalid = join(dir, 'invalid.json');
  writeFileSync(invalid, '{}');
  const [word, long, short, wrong, both, none] = await Promise.all(
    [
      ['config', 'check', configFile],
      ['config', 'check', '--config', configFile],
      ['config', 'check', '-c', configFile],
      ['config', 'check', '--config', invalid],
      ['config', 'check', configFile, '--config', configFile],
      ['config', 'check'],
    ].map((args) => runCliAsync(args)),
  );
  for (const [r, how] of [[word, 'FILE'], [long, '--config FILE'], [short, '-c FILE']] as const) {
    t.same({ code: r!.code, stdout: r!.stdout.split('\n').at(-2), stderr: r!.stderr }, { code: 0, stdout: `${configFile}: valid`, stderr: '' }, how);
  }
  // The file named by --config is the one checked: an invalid one is reported as such.
  t.equal(wrong!.code, 1, 'an invalid file named by --config');
  t.match(both!, { code: 2, stdout: '', stderr: /^mfa-gateway: config check takes one FILE: give it or --config FILE, not both\n/ });
  t.match(none!, { code: 2, stdout: '', stderr: /^mfa-gateway: config check needs a FILE \(or --config FILE\)\n/ });
});
