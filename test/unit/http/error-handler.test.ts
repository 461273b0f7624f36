// What the error handler logs: a portal failure in one short line, any other fault with its stack.
import { Writable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import t from 'tap';
import { GatewayError } from '../../../src/errors.js';
import { errorReply } from '../../../src/http/error-handler.js';
import type { UiSettings } from '../../../src/http/pages.js';
import { createLogger } from '../../../src/log.js';

/** The lines the handler logs for `error`, on a request whose answer was already sent (nothing else is done). */
async function logged(error: Error): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      cb();
    },
  });
  const request = { log: createLogger('info', stream) } as unknown as FastifyRequest;
  errorReply({ prefix: '/_mfa' } as UiSettings, '/login', () => {})(error as GatewayError, request, { sent: true } as FastifyReply);
  await new Promise((r) => setImmediate(r));
  return lines;
}

const system = (message: string, code: string) => Object.assign(new Error(message), { code });

t.test('a portal failure: one warning with the code and what went wrong, no stack', async (t) => {
  const refused = new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', 'portal: connect', { cause: system('connect ECONNREFUSED 10.0.0.5:8080', 'ECONNREFUSED') });
  const everyAddress = new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', 'portal', { cause: Object.assign(new AggregateError([], ''), { code: 'ECONNREFUSED' }) });
  const cases: [Error, string, string][] = [
    [refused, 'GW_ERR_UPSTREAM_UNAVAILABLE', 'connect ECONNREFUSED 10.0.0.5:8080'],
    [everyAddress, 'GW_ERR_UPSTREAM_UNAVAILABLE', 'ECONNREFUSED'],
    [new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', 'portal answered with status 600'), 'GW_ERR_UPSTREAM_UNAVAILABLE', 'portal answered with status 600'],
    // undici's errors, as a portal answer streaming through breaks off.
    [system('Body Timeout Error', 'UND_ERR_BODY_TIMEOUT'), 'GW_ERR_UPSTREAM_TIMEOUT', 'Body Timeout Error (UND_ERR_BODY_TIMEOUT)'],
    [system('other side closed', 'UND_ERR_SOCKET'), 'GW_ERR_UPSTREAM_UNAVAILABLE', 'other side closed (UND_ERR_SOCKET)'],
  ];
  for (const [error, code, reason] of cases) {
    const lines = await logged(error);
    t.same(lines.map(({ level, msg, code, reason }) => ({ level, msg, code, reason })), [{ level: 40, msg: 'request failed', code, reason }], reason);
    t.notOk('err' in lines[0]!, 'no error object, no stack');
  }
});

t.test('any other failure: an error with its stack', async (t) => {
  for (const [error, code] of [
    [new TypeError("Cannot read properties of undefined (reading 'x')"), 'GW_ERR_INTERNAL'],
    [new GatewayError('GW_ERR_INTERNAL', 'a broken invariant'), 'GW_ERR_INTERNAL'],
  ] as const) {
    const [line, ...rest] = await logged(error);
    t.same(rest, []);
    t.match(line, { level: 50, msg: 'request failed', code, err: { message: error.message, stack: /\n +at / } });
  }
});
