// An audit directory the gateway's user cannot write: serve and the admin commands say which option, what is wrong
// and what to do, and config check warns of it beforehand.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../../../src/audit/open-audit.js';
import { rawTestConfig } from '../../helpers/config.js';
import { FakeClock } from '../../helpers/clock.js';
import { TS_LOADER } from '../../helpers/cli.js';

/** Root writes anywhere: as root, the commands run as nobody (uid 65534), who cannot write a directory of root's. */
const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;

/** A place every user can read; `locked` makes a directory there that the commands' user cannot write. */
function place(t: Test) {
  const root = mkdtempSync(join(tmpdir(), 'mfa-unwritable-'));
  chmodSync(root, 0o755);
  t.teardown(() => {
    chmodSync(root, 0o755);
    for (const d of locked) chmodSync(d, 0o755);
    rmSync(root, { recursive: true, force: true });
  });
  const locked: string[] = [];
  return {
    root,
    locked: (name: string) => {
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, asRoot ? 0o755 : 0o555);
      locked.push(dir);
      return dir;
    },
  };
}

/** The command line on a config file written to `root`, as a user who cannot write the locked directories. */
function cli(root: string, raw: Record<string, any>, args: string[]) {
  const file = join(root, 'gw.json');
  writeFileSync(file, JSON.stringify(raw), { mode: 0o644 });
  const r = spawnSync(process.execPath, [TS_LOADER, 'src/main.ts', ...args, '--config', file], {
    encoding: 'utf8',
    timeout: 60_000,
    ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('serve on an audit directory it cannot write names audit.dir, the problem and the fix; config check warns', async (t) => {
  const { root, locked } = place(t);
  const dir = locked('audit');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit.dir = dir;
  raw.server.port = 0;

  const check = cli(root, raw, ['config', 'check']);
  t.equal(check.code, 0, 'a warning, not a problem: config check may run as another user than the gateway');
  t.match(check.stdout, `warning: audit.dir ${dir}: not writable by this user (uid `);
  t.match(check.stdout, 'uid 1000 in the container image: chown the directory to it');

  const serve = cli(root, raw, ['serve']);
  t.equal(serve.code, 1);
  t.match(serve.stderr, `mfa-gateway: audit.dir ${dir}: cannot open ${join(dir, 'audit.lock')}: permission denied (EACCES); the directory must be writable by the user the gateway`);
  t.match(serve.stderr, 'uid 1000 in the container image): chown it to that user');
});

t.test('an audit directory still to be made, in a directory it cannot write: warned of, and named when serve stops', async (t) => {
  const { root, locked } = place(t);
  const parent = locked('volume');
  const dir = join(parent, 'audit');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit.dir = dir;

  const check = cli(root, raw, ['config', 'check']);
  t.equal(check.code, 0);
  t.match(check.stdout, `warning: audit.dir ${dir}: does not exist, and ${parent}, where it would be made, is not writable by this user`);

  const serve = cli(root, raw, ['serve']);
  t.equal(serve.code, 1);
  t.match(serve.stderr, `mfa-gateway: audit.dir ${dir}: cannot mkdir ${dir}: permission denied (EACCES); the directory must be writable`);
});

t.test("an admin command whose trail directory (audit.dir/admin) it cannot write names audit.dir and the admin trail", async (t) => {
  const { root, locked } = place(t);
  const dir = join(root, 'audit');
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  const admin = locked('audit/admin');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit.dir = dir;
  // Never reached: the trail is opened first.
  raw.store = { type: 'redis', redis: { url: 'redis://127.0.0.1:1' } };

  const check = cli(root, raw, ['config', 'check']);
  t.match(check.stdout, `warning: audit.dir ${dir}: its admin trail ${admin} is not writable by this user`);

  const run = cli(root, raw, ['sessions', 'revoke', '--operator', 'Dana Helpdesk', '--reason', 'ticket 4711', '--all']);
  t.equal(run.code, 1);
  t.match(run.stderr, `mfa-gateway: audit.dir ${dir} (the admin commands' trail in ${admin}): cannot open ${join(admin, 'audit.lock')}: permission denied (EACCES)`);
});

t.test('an audit.dir below a file: named as such, by config check and by the trail opening', async (t) => {
  const { root } = place(t);
  const file = join(root, 'not-a-dir');
  writeFileSync(file, '');
  const dir = join(file, 'audit');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit.dir = dir;
  const check = cli(root, raw, ['config', 'check']);
  t.match(check.stdout, `warning: audit.dir ${dir}: ${file} is a file, not a directory`);
  const { resolveConfig } = await import('../../../src/config/load.js');
  await t.rejects(openAudit(resolveConfig(raw), { clock: new FakeClock(), writer: 'gateway', redis: null, onError: () => {} }), {
    name: 'AuditDirUnusable',
    message: `audit.dir ${dir}: cannot mkdir ${dir}: a part of the path is a file, not a directory (ENOTDIR); set audit.dir to a directory`,
  });
});
