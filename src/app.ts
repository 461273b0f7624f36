// The HTTP app: fastify with the edge checks, the gateway's own routes and the proxy, around a Gateway.
import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { STATUS_CODES, type Server, type ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions } from 'node:tls';
import cookie from '@fastify/cookie';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { ERRORS, GatewayError, type ErrorCode } from './errors.js';
import { createGateway, type Gateway, type GatewayOverrides } from './gateway.js';
import { HSTS, installEdge, type AnsweredRequest } from './http/edge.js';
import { errorReply, installErrorHandler } from './http/error-handler.js';
import { gatewayRoutes } from './http/gateway-routes.js';
import { messageLanguage } from './http/pages.js';
import { readPeerCertificate } from './http/peer-certificates.js';
import { proxyRoutes } from './http/proxy-routes.js';
import { requestLogger } from './log.js';
import { logConnection } from './stores/kv-store.js';
import { pemCrls } from './mechanisms/certificates.js';
import { newId } from './mechanisms/random.js';
import type { Messages } from './ui/i18n.js';

export type AppOverrides = Omit<GatewayOverrides, 'onCrlChange' | 'auditWriter'>;

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway behind the app (the demo issues its enrolment codes with it; tests inspect it). */
    gateway: Gateway;
  }
}

const UPSTREAM_ERRORS: Partial<Record<ErrorCode, 'unavailable' | 'timeout' | 'busy'>> = {
  GW_ERR_UPSTREAM_UNAVAILABLE: 'unavailable',
  GW_ERR_UPSTREAM_TIMEOUT: 'timeout',
  GW_ERR_PORTAL_BUSY: 'busy',
};

/**
 * Key ages in `keys status` and the report count from when a gateway first ran with each key: they are noted in the
 * store. What in the store's settings weakens the gateway (an evicting maxmemory-policy) goes to the log.
 *
 * Both each time the store becomes ready (KvStore.onReady), in the background: a store that is down at start must not
 * hold the gateway back, however long it takes to come up, and after a failover or a restart the server may be set
 * otherwise, or empty. One check at a time. A warning is logged when the store's warnings differ from those last
 * logged, not again on each reconnection. Returns the function that stops the checks (when the app closes).
 */
function checkStoreWhenReady(gateway: Gateway, log: FastifyBaseLogger): () => void {
  let stopped = false;
  let logged = '[]';
  let queue = Promise.resolve();
  const check = async () => {
    if (stopped) return;
    try {
      await gateway.admin.noteKeys();
    } catch (err) {
      // The next reconnection tries again.
      if (!stopped) log.warn({ err }, 'could not note the configured keys in the store');
    }
    const warnings = await gateway.kv.warnings().catch(() => null);
    if (stopped || warnings === null || JSON.stringify(warnings) === logged) return;
    logged = JSON.stringify(warnings);
    for (const w of warnings) log.warn(w);
  };
  const off = gateway.kv.onReady(() => {
    queue = queue.then(check);
  });
  return () => {
    stopped = true;
    off();
  };
}

/** Each answered request to metrics and, with audit.requests, to the audit trail (who, device, what, rule, answer). */
function answered(gateway: Gateway): (r: AnsweredRequest) => void {
  const { metrics, audit } = gateway;
  const auditRequests = gateway.config.audit.requests && audit !== null;
  return (r) => {
    metrics.request(r.access?.rule, r.access?.verdict, r.status, r.ms / 1000);
    if (auditRequests && r.access) {
      const a = r.access;
      audit.append({ kind: 'request', pid: a.pid, device: a.device, ip: r.ip, method: r.method, path: r.path, rule: a.rule, verdict: a.verdict, status: r.status, ms: r.ms });
    }
  };
}

/**
 * A whole HTTP answer for a request the server could not read: the error's code as JSON, HSTS, no keep-alive. Its
 * message is in ui.defaultLanguage (the request's Accept-Language is not read), with its language said as a JSON
 * error's is.
 */
function rawErrorAnswer(code: ErrorCode, messages: Messages): string {
  const ui = messages.forRequest(undefined);
  const message = ui.t(`error.${code}`);
  const body = JSON.stringify({ error: code, message });
  const status = ERRORS[code].status;
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nstrict-transport-security: ${HSTS}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-language: ${messageLanguage(ui, message)}\r\n` +
    `x-content-type-options: nosniff\r\ncache-control: no-store\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

/**
 * Closes each connection whose client takes nothing of its answer for `ms` (portal.timeoutSeconds, as an upload that
 * sends nothing is cut off): answer bytes wait to go out, and none has gone since. Such a client would hold its
 * answer's portal connection for as long as it keeps its own open (the portal's timeout does not run while the
 * browser is not reading), and a few hundred of them every connection to the portal, leaving everybody else's
 * requests waiting. Checked every second over the open connections: nothing per request. Returns the function that
 * stops the checks.
 */
function closeStalledReaders(server: Server, tls: boolean, ms: number): () => void {
  // Per connection: the answer bytes gone out (written and taken off the socket) at the last change, and when.
  const seen = new Map<Socket, { out: number; since: number }>();
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    seen.set(socket, { out: 0, since: performance.now() });
    socket.once('close', () => seen.delete(socket));
  });
  const timer = setInterval(() => {
    const now = performance.now();
    for (const [socket, s] of seen) {
      const out = socket.bytesWritten - socket.writableLength;
      if (socket.writableLength === 0 || out !== s.out) {
        s.out = out;
        s.since = now;
      } else if (now - s.since >= ms) socket.destroy();
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/** Request ids for log correlation: a random instance prefix and a counter (cheap, unique per instance). */
function requestIds(): () => string {
  const instance = newId().slice(0, 8);
  let n = 0;
  return () => `${instance}-${(++n).toString(36)}`;
}

/**
 * TLS settings of the gateway's own listener; with device CAs, clients may present a certificate (never required).
 * The CAs are those the gateway read at start (Gateway.deviceCas), not the file again: were it edited since, TLS
 * would trust other CAs than the gateway checks devices against.
 */
function tlsOptions(config: Config, deviceCas: readonly X509Certificate[] | null): SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean; minVersion: 'TLSv1.2' } {
  const tls = config.server.tls!;
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    minVersion: 'TLSv1.2',
    ...(deviceCas
      ? {
          requestCert: true,
          // Unverified certificates are not refused at the handshake: the request goes on as an unmanaged device.
          rejectUnauthorized: false,
          ca: deviceCas.map((ca) => ca.toString()),
          ...(config.devices.crlFile ? { crl: deviceCrls(config.devices.crlFile) } : {}),
        }
      : {}),
  };
}

/**
 * The CRLs of devices.crlFile one by one (the root CA's and an intermediate's, or those of two device CAs): given the
 * file as one buffer, TLS reads its first CRL only, and refuses the certificates of the other CAs for want of theirs.
 */
function deviceCrls(file: string): string[] {
  const crls = pemCrls(readFileSync(file, 'utf8'));
  // A file caught mid-write: the reload fails (and is reported), rather than TLS going on without a CRL.
  if (!crls.length) throw new Error('no X509 CRL in file');
  return crls;
}

export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  let app: FastifyInstance;
  // The CRL is also given to TLS: a new handshake with a revoked certificate is not authorised.
  const gateway = await createGateway(config, { ...overrides, onCrlChange: () => config.server.tls && (app.server as HttpsServer).setSecureContext(tlsOptions(config, gateway.deviceCas)) });
  try {
    app = await appAround(config, gateway);
  } catch (err) {
    // The gateway holds the audit trail's lock and the store's connection: given back as the app's close gives them
    // back (its onClose hook), or the next start (a restart loop) would wait for that lock to go stale.
    await gateway.close();
    throw err;
  }
  return app;
}

/** The HTTP app around a gateway already built. */
async function appAround(config: Config, gateway: Gateway): Promise<FastifyInstance> {
  const answerError = errorReply(gateway.ui, config.portal.login.page, (code) => {
    const kind = UPSTREAM_ERRORS[code];
    if (kind) gateway.metrics.upstreamError(kind);
  });
  // Headers (and a TLS handshake) come within the whole request's time too: Node waits out the longer of its two
  // timers before cutting a request.
  const headersTimeoutMs = Math.min(config.server.headersTimeoutSeconds, config.server.requestTimeoutSeconds) * 1000;
  const app = Fastify({
    loggerInstance: gateway.logger as FastifyBaseLogger,
    // Request ids are ours; a client-chosen id never reaches the logs.
    genReqId: requestIds(),
    childLoggerFactory: (logger, bindings, opts) => requestLogger(logger as Logger, bindings, opts) as FastifyBaseLogger,
    requestIdHeader: false,
    // Forwarding headers are read only from configured proxies (http/edge.ts), never by fastify itself.
    trustProxy: false,
    // One access line per request is written by http/edge.ts instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Slow or huge requests cannot hold the gateway (SECURITY R53, C-36, C-37). The bodies the gateway reads itself
    // (its forms and JSON calls; routes that need more say so) are small; bodies to the portal stream through and
    // have server.maxBodyBytes.
    bodyLimit: 16 * 1024,
    requestTimeout: config.server.requestTimeoutSeconds * 1000,
    keepAliveTimeout: config.server.keepAliveTimeoutSeconds * 1000,
    // Requests that come on a connection still open while the gateway shuts down get the gateway's own 503
    // (http/edge.ts), not fastify's.
    return503OnClosing: false,
    // A malformed escape (`/%zz`) is refused by the router before any hook runs: answered as the gateway's own
    // canonicalisation refuses a path (http/proxy-routes.ts), with its page and HSTS, the path not echoed, and logged
    // and counted by the edge as any request (fastify calls this only for requests, once the edge is installed).
    frameworkErrors: (error, req, reply) => {
      answerError(new GatewayError('GW_ERR_BAD_PATH', error.code), req, reply.header('strict-transport-security', HSTS));
      edge.unrouted(req, reply);
    },
    // A request Node cannot read (headers too large, malformed, too slow to arrive) is answered before any hook: the
    // gateway's code and HSTS, the connection closed. Not when it came pipelined behind one whose answer has begun
    // (an event stream, say): written there, it would land inside that answer's body.
    clientErrorHandler: (err, socket) => {
      const { code } = err as NodeJS.ErrnoException;
      if (code === 'ECONNRESET' || socket.destroyed) return;
      const refusal: ErrorCode = code === 'HPE_HEADER_OVERFLOW' ? 'GW_ERR_HEADERS_TOO_LARGE' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'GW_ERR_REQUEST_TIMEOUT' : 'GW_ERR_BAD_REQUEST';
      gateway.metrics.request(undefined, undefined, ERRORS[refusal].status, 0);
      const answering = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (socket.writable && !answering?.headersSent) socket.write(rawErrorAnswer(refusal, gateway.ui.messages));
      // A request whose body was still coming (server.requestTimeoutSeconds passed, its framing broke) fails with this
      // refusal, not as a body its client broke off: what reads it logs the code the client was sent.
      answering?.req.destroy(new GatewayError(refusal, (err as Error).message));
      socket.destroy();
    },
    // Node checks the header and request timeouts on this interval (its default, 30 s, would let them run over). A
    // request without Host is left to the edge hook (421 with the gateway's page and HSTS), not answered by Node. A TLS
    // handshake is held to the headers' timeout too (Node's default is 120 s): a slow client is slow before either.
    ...(config.server.tls
      ? {
          https: {
            ...tlsOptions(config, config.devices.caFile !== undefined ? gateway.deviceCas : null),
            handshakeTimeout: headersTimeoutMs,
            maxHeaderSize: config.server.maxHeaderBytes,
            connectionsCheckingInterval: 1000,
            requireHostHeader: false,
          },
        }
      : { http: { maxHeaderSize: config.server.maxHeaderBytes, connectionsCheckingInterval: 1000, requireHostHeader: false } }),
  });
  app.server.headersTimeout = headersTimeoutMs;
  // Every header is read, however many (server.maxHeaderBytes bounds them): Node would drop those past the 2000th
  // unseen, so a second Host, or a header the proxy in front passes to the portal (forward-auth), would escape the checks.
  app.server.maxHeadersCount = 0;
  // A device's certificate is read as its connection's handshake ends, the only time Node gives its chain.
  if (config.server.tls && config.devices.caFile !== undefined) app.server.on('secureConnection', readPeerCertificate);
  const stopStallChecks = closeStalledReaders(app.server, config.server.tls !== undefined, config.portal.timeoutSeconds * 1000);
  // CONNECT never reaches fastify (Node gives its socket to a `connect` listener, or drops it unanswered): answered
  // as other methods the gateway does not proxy are, and the connection closed.
  app.server.on('connect', (_req, socket: Duplex) => {
    socket.on('error', () => {});
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nstrict-transport-security: ${HSTS}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  });
  // So does an Expect other than 100-continue, which Node answers itself (417) before any hook.
  app.server.on('checkExpectation', (_req, res: ServerResponse) => {
    res.writeHead(417, { 'strict-transport-security': HSTS, 'content-length': 0, connection: 'close' }).end();
  });
  // Cookies are read by the edge hook (http/edge.ts), not by a hook of the plugin's own.
  await app.register(cookie, { hook: false });
  app.decorate('gateway', gateway);
  // Shutting down: new requests are refused, and answers still going out close their connection, so keep-alive
  // clients do not hold the close open.
  let closing = false;
  let stopStoreChecks = () => {};
  let stopConnectionLog = () => {};
  const edge = installEdge(app, {
    hosts: config.server.hosts,
    trustedProxies: config.server.trustedProxies,
    forwardedHeader: config.server.forwardedHeader,
    // Health checks address the gateway by IP, the portal fetches the JWKS, and a forward-auth proxy (Traefik) asks
    // with its own Host; the endpoint checks X-Forwarded-Host itself.
    anyHost: ['health/live', 'health/ready', 'jwks.json', 'forward-auth'].map((p) => `${config.server.prefix}/${p}`),
    answered: answered(gateway),
    closing: () => closing,
    live: `${config.server.prefix}/health/live`,
  });
  installErrorHandler(app, answerError);
  await app.register(async (scope) => gatewayRoutes(scope, gateway));
  await app.register(async (scope) => proxyRoutes(scope, gateway));
  app.addHook('preClose', (done) => {
    closing = true;
    stopStoreChecks();
    stopConnectionLog();
    done();
  });
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onReady', async () => {
    stopStoreChecks = checkStoreWhenReady(gateway, app.log);
    stopConnectionLog = logConnection(gateway.kv, app.log);
  });
  app.addHook('onClose', () => {
    stopStallChecks();
    return gateway.close();
  });
  return app;
}
