// The audit trail a process writes, as configured: the file journal (locked to this process) and the Redis mirror.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { VERSION } from '../metrics/build-info.js';
import { AuditError } from './audit-error.js';
import { AuditLog } from './audit-log.js';
import { lockAuditDir } from './dir-lock.js';
import { AuditFileSink, auditFiles } from './file-sink.js';
import { RedisAuditSink } from './redis-sink.js';
import { parseSigningKey } from './signing-key.js';

export interface OpenAuditOptions {
  clock: Clock;
  /** "gateway" writes audit.dir; "admin" (the admin CLI) writes its own chain in audit.dir/admin. */
  writer: 'gateway' | 'admin';
  /** The store's Redis client, for the stream mirror. */
  redis: Redis | Cluster | null;
  onError: (err: AuditError) => void;
  /** Told when the start waits for a lock left by a crashed writer to go stale. */
  onWait?: (message: string) => void;
  /** Gives up waiting for the directory's lock (a stop requested while starting). */
  signal?: AbortSignal;
}

/** The admin commands' trail: this directory in the gateway's. */
export const ADMIN_TRAIL = 'admin';

/**
 * Whether an admin directory holds a trail: an admin command takes its directory before it has a record to write, and
 * one that stops first (wrong usage, a store it cannot reach) leaves it without audit files, which is no trail yet.
 * An audit file there, even an emptied one, makes it a trail.
 */
export function adminTrailStarted(dir: string): boolean {
  return existsSync(dir) && auditFiles(dir).length > 0;
}

/** The audit directory a writer uses. */
export function auditDir(config: Config, writer: 'gateway' | 'admin'): string {
  return writer === 'admin' ? join(config.audit.dir, ADMIN_TRAIL) : config.audit.dir;
}

/**
 * Why this process's user could not keep the audit trail in audit.dir, or null: the directory (and its admin trail's,
 * when there is one) must be writable, or, while it does not exist, the nearest directory above it that does, where it
 * would be made. For `config check`, which may run as another user than the gateway: a warning, not a problem.
 */
export function auditDirWarning(config: Config): string | null {
  if (!config.audit.enabled) return null;
  const dir = config.audit.dir;
  const user = typeof process.getuid === 'function' ? `this user (uid ${process.getuid()})` : 'this user';
  const remedy = 'the gateway cannot start, nor an admin command write its record, unless the user they run as can write it (uid 1000 in the container image: chown the directory to it)';
  let at = dir;
  for (;;) {
    let stats;
    try {
      stats = statSync(at, { throwIfNoEntry: false });
    } catch {
      stats = undefined; // ENOTDIR: a file above it, found further up
    }
    if (stats && !stats.isDirectory()) return `audit.dir ${dir}: ${at} is a file, not a directory; the gateway cannot start, nor an admin command write its record: set audit.dir to a directory`;
    if (stats) break;
    const up = dirname(at);
    if (up === at) return null;
    at = up;
  }
  const unwritable = (d: string) => {
    try {
      accessSync(d, constants.W_OK | constants.X_OK);
      return false;
    } catch {
      return true;
    }
  };
  if (at !== dir) return unwritable(at) ? `audit.dir ${dir}: does not exist, and ${at}, where it would be made, is not writable by ${user}; ${remedy}` : null;
  if (unwritable(dir)) return `audit.dir ${dir}: not writable by ${user}; ${remedy}`;
  const admin = join(dir, ADMIN_TRAIL);
  if (existsSync(admin) && unwritable(admin)) return `audit.dir ${dir}: its admin trail ${admin} is not writable by ${user}; ${remedy}`;
  return null;
}

/** The open trail and its closer (final checkpoint, then the lock released), or null when auditing is off. */
export async function openAudit(config: Config, opts: OpenAuditOptions): Promise<{ log: AuditLog; close: () => Promise<void> } | null> {
  const a = config.audit;
  if (!a.enabled) return null;
  const dir = auditDir(config, opts.writer);
  const unusable = (err: unknown) => unusableAuditDir(err, config.audit.dir, dir) ?? err;
  let journal: AuditFileSink;
  try {
    journal = new AuditFileSink({ dir, maxBytes: a.maxFileBytes });
  } catch (err) {
    throw unusable(err);
  }
  // Set once open: should another writer take the lock over, this process stops writing rather than fork its chain.
  let opened: AuditLog | undefined;
  // Admin commands wait for one another; a second gateway on the same directory is refused at once (unless the lock
  // looks left by a crash on this host: then it waits for that lock to go stale).
  const lock = await lockAuditDir(dir, {
    waitMs: opts.writer === 'admin' ? 10_000 : 0,
    onLost: () => opened?.abandon(new AuditError('AUDIT_LOCK_LOST', dir)),
    onWait: opts.onWait,
    signal: opts.signal,
  }).catch((err: unknown) => {
    throw unusable(err);
  });
  try {
    const source = opts.writer === 'admin' ? `${hostname()}/admin` : hostname();
    const log = new AuditLog({
      journal,
      mirrors: a.redisStream.enabled && opts.redis ? [new RedisAuditSink(opts.redis, { key: a.redisStream.key, source, maxLen: a.redisStream.maxLen })] : [],
      signingKey: parseSigningKey(a.signingKey!),
      keyId: a.keyId,
      clock: opts.clock,
      checkpointEvery: a.checkpointEvery,
      checkpointIntervalMs: a.checkpointIntervalSeconds * 1000,
      onError: opts.onError,
      owned: lock.held,
    });
    opened = log;
    // A trail with no record cannot be told from a deleted one: a gateway's begins with its start, signed at once, so
    // that the trail of one nobody has signed in to yet verifies (and a crash after it leaves nothing unsigned).
    if (opts.writer === 'gateway') {
      log.append({ kind: 'gateway_started', version: VERSION });
      log.seal();
    }
    return {
      log,
      close: async () => {
        try {
          await log.close();
        } finally {
          lock.release();
        }
      },
    };
  } catch (err) {
    lock.release();
    throw unusable(err);
  }
}

/** The audit directory (or a file in it) cannot be made, opened or written: the gateway cannot keep its trail. */
export class AuditDirUnusable extends Error {
  override readonly name = 'AuditDirUnusable';
}

/** What the operator does about each failure of the file system, by its code. */
const DIR_PROBLEMS: Record<string, [problem: string, remedy: (uid: string) => string]> = {
  EACCES: ['permission denied', (uid) => `the directory must be writable by the user the gateway and its admin commands run as (${uid}; uid 1000 in the container image): chown it to that user (chown -R 1000:1000 on the host's directory of a bind mount), or set audit.dir to a directory it can write`],
  EPERM: ['operation not permitted', (uid) => `the directory must be writable by the user the gateway and its admin commands run as (${uid}; uid 1000 in the container image): chown it to that user, or set audit.dir to a directory it can write`],
  EROFS: ['read-only file system', () => 'mount a writable volume at audit.dir (the container image runs on a read-only root file system), or set audit.dir to a directory on a writable one'],
  ENOTDIR: ['a part of the path is a file, not a directory', () => 'set audit.dir to a directory, or move the file out of the way'],
  EEXIST: ['a part of the path is a file, not a directory', () => 'set audit.dir to a directory, or move the file out of the way'],
  ENOSPC: ['no space left on the device', () => 'free space there or give audit.dir a larger volume'],
  EDQUOT: ['disk quota exceeded', () => 'free space there or give audit.dir a larger volume'],
};

/**
 * An error of the file system from opening a trail, told as the option it concerns (audit.dir), the path and its
 * problem, and what to do; null for any other error (a lock held by another writer, a bad key: said as they are).
 */
export function unusableAuditDir(err: unknown, configured: string, dir: string): AuditDirUnusable | null {
  const e = err as NodeJS.ErrnoException;
  const known = typeof e?.code === 'string' ? DIR_PROBLEMS[e.code] : undefined;
  if (!known) return null;
  const [problem, remedy] = known;
  const uid = typeof process.getuid === 'function' ? `this one is uid ${process.getuid()}` : 'this one';
  const trail = dir === configured ? `audit.dir ${configured}` : `audit.dir ${configured} (the admin commands' trail in ${dir})`;
  return new AuditDirUnusable(`${trail}: cannot ${e.syscall ?? 'write'} ${e.path ?? dir}: ${problem} (${e.code}); ${remedy(uid)}`, { cause: err });
}
