// One writer per audit directory: refused while another writer holds it, taken over only from a writer that is gone,
// and a holder that lost it stops writing rather than fork the chain.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AuditError } from '../../../src/audit/audit-error.js';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { lockAuditDir, STALE_MS } from '../../../src/audit/dir-lock.js';
import { AuditFileSink } from '../../../src/audit/file-sink.js';
import { systemClock } from '../../../src/clock.js';
import { privateKey, recordsOf, tempDir } from './helpers.js';

const lockFile = (dir: string) => join(dir, 'audit.lock');
const leave = (dir: string, holder: object, ageMs = 0) => {
  writeFileSync(lockFile(dir), JSON.stringify(holder));
  const at = new Date(Date.now() - ageMs);
  utimesSync(lockFile(dir), at, at);
};
/**
 * A clock that runs 2 s ahead at every reading, so that waiting out STALE_MS takes a few polls. `beat`, when given,
 * is the other writer's heartbeat: its lock is touched at every reading, as a live writer keeps touching it.
 */
const racing = (beat?: string) => {
  let ahead = 0;
  return () => {
    const now = Date.now() + (ahead += 2000);
    if (beat) utimesSync(beat, new Date(now), new Date(now));
    return now;
  };
};

t.test('a second writer is refused until the first releases', async (t) => {
  const dir = tempDir(t);
  const lock = await lockAuditDir(dir);
  t.ok(existsSync(lockFile(dir)));
  t.ok(lock.held());
  await t.rejects(lockAuditDir(dir), /in use by process/, 'the same process cannot open it twice');
  await t.rejects(lockAuditDir(dir), new RegExp(`in use by process ${process.pid} on ${hostname()}`));
  lock.release();
  t.notOk(existsSync(lockFile(dir)), 'released: the lock file is gone');
  (await lockAuditDir(dir)).release();
});

t.test('on this host: a live process keeps it; a dead one, or an earlier life of this pid, loses it once stale', async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  t.teardown(() => child.kill());
  leave(dir, { host: hostname(), pid: child.pid }, STALE_MS + 5000);
  await t.rejects(lockAuditDir(dir), /in use by process/, 'a live process on this host, even without a heartbeat (frozen, not gone)');
  child.kill();
  await new Promise((r) => child.once('exit', r));
  (await lockAuditDir(dir)).release();
  t.pass('taken over from a process that is gone');

  leave(dir, { host: hostname(), pid: process.pid });
  const started = Date.now();
  (await lockAuditDir(dir, { now: racing() })).release();
  t.pass('taken over from an earlier life of this pid (a restarted container is pid 1 again), once its heartbeat is stale');
  t.ok(Date.now() - started >= 300, 'waited for it to go stale, rather than refusing at once');
});

t.test('a lock file that names nobody (a writer stopped before writing it: a crash, a full disk) is waited out, not refused at once', async (t) => {
  const dir = tempDir(t);
  writeFileSync(lockFile(dir), '');
  const started = Date.now();
  (await lockAuditDir(dir, { now: racing() })).release();
  t.ok(Date.now() - started >= 300, 'taken over once stale, without waitMs');
});

t.test('on this host: a lock still touched is kept, whatever its pid (two containers sharing a host name)', async (t) => {
  // With host networking both containers have this host name and run as pid 1: the other one's pid 1 is not us,
  // and a pid not running here may run in the other container.
  for (const pid of [process.pid, 4_190_001]) {
    const dir = tempDir(t);
    leave(dir, { host: hostname(), pid, token: 'theirs' });
    await t.rejects(lockAuditDir(dir, { now: racing(lockFile(dir)) }), /in use by process/, `pid ${pid}, its heartbeat going on`);
    t.match(readFileSync(lockFile(dir), 'utf8'), /theirs/, 'its lock is left alone');
  }
});

t.test('another host (a container on a shared volume): kept while its heartbeat is fresh, taken over once stale', async (t) => {
  const dir = tempDir(t);
  leave(dir, { host: 'other-container', pid: 1 }, 1000);
  await t.rejects(lockAuditDir(dir), /in use by process 1 on other-container/, 'pid 1 elsewhere is not this pid 1');
  leave(dir, { host: 'other-container', pid: 1 }, STALE_MS + 5000);
  (await lockAuditDir(dir)).release();
  t.pass('a lock not touched for longer than the stale time is taken over');
  writeFileSync(lockFile(dir), '{"host":');
  await t.rejects(lockAuditDir(dir, { now: racing(lockFile(dir)) }), /in use by a lock file that names no writer/, 'an unreadable lock still touched is respected');
});

t.test('two writers taking over one stale lock at once: one gets it, the other is refused', async (t) => {
  // Replicas restarted together after a host crash, on a shared volume: both read the old lock and judge it stale.
  const dir = tempDir(t);
  leave(dir, { host: 'crashed-host', pid: 1, token: 'old' }, STALE_MS + 5000);
  let first: ReturnType<typeof lockAuditDir> | undefined;
  let readings = 0;
  // The second writer's clock, read once for its deadline, then to judge the old lock it has just read: the first
  // writer takes the lock over in between.
  const second = () => {
    if (++readings === 2) first = lockAuditDir(dir);
    return Date.now();
  };
  await t.rejects(lockAuditDir(dir, { now: second }), new RegExp(`in use by process ${process.pid} on ${hostname()}`), 'the second is refused');
  t.ok(first, 'the first took it over');
  const held = await first!;
  t.ok(held.held(), 'and holds it');
  t.notMatch(readFileSync(lockFile(dir), 'utf8'), /"old"/);
  t.notOk(existsSync(join(dir, 'audit.lock.takeover')), 'nothing left behind');
  held.release();
});

t.test('a takeover under way is waited for; one left by a writer that stopped is cleared once stale', async (t) => {
  const dir = tempDir(t);
  const takeover = join(dir, 'audit.lock.takeover');
  leave(dir, { host: 'crashed-host', pid: 1, token: 'old' }, STALE_MS + 5000);
  writeFileSync(takeover, '');
  const started = Date.now();
  await t.rejects(lockAuditDir(dir), /has a takeover of its stale lock under way \(audit.lock.takeover; one left by a writer that crashed/, 'another writer is taking it over: said so');
  t.ok(Date.now() - started >= 900, 'after a moment for that writer to finish');
  t.match(readFileSync(lockFile(dir), 'utf8'), /"old"/, 'the lock is left to that writer');
  const old = new Date(Date.now() - STALE_MS - 5000);
  utimesSync(takeover, old, old);
  (await lockAuditDir(dir)).release();
  t.pass('taken over once the half-done takeover is stale');
  t.notOk(existsSync(takeover));
});

t.test('a wait for a stale lock is given up when its signal aborts, the lock left as it was', async (t) => {
  // A stop requested while the gateway starts: waiting out a crashed writer's lock takes up to STALE_MS.
  const dir = tempDir(t);
  leave(dir, { host: hostname(), pid: process.pid, token: 'crashed' });
  const stop = new AbortController();
  const reason = new Error('stop requested');
  setTimeout(() => stop.abort(reason), 200);
  const told: string[] = [];
  const started = Date.now();
  await t.rejects(lockAuditDir(dir, { signal: stop.signal, onWait: (m) => told.push(m) }), reason, "the signal's reason");
  const took = Date.now() - started;
  // Aborted after 200 ms, looked at every 100 ms; the bound leaves a loaded machine room, far below STALE_MS.
  t.ok(took < 10_000, `given up ${took} ms after the wait began, not after ${STALE_MS} ms`);
  t.same(told, [`the audit directory ${dir} has a lock left by process ${process.pid} on ${hostname()}, most likely by a crash: waiting up to ${STALE_MS / 1000 + 1} s for it to go stale`], 'the wait was told as it began');
  t.match(readFileSync(lockFile(dir), 'utf8'), /crashed/, 'the lock is not taken');
});

t.test('an admin command waits for the lock', async (t) => {
  const dir = tempDir(t);
  const lock = await lockAuditDir(dir);
  const started = Date.now();
  await t.rejects(lockAuditDir(dir, { waitMs: 300 }), /in use by process/);
  t.ok(Date.now() - started >= 290, 'waited before giving up');
  lock.release();
});

t.test('a holder whose lock was taken over notices it, stops touching it, and leaves it at release', async (t) => {
  const dir = tempDir(t);
  let lost = 0;
  const lock = await lockAuditDir(dir, { heartbeatMs: 20, onLost: () => lost++ });
  await new Promise((r) => setTimeout(r, 60));
  t.equal(lost, 0, 'its own lock: nothing to report');
  // Another container judged it stale (this process was frozen) and took it.
  leave(dir, { host: 'other-container', pid: 1, token: 'theirs' }, STALE_MS + 5000);
  await new Promise((r) => setTimeout(r, 80));
  t.equal(lost, 1, 'reported once');
  t.notOk(lock.held());
  t.ok(Date.now() - statSync(lockFile(dir)).mtimeMs > STALE_MS, "the other writer's lock is not touched");
  lock.release();
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
  const lock = await lockAuditDir(dir, { heartbeatMs: 20, onLost: () => lost++ });
  await new Promise((r) => setTimeout(r, 60));
  t.equal(lost, 0, 'its own lock: nothing to report');
  // Reading the lock now fails with ENOTDIR, not ENOENT.
  rmSync(dir, { recursive: true });
  writeFileSync(dir, 'not a directory');
  await new Promise((r) => setTimeout(r, 80));
  t.same(crashes, [], 'no exception escaped the heartbeat');
  t.equal(lost, 1, 'reported once');
  t.doesNotThrow(lock.release, 'released without a lock to remove');
  t.equal(readFileSync(dir, 'utf8'), 'not a directory', 'the file in its place is left alone');
});

t.test('a log whose lock was taken over stops writing: no record after the loss, no final checkpoint', async (t) => {
  // Wired as openAudit wires it; `now` stands for the time this process lives in, which a freeze makes jump.
  const open = async (dir: string, now: () => number) => {
    const errors: string[] = [];
    let log: AuditLog | undefined;
    const lock = await lockAuditDir(dir, { heartbeatMs: 20, now, onLost: () => log?.abandon(new AuditError('AUDIT_LOCK_LOST', dir)) });
    log = new AuditLog({ journal: new AuditFileSink({ dir, maxBytes: 1_000_000 }), signingKey: privateKey, keyId: 'k', clock: systemClock, owned: lock.held, onError: (e) => errors.push(e.code) });
    t.teardown(lock.release);
    return { log, errors };
  };
  const takeOver = (dir: string) => leave(dir, { host: 'other-container', pid: 1, token: 'theirs' });

  // Noticed by the heartbeat.
  const dir = tempDir(t);
  const { log, errors } = await open(dir, Date.now);
  log.append({ name: 'before' });
  takeOver(dir);
  await new Promise((r) => setTimeout(r, 80));
  log.append({ name: 'after' });
  await log.close();
  t.same(recordsOf(dir).map((r) => r.seq), [1], 'only the record written while it held the lock');
  t.same(errors, ['AUDIT_LOCK_LOST', 'AUDIT_CLOSED']);
  t.equal(log.stoppedBy?.code, 'AUDIT_LOCK_LOST', 'for readiness checks');

  // Right after a freeze, before the heartbeat had a chance to run: the first record checks the lock itself.
  const frozen = tempDir(t);
  let pausedFor = 0;
  const other = await open(frozen, () => Date.now() + pausedFor);
  other.log.append({ name: 'before' });
  takeOver(frozen);
  pausedFor = STALE_MS + 5000;
  other.log.append({ name: 'after' });
  t.same(recordsOf(frozen).map((r) => r.seq), [1], 'not appended to the chain of the writer that took over');
  t.same(other.errors, ['AUDIT_LOCK_LOST']);
  await other.log.close();
  t.same(recordsOf(frozen).map((r) => r.seq), [1]);
});
