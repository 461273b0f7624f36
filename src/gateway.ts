// The gateway without HTTP: clock, logger, store, portal client and services wired together. The HTTP app, the
// CLI and the tests build on it.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { decodeKey, policyConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { compilePolicy } from './domain/policy.js';
import { canonicalUsername } from './domain/username.js';
import type { HttpContext } from './http/context.js';
import { createLogger } from './log.js';
import { crlSerials, parseCertificates } from './mechanisms/certificates.js';
import { pseudonym } from './mechanisms/random.js';
import { Sealer } from './mechanisms/sealer.js';
import { SessionTokens } from './mechanisms/session-token.js';
import { WatchedFile } from './mechanisms/watched-file.js';
import type { RelyingParty } from './mechanisms/webauthn.js';
import { AccessService } from './services/access.js';
import { Attempts } from './services/ceremony.js';
import { DeviceService } from './services/devices.js';
import { EnrolmentService } from './services/enrolment.js';
import { FactorService } from './services/factors.js';
import { GroupDirectory, groupFile } from './services/groups.js';
import { LoginService } from './services/login.js';
import { LoginLimits } from './services/login-limits.js';
import { Notifier, Webhooks } from './services/notifier.js';
import { PendingService } from './services/pending.js';
import { SecondFactorService } from './services/second-factor.js';
import { securityLog, type SecurityLog } from './services/security-events.js';
import { SessionService } from './services/sessions.js';
import { TotpChecks } from './services/totp-checks.js';
import { ReplayGuard } from './stores/counters.js';
import { DeviceRegistry } from './stores/device-registry.js';
import { Challenges, CredentialOwners, EnrolmentCodes, FactorStore } from './stores/factor-store.js';
import type { KvStore } from './stores/kv-store.js';
import { MemoryKvStore } from './stores/memory-kv-store.js';
import { BrowserJars, PendingLogins, Sessions } from './stores/records.js';
import { RedisKvStore } from './stores/redis-kv-store.js';
import { Messages } from './ui/i18n.js';
import { InFlight } from './upstream/in-flight.js';
import { PortalClient } from './upstream/portal-client.js';

export interface GatewayOverrides {
  clock?: Clock;
  logger?: Logger;
  /** A store to use instead of the configured one (tests share one across apps). */
  kv?: KvStore;
  /** Called when the CRL file changed (the HTTP app gives it to TLS). */
  onCrlChange?: () => void;
}

export interface Gateway extends HttpContext {
  logger: Logger;
  stores: { factors: FactorStore; devices: DeviceRegistry; sealer: Sealer };
  security: SecurityLog;
  /** The pseudonymous id of a username as typed (canonicalised first); null when it is not a usable username. */
  pidOf(username: string): string | null;
  /** Waits for background work (webhooks), closes the portal client and, unless given, the store. */
  close(): Promise<void>;
}

export function createKvStore(config: Config, clock: Clock): KvStore {
  return config.store.type === 'redis' ? new RedisKvStore(config.store.redis) : new MemoryKvStore(clock);
}

/** The gateway as a WebAuthn relying party: from the config, never from a request (SECURITY R25). */
export function relyingParty(config: Config): RelyingParty {
  const id = config.webauthn.rpId ?? config.server.hosts[0]!.replace(/^\[|\]$/g, '');
  return {
    id,
    name: config.webauthn.rpName ?? config.portal.name,
    origins: config.webauthn.origins ?? [`https://${id}`],
    userVerification: config.webauthn.userVerification,
    attestation: config.webauthn.attestation,
  };
}

export function createGateway(config: Config, overrides: GatewayOverrides = {}): Gateway {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger(config.log.level);
  const kv = overrides.kv ?? createKvStore(config, clock);
  const sealer = new Sealer(config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) })));
  const tokens = new SessionTokens(
    config.keys.signing.map((k) => ({ id: k.id, key: decodeKey(k.secret) })),
    config.session.absoluteTimeoutSeconds,
  );
  const security = securityLog(logger);
  const inFlight = new InFlight(config.server.maxInFlight);
  const portal = new PortalClient(new URL(config.portal.url).origin, config.portal.timeoutSeconds * 1000, inFlight);
  const pendingLogins = new PendingLogins(kv, sealer);
  const factorStore = new FactorStore(kv, sealer);
  const challenges = new Challenges(kv, sealer);
  const owners = new CredentialOwners(kv);
  const jars = new BrowserJars(kv, sealer, 60 * 60_000);
  const sessions = new SessionService({
    clock,
    sessions: new Sessions(kv, sealer, config.session.absoluteTimeoutSeconds * 1000),
    tokens,
    limits: { idleMs: config.session.idleTimeoutSeconds * 1000, absoluteMs: config.session.absoluteTimeoutSeconds * 1000 },
    security,
  });
  const webhooks = new Webhooks({ clock, log: logger, timeoutMs: config.notify.timeoutSeconds * 1000, retries: config.notify.retries, retryDelayMs: 1000 });
  const notifier = new Notifier(webhooks, config.notify.url && config.notify.secret ? { url: config.notify.url, secret: config.notify.secret } : null, clock);
  const attempts = new Attempts({ config, clock, kv, pending: pendingLogins, sessions, security, notifier });
  const totp = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors: factorStore, security });
  const rp = relyingParty(config);
  const loginLimits = new LoginLimits({ config, clock, kv, security, notifier });
  const pending = new PendingService({ clock, pending: pendingLogins, sessions });
  const pseudonymKey = decodeKey(config.keys.pseudonym);
  const registry = new DeviceRegistry(kv, sealer);
  const deviceCas = config.devices.caFile ? parseCertificates(readFileSync(config.devices.caFile, 'utf8')) : [];
  const reloadError = (what: string) => (err: Error) => logger.error({ err, file: what }, 'could not re-read a file: keeping its last good content');
  const crl = config.devices.crlFile ? new WatchedFile(config.devices.crlFile, crlSerials, clock, reloadError('devices.crlFile'), () => overrides.onCrlChange?.()) : null;
  const access = new AccessService({
    policy: compilePolicy(policyConfig(config)),
    loginFields: [config.portal.login.usernameField, config.portal.login.passwordField],
    clock,
    devices: new DeviceService({
      clock,
      registry,
      cas: deviceCas,
      crl,
      headerFormat: config.devices.header?.format ?? 'pem',
      requireRegistration: config.devices.requireRegistration,
    }),
    groups: new GroupDirectory(config.groups.file ? groupFile(config.groups.file, config.portal.login.usernameCase, clock, reloadError('groups.file')) : null),
    security,
  });
  return {
    config,
    clock,
    kv,
    jars,
    portal,
    inFlight,
    sessions,
    access,
    pending,
    login: new LoginService({ config, clock, portal, jars, pending: pendingLogins, factors: factorStore, pseudonymKey, limits: loginLimits, security }),
    enrolment: new EnrolmentService({
      config, clock, kv, pending: pendingLogins, factors: factorStore, owners, codes: new EnrolmentCodes(kv, sealer), challenges, attempts, totp, rp, webhooks, notifier, security,
    }),
    secondFactor: new SecondFactorService({ config, clock, kv, factors: factorStore, challenges, attempts, totp, pending, sessions, rp, notifier, security }),
    factors: new FactorService({ clock, factors: factorStore, owners, sessions, notifier, security }),
    ui: {
      messages: new Messages(config.ui.localesDir, config.ui.defaultLanguage),
      portalName: config.portal.name,
      prefix: config.server.prefix,
      hasLogo: config.ui.logoFile !== undefined,
    },
      logger,
    stores: { factors: factorStore, devices: registry, sealer },
    limits: { login: loginLimits, attempts },
    security,
    pidOf: (username) => {
      const name = canonicalUsername(username, config.portal.login.usernameCase);
      return name === null ? null : pseudonym(pseudonymKey, name);
    },
    close: async () => {
      await webhooks.settle();
      await portal.close();
      if (!overrides.kv) await kv.close();
    },
  };
}
