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
