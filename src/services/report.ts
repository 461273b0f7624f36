// Gathers the assurance report's inputs: the audit trail (read and verified), the factor records, the configuration.
import { existsSync } from 'node:fs';
import { distinctDirs } from '../audit/file-sink.js';
import { adminTrailStarted, auditDir } from '../audit/open-audit.js';
import { publicKeyPem } from '../audit/signing-key.js';
import { policyConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { FactorKind } from '../domain/policy.js';
import { codesLeft } from '../mechanisms/recovery-codes.js';
import { buildReport, duration, type Report, type ReportInput } from '../domain/report.js';
import type { FactorStore } from '../stores/factor-store.js';
import { UnreadableRecord } from '../stores/sealed-records.js';
import { keysOnce, type KvStore } from '../stores/kv-store.js';
import type { AdminService } from './admin.js';
import type { TrailReading, TrailRequest } from './report-trail.js';

export interface ReportDeps {
  config: Config;
  kv: KvStore;
  factors: FactorStore;
  admin: AdminService;
  /**
   * Reads and verifies the trails: in a worker thread for the gateway's page (readTrailOffThread: the gateway goes on
   * serving), on the calling thread for the command line (readTrail: a process of its own, nothing else to serve).
   */
  readTrail: (request: TrailRequest) => Promise<TrailReading>;
}

const factorKey = /^user:\{([^}]+)\}:factors$/;

/**
 * The report for [from, to): events from the audit trails (this gateway's and the admin CLI's, or the directories
 * given, e.g. one per instance), the store as it is now.
 */
export async function assuranceReport(d: ReportDeps, period: { from: number; to: number }, now: number, dirs?: readonly string[]): Promise<Report> {
  const { config } = d;
  // By default this gateway's trail, and the admin commands' once one has written a record.
  const own = [...[auditDir(config, 'gateway')].filter(existsSync), ...[auditDir(config, 'admin')].filter(adminTrailStarted)];
  const chains = distinctDirs(!config.audit.enabled ? [] : dirs?.length ? dirs : own);
  const trail = await d.readTrail({
    dirs: chains,
    publicKeyPem: config.audit.enabled ? publicKeyPem(config.audit.signingKey!) : null,
    period,
  });
  return buildReport({
    period,
    generatedAt: now,
    events: trail.events,
    store: await factorCounts(d),
    policy: policyConfig(config),
    settings: settingsInForce(config),
    keys: (await d.admin.keyStatus()).map((k) => ({ purpose: k.purpose, id: k.id, inUse: k.active, firstSeen: k.firstSeen })),
    audit: trail.audit,
    checkpointIntervalSeconds: config.audit.checkpointIntervalSeconds,
  });
}

/** The security settings in force, in words a practice manager can check. */
export function settingsInForce(c: Config): { name: string; value: string }[] {
  const l = c.limits;
  return [
    { name: 'Second factor', value: 'required for every account (authenticator app or passkey); no way to skip it' },
    { name: 'Enrolment proof', value: { invite: 'an enrolment code handed out by the clinic', webhook: "a code sent through the portal's own channel", 'first-login': 'none beyond the password (first login enrols)' }[c.enrolment.proof] },
    { name: 'Session idle timeout', value: duration(c.session.idleTimeoutSeconds) },
    { name: 'Session absolute timeout', value: duration(c.session.absoluteTimeoutSeconds) },
    { name: 'Wrong passwords per account', value: `${l.password.perAccount.freeAttempts} free, then waits from ${duration(l.password.perAccount.baseSeconds)} up to ${duration(l.password.perAccount.maxSeconds)}` },
    { name: 'Wrong second factors per user', value: `${l.secondFactor.freeAttempts} free, then growing waits; locked after ${l.secondFactor.cap} in a row` },
    { name: 'Wrong codes in one login', value: `${c.mfa.maxAttemptsPerLogin}, then the password must be entered again` },
    { name: 'Credential stuffing', value: `an address whose wrong passwords reach ${l.stuffing.distinctAccounts} accounts, without a pause of ${duration(l.stuffing.windowMinutes * 60)} between two, is blocked for ${duration(l.stuffing.blockMinutes * 60)}` },
    // Only what the config says: a proxy's TLS is not the gateway's to see.
    { name: 'TLS', value: c.server.tls ? 'the gateway terminates TLS 1.2 or later' : c.server.trustedProxies.length ? 'terminated by a proxy in front (server.trustedProxies; not verified by the gateway)' : 'none: the gateway serves plain HTTP itself (neither server.tls nor server.trustedProxies is set)' },
    { name: 'Managed devices', value: c.devices.caFile || c.devices.header ? `client certificates${c.devices.requireRegistration ? ', registered ones only' : ''}` : 'not configured' },
    { name: 'Default for requests no rule covers', value: c.policy.default === 'deny' ? 'refused' : 'second factor required' },
    { name: 'Store', value: c.store.type === 'redis' ? `Redis (${c.store.redis.mode})` : 'memory (one instance)' },
    { name: 'Audit trail', value: c.audit.enabled ? `on, recording ${c.audit.requests ? 'every request' : 'security events'}; signed every ${c.audit.checkpointEvery} records or ${duration(c.audit.checkpointIntervalSeconds)}` : 'off' },
  ];
}

async function factorCounts(d: ReportDeps): Promise<ReportInput['store']> {
  const enrolledUsers = new Set<string>();
  const factorsByKind: Record<FactorKind, number> = { totp: 0, webauthn: 0, recovery: 0 };
  let unreadableFactorRecords = 0;
  // Each user once: their factor record is one key.
  for await (const key of keysOnce(d.kv, 'user:{', (k) => factorKey.test(k))) {
    const pid = factorKey.exec(key)![1]!;
    // A record no configured key opens is counted (a finding), not the end of the report.
    const f = await d.factors.get(pid).catch((err: unknown) => {
      if (!(err instanceof UnreadableRecord)) throw err;
      unreadableFactorRecords++;
      return null;
    });
    if (!f || f.factors.length === 0) continue;
    enrolledUsers.add(pid);
    for (const x of f.factors) factorsByKind[x.kind]++;
    // A set whose codes are all used opens nothing: the sign-in offers it no more.
    if (f.recovery && codesLeft(f.recovery) > 0) factorsByKind.recovery++;
  }
  return { enrolledUsers, factorsByKind, unreadableFactorRecords };
}
