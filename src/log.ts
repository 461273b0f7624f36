// Logger options: JSON lines, secrets redacted at known paths, requests logged by path only (never the query).
import { hostname } from 'node:os';
import pino, { type Bindings, type ChildLoggerOptions, type Logger, type LoggerOptions } from 'pino';
import { GatewayError } from './errors.js';

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
      err: errorFields,
    },
  };
}

// What a logged error keeps besides its type, message and stack. Only these: errors also carry what they were about
// (undici's parse error the rest of the portal's answer, Set-Cookie included; Node's the raw request bytes).
const ERROR_FIELDS = ['code', 'status', 'statusCode', 'errno', 'syscall', 'retryAfterSeconds', 'sink', 'seq'] as const;

/**
 * The error serializer: pino's (type, message and stack with their causes) cut down to the fields above. A store
 * that failed (GW_ERR_STORE_UNAVAILABLE) is logged without the stack: its message says what the store answered, and
 * while the store is down every request that needs it fails, each with a line of its own.
 */
export function errorFields(err: Error): unknown {
  const full = pino.stdSerializers.err(err) as unknown;
  if (typeof full !== 'object' || full === null) return full;
  const kept = keptFields(full as Record<string, unknown>);
  if (err instanceof GatewayError && err.code === 'GW_ERR_STORE_UNAVAILABLE') delete kept.stack;
  return kept;
}

function keptFields(full: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = { type: full.type, message: full.message, stack: full.stack };
  for (const field of ERROR_FIELDS) if (full[field] !== undefined) kept[field] = full[field];
  if (Array.isArray(full.aggregateErrors)) kept.aggregateErrors = full.aggregateErrors.map((e) => (typeof e === 'object' && e !== null ? keptFields(e as Record<string, unknown>) : e));
  return kept;
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
}

type Write = (...args: unknown[]) => void;
const REPLY_FROM_FAILED = 'response errored';

/**
 * Fastify's logger of one request (its childLoggerFactory): the pino child that carries the request id is made when
 * the request first writes a line. Most requests write none below the info level, and making a child for every one
 * costs about 2 % of a proxied request.
 */
class RequestLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly childBindings: Bindings,
    private readonly opts: ChildLoggerOptions,
  ) {}

  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.childBindings, this.opts));
  }

  get level(): string {
    return this.parent.level;
  }

  isLevelEnabled(level: string): boolean {
    return this.parent.isLevelEnabled(level);
  }

  private write(level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: unknown[]): void {
    if (this.parent.isLevelEnabled(level)) (this.logger[level] as Write)(...args);
  }

  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.write('error', args);
  }
  warn(...args: unknown[]): void {
    // @fastify/reply-from's own line for each portal request that failed, with the error's stack: the error handler
    // logs every such failure once, in short (`request failed`), so an outage does not fill the log with stacks.
    this.write(args[1] === REPLY_FROM_FAILED ? 'debug' : 'warn', args);
  }
  info(...args: unknown[]): void {
    this.write('info', args);
  }
  debug(...args: unknown[]): void {
    this.write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.write('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, opts?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, opts);
  }

  bindings(): Bindings {
    return this.logger.bindings();
  }
}

/** fastify's childLoggerFactory; a request with a level of its own gets its child at once. */
export function requestLogger(parent: Logger, bindings: Bindings, opts: ChildLoggerOptions): Logger {
  return opts.level ? parent.child(bindings, opts) : (new RequestLogger(parent, bindings, opts) as unknown as Logger);
}
