// `report --audit-dir`: each trail is read once, however it is named, and a copy of a trail given beside it is refused.
import t from 'tap';
import { cpSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { distinctDirs } from '../../../src/audit/file-sink.js';
import { checkAuditDirs } from '../../../src/cli/report.js';
import { UsageError } from '../../../src/cli/usage.js';
import { openLog, tempDir } from '../audit/helpers.js';

const root = tempDir(t);
const t1 = join(root, 't1');
const t2 = join(root, 't2');
for (const [dir, pid] of [[t1, 'p1'], [t2, 'p2']] as const) {
  const { log } = openLog(dir);
  log.append({ kind: 'security', event: 'password_ok', pid, ip: '192.0.2.1' });
  await log.close();
}
symlinkSync(t1, join(root, 'link'));
cpSync(t1, join(root, 'backup'), { recursive: true });
mkdirSync(join(root, 'none'));

t.test('the same directory named twice is read once, as first named', async (t) => {
  t.same(distinctDirs([t1, `${t1}/`, join(root, 'link'), t2, join(root, '.', 't2')]), [t1, t2]);
  t.doesNotThrow(() => checkAuditDirs([t1, `${t1}/`, join(root, 'link'), t2, join(root, 'none')]), 'not refused: read once');
});

t.test('a copy of a trail beside it is refused: its records would count twice', async (t) => {
  t.throws(() => checkAuditDirs([t1, t2, join(root, 'backup')]), new UsageError(`--audit-dir ${t1} and ${join(root, 'backup')} hold the same trail (their first records are the same): give each trail once`));
});

t.test('a directory that is not there is refused', async (t) => {
  t.throws(() => checkAuditDirs([t1, join(root, 'missing')]), { message: /no such directory/ });
});
