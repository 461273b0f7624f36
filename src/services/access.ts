// Conditional access for one request: gathers the facts (session, groups, device, legacy credentials) and decides.
import type { X509Certificate } from 'node:crypto';
import { loggedPath } from '../domain/canonical-path.js';
import type { ClientView } from '../domain/client-address.js';
import { carriesLegacyCredentials } from '../domain/legacy-auth.js';
import { carriesMethodOverride, decideAccess, type AccessOutcome, type CompiledPolicy, type RequestFacts } from '../domain/policy.js';
import type { Clock } from '../clock.js';
import type { DeviceService, DeviceState } from './devices.js';
import type { GroupDirectory } from './groups.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession } from './sessions.js';

export interface AccessRequest {
  host: string;
  method: string;
  path: string;
  query: string;
  authorization: string | undefined;
  client: ClientView;
  /** The verified client certificate of a TLS connection, if any. */
  tlsCertificate: { certificate: X509Certificate; authorized: boolean } | undefined;
  /** The device header, only when the peer is a trusted proxy. */
  deviceHeader: string | undefined;
  session: ActiveSession | null;
  /** The sign-in's own request: the portal's login page, or a login (see AccessService.decide). */
  signingIn: boolean;
}

const UNMANAGED = { managed: false } as const;

export class AccessService {
  /** The rules that let the login's fields through (allowLegacyAuth), by name. */
  private readonly loginFieldRules: ReadonlySet<string>;

  constructor(
    private readonly d: {
      policy: CompiledPolicy;
      loginFields: readonly string[];
      clock: Clock;
      devices: DeviceService;
      groups: GroupDirectory;
      security: SecurityLog;
    },
  ) {
    this.loginFieldRules = new Set(d.policy.rules.filter((r) => r.allowLegacyAuth === true).map((r) => r.name));
  }

  /**
   * The decision, the client certificate's fingerprint when a rule looked at the device, and the user's groups as the
   * rules saw them (the identity headers pass on the same: the group file may change between two reads).
   */
  async decide(req: AccessRequest): Promise<{ outcome: AccessOutcome; device: string | undefined; groups: readonly string[] }> {
    const s = req.session?.record;
    // Device state is worked out on every request that a rule could care about, never remembered from sign-in.
    const found: DeviceState = this.d.policy.usesDevices ? await this.d.devices.stateOf(req.tlsCertificate, req.deviceHeader, s?.pid ?? null) : UNMANAGED;
    // A device registered to a user, nobody signed in: only the sign-in tells whether it is that user's, so a rule that
    // tests the device asks for one (see RequestFacts.device). On the sign-in's own page and login it counts as managed,
    // or a rule for devices there would send its owner from the sign-in to the sign-in, for ever; once someone is
    // signed in, the rules judge it again.
    const device: DeviceState = found.bound && req.signingIn ? { managed: true, ...(found.fingerprint ? { fingerprint: found.fingerprint } : {}) } : found;
    const facts: RequestFacts = {
      host: req.host,
      method: req.method,
      path: req.path,
      clientIp: req.client.ip,
      legacyAuth: carriesLegacyCredentials(req.authorization, req.query, this.d.loginFields),
      methodOverride: carriesMethodOverride(req.query),
      session: s
        ? {
            groups: this.d.groups.groupsOf(s.username, s.groups),
            factorAgeSeconds: (this.d.clock.now() - s.factorTime) / 1000,
            factor: s.factor,
            deviceBound: s.deviceBound === true,
          }
        : null,
      device,
    };
    const outcome = decideAccess(this.d.policy, facts);
    if (outcome.verdict === 'deny' || outcome.verdict === 'managed-device') {
      this.d.security(outcome.verdict === 'deny' && outcome.reason.startsWith('legacy') ? 'legacy_auth_blocked' : 'access_denied', {
        pid: s?.pid,
        ip: req.client.ip ?? 'unknown',
        rule: outcome.rule,
        reason: outcome.verdict === 'deny' ? outcome.reason : 'unmanaged-device',
        ...(outcome.verdict === 'managed-device' ? { why: device.reason } : {}),
        path: loggedPath(req.path),
      });
    }
    return { outcome, device: device.fingerprint, groups: facts.session?.groups ?? [] };
  }

  /** Whether the body of a request the rule `name` let through may carry the login's fields (allowLegacyAuth). */
  allowsLoginFields(name: string): boolean {
    return this.loginFieldRules.has(name);
  }

  /** The login's fields found in the body of a request the rules let through (SECURITY C-30), refused as legacy auth. */
  loginFieldsRefused(req: { pid: string | undefined; ip: string | null; rule: string; path: string }): void {
    this.d.security('legacy_auth_blocked', { pid: req.pid, ip: req.ip ?? 'unknown', rule: req.rule, reason: 'legacy-auth', in: 'body', path: loggedPath(req.path) });
  }
}
