// The Redis stream mirror without a Redis: the command it sends and its bound on waiting lines.
import t from 'tap';
import type { Redis } from 'ioredis';
import { RedisAuditSink } from '../../../src/audit/redis-sink.js';

t.test('redis sink: XADD with approximate trimming, and a bound on lines waiting', async (t) => {
  const calls: unknown[][] = [];
  let answer = (): Promise<string> => Promise.resolve('1-0');
  const fake = { xadd: (...args: unknown[]) => (calls.push(args), answer()) } as unknown as Redis;
  const sink = new RedisAuditSink(fake, { key: 'audit', source: 'gw-1', maxLen: 5000, maxPending: 2 });
  await sink.write('{"seq":1}');
  t.same(calls, [['audit', 'MAXLEN', '~', 5000, '*', 'source', 'gw-1', 'line', '{"seq":1}']]);

  answer = () => new Promise(() => {});
  void sink.write('a');
  void sink.write('b');
  await t.rejects(sink.write('c'), { code: 'AUDIT_MIRROR_FAILED', sink: 'redis' }, 'a third waiting line is dropped');
  t.equal(calls.length, 3, 'and never sent');
});
