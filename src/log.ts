// Logger options: JSON lines, secrets redacted at known paths, requests logged by path only (never the query).
import { hostname } from 'node:os';
import pino, { type Logger, type LoggerOptions } from 'pino';

// Explicit paths, no leading wildcard: a '*.x' path makes pino run the redaction on every binding of every
// per-request child logger. The serializers below already keep headers and bodies out; these are a second net.
const SECRET_FIELDS = ['password', 'token', 'secret', 'cookie', 'authorization', 'body', 'headers'];
const REDACT = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `err.${f}`),
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    // "pid" in a line is the user's pseudonymous id: the process id is left out (one process per container).
    base: { hostname: hostname() },
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: {
      req: (req: { id?: string; method?: string; url?: string; socket?: { remoteAddress?: string } }) => ({
        id: req.id,
        method: req.method,
        // The query string may carry anything a client put there: it is not logged.
        path: req.url?.split('?')[0],
        ip: req.socket?.remoteAddress,
      }),
      res: (res: { statusCode?: number }) => ({ status: res.statusCode }),
      err: pino.stdSerializers.err,
    },
  };
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
}
