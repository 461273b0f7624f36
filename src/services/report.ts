// Gathers the assurance report's inputs: the audit trail (read and verified), the factor records, the configuration.
import { existsSync, readFileSync } from 'node:fs';
import { auditDir } from '../audit/open-audit.js';
import { auditFiles } from '../audit/file-sink.js';
import { decodeRecord } from '../audit/record.js';
import { publicKeyPem } from '../audit/signing-key.js';
import { verifyAudit, type AuditReport } from '../audit/verify-audit.js';
import { policyConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { FactorKind } from '../domain/policy.js';
import { buildReport, type Report, type ReportInput } from '../domain/report.js';
import type { FactorStore } from '../stores/factor-store.js';
import type { KvStore } from '../stores/kv-store.js';
import type { AdminService } from './admin.js';

export interface ReportDeps {
  config: Config;
  kv: KvStore;
  factors: FactorStore;
  admin: AdminService;
}

const factorKey = /^user:\{([^}]+)\}:factors$/;

/**
 * The report for [from, to): events from the audit trails (this gateway's and the admin CLI's, or the directories
 * given, e.g. one per instance), the store as it is now.
 */
export async function assuranceReport(d: ReportDeps, period: { from: number; to: number }, now: number, dirs?: readonly string[]): Promise<Report> {
  const { config } = d;
  const chains = !config.audit.enabled ? [] : dirs?.length ? dirs : (['gateway', 'admin'] as const).map((w) => auditDir(config, w)).filter(existsSync);
  const files = chains.map((dir) => auditFiles(dir));
  const input: ReportInput = {
    period,
    generatedAt: now,
    records: files.flat().flatMap(eventRecords),
    store: await factorCounts(d),
    policy: policyConfig(config),
    settings: settingsInForce(config),
    keys: (await d.admin.keyStatus()).map((k) => ({ purpose: k.purpose, id: k.id, inUse: k.active, firstSeen: k.firstSeen })),
    audit: config.audit.enabled ? combine(files.map((f) => verifyAudit(f, publicKeyPem(config.audit.signingKey!)))) : null,
  };
  return buildReport(input);
}

/** The security settings in force, in words a practice manager can check. */
export function settingsInForce(c: Config): { name: string; value: string }[] {
  const minutes = (s: number) => `${Math.round(s / 60)} minutes`;
  const l = c.limits;
  return [
    { name: 'Second factor', value: 'required for every account (authenticator app or passkey); no way to skip it' },
    { name: 'Enrolment proof', value: { invite: 'an enrolment code handed out by the clinic', webhook: "a code sent through the portal's own channel", 'first-login': 'none beyond the password (first login enrols)' }[c.enrolment.proof] },
    { name: 'Session idle timeout', value: minutes(c.session.idleTimeoutSeconds) },
    { name: 'Session absolute timeout', value: minutes(c.session.absoluteTimeoutSeconds) },
    { name: 'Wrong passwords per account', value: `${l.password.perAccount.freeAttempts} free, then waits from ${l.password.perAccount.baseSeconds} s up to ${l.password.perAccount.maxSeconds} s` },
    { name: 'Wrong second factors per user', value: `${l.secondFactor.freeAttempts} free, then growing waits; disabled after ${l.secondFactor.cap}` },
    { name: 'Wrong codes in one login', value: String(c.mfa.maxAttemptsPerLogin) },
    { name: 'Credential stuffing', value: `an address trying ${l.stuffing.distinctAccounts} accounts in ${l.stuffing.windowMinutes} minutes is blocked for ${l.stuffing.blockMinutes} minutes` },
    { name: 'TLS', value: c.server.tls ? 'the gateway terminates TLS 1.2 or later' : 'terminated in front of the gateway (server.tls not set)' },
    { name: 'Managed devices', value: c.devices.caFile || c.devices.header ? `client certificates${c.devices.requireRegistration ? ', registered ones only' : ''}` : 'not configured' },
    { name: 'Default for requests no rule covers', value: c.policy.default === 'deny' ? 'refused' : 'second factor required' },
    { name: 'Store', value: c.store.type === 'redis' ? `Redis (${c.store.redis.mode})` : 'memory (one instance)' },
    { name: 'Audit trail', value: c.audit.enabled ? `on${c.audit.requests ? ', every request' : ', security events'}; checkpoints signed every ${c.audit.checkpointEvery} records or ${c.audit.checkpointIntervalSeconds} s` : 'off' },
  ];
}

function eventRecords(file: string): ReportInput['records'] {
  const out: { time: string; event: Record<string, string | number | boolean | null> }[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    const decoded = decodeRecord(line);
    if ('record' in decoded && decoded.record.type === 'event') out.push({ time: decoded.record.time, event: decoded.record.event as Record<string, string | number | boolean | null> });
  }
  return out;
}

async function factorCounts(d: ReportDeps): Promise<ReportInput['store']> {
  const enrolledUsers = new Set<string>();
  const factorsByKind: Record<FactorKind, number> = { totp: 0, webauthn: 0, recovery: 0 };
  for await (const batch of d.kv.scanKeys('user:{')) {
    for (const key of batch) {
      const pid = factorKey.exec(key)?.[1];
      const f = pid ? await d.factors.get(pid) : null;
      if (!pid || !f || f.factors.length === 0) continue;
      enrolledUsers.add(pid);
      for (const x of f.factors) factorsByKind[x.kind]++;
      if (f.recovery) factorsByKind.recovery++;
    }
  }
  return { enrolledUsers, factorsByKind };
}

/** The gateway's chain and the admin CLI's, as one verdict. */
function combine(reports: AuditReport[]): NonNullable<ReportInput['audit']> {
  return {
    ok: reports.every((r) => r.ok),
    records: reports.reduce((n, r) => n + r.records, 0),
    checkpoints: reports.reduce((n, r) => n + r.checkpoints, 0),
    lastSealedSeq: reports[0]?.lastSealedSeq ?? 0,
    problems: reports.flatMap((r) => r.problems),
  };
}
