// A mirror of the audit chain in a Redis stream (XADD key MAXLEN ~ n * source <writer> line <json>): a copy off the
// gateway's disk. Several writers (gateway instances, the admin CLI) share one stream; `source` tells their chains apart.
import type { Cluster, Redis } from 'ioredis';
import { AuditError } from './audit-error.js';
import type { AuditMirror } from './audit-log.js';

export interface RedisAuditSinkOptions {
  /** Stream key (the client's keyPrefix, if any, is added by ioredis). */
  key: string;
  /** Which chain the lines belong to (e.g. host name, or host name/admin). */
  source: string;
  /** Approximate number of lines the stream keeps (Redis trims whole macro nodes, hence "~"). */
  maxLen: number;
  /** Lines waiting for Redis beyond this are dropped and reported, so a slow Redis cannot hold memory. */
  maxPending?: number;
}

/**
 * Lines are sent in order on the client's one connection. The client should fail fast (commandTimeout, no
 * offline queue, as the gateway's Redis clients do): a failed line is reported, never retried, and never delays the
 * file. close() of the log waits for lines in flight, so without a command timeout a stalled Redis stalls shutdown.
 */
export class RedisAuditSink implements AuditMirror {
  readonly name = 'redis';
  private pending = 0;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly opts: RedisAuditSinkOptions,
  ) {}

  async write(line: string): Promise<void> {
    if (this.pending >= (this.opts.maxPending ?? 10_000)) throw new AuditError('AUDIT_MIRROR_FAILED', 'too many lines waiting for Redis', { sink: this.name });
    this.pending++;
    try {
      await this.redis.xadd(this.opts.key, 'MAXLEN', '~', this.opts.maxLen, '*', 'source', this.opts.source, 'line', line);
    } finally {
      this.pending--;
    }
  }
}
