// One writer per audit directory: refused while another writer holds it, taken over only from a writer that is gone.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { lockAuditDir, STALE_MS } from '../../../src/audit/dir-lock.js';
import { tempDir } from './helpers.js';

const lockFile = (dir: string) => join(dir, 'audit.lock');
const leave = (dir: string, holder: object, ageMs = 0) => {
  writeFileSync(lockFile(dir), JSON.stringify(holder));
  const at = new Date(Date.now() - ageMs);
  utimesSync(lockFile(dir), at, at);
};

t.test('a second writer is refused until the first releases', async (t) => {
  const dir = tempDir(t);
  const release = lockAuditDir(dir);
  t.ok(existsSync(lockFile(dir)));
  t.throws(() => lockAuditDir(dir), /in use by process/, 'the same process cannot open it twice');
  t.throws(() => lockAuditDir(dir), new RegExp(`in use by process ${process.pid} on ${hostname()}`));
  release();
  t.notOk(existsSync(lockFile(dir)), 'released: the lock file is gone');
  lockAuditDir(dir)();
});

t.test('on this host: a live process keeps it; a dead one, or an earlier life of this pid, loses it', async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  t.teardown(() => child.kill());
  leave(dir, { host: hostname(), pid: child.pid });
  t.throws(() => lockAuditDir(dir), /in use by process/, 'a live process on this host');
  child.kill();
  await new Promise((r) => child.once('exit', r));
  lockAuditDir(dir)();
  t.pass('taken over from a process that is gone');

  leave(dir, { host: hostname(), pid: process.pid });
  lockAuditDir(dir)();
  t.pass('taken over from an earlier life of this pid (a restarted container is pid 1 again)');
});

t.test('another host (a container on a shared volume): kept while its heartbeat is fresh, taken over once stale', async (t) => {
  const dir = tempDir(t);
  leave(dir, { host: 'other-container', pid: 1 }, 1000);
  t.throws(() => lockAuditDir(dir), /in use by process 1 on other-container/, 'pid 1 elsewhere is not this pid 1');
  leave(dir, { host: 'other-container', pid: 1 }, STALE_MS + 5000);
  lockAuditDir(dir)();
  t.pass('a lock not touched for longer than the stale time is taken over');
  writeFileSync(lockFile(dir), '{"host":');
  t.throws(() => lockAuditDir(dir), /in use by process/, 'a fresh unreadable lock is respected');
});

t.test('an admin command waits for the lock', async (t) => {
  const dir = tempDir(t);
  const release = lockAuditDir(dir);
  const started = Date.now();
  t.throws(() => lockAuditDir(dir, { waitMs: 300 }), /in use by process/);
  t.ok(Date.now() - started >= 290, 'waited before giving up');
  release();
});

t.test('a holder whose lock was taken over notices it, stops touching it, and leaves it at release', async (t) => {
  const dir = tempDir(t);
  let lost = 0;
  const release = lockAuditDir(dir, { heartbeatMs: 20, onLost: () => lost++ });
  await new Promise((r) => setTimeout(r, 60));
  t.equal(lost, 0, 'its own lock: nothing to report');
  // Another container judged it stale (this process was frozen) and took it.
  leave(dir, { host: 'other-container', pid: 1, token: 'theirs' }, STALE_MS + 5000);
  await new Promise((r) => setTimeout(r, 80));
  t.equal(lost, 1, 'reported once');
  t.ok(Date.now() - statSync(lockFile(dir)).mtimeMs > STALE_MS, "the other writer's lock is not touched");
  release();
  t.match(readFileSync(lockFile(dir), 'utf8'), /other-container/, 'and not removed at release');
});

t.test('a holder whose directory was replaced by a file reports the lock lost and keeps running', async (t) => {
  const dir = tempDir(t);
  let lost = 0;
  const crashes: unknown[] = [];
  // An exception in the heartbeat timer would end the process: caught here so the test can say so.
  const crash = (err: unknown) => crashes.push(err);
  process.on('uncaughtException', crash);
  t.teardown(() => void process.off('uncaughtException', crash));
  const release = lockAuditDir(dir, { heartbeatMs: 20, onLost: () => lost++ });
  await new Promise((r) => setTimeout(r, 60));
  t.equal(lost, 0, 'its own lock: nothing to report');
  // Reading the lock now fails with ENOTDIR, not ENOENT.
  rmSync(dir, { recursive: true });
  writeFileSync(dir, 'not a directory');
  await new Promise((r) => setTimeout(r, 80));
  t.same(crashes, [], 'no exception escaped the heartbeat');
  t.equal(lost, 1, 'reported once');
  t.doesNotThrow(release, 'released without a lock to remove');
  t.equal(readFileSync(dir, 'utf8'), 'not a directory', 'the file in its place is left alone');
});
