// What the HTTP layer is given by the composition root.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { BrowserCookies } from '../domain/cookie-jar.js';
import type { Report } from '../domain/report.js';
import type { AccessService } from '../services/access.js';
import type { Attempts } from '../services/ceremony.js';
import type { LoginLimits } from '../services/login-limits.js';
import type { EnrolmentService } from '../services/enrolment.js';
import type { FactorService } from '../services/factors.js';
import type { IdentityService } from '../services/identity.js';
import type { LoginService } from '../services/login.js';
import type { PendingService } from '../services/pending.js';
import type { SecondFactorService } from '../services/second-factor.js';
import type { SessionService } from '../services/sessions.js';
import type { KvStore } from '../stores/kv-store.js';
import type { BrowserJars } from '../stores/records.js';
import type { InFlight } from '../upstream/in-flight.js';
import type { PortalClient } from '../upstream/portal-client.js';
import type { UiSettings } from './pages.js';

export interface HttpContext {
  config: Config;
  clock: Clock;
  kv: KvStore;
  jars: BrowserJars;
  portal: PortalClient;
  /** Requests waiting for the portal (proxied and login replays), capped by server.maxInFlight. */
  inFlight: InFlight;
  access: AccessService;
  identity: IdentityService;
  login: LoginService;
  pending: PendingService;
  enrolment: EnrolmentService;
  secondFactor: SecondFactorService;
  factors: FactorService;
  sessions: SessionService;
  limits: { login: LoginLimits; attempts: Attempts };
  ui: UiSettings;
  /** The report page (admin.report), behind its own rule; null when no group may see it. */
  report: { access: AccessService; build(period: { from: number; to: number }): Promise<Report> } | null;
  /** Headers only the gateway may send the portal (identity, device): client copies are removed from every request. */
  reservedHeaders: ReadonlySet<string>;
  /** Which portal cookies the browser holds: the allow-list, or all of them in forward-auth mode. */
  browserCookies: BrowserCookies;
  /** Resolves when the gateway can serve: the store answers and the audit trail, when on, is still written. */
  ready(): Promise<void>;
}
