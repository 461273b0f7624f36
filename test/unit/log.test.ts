// The per-request logger: lines carry the request id; nothing is written below the level.
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, requestLogger } from '../../src/log.js';

function sink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

t.test('request logger: lines carry the request id and its bindings, below the level nothing is written', async (t) => {
  const { lines, stream } = sink();
  const log = requestLogger(createLogger('warn', stream), { reqId: 'r-1' }, {});
  log.info({ path: '/x' }, 'not written');
  log.debug('not written either');
  t.equal(log.isLevelEnabled('info'), false);
  t.equal(log.isLevelEnabled('error'), true);
  log.error({ code: 'GW_ERR_INTERNAL' }, 'request failed');
  log.child({ part: 'jar' }).warn('from a child');
  await new Promise((r) => setImmediate(r));
  t.same(
    lines.map((l) => [l.msg, l.reqId, l.code ?? l.part]),
    [
      ['request failed', 'r-1', 'GW_ERR_INTERNAL'],
      ['from a child', 'r-1', 'jar'],
    ],
  );
});

t.test('request logger: a request with a level of its own gets that level', async (t) => {
  const { lines, stream } = sink();
  const log = requestLogger(createLogger('warn', stream), { reqId: 'r-2' }, { level: 'debug' });
  log.debug('written at debug');
  await new Promise((r) => setImmediate(r));
  t.same(lines.map((l) => [l.msg, l.reqId]), [['written at debug', 'r-2']]);
});

t.test('a logged error keeps its type, message, stack and code, never what it was about', async (t) => {
  const { lines, stream } = sink();
  const parseError = Object.assign(new Error('Parse Error: Invalid header value char'), {
    code: 'HPE_INVALID_HEADER_TOKEN',
    rawPacket: Buffer.from('GET / HTTP/1.1\r\nCookie: PORTALSESSID=S3CRET\r\n'),
    data: 'Set-Cookie: PORTALSESSID=S3CRET',
  });
  createLogger('warn', stream).warn({ err: new AggregateError([parseError], 'connect failed') }, 'failed');
  createLogger('warn', stream).warn(parseError, 'failed');
  await new Promise((r) => setImmediate(r));
  t.equal(lines.length, 2);
  t.notOk(JSON.stringify(lines).includes('S3CRET'));
  const [aggregate, single] = lines.map((l) => l.err as Record<string, unknown>);
  t.same(Object.keys(single!).sort(), ['code', 'message', 'stack', 'type']);
  t.equal(single!.code, 'HPE_INVALID_HEADER_TOKEN');
  t.match(aggregate!.aggregateErrors, [{ code: 'HPE_INVALID_HEADER_TOKEN' }]);
});
