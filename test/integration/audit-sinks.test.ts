// The audit trail's Redis stream mirror on a real Redis: same lines as the file, and never in the file's way.
import t from 'tap';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisAuditSink } from '../../src/audit/redis-sink.js';
import { verifyAuditText } from '../../src/audit/verify-audit.js';
import { linesOf, openLog, publicKey, readSegments, tempDir, textOf } from '../unit/audit/helpers.js';
import { startOwnRedis, testRedis } from '../helpers/redis.js';

/** A client that fails fast, as the gateway's are: no offline queue, a command timeout, reconnecting by itself. */
async function client(url: string): Promise<Redis> {
  const redis = new Redis(url, {
    keyPrefix: `it-${randomBytes(4).toString('hex')}:`,
    commandTimeout: 300,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: (times) => Math.min(times * 100, 1000),
  });
  redis.on('error', () => {});
  if (redis.status !== 'ready') await once(redis, 'ready');
  return redis;
}

/** The `line` field of every stream entry, in order. */
const streamLines = async (redis: Redis, key: string) =>
  (await redis.xrange(key, '-', '+')).map(([, fields]) => (fields[0] === 'source' && fields[1] === 'test' && fields[2] === 'line' ? fields[3]! : `unexpected fields ${fields.join(' ')}`));
const fileLines = (dir: string) => readSegments(dir).flatMap((s) => linesOf(s.text));
const event = (i: number) => ({ name: 'session_started', pid: `p${i}`, ip: '198.51.100.4' });

t.test('the Redis stream holds the same lines as the file, across rotation, and verifies too', async (t) => {
  const server = await testRedis();
  const redis = await client(server.url);
  t.teardown(async () => {
    redis.disconnect();
    await server.stop();
  });
  const dir = tempDir(t);
  const { log, errors } = openLog(dir, { maxBytes: 1000, checkpointEvery: 5, mirrors: [new RedisAuditSink(redis, { key: 'audit', source: 'test', maxLen: 10_000 })] });
  for (let i = 1; i <= 12; i++) log.append(event(i));
  await log.close();

  t.same(errors, []);
  t.ok(readSegments(dir).length > 2, 'rotated');
  const stream = await streamLines(redis, 'audit');
  t.same(stream, fileLines(dir), 'line for line, in order');
  const report = verifyAuditText([{ file: 'redis:audit', text: textOf(stream) }], publicKey);
  t.same([report.ok, report.problems, report.lastSealedSeq], [true, [], 15]);
});

t.test('a stopped Redis does not stop the file; every missed line is reported', async (t) => {
  const server = await startOwnRedis();
  const redis = await client(server.url);
  let stopped = false;
  t.teardown(async () => {
    redis.disconnect();
    if (!stopped) await server.stop();
  });
  const dir = tempDir(t);
  const { log, errors } = openLog(dir, { checkpointEvery: 100, mirrors: [new RedisAuditSink(redis, { key: 'audit', source: 'test', maxLen: 10_000 })] });
  for (let i = 1; i <= 3; i++) log.append(event(i));
  await new Promise((r) => setImmediate(r));
  t.equal((await streamLines(redis, 'audit')).length, 3, 'mirrored while Redis is up');

  await server.stop();
  stopped = true;
  for (let i = 4; i <= 8; i++) log.append(event(i));
  await log.close();

  t.same(errors.map((e) => [e.code, e.sink]), Array(6).fill(['AUDIT_MIRROR_FAILED', 'redis']), 'five events and the final checkpoint, each reported');
  t.same(errors.map((e) => e.seq), [4, 5, 6, 7, 8, 9]);
  t.same(log.counts, { appended: 8, refused: 0, fileFailures: 0, mirrorFailures: 6 });
  const file = fileLines(dir);
  t.equal(file.length, 9, 'every record in the file');
  const report = verifyAuditText(readSegments(dir), publicKey);
  t.same([report.ok, report.problems, report.lastSealedSeq], [true, [], 9]);
});
