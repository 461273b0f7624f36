// Composition root: wires clock, logger, store, portal client, services and the HTTP layer into one app.
import { readFileSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import cookie from '@fastify/cookie';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { decodeKey, policyConfig } from './config/load.js';
import { compilePolicy } from './domain/policy.js';
import { installEdge } from './http/edge.js';
import { crlSerials, parseCertificates } from './mechanisms/certificates.js';
import { WatchedFile } from './mechanisms/watched-file.js';
import { AccessService } from './services/access.js';
import { DeviceService } from './services/devices.js';
import { GroupDirectory, groupFile } from './services/groups.js';
import type { Config } from './config/schema.js';
import { installErrorHandler } from './http/error-handler.js';
import { gatewayRoutes } from './http/gateway-routes.js';
import { proxyRoutes } from './http/proxy-routes.js';
import type { HttpContext } from './http/context.js';
import { createLogger } from './log.js';
import { newId } from './mechanisms/random.js';
import { Sealer } from './mechanisms/sealer.js';
import { SessionTokens } from './mechanisms/session-token.js';
import { LoginService } from './services/login.js';
import { SecondFactorService } from './services/second-factor.js';
import { securityLog } from './services/security-events.js';
import { SessionService } from './services/sessions.js';
import { MfaFailures, ReplayGuard } from './stores/counters.js';
import type { KvStore } from './stores/kv-store.js';
import { MemoryKvStore } from './stores/memory-kv-store.js';
import { BrowserJars, DeviceRegistry, FactorStore, PendingLogins, Sessions } from './stores/records.js';
import { RedisKvStore } from './stores/redis-kv-store.js';
import { PortalClient } from './upstream/portal-client.js';

export interface AppOverrides {
  clock?: Clock;
  logger?: Logger;
  /** A store to use instead of the configured one (tests share one across apps). */
  kv?: KvStore;
}

/** Request ids for log correlation: a random instance prefix and a counter (cheap, unique per instance). */
function requestIds(): () => string {
  const instance = newId().slice(0, 8);
  let n = 0;
  return () => `${instance}-${(++n).toString(36)}`;
}

export function createKvStore(config: Config, clock: Clock): KvStore {
  return config.store.type === 'redis' ? new RedisKvStore(config.store.redis) : new MemoryKvStore(clock);
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
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger(config.log.level);
  const kv = overrides.kv ?? createKvStore(config, clock);
  const sealer = new Sealer(config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) })));
  const tokens = new SessionTokens(
    config.keys.signing.map((k) => ({ id: k.id, key: decodeKey(k.secret) })),
    config.session.absoluteTimeoutSeconds,
  );
  const security = securityLog(logger);
  const portal = new PortalClient(new URL(config.portal.url).origin, config.portal.timeoutSeconds * 1000);
  const pending = new PendingLogins(kv, sealer);
  const factors = new FactorStore(kv, sealer);
  const jars = new BrowserJars(kv, sealer, 60 * 60_000);
  const sessions = new SessionService({
    clock,
    sessions: new Sessions(kv, sealer),
    tokens,
    limits: { idleMs: config.session.idleTimeoutSeconds * 1000, absoluteMs: config.session.absoluteTimeoutSeconds * 1000 },
    security,
  });
  const deviceCas = config.devices.caFile ? parseCertificates(readFileSync(config.devices.caFile, 'utf8')) : [];
  const reloadError = (what: string) => (err: Error) => logger.error({ err, file: what }, 'could not re-read a file: keeping its last good content');
  const crl = config.devices.crlFile ? new WatchedFile(config.devices.crlFile, crlSerials, clock, reloadError('devices.crlFile'), onCrlChange) : null;
  const access = new AccessService({
    policy: compilePolicy(policyConfig(config)),
    loginFields: [config.portal.login.usernameField, config.portal.login.passwordField],
    clock,
    devices: new DeviceService({
      clock,
      registry: new DeviceRegistry(kv, sealer),
      cas: deviceCas,
      crl,
      headerFormat: config.devices.header?.format ?? 'pem',
      requireRegistration: config.devices.requireRegistration,
    }),
    groups: new GroupDirectory(config.groups.file ? groupFile(config.groups.file, config.portal.login.usernameCase, clock, reloadError('groups.file')) : null),
    security,
  });
  const ctx: HttpContext = {
    config,
    clock,
    kv,
    jars,
    portal,
    sessions,
    access,
    login: new LoginService({ config, clock, portal, jars, pending, factors, pseudonymKey: decodeKey(config.keys.pseudonym), security }),
    secondFactor: new SecondFactorService({
      config, clock, kv, pending, factors, replay: new ReplayGuard(kv), failures: new MfaFailures(kv), sessions, security,
    }),
    page: { portalName: config.portal.name, prefix: config.server.prefix },
  };

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Request ids are ours; a client-chosen id never reaches the logs.
    genReqId: requestIds(),
    requestIdHeader: false,
    // Forwarding headers are read only from configured proxies (http/edge.ts), never by fastify itself.
    trustProxy: false,
    // One access line per request is written by http/edge.ts instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    requestTimeout: 120_000,
    return503OnClosing: true,
    ...(config.server.tls ? { https: tlsOptions(config, deviceCas.length > 0) } : {}),
  });
  // The CRL is also given to TLS: a new handshake with a revoked certificate is not authorised.
  function onCrlChange() {
    if (config.server.tls) (app.server as HttpsServer).setSecureContext(tlsOptions(config, true));
  }
  await app.register(cookie);
  installEdge(app, { hosts: config.server.hosts, trustedProxies: config.server.trustedProxies, anyHostPrefix: `${config.server.prefix}/health/` });
  installErrorHandler(app, ctx.page, config.portal.login.page, config.server.prefix);
  await app.register(async (scope) => gatewayRoutes(scope, ctx));
  await app.register(async (scope) => proxyRoutes(scope, ctx));
  app.addHook('onClose', async () => {
    await portal.close();
    if (!overrides.kv) await kv.close();
  });
  return app;
}
