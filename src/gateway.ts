// The gateway without HTTP: clock, logger, store, portal client and services wired together. The HTTP app, the
// CLI and the tests build on it.
import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AuditLog } from './audit/audit-log.js';
import { openAudit } from './audit/open-audit.js';
import { systemClock, type Clock } from './clock.js';
import { decodeKey, policyConfig, reportPolicyConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import type { BrowserCookies } from './domain/cookie-jar.js';
import { loginFields } from './domain/legacy-auth.js';
import { compilePolicy, type PolicyConfig } from './domain/policy.js';
import { canonicalUsername } from './domain/username.js';
import type { HttpContext } from './http/context.js';
import { createLogger } from './log.js';
import { measuredStore } from './metrics/measured-store.js';
import { Metrics } from './metrics/metrics.js';
import { crlsOf, parseCertificates } from './mechanisms/certificates.js';
import { pseudonym } from './mechanisms/random.js';
import { AssertionSigner } from './mechanisms/assertion.js';
import { Sealer } from './mechanisms/sealer.js';
import { SessionTokens } from './mechanisms/session-token.js';
import { WatchedFile } from './mechanisms/watched-file.js';
import { relyingParty } from './mechanisms/webauthn.js';
import { AccessService } from './services/access.js';
import { AdminService } from './services/admin.js';
import { assuranceReport } from './services/report.js';
import { readTrailOffThread } from './services/report-trail.js';
import { Attempts } from './services/ceremony.js';
import { DeviceService } from './services/devices.js';
import { EnrolmentService } from './services/enrolment.js';
import { FactorService } from './services/factors.js';
import { GroupDirectory, groupFile } from './services/groups.js';
import { IdentityService } from './services/identity.js';
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
  /** Whose audit chain this process writes: the gateway's (default), the admin CLI's, or none (read-only commands). */
  auditWriter?: 'gateway' | 'admin' | 'none';
  /** Also collect process and Node.js metrics (the server does; tests and the CLI need not). */
  processMetrics?: boolean;
  /** A stop requested (serve): while starting, the wait for the audit directory's lock is given up (its reason thrown); then readiness fails. */
  signal?: AbortSignal;
}

export interface Gateway extends HttpContext {
  logger: Logger;
  stores: { factors: FactorStore; devices: DeviceRegistry; sealer: Sealer };
  admin: AdminService;
  security: SecurityLog;
  /** The audit trail, when audit.enabled. */
  audit: AuditLog | null;
  metrics: Metrics;
  /** The device CAs, read from devices.caFile at start: TLS is given these too, so both trust the same CAs. */
  deviceCas: readonly X509Certificate[];
  /** The pseudonymous id of a username as typed (canonicalised first); null when it is not a usable username. */
  pidOf(username: string): string | null;
  /** Waits for background work (webhooks), closes the portal client, the audit trail (its lock released) and, unless given, the store. */
  close(): Promise<void>;
}

export function createKvStore(config: Config, clock: Clock): KvStore {
  return config.store.type === 'redis' ? new RedisKvStore(config.store.redis) : new MemoryKvStore(clock, config.store.memory.maxEntries);
}

export async function createGateway(config: Config, overrides: GatewayOverrides = {}): Promise<Gateway> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger(config.log.level);
  const rawKv = overrides.kv ?? createKvStore(config, clock);
  const metrics = new Metrics({ defaultMetrics: overrides.processMetrics ?? false });
  // Redis calls are timed and counted; the embedded store's are map lookups, not worth a timer each: only its one
  // failure, a write refused by a full store, is counted.
  if (rawKv instanceof MemoryKvStore) rawKv.onRefused(() => metrics.storeRefused());
  const kv = rawKv instanceof MemoryKvStore ? rawKv : measuredStore(rawKv, metrics);
  const sealer = new Sealer(config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) })));
  const signingKeys = config.keys.signing.map((k) => ({ id: k.id, key: decodeKey(k.secret) }));
  const tokens = new SessionTokens(signingKeys, config.session.absoluteTimeoutSeconds);
  const inFlight = new InFlight(config.server.maxInFlight);
  const portal = new PortalClient(new URL(config.portal.url).origin, config.portal.timeoutSeconds * 1000, inFlight);
  const webhooks = new Webhooks({ clock, log: logger, metrics, timeoutMs: config.notify.timeoutSeconds * 1000, retries: config.notify.retries, retryDelayMs: 1000 });
  const writer = overrides.auditWriter ?? 'gateway';
  let audit: Awaited<ReturnType<typeof openAudit>> = null;
  const close = async () => {
    await webhooks.settle();
    await portal.close();
    await audit?.close();
    if (!overrides.kv) await rawKv.close();
  };
  // The store is connecting already (the trail's stream mirror uses its client), and from the trail on its lock is
  // held: a start that fails (the trail's directory in use, the wait for its lock given up, a file read below changed
  // since the config was checked) gives back what it took, or the next start (a restart loop) would wait for that
  // lock to go stale.
  try {
    audit = writer === 'none' ? null : await openAudit(config, {
      clock,
      writer,
      redis: rawKv instanceof RedisKvStore ? rawKv.client : null,
      onError: (err) => {
        metrics.auditFailure(err.code);
        logger.error({ err, sink: err.sink, seq: err.seq }, 'audit trail failure');
      },
      onWait: (message) => logger.warn(message),
      signal: overrides.signal,
    });
    const security = securityLog(logger, audit?.log ?? null, metrics);
    const pendingLogins = new PendingLogins(kv, sealer);
    const factorStore = new FactorStore(kv, sealer);
    const challenges = new Challenges(kv, sealer);
    const owners = new CredentialOwners(kv);
    const jars = new BrowserJars(kv, sealer, 60 * 60_000);
    const enrolmentCodes = new EnrolmentCodes(kv, sealer);
    const sessionRecords = new Sessions(kv, sealer, config.session.absoluteTimeoutSeconds * 1000);
    const sessions = new SessionService({
      clock,
      sessions: sessionRecords,
      tokens,
      limits: { idleMs: config.session.idleTimeoutSeconds * 1000, absoluteMs: config.session.absoluteTimeoutSeconds * 1000 },
      security,
    });
    const notifier = new Notifier(webhooks, config.notify.url && config.notify.secret ? { url: config.notify.url, secret: config.notify.secret } : null, clock);
    const attempts = new Attempts({ config, clock, kv, pending: pendingLogins, sessions, security, notifier });
    const totp = new TotpChecks({ clock, replay: new ReplayGuard(kv), attempts, factors: factorStore, security, notifier });
    const rp = relyingParty(config);
    const browserCookies: BrowserCookies = config.forwardAuth.enabled ? 'all' : config.portal.browserCookies;
    const loginLimits = new LoginLimits({ config, clock, kv, security, notifier });
    const pending = new PendingService({ clock, pending: pendingLogins, sessions, factors: factorStore, security });
    const pseudonymKey = decodeKey(config.keys.pseudonym);
    const registry = new DeviceRegistry(kv, sealer);
    const deviceCas = config.devices.caFile ? parseCertificates(readFileSync(config.devices.caFile, 'utf8')) : [];
    const reloadError = (what: string) => (err: Error) => logger.error({ err, file: what }, 'could not re-read a file: keeping its last good content');
    const crl = config.devices.crlFile ? new WatchedFile(config.devices.crlFile, crlsOf, clock, reloadError('devices.crlFile'), () => overrides.onCrlChange?.()) : null;
    const groups = new GroupDirectory(config.groups.file ? groupFile(config.groups.file, config.portal.login.usernameCase, clock, reloadError('groups.file')) : null, config.groups.loginHeader !== undefined);
    const devices = new DeviceService({
      clock,
      registry,
      cas: deviceCas,
      crl,
      headerFormat: config.devices.header?.format ?? 'pem',
      requireRegistration: config.devices.requireRegistration,
    });
    const accessUnder = (policy: PolicyConfig) =>
      new AccessService({ policy: compilePolicy(policy), loginFields: loginFields(config.portal.login), clock, devices, groups, security });
    const access = accessUnder(policyConfig(config));
    const assertion = config.identity.assertion;
    const identity = new IdentityService({
      config,
      clock,
      signer: assertion
        ? new AssertionSigner(assertion.signingKey, assertion.keyId, 'mfa-gateway', assertion.audience ?? new URL(config.portal.url).origin, assertion.lifetimeSeconds, assertion.publishedKeys)
        : null,
    });
    const enrolment = new EnrolmentService({
      config, clock, kv, sealer, pending: pendingLogins, factors: factorStore, owners, codes: enrolmentCodes, challenges, attempts, totp, rp, webhooks, notifier, security,
    });
    const admin = new AdminService({
      config, clock, kv, sealer, factors: factorStore, owners, codes: enrolmentCodes, sessions, sessionRecords, devices: registry, attempts, enrolment, security, notifier,
    });
    // Only the gateway speaks for the device and the user, and the portal's own trusted headers come from nobody.
    const reservedHeaders = new Set([
      ...(config.devices.header ? [config.devices.header.name.toLowerCase()] : []),
      ...identity.headerNames,
      ...config.portal.stripHeaders.map((name) => name.toLowerCase()),
    ]);
    return {
      config,
      clock,
      kv,
      reservedHeaders,
      jars,
      portal,
      inFlight,
      browserCookies,
      sessions,
      access,
      identity,
      pending,
      login: new LoginService({ config, clock, portal, jars, pending: pendingLogins, factors: factorStore, pseudonymKey, signingKeys, kv, limits: loginLimits, browserCookies, reservedHeaders, security, notifier, log: logger }),
      enrolment,
      secondFactor: new SecondFactorService({ config, clock, kv, factors: factorStore, challenges, attempts, totp, pending, sessions, rp, notifier, security }),
      factors: new FactorService({ clock, factors: factorStore, owners, sessions, attempts, notifier, security }),
      ui: {
        messages: new Messages(config.ui.localesDir, config.ui.defaultLanguage),
        portalName: config.portal.name,
        prefix: config.server.prefix,
        hasLogo: config.ui.logoFile !== undefined,
      },
      logger,
      stores: { factors: factorStore, devices: registry, sealer },
      deviceCas,
      admin,
      report: config.admin.report.groups.length
        ? { access: accessUnder(reportPolicyConfig(config)), build: (period) => assuranceReport({ config, kv, factors: factorStore, admin, readTrail: readTrailOffThread }, period, clock.now()) }
        : null,
      limits: { login: loginLimits, attempts },
      security,
      audit: audit?.log ?? null,
      metrics,
      ready: async () => {
        // A stop asked for (serve): not ready from then on, on both listeners, while it goes on serving or drains.
        if (overrides.signal?.aborted) throw new Error('shutting down');
        await kv.ping();
        // Another writer took the trail's directory over: this one no longer records (see openAudit).
        if (audit?.log.stoppedBy) throw audit.log.stoppedBy;
      },
      pidOf: pidsOf(config),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Gateway.pidOf, from the config alone: the admin commands check the user they name before a gateway is made. */
export function pidsOf(config: Config): (username: string) => string | null {
  const key = decodeKey(config.keys.pseudonym);
  return (username) => {
    const name = canonicalUsername(username, config.portal.login.usernameCase);
    return name === null ? null : pseudonym(key, name);
  };
}
