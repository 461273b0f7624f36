// The assurance report: what the audit events of a period, the stores and the configuration show, as plain data.
import type { FactorKind, PolicyConfig, RuleConfig, RuleFactor } from './policy.js';

type EventValue = string | number | boolean | null | undefined;
type Event = Readonly<Record<string, EventValue>>;

/** Problems that mean "nothing signed yet" (a new or idle gateway), not that anything was altered. */
const NOT_YET_SIGNED: ReadonlySet<string> = new Set(['empty', 'unsigned', 'unsealed-tail']);

/** audit.checkpointIntervalSeconds by default. */
export const DEFAULT_CHECKPOINT_INTERVAL_SECONDS = 60;

/**
 * Whether records no signature covers, the first written at `firstTime`, have waited longer than a gateway takes to
 * sign them: it signs once the oldest unsigned record is audit.checkpointIntervalSeconds old, and at shutdown, so two
 * intervals and a minute more mean a crash, a gateway that cannot sign, or records written without the key. A hint,
 * not proof: whoever writes records without the key writes their times too (a time that cannot be read is overdue).
 */
export function unsignedOverdue(firstTime: string, now: number, checkpointIntervalSeconds: number): boolean {
  return !(now <= unsignedDeadline(firstTime, checkpointIntervalSeconds));
}

/** Epoch ms after which such records are overdue (see unsignedOverdue); NaN when `firstTime` cannot be read. */
function unsignedDeadline(firstTime: string, checkpointIntervalSeconds: number): number {
  return Date.parse(firstTime) + (2 * checkpointIntervalSeconds + 60) * 1000;
}

/** Why overdue unsigned records are a warning, following "they have". */
export function unsignedOverdueWords(checkpointIntervalSeconds: number): string {
  const limit = 2 * checkpointIntervalSeconds + 60;
  const wait = limit % 60 === 0 ? `${limit / 60} minutes` : `${limit} s`;
  return (
    `waited over ${wait} (two checkpoint intervals and a minute) without a signature: a running gateway signs sooner, and a stopped one signs at shutdown, ` +
    'so the gateway crashed (and has not started again) or cannot sign, or the records were added, altered or removed without the key (their times can be forged too)'
  );
}

export interface ReportInput {
  /** Epoch ms: `from` inclusive, `to` exclusive. */
  period: { from: number; to: number };
  generatedAt: number;
  /** What the audit events of the period show, counted by `countEvent`. */
  events: EventSummary;
  /**
   * Pids holding at least one factor, and how many factors of each kind are held now (recovery: users holding a code
   * set with a code left); `unreadableFactorRecords`: users whose factor record no configured key opens (their key was
   * removed).
   */
  store: { enrolledUsers: ReadonlySet<string>; factorsByKind: Readonly<Record<FactorKind, number>>; unreadableFactorRecords: number };
  policy: PolicyConfig;
  /** The security settings in force, worded by the caller. */
  settings: readonly { name: string; value: string }[];
  /** firstSeen: epoch ms, or null when unknown. */
  keys: readonly { purpose: string; id: string; inUse: boolean; firstSeen: number | null }[];
  /**
   * null: the audit trail is disabled. One verdict over every chain read (one per instance, and the admin CLI's);
   * `chains`: each one's directory and the seq of its last checkpoint that verified (0 if none).
   */
  audit: { ok: boolean; records: number; checkpoints: number; chains: readonly AuditChainView[]; problems: readonly AuditProblemView[] } | null;
  /** audit.checkpointIntervalSeconds: how long a gateway takes to sign its records. */
  checkpointIntervalSeconds: number;
}

export interface AuditChainView {
  trail: string;
  lastSealedSeq: number;
}

export interface AuditProblemView {
  file: string;
  line: number;
  seq?: number;
  kind: string;
  message: string;
  /** An `unsealed-tail` a restarted writer stated: records inside its signed chain, not its latest records. */
  resumed?: boolean;
  /** The directory of the trail. */
  trail?: string;
  /** On a trail's final `unsealed-tail` or `unsigned`: its records no signature covers, and the checkpoint before them. */
  unsigned?: { records: number; firstTime: string; lastTime: string; sealedSeq?: number; sealedTime?: string };
}

/**
 * A trail's records no signature covers: after its last checkpoint (`signedUpTo`), or all of them (null). `dueBy`: the
 * time a gateway has signed them by at the latest (null when the first one's time cannot be read); `overdue`: that
 * time has passed (see unsignedOverdue).
 */
export interface UnsignedTrailView {
  trail: string;
  records: number;
  firstTime: string;
  lastTime: string;
  signedUpTo: { seq: number; time: string } | null;
  dueBy: string | null;
  overdue: boolean;
}

/** Counts by name, largest first, then by name. */
export type Tally = { name: string; count: number }[];

export interface Report {
  /** ISO-8601 times; `to` is exclusive. */
  period: { from: string; to: string };
  generatedAt: string;
  signIns: { total: number; withSecondFactor: number; withoutSecondFactor: number; secondFactorPercent: number; allSecondFactor: boolean };
  coverage: { usersSeen: number; enrolledOfSeen: number; enrolledPercent: number; totalEnrolled: number };
  factors: { held: Record<FactorKind, number>; usedInPeriod: Record<FactorKind, number>; unreadableRecords: number };
  failures: {
    passwordFailed: number;
    passwordThrottled: number;
    mfaFailed: { total: number; byFactor: Tally };
    mfaReplayed: number;
    mfaAttemptsExhausted: number;
    webauthnCounterRegressions: number;
  };
  lockouts: {
    factorLocked: { total: number; byFactor: Tally };
    addressBlocked: number;
    loginFailureSurges: number;
    lockoutsCleared: number;
    blocksCleared: number;
  };
  legacyAuthBlocked: { total: number; byRule: Tally };
  policyDenials: { total: number; byRule: { rule: string; count: number; reasons: Tally }[] };
  adminActions: { total: number; byAction: Tally };
  policy: {
    description: string[];
    settings: { name: string; value: string }[];
    keys: { purpose: string; id: string; inUse: boolean; ageDays: number | null }[];
  };
  audit:
    | { status: 'disabled' }
    | {
        status: 'verified' | 'unsigned' | 'problems';
        records: number;
        checkpoints: number;
        chains: AuditChainView[];
        /** What the check found wrong, in file order; not the records a gateway has yet to sign (in `unsigned`, not overdue). */
        problems: AuditProblemView[];
        /** Per trail: the records no signature covers at its end (or at all). */
        unsigned: UnsignedTrailView[];
        /** Trails without a record. */
        empty: string[];
      };
  /** Plain-language warnings; empty when there is nothing to flag. */
  findings: string[];
}

const DAY_MS = 86_400_000;
const MAX_KEY_AGE_DAYS = 365;
const FACTOR_KINDS: readonly FactorKind[] = ['totp', 'webauthn', 'recovery'];
const SECOND_FACTOR_AMR = new Set(['otp', 'hwk', 'swk']);

type Counts = Map<string, number>;

/**
 * What the audit events of a period show, counted one record at a time as the trail is read: it grows with the
 * users and the names seen (factors, rules, actions), not with the number of events.
 */
export interface EventSummary {
  /** Security events by name. */
  security: Counts;
  /** Sessions started with a second factor. */
  signInsWithSecondFactor: number;
  /** The pids that entered their password. */
  usersSeen: Set<string>;
  /** By factor: mfa_ok, step_up_ok and enrolled, mfa_failed, factor_locked; by rule: legacy_auth_blocked. */
  factorUsed: Counts;
  mfaFailed: Counts;
  factorLocked: Counts;
  legacyByRule: Counts;
  /** access_denied by rule, then by reason. */
  denials: Map<string, Counts>;
  /** Admin actions by action. */
  adminActions: Counts;
}

const label = (v: EventValue) => String(v ?? 'unknown');

export function emptySummary(): EventSummary {
  return {
    security: new Map(),
    signInsWithSecondFactor: 0,
    usersSeen: new Set(),
    factorUsed: new Map(),
    mfaFailed: new Map(),
    factorLocked: new Map(),
    legacyByRule: new Map(),
    denials: new Map(),
    adminActions: new Map(),
  };
}

/**
 * Counts an audit event into the summary if it falls in [from, to) and is a security event or an admin action.
 * Request records (one per request, with audit.requests) and gateway starts are not counted.
 */
export function countEvent(s: EventSummary, record: { time: string; event: Event }, period: { from: number; to: number }): void {
  const e = record.event;
  if (e.kind !== 'security' && e.kind !== 'admin') return;
  const t = Date.parse(record.time);
  if (!(t >= period.from && t < period.to)) return;
  if (e.kind === 'admin') {
    add(s.adminActions, label(e.action));
    return;
  }
  add(s.security, label(e.event));
  if (e.event === 'session_started' && hasSecondFactor(e)) s.signInsWithSecondFactor++;
  else if (e.event === 'password_ok' && typeof e.pid === 'string') s.usersSeen.add(e.pid);
  // A factor confirmed at a step-up is used as much as at a sign-in (its failures count in both too), and one set up at a
  // first sign-in, which that sign-in was proved with.
  else if (e.event === 'mfa_ok' || e.event === 'step_up_ok' || e.event === 'enrolled') add(s.factorUsed, label(e.factor));
  else if (e.event === 'mfa_failed') add(s.mfaFailed, label(e.factor));
  else if (e.event === 'factor_locked') add(s.factorLocked, label(e.factor));
  else if (e.event === 'legacy_auth_blocked') add(s.legacyByRule, label(e.rule));
  else if (e.event === 'access_denied') {
    const rule = label(e.rule);
    const reasons = s.denials.get(rule) ?? new Map<string, number>();
    s.denials.set(rule, add(reasons, label(e.reason)));
  }
}

function add(counts: Counts, key: string): Counts {
  return counts.set(key, (counts.get(key) ?? 0) + 1);
}

const total = (counts: Counts) => [...counts.values()].reduce((a, b) => a + b, 0);

export function buildReport(input: ReportInput): Report {
  const { from, to } = input.period;
  const ev = input.events;
  const count = (name: string) => ev.security.get(name) ?? 0;

  const sessions = count('session_started');
  const withSecondFactor = ev.signInsWithSecondFactor;
  const seen = ev.usersSeen;
  const enrolledOfSeen = [...seen].filter((pid) => input.store.enrolledUsers.has(pid)).length;

  const report: Omit<Report, 'findings'> = {
    period: { from: iso(from), to: iso(to) },
    generatedAt: iso(input.generatedAt),
    signIns: {
      total: sessions,
      withSecondFactor,
      withoutSecondFactor: sessions - withSecondFactor,
      secondFactorPercent: percent(withSecondFactor, sessions),
      allSecondFactor: withSecondFactor === sessions,
    },
    coverage: { usersSeen: seen.size, enrolledOfSeen, enrolledPercent: percent(enrolledOfSeen, seen.size), totalEnrolled: input.store.enrolledUsers.size },
    factors: {
      held: { ...input.store.factorsByKind },
      usedInPeriod: Object.fromEntries(FACTOR_KINDS.map((k) => [k, ev.factorUsed.get(k) ?? 0])) as Record<FactorKind, number>,
      unreadableRecords: input.store.unreadableFactorRecords,
    },
    failures: {
      passwordFailed: count('password_failed'),
      passwordThrottled: count('password_throttled'),
      mfaFailed: { total: count('mfa_failed'), byFactor: tally(ev.mfaFailed) },
      mfaReplayed: count('mfa_replayed'),
      mfaAttemptsExhausted: count('mfa_attempts_exhausted'),
      webauthnCounterRegressions: count('webauthn_counter_regression'),
    },
    lockouts: {
      factorLocked: { total: count('factor_locked'), byFactor: tally(ev.factorLocked) },
      addressBlocked: count('address_blocked'),
      loginFailureSurges: count('login_failure_surge'),
      lockoutsCleared: count('lockout_cleared'),
      blocksCleared: count('block_cleared'),
    },
    legacyAuthBlocked: { total: count('legacy_auth_blocked'), byRule: tally(ev.legacyByRule) },
    policyDenials: {
      total: count('access_denied'),
      byRule: tally(new Map([...ev.denials].map(([rule, reasons]) => [rule, total(reasons)]))).map(({ name, count }) => ({
        rule: name,
        count,
        reasons: tally(ev.denials.get(name)!),
      })),
    },
    adminActions: { total: total(ev.adminActions), byAction: tally(ev.adminActions) },
    policy: {
      description: describePolicy(input.policy),
      settings: input.settings.map((s) => ({ ...s })),
      keys: input.keys.map((k) => ({
        purpose: k.purpose,
        id: k.id,
        inUse: k.inUse,
        ageDays: k.firstSeen === null ? null : Math.max(0, Math.floor((input.generatedAt - k.firstSeen) / DAY_MS)),
      })),
    },
    audit: input.audit ? auditView(input.audit, input.generatedAt, input.checkpointIntervalSeconds) : { status: 'disabled' },
  };
  return { ...report, findings: findings(report, input.checkpointIntervalSeconds) };
}

function auditView(a: NonNullable<ReportInput['audit']>, now: number, checkpointIntervalSeconds: number): Exclude<Report['audit'], { status: 'disabled' }> {
  const read = a.problems.map((p) => ({ p, unsigned: unsignedView(p, a.chains, now, checkpointIntervalSeconds) }));
  return {
    // No record read (no trail directory at all: deleted, or not on this machine) verifies nothing.
    status: a.ok && a.records > 0 ? 'verified' : a.problems.every((p) => NOT_YET_SIGNED.has(p.kind)) ? 'unsigned' : 'problems',
    records: a.records,
    checkpoints: a.checkpoints,
    chains: a.chains.map((c) => ({ ...c })),
    // Records a gateway has yet to sign are no problem: they are in `unsigned`, and become one once overdue.
    problems: read.filter(({ unsigned }) => !unsigned || unsigned.overdue).map(({ p }) => ({ ...p })),
    unsigned: read.flatMap(({ unsigned }) => (unsigned ? [unsigned] : [])),
    empty: a.problems.filter((p) => p.kind === 'empty').map((p) => trailOf(p, a.chains)),
  };
}

/** The records no signature covers at the end of a trail (or in all of it), if that is what the problem is. */
function unsignedView(p: AuditProblemView, chains: readonly AuditChainView[], now: number, checkpointIntervalSeconds: number): UnsignedTrailView | null {
  if (!(p.kind === 'unsigned' || (p.kind === 'unsealed-tail' && !p.resumed)) || !p.unsigned) return null;
  const u = p.unsigned;
  const due = unsignedDeadline(u.firstTime, checkpointIntervalSeconds);
  return {
    trail: trailOf(p, chains),
    records: u.records,
    firstTime: u.firstTime,
    lastTime: u.lastTime,
    signedUpTo: u.sealedSeq !== undefined && u.sealedTime !== undefined ? { seq: u.sealedSeq, time: u.sealedTime } : null,
    dueBy: Number.isFinite(due) ? iso(due) : null,
    // As unsignedOverdue judges it, from the deadline just worked out (a time that cannot be read is overdue).
    overdue: !(now <= due),
  };
}

/** The trail a problem is in: as stated, or the deepest trail directory holding its file. */
function trailOf(p: AuditProblemView, chains: readonly AuditChainView[]): string {
  if (p.trail !== undefined) return p.trail;
  const holding = chains.map((c) => c.trail).filter((t) => p.file === t || p.file.startsWith(`${t.replace(/\/+$/, '')}/`));
  return holding.sort((a, b) => b.length - a.length)[0] ?? p.file;
}

/** RFC 8176 methods other than the password, or the factor used. */
function hasSecondFactor(e: Event): boolean {
  const amr = typeof e.amr === 'string' ? e.amr.split(',').map((m) => m.trim()) : [];
  return amr.some((m) => SECOND_FACTOR_AMR.has(m)) || FACTOR_KINDS.includes(e.factor as FactorKind);
}

/** Rounded down to one decimal, so that anything short of all never shows as 100; 100 when there is nothing to count. */
function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : Math.floor((part * 1000) / whole) / 10;
}

function tally(counts: Counts): Tally {
  return [...counts]
    .map(([name, count]) => ({ name, count }))
    .sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function findings(r: Omit<Report, 'findings'>, checkpointIntervalSeconds: number): string[] {
  const out: string[] = [];
  if (!r.signIns.allSecondFactor) {
    out.push(`${plural(r.signIns.withoutSecondFactor, 'sign-in')} without a second factor (${r.signIns.secondFactorPercent} % with one): this must be 100 %.`);
  }
  if (r.coverage.enrolledOfSeen < r.coverage.usersSeen) {
    const { usersSeen, enrolledOfSeen, enrolledPercent } = r.coverage;
    out.push(`Of the users who entered their password, ${enrolledOfSeen} of ${usersSeen} have a second factor set up (${enrolledPercent} %): this should be 100 %.`);
  }
  if (r.audit.status === 'disabled') out.push('The audit trail is switched off: sign-ins and changes cannot be proven afterwards.');
  else if (r.audit.records === 0) out.push('No audit records were found: check audit.dir (or --audit-dir); a trail that is missing proves nothing.');
  // Records no signature covers, per trail: normal while a gateway has yet to sign them (the audit section says by
  // when), in a new trail as after a signature; a finding once they have waited longer.
  if (r.audit.status !== 'disabled') {
    for (const u of r.audit.unsigned.filter((u) => u.overdue)) {
      out.push(
        u.signedUpTo === null
          ? `None of the ${plural(u.records, 'record')} in the audit trail ${u.trail} is covered by a signature, the first written ${u.firstTime}, and they have ${unsignedOverdueWords(checkpointIntervalSeconds)}. Such a trail cannot be told from a forged one; the figures count its records.`
          : `${plural(u.records, 'record')} in the audit trail ${u.trail} after its last signature (${u.signedUpTo.time}, record ${u.signedUpTo.seq}), the first written ${u.firstTime}, ${u.records === 1 ? 'has' : 'have'} ${unsignedOverdueWords(checkpointIntervalSeconds)}. The figures count them: check them with \`audit verify\`.`,
      );
    }
    if (r.audit.records > 0) {
      for (const trail of r.audit.empty) out.push(`The audit trail ${trail} holds no records: a gateway that has not written yet, or a trail that was deleted or emptied.`);
    }
  }
  // Unsigned records inside a signed chain: stated by the writer when it resumed (a crash before their checkpoint,
  // or records added without the key while it was stopped). The figures count them; no signature vouches for them.
  // The records after a chain's last checkpoint are not: a running gateway signs them at its next one.
  if (r.audit.status !== 'disabled') {
    const unsigned = r.audit.problems.filter((p) => p.kind === 'unsealed-tail' && p.resumed);
    if (unsigned.length > 0) {
      out.push(`The audit trail holds records no signature covers (${unsigned.map((p) => `from record ${p.seq} in ${p.file}`).join(', ')}), found when the gateway started again: after a crash that is expected; otherwise they may have been added without the key. The figures count them: check them with \`audit verify\`.`);
    }
  }
  if (r.audit.status === 'problems') {
    out.push(`The audit trail failed its check (${plural(r.audit.problems.length, 'problem')}): records may have been altered or removed.`);
  }
  if (r.factors.unreadableRecords > 0) {
    out.push(`${plural(r.factors.unreadableRecords, "user's factor record", "users' factor records")} cannot be opened with the configured encryption keys (a key was removed before \`keys rotate\` re-sealed them): those users cannot sign in. Configure the old key again and run \`keys rotate\`.`);
  }
  for (const k of r.policy.keys) {
    if (k.inUse && k.ageDays !== null && k.ageDays > MAX_KEY_AGE_DAYS) out.push(`The ${k.purpose} key "${k.id}" is ${k.ageDays} days old: replace it (at most ${MAX_KEY_AGE_DAYS} days).`);
  }
  if (r.legacyAuthBlocked.total > 0) {
    out.push(`${plural(r.legacyAuthBlocked.total, 'old-style login')} (HTTP Basic and similar) refused: a program or device still sends passwords that way.`);
  }
  if (r.failures.webauthnCounterRegressions > 0) {
    out.push(`${plural(r.failures.webauthnCounterRegressions, 'passkey')} reported a counter that went backwards: a security key may have been copied.`);
  }
  return out;
}

const FACTOR_WORDS: Record<RuleFactor, string> = {
  totp: 'an authenticator app code',
  webauthn: 'a passkey',
  'device-bound-passkey': 'a passkey that cannot leave its device',
  recovery: 'a recovery code',
};

/** The effective policy in plain words: one sentence per rule in order, then the default and legacy authentication. */
export function describePolicy(policy: PolicyConfig): string[] {
  const fallback = policy.default === 'deny' ? 'are refused' : 'need a sign-in with a second factor';
  return [
    ...policy.rules.map((r) => describeRule(r, policy.networks)),
    `Requests that no rule covers ${fallback}.`,
    'Old-style logins (HTTP Basic, Digest, NTLM, Negotiate, or passwords in the address) are refused unless a rule says otherwise.',
    policy.legacyEndpoints.length > 0
      ? `These old password endpoints are always refused: ${policy.legacyEndpoints.join(', ')}.`
      : 'No old password endpoints are listed.',
  ];
}

function describeRule(r: RuleConfig, networks: PolicyConfig['networks']): string {
  const conditions = [
    r.paths && `to ${orList(r.paths.map((p) => (p === '/' || p === '/**' ? 'any page' : p)))}`,
    r.hosts && `on ${orList(r.hosts)}`,
    r.networks && `from ${orList(r.networks.map((n) => (Object.hasOwn(networks, n) ? `the ${n} network` : n)))}`,
    r.device && (r.device === 'managed' ? 'on a managed device' : 'on a device that is not managed'),
    r.groups && `by members of ${orList(r.groups)}`,
  ].filter((c): c is string => Boolean(c));
  const subject = r.methods ? `${orList(r.methods.map((m) => m.toUpperCase()))} requests` : conditions.length > 0 ? 'Requests' : 'All requests';
  const legacy = r.allowLegacyAuth ? '; old-style logins (HTTP Basic and similar) are let through' : '';
  return `${[subject, ...conditions, decisionWords(r)].join(' ')}${legacy}.`;
}

function decisionWords(r: RuleConfig): string {
  const which = r.factors ? ` (${orList(r.factors.map((f) => FACTOR_WORDS[f]))})` : '';
  switch (r.decision) {
    case 'public':
      return 'are open to everyone, without signing in';
    case 'deny':
      return 'are refused';
    case 'mfa':
      return `need a sign-in with a second factor${which}`;
    case 'managed-device':
      return `need a managed device and a sign-in with a second factor${which}`;
    case 'step-up':
      return `need a second factor${which} no older than ${duration(r.maxAgeSeconds ?? 300)}`;
  }
}

/** A number of seconds in words, exactly: in hours or minutes when it is whole ones. */
export function duration(seconds: number): string {
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute');
  return plural(seconds, 'second');
}

function orList(items: readonly string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}
