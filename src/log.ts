// Logger options: JSON lines, secrets redacted at known paths, requests logged by path only (never the query).
import pino, { type Logger, type LoggerOptions } from 'pino';

const REDACT = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.code',
  '*.token',
  '*.secret',
  '*.cookie',
  '*.authorization',
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
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
