// One writer per audit directory: a lock file naming the host and process that hold it, so two writers never fork
// a chain, also when the directory is a volume shared by containers (each has its own host name, often pid 1).
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const LOCK = 'audit.lock';
/** The holder touches its lock this often; a lock of another host untouched for STALE_MS is taken over. */
export const HEARTBEAT_MS = 10_000;
export const STALE_MS = 30_000;
/** Lock files this process holds: its own pid in a lock file is otherwise read as "left by an earlier life". */
const held = new Set<string>();

/** Another writer holds the directory. */
export class AuditDirInUse extends Error {}

interface Holder {
  host: string;
  pid: number;
  /** Tells this holder's lock file from a later one of the same host and pid. */
  token?: string;
}

/**
 * Takes the directory's lock, waiting up to `waitMs` while another writer holds it; throws AuditDirInUse when it
 * cannot. Taken over: a lock of this host whose process is gone (or is an earlier life of this pid, as after a
 * container restart), and a lock of another host not touched for STALE_MS (its holder crashed). Should another
 * writer take it over all the same (this process was frozen for longer than STALE_MS), the heartbeat notices and
 * calls `onLost` once. Returns the release function.
 */
export function lockAuditDir(
  dir: string,
  opts: { waitMs?: number; onLost?: () => void; now?: () => number; heartbeatMs?: number } = {},
): () => void {
  const { waitMs = 0, onLost = () => {}, now = Date.now, heartbeatMs = HEARTBEAT_MS } = opts;
  const file = join(dir, LOCK);
  const deadline = now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      const token = randomBytes(12).toString('hex');
      writeSync(fd, JSON.stringify({ host: hostname(), pid: process.pid, token }));
      closeSync(fd);
      return hold(file, token, onLost, heartbeatMs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const found = readLock(file);
    if (!found) continue; // released meanwhile
    if (!held.has(file) && isStale(found.holder, found.touched, now())) {
      rmSync(file, { force: true });
      continue;
    }
    if (now() >= deadline) {
      throw new AuditDirInUse(
        `the audit directory ${dir} is in use by process ${found.holder.pid} on ${found.holder.host} (one writer per directory; ` +
          `a lock left by a crashed writer on another host expires ${STALE_MS / 1000} s after its last heartbeat)`,
      );
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}

function hold(file: string, token: string, onLost: () => void, heartbeatMs: number): () => void {
  held.add(file);
  const beat = setInterval(() => {
    if (!stillHeld(file, token)) {
      // Another writer holds it now (or it is gone): touching it would keep that writer's lock alive.
      clearInterval(beat);
      onLost();
      return;
    }
    const t = new Date();
    try {
      utimesSync(file, t, t);
    } catch {
      // The directory is gone or read-only: writing the trail fails too, and says so.
    }
  }, heartbeatMs);
  beat.unref();
  return () => {
    clearInterval(beat);
    held.delete(file);
    // Only its own lock: one another writer took over stays.
    if (stillHeld(file, token)) rmSync(file, { force: true });
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

function isStale(holder: Holder, touched: number, now: number): boolean {
  if (holder.host === hostname()) return !isLive(holder.pid);
  return now - touched > STALE_MS;
}

function isLive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
