// The HTTP app: fastify with the edge checks, the gateway's own routes and the proxy, around a Gateway.
import { readFileSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import cookie from '@fastify/cookie';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config/schema.js';
import { createGateway, type GatewayOverrides } from './gateway.js';
import { installEdge } from './http/edge.js';
import { installErrorHandler } from './http/error-handler.js';
import { gatewayRoutes } from './http/gateway-routes.js';
import { proxyRoutes } from './http/proxy-routes.js';
import { newId } from './mechanisms/random.js';

export type AppOverrides = Omit<GatewayOverrides, 'onCrlChange'>;

/** Request ids for log correlation: a random instance prefix and a counter (cheap, unique per instance). */
function requestIds(): () => string {
  const instance = newId().slice(0, 8);
  let n = 0;
  return () => `${instance}-${(++n).toString(36)}`;
}

/** TLS settings of the gateway's own listener; with a device CA, clients may present a certificate (never required). */
function tlsOptions(config: Config, clientCerts: boolean): SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean; minVersion: 'TLSv1.2' } {
  const tls = config.server.tls!;
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    minVersion: 'TLSv1.2',
    ...(clientCerts
      ? {
          requestCert: true,
          // Unverified certificates are not refused at the handshake: the request goes on as an unmanaged device.
          rejectUnauthorized: false,
          ca: readFileSync(config.devices.caFile!),
          ...(config.devices.crlFile ? { crl: readFileSync(config.devices.crlFile) } : {}),
        }
      : {}),
  };
}

export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  // The CRL is also given to TLS: a new handshake with a revoked certificate is not authorised.
  const gateway = createGateway(config, { ...overrides, onCrlChange: () => config.server.tls && (app.server as HttpsServer).setSecureContext(tlsOptions(config, true)) });
  const app = Fastify({
    loggerInstance: gateway.logger as FastifyBaseLogger,
    // Request ids are ours; a client-chosen id never reaches the logs.
    genReqId: requestIds(),
    requestIdHeader: false,
    // Forwarding headers are read only from configured proxies (http/edge.ts), never by fastify itself.
    trustProxy: false,
    // One access line per request is written by http/edge.ts instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Slow or huge requests cannot hold the gateway (SECURITY R53, C-36, C-37).
    requestTimeout: config.server.requestTimeoutSeconds * 1000,
    keepAliveTimeout: config.server.keepAliveTimeoutSeconds * 1000,
    return503OnClosing: true,
    // Node checks the header and request timeouts on this interval (its default, 30 s, would let them run over).
    ...(config.server.tls
      ? { https: { ...tlsOptions(config, config.devices.caFile !== undefined), maxHeaderSize: config.server.maxHeaderBytes, connectionsCheckingInterval: 1000 } }
      : { http: { maxHeaderSize: config.server.maxHeaderBytes, connectionsCheckingInterval: 1000 } }),
  });
  app.server.headersTimeout = config.server.headersTimeoutSeconds * 1000;
  await app.register(cookie);
  installEdge(app, { hosts: config.server.hosts, trustedProxies: config.server.trustedProxies, anyHostPrefix: `${config.server.prefix}/health/` });
  installErrorHandler(app, gateway.ui, config.portal.login.page);
  await app.register(async (scope) => gatewayRoutes(scope, gateway));
  await app.register(async (scope) => proxyRoutes(scope, gateway));
  // Shutting down: answers still going out close their connection, so keep-alive clients do not hold the close open.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onClose', () => gateway.close());
  return app;
}
