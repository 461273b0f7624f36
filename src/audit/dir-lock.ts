// One writer per audit directory: a lock file naming the host and process that hold it, so two writers never fork
// a chain, also when the directory is a volume shared by containers (each has its own host name, often pid 1).
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const LOCK = 'audit.lock';
/** Held while a stale lock is taken over (see takeOver). */
const TAKEOVER = 'audit.lock.takeover';
/** How long a writer waits for another one to finish taking a stale lock over, before it judges that writer's lock. */
const TAKEOVER_WAIT_MS = 1000;
/** The holder touches its lock this often; a lock untouched for STALE_MS is taken over. */
export const HEARTBEAT_MS = 10_000;
export const STALE_MS = 30_000;
/** Lock files this process holds: its own pid in a lock file is otherwise read as "perhaps an earlier life". */
const heldFiles = new Set<string>();

/** Another writer holds the directory. */
export class AuditDirInUse extends Error {}

interface Holder {
  host: string;
  pid: number;
  /** Tells this holder's lock file from a later one of the same host and pid. */
  token?: string;
}

export interface AuditDirLock {
  /**
   * Whether this process still holds the lock. Answered from memory while the heartbeat keeps time; after a pause
   * (the process was frozen, so another writer may have judged the lock stale) the lock file is read first.
   */
  held(): boolean;
  /** Removes the lock file, unless another writer holds it now. */
  release(): void;
}

/**
 * Takes the directory's lock, waiting up to `waitMs` while another writer holds it; throws AuditDirInUse when it
 * cannot. A lock is taken over only once its heartbeat is older than STALE_MS: a host name and a pid do not tell
 * a live writer from a dead one, as two containers sharing a host name (host networking) both run as pid 1 and
 * see different processes behind the same pid. On this host, a lock whose process is still running here is kept
 * even then (frozen, not gone); one whose process is not running here (gone, or its pid is ours: perhaps an
 * earlier life, as after a container restart) is waited for until it is stale, rather than refused at once, so
 * a restart after a crash gets the lock. Should another writer take it over all the same (this process was
 * frozen for longer than STALE_MS), the heartbeat or `held()` notices and `onLost` is called once.
 *
 * That wait is told to `onWait` as it begins (a start held for up to STALE_MS is otherwise silent). It lets the
 * process go on meanwhile (its signal handlers above all): when `signal` aborts, it is given up and the signal's
 * reason thrown, the lock not taken.
 */
export async function lockAuditDir(
  dir: string,
  opts: { waitMs?: number; onLost?: () => void; onWait?: (message: string) => void; now?: () => number; heartbeatMs?: number; signal?: AbortSignal } = {},
): Promise<AuditDirLock> {
  const { waitMs = 0, onLost = () => {}, onWait = () => {}, now = Date.now, heartbeatMs = HEARTBEAT_MS, signal } = opts;
  const file = join(dir, LOCK);
  let deadline = now() + waitMs;
  let waitedForLeft = false;
  let waitedForTakeover = false;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      fd = -1;
    }
    if (fd !== -1) {
      const token = randomBytes(12).toString('hex');
      try {
        writeSync(fd, JSON.stringify({ host: hostname(), pid: process.pid, token }));
      } catch (err) {
        // A full disk: no empty lock is left behind to refuse the next start.
        rmSync(file, { force: true });
        throw err;
      } finally {
        closeSync(fd);
      }
      return hold(file, token, onLost, heartbeatMs, now);
    }
    const found = readLock(file);
    if (!found) continue; // released meanwhile
    const mine = heldFiles.has(file);
    if (!mine && isStale(found.holder, found.touched, now())) {
      if (takeOver(dir, file, now)) continue;
      // Another writer is taking it over: a moment, and its own lock is there to be judged (a live writer's: refused).
      if (!waitedForTakeover) {
        waitedForTakeover = true;
        deadline = Math.max(deadline, now() + TAKEOVER_WAIT_MS);
      }
    }
    // A lock of this host's whose process is gone, or one that names nobody (its writer stopped between making it and
    // writing it): most likely left by a crash.
    if (!mine && !waitedForLeft && (looksLeft(found.holder) || found.holder.host === '')) {
      // Stale within STALE_MS of its last heartbeat if its writer is gone; a writer still touching it keeps it.
      waitedForLeft = true;
      const at = now();
      deadline = Math.max(deadline, Math.min(found.touched, at) + STALE_MS + 250);
      const waiting = deadline - at;
      if (waiting > 0) onWait(`the audit directory ${dir} has a lock left by ${holderOf(found.holder)}, most likely by a crash: waiting up to ${Math.ceil(waiting / 1000)} s for it to go stale`);
    }
    if (now() >= deadline) {
      if (waitedForTakeover && existsSync(join(dir, TAKEOVER))) {
        throw new AuditDirInUse(`the audit directory ${dir} has a takeover of its stale lock under way (${TAKEOVER}; one left by a writer that crashed taking over is removed ${STALE_MS / 1000} s after it was made)`);
      }
      throw new AuditDirInUse(
        `the audit directory ${dir} is in use by ${holderOf(found.holder)} (one writer per directory; ` +
          `a lock left by a crashed writer expires ${STALE_MS / 1000} s after its last heartbeat)`,
      );
    }
    await sleep(100);
    signal?.throwIfAborted();
  }
}

/**
 * Removes a stale lock file, if it is still stale. Two writers that start together (replicas restarted after a host
 * crash, on a shared volume) both read the old lock and judge it stale; the first removes it and makes its own at
 * once. A plain removal by the second, on its earlier reading, would remove that new lock and make its own: both would
 * hold the lock (each answers held() from memory between heartbeats) and fork the chain. So a takeover first makes a
 * second lock file, TAKEOVER, with O_EXCL as the lock itself (one writer at a time), and only then reads the lock
 * again and removes it if it is stale still. False: another writer is taking it over now. A TAKEOVER left by a writer
 * stopped within those few steps is removed once stale itself.
 */
function takeOver(dir: string, file: string, now: () => number): boolean {
  const takeover = join(dir, TAKEOVER);
  try {
    closeSync(openSync(takeover, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const left = statSync(takeover, { throwIfNoEntry: false });
    if (!left || now() - left.mtimeMs <= STALE_MS) return false;
    rmSync(takeover, { force: true });
    return true;
  }
  try {
    const found = readLock(file);
    if (found && !heldFiles.has(file) && isStale(found.holder, found.touched, now())) rmSync(file, { force: true });
  } finally {
    rmSync(takeover, { force: true });
  }
  return true;
}

function hold(file: string, token: string, onLost: () => void, heartbeatMs: number, now: () => number): AuditDirLock {
  heldFiles.add(file);
  let lastBeat = now();
  let lost = false;
  const beat = (): boolean => {
    if (lost) return false;
    if (!stillHeld(file, token)) {
      // Another writer holds it now (or it is gone): touching it would keep that writer's lock alive.
      lost = true;
      clearInterval(timer);
      onLost();
      return false;
    }
    const t = new Date();
    try {
      utimesSync(file, t, t);
      lastBeat = now();
    } catch {
      // The directory is gone or read-only: writing the trail fails too, and says so. Not a beat: the lock ages.
    }
    return true;
  };
  const timer = setInterval(beat, heartbeatMs);
  timer.unref();
  return {
    // A missed beat means this process was paused: the lock may be another writer's by now.
    held: () => !lost && (now() - lastBeat < 2 * heartbeatMs || beat()),
    release: () => {
      clearInterval(timer);
      heldFiles.delete(file);
      // Only its own lock: one another writer took over stays.
      if (stillHeld(file, token)) rmSync(file, { force: true });
    },
  };
}

/**
 * Whether the lock file is still this holder's. One that cannot be read at all (the directory replaced by a file,
 * unreadable, a failing disk) is not: this runs in a timer, where an exception would end the gateway.
 */
function stillHeld(file: string, token: string): boolean {
  try {
    return readLock(file)?.holder.token === token;
  } catch {
    return false;
  }
}

function readLock(file: string): { holder: Holder; touched: number } | null {
  try {
    const touched = statSync(file).mtimeMs;
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<Holder>;
    return { holder: { host: String(parsed.host ?? ''), pid: Number(parsed.pid), token: typeof parsed.token === 'string' ? parsed.token : undefined }, touched };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    // Unreadable or half-written: judged by its age alone.
    return { holder: { host: '', pid: NaN }, touched: statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0 };
  }
}

function holderOf(holder: Holder): string {
  return holder.host === '' ? 'a lock file that names no writer' : `process ${holder.pid} on ${holder.host}`;
}

/** Untouched for STALE_MS, and not the lock of a process still running on this host. */
function isStale(holder: Holder, touched: number, now: number): boolean {
  return now - touched > STALE_MS && !(holder.host === hostname() && isLive(holder.pid));
}

/** A lock of this host whose process is not running here: most likely left by a crash of this gateway. */
function looksLeft(holder: Holder): boolean {
  return holder.host === hostname() && !isLive(holder.pid);
}

/** Whether a process other than this one runs with that pid here (in this pid namespace). */
function isLive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
