// The audit trail a process writes, as configured: the file journal (locked to this process) and the Redis mirror.
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
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

/** The open trail and its closer (final checkpoint, then the lock released), or null when auditing is off. */
export async function openAudit(config: Config, opts: OpenAuditOptions): Promise<{ log: AuditLog; close: () => Promise<void> } | null> {
  const a = config.audit;
  if (!a.enabled) return null;
  const dir = auditDir(config, opts.writer);
  const journal = new AuditFileSink({ dir, maxBytes: a.maxFileBytes });
  // Set once open: should another writer take the lock over, this process stops writing rather than fork its chain.
  let opened: AuditLog | undefined;
  // Admin commands wait for one another; a second gateway on the same directory is refused at once (unless the lock
  // looks left by a crash on this host: then it waits for that lock to go stale).
  const lock = await lockAuditDir(dir, {
    waitMs: opts.writer === 'admin' ? 10_000 : 0,
    onLost: () => opened?.abandon(new AuditError('AUDIT_LOCK_LOST', dir)),
    onWait: opts.onWait,
    signal: opts.signal,
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
    throw err;
  }
}
