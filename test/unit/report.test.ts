// The assurance report: every number from a scripted month of audit events, the findings, the plain-words policy,
// and the text and HTML renderings.
import t from 'tap';
import type { PolicyConfig } from '../../src/domain/policy.js';
import { buildReport, countEvent, describePolicy, emptySummary, type ReportInput } from '../../src/domain/report.js';
import { reportHtml, reportText } from '../../src/ui/report.js';
import { settingsInForce } from '../../src/services/report.js';
import { testConfig } from '../helpers/config.js';

const FROM = Date.parse('2025-03-01T00:00:00Z');
const TO = Date.parse('2025-04-01T00:00:00Z');
const GENERATED = Date.parse('2025-04-01T06:00:00Z');
const DAY = 86_400_000;

type Rec = Parameters<typeof countEvent>[1];
type Event = Rec['event'];
const at = (time: string, event: Event) => ({ time, event });
const sec = (time: string, event: string, fields: Event = {}) => at(time, { kind: 'security', event, ...fields });

const records: Rec[] = [
  // Three users, five sign-ins: app codes, passkeys, a recovery code.
  sec('2025-03-02T08:00:00.000Z', 'password_ok', { pid: 'p1' }),
  sec('2025-03-02T08:00:05.000Z', 'mfa_ok', { pid: 'p1', factor: 'totp' }),
  sec('2025-03-02T08:00:05.000Z', 'session_started', { pid: 'p1', amr: 'pwd,otp' }),
  sec('2025-03-03T08:00:00.000Z', 'password_ok', { pid: 'p1' }),
  sec('2025-03-03T08:00:05.000Z', 'mfa_ok', { pid: 'p1', factor: 'webauthn' }),
  sec('2025-03-03T08:00:05.000Z', 'session_started', { pid: 'p1', amr: 'pwd,hwk', factor: 'webauthn' }),
  sec('2025-03-04T09:00:00.000Z', 'password_ok', { pid: 'p2' }),
  sec('2025-03-04T09:00:05.000Z', 'mfa_ok', { pid: 'p2', factor: 'webauthn' }),
  sec('2025-03-04T09:00:05.000Z', 'session_started', { pid: 'p2', amr: 'pwd,hwk' }),
  sec('2025-03-05T09:00:00.000Z', 'password_ok', { pid: 'p2' }),
  sec('2025-03-05T09:00:05.000Z', 'mfa_ok', { pid: 'p2', factor: 'totp' }),
  sec('2025-03-05T09:00:05.000Z', 'session_started', { pid: 'p2', factor: 'totp' }),
  sec('2025-03-06T10:00:00.000Z', 'password_ok', { pid: 'p3' }),
  sec('2025-03-06T10:00:05.000Z', 'recovery_code_used', { pid: 'p3' }),
  sec('2025-03-06T10:00:05.000Z', 'mfa_ok', { pid: 'p3', factor: 'recovery' }),
  sec('2025-03-06T10:00:05.000Z', 'session_started', { pid: 'p3', amr: 'pwd,otp', factor: 'recovery' }),
  // Failures, the first at the very start of the period (inclusive).
  sec('2025-03-01T00:00:00.000Z', 'password_failed', { pid: 'p1' }),
  sec('2025-03-07T11:00:00.000Z', 'password_failed', { pid: 'p2' }),
  sec('2025-03-07T11:00:01.000Z', 'password_failed', { pid: 'p2' }),
  sec('2025-03-07T11:00:02.000Z', 'password_failed', {}),
  sec('2025-03-07T11:00:03.000Z', 'password_throttled', { reason: 'account' }),
  sec('2025-03-08T12:00:00.000Z', 'mfa_failed', { pid: 'p1', factor: 'totp', reason: 'wrong' }),
  sec('2025-03-08T12:00:01.000Z', 'mfa_failed', { pid: 'p1', factor: 'webauthn', reason: 'bad signature' }),
  sec('2025-03-08T12:00:02.000Z', 'mfa_replayed', { pid: 'p1', factor: 'totp' }),
  sec('2025-03-09T12:00:00.000Z', 'factor_locked', { pid: 'p2', factor: 'totp' }),
  sec('2025-03-09T13:00:00.000Z', 'address_blocked', { ip: '203.0.113.0/24' }),
  sec('2025-03-10T07:00:00.000Z', 'legacy_auth_blocked', { rule: 'portal', reason: 'legacy-auth' }),
  sec('2025-03-10T07:00:01.000Z', 'legacy_auth_blocked', { rule: 'legacy endpoints', reason: 'legacy-endpoint' }),
  sec('2025-03-11T07:00:00.000Z', 'access_denied', { rule: 'staff admin', reason: 'unmanaged-device', path: '/admin/' }),
  sec('2025-03-11T07:00:01.000Z', 'access_denied', { rule: 'admin closed', reason: 'rule', path: '/admin/' }),
  sec('2025-03-11T07:00:02.000Z', 'access_denied', { rule: 'admin closed', reason: 'rule', path: '/admin/x' }),
  at('2025-03-12T07:00:00.000Z', { kind: 'admin', action: 'lockout_clear', operator: 'ops', reason: 'user called', pid: 'p2' }),
  sec('2025-03-12T07:00:00.000Z', 'lockout_cleared', { pid: 'p2', factor: 'totp' }),
  // Request lines and gateway starts are not security events.
  at('2025-03-12T08:00:00.000Z', { kind: 'request', pid: 'p1', method: 'GET', path: '/admin/', rule: 'admin closed', verdict: 'deny', status: 403, ms: 2 }),
  at('2025-03-12T08:00:01.000Z', { kind: 'gateway_started', version: '1.0.0' }),
  // Outside the period: ignored, whatever they are (the end is exclusive).
  sec('2025-02-28T23:59:59.999Z', 'session_started', { pid: 'p9', amr: 'pwd' }),
  sec('2025-02-28T23:59:59.999Z', 'password_ok', { pid: 'p9' }),
  sec('2025-04-01T00:00:00.000Z', 'password_failed', { pid: 'p1' }),
  sec('2025-04-01T00:00:00.000Z', 'access_denied', { rule: 'admin closed', reason: 'rule' }),
  sec('2025-04-02T00:00:00.000Z', 'legacy_auth_blocked', { rule: 'portal', reason: 'legacy-auth' }),
  at('2025-02-01T00:00:00.000Z', { kind: 'admin', action: 'block_clear', operator: 'ops', reason: 'old' }),
];

const policy: PolicyConfig = {
  rules: [
    { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
    { name: 'appointments', paths: ['/appointments/*'], networks: ['clinic'], groups: ['staff'], decision: 'step-up', maxAgeSeconds: 900 },
    { name: 'admin closed', paths: ['/admin/'], decision: 'deny' },
    { name: 'portal', paths: ['/'], decision: 'mfa' },
  ],
  default: 'deny',
  caseSensitivePaths: false,
  networks: { clinic: ['10.20.0.0/16'] },
  legacyEndpoints: ['/api/login', '/xmlrpc.php'],
};

// Written in the minute before the report: a running gateway has yet to sign them.
const YOUNG_TAIL = { records: 4, firstTime: '2025-04-01T05:59:10.000Z', lastTime: '2025-04-01T05:59:50.000Z', sealedSeq: 36, sealedTime: '2025-04-01T05:59:00.000Z' };
const YOUNG_VIEW = { trail: 'audit', records: 4, firstTime: YOUNG_TAIL.firstTime, lastTime: YOUNG_TAIL.lastTime, signedUpTo: { seq: 36, time: YOUNG_TAIL.sealedTime }, dueBy: '2025-04-01T06:02:10.000Z', overdue: false };

/** The report's input, its events counted from `records` (the scripted month unless given) as the trail reader does. */
function input({ records: recs = records, ...over }: Partial<ReportInput> & { records?: Rec[] } = {}): ReportInput {
  const events = emptySummary();
  for (const r of recs) countEvent(events, r, { from: FROM, to: TO });
  return {
    period: { from: FROM, to: TO },
    generatedAt: GENERATED,
    events,
    store: { enrolledUsers: new Set(['p1', 'p2', 'p3', 'p7']), factorsByKind: { totp: 3, webauthn: 2, recovery: 4 }, unreadableFactorRecords: 0 },
    policy,
    settings: [
      { name: 'Session lifetime', value: '8 hours' },
      { name: 'Wrong codes before a lock', value: '100' },
    ],
    keys: [
      { purpose: 'session cookie', id: 'cookie-2025', inUse: true, firstSeen: GENERATED - 30 * DAY - 1 },
      { purpose: 'session cookie', id: 'cookie-2023', inUse: false, firstSeen: GENERATED - 800 * DAY },
      { purpose: 'audit signing', id: 'audit-1', inUse: true, firstSeen: null },
    ],
    audit: {
      ok: true,
      records: 40,
      checkpoints: 3,
      chains: [{ trail: 'audit', lastSealedSeq: 36 }],
      problems: [{ file: 'audit/audit.jsonl', line: 37, seq: 37, kind: 'unsealed-tail', message: '4 record(s) after the last signature (record 36) are not covered by one', trail: 'audit', unsigned: YOUNG_TAIL }],
    },
    checkpointIntervalSeconds: 60,
    ...over,
  };
}

t.test('every number of a scripted month', async (t) => {
  const r = buildReport(input());
  t.same(r.period, { from: '2025-03-01T00:00:00.000Z', to: '2025-04-01T00:00:00.000Z' });
  t.equal(r.generatedAt, '2025-04-01T06:00:00.000Z');
  t.same(r.signIns, { total: 5, withSecondFactor: 5, withoutSecondFactor: 0, secondFactorPercent: 100, allSecondFactor: true });
  t.same(r.coverage, { usersSeen: 3, enrolledOfSeen: 3, enrolledPercent: 100, totalEnrolled: 4 });
  t.same(r.factors, { held: { totp: 3, webauthn: 2, recovery: 4 }, usedInPeriod: { totp: 2, webauthn: 2, recovery: 1 }, unreadableRecords: 0 });
  t.same(r.failures, {
    passwordFailed: 4,
    passwordThrottled: 1,
    mfaFailed: { total: 2, byFactor: [{ name: 'totp', count: 1 }, { name: 'webauthn', count: 1 }] },
    mfaReplayed: 1,
    mfaAttemptsExhausted: 0,
    webauthnCounterRegressions: 0,
  });
  t.same(r.lockouts, { factorLocked: { total: 1, byFactor: [{ name: 'totp', count: 1 }] }, addressBlocked: 1, loginFailureSurges: 0, lockoutsCleared: 1, blocksCleared: 0 });
  t.same(r.legacyAuthBlocked, { total: 2, byRule: [{ name: 'legacy endpoints', count: 1 }, { name: 'portal', count: 1 }] });
  t.same(r.policyDenials, {
    total: 3,
    byRule: [
      { rule: 'admin closed', count: 2, reasons: [{ name: 'rule', count: 2 }] },
      { rule: 'staff admin', count: 1, reasons: [{ name: 'unmanaged-device', count: 1 }] },
    ],
  });
  t.same(r.adminActions, { total: 1, byAction: [{ name: 'lockout_clear', count: 1 }] });
  t.same(r.policy.description, describePolicy(policy));
  t.same(r.policy.settings, input().settings);
  t.same(r.policy.keys, [
    { purpose: 'session cookie', id: 'cookie-2025', inUse: true, ageDays: 30 },
    { purpose: 'session cookie', id: 'cookie-2023', inUse: false, ageDays: 800 },
    { purpose: 'audit signing', id: 'audit-1', inUse: true, ageDays: null },
  ]);
  t.same(r.audit, { status: 'verified', records: 40, checkpoints: 3, chains: [{ trail: 'audit', lastSealedSeq: 36 }], problems: [], unsigned: [YOUNG_VIEW], empty: [] }, 'records yet to be signed are not a problem');
  t.same(r.findings, ['2 old-style logins (HTTP Basic and similar) refused: a program or device still sends passwords that way.'], 'an unsealed tail and a retired old key are not findings');
  t.same(JSON.parse(JSON.stringify(r)), r, 'JSON-safe');
});

t.test('a sign-in with the password alone breaks the 100 %', async (t) => {
  const r = buildReport(input({ records: [...records, sec('2025-03-20T10:00:00.000Z', 'session_started', { pid: 'p2', amr: 'pwd' })] }));
  t.same(r.signIns, { total: 6, withSecondFactor: 5, withoutSecondFactor: 1, secondFactorPercent: 83.3, allSecondFactor: false });
  t.equal(r.findings[0], '1 sign-in without a second factor (83.3 % with one): this must be 100 %.');
  t.match(reportText(r), /Without a second factor +1\n/);
});

t.test('shares are rounded down, so anything short of all never reads 100', async (t) => {
  const many = Array.from({ length: 1999 }, (_, i) => sec('2025-03-20T10:00:00.000Z', 'session_started', { pid: `u${i}`, amr: 'pwd,otp' }));
  const r = buildReport(input({ records: [...many, sec('2025-03-20T10:00:00.000Z', 'session_started', { pid: 'x', amr: 'pwd' })] }));
  t.equal(r.signIns.secondFactorPercent, 99.9);
});

t.test('no sign-ins: 100 in the data, "no sign-ins" in the text', async (t) => {
  const r = buildReport(input({ records: [] }));
  t.same(r.signIns, { total: 0, withSecondFactor: 0, withoutSecondFactor: 0, secondFactorPercent: 100, allSecondFactor: true });
  t.equal(r.coverage.enrolledPercent, 100);
  t.match(reportText(r), /Share with a second factor \(must be 100 %\) +no sign-ins\n/);
  t.match(reportText(r), /Old-style logins refused\n-+\nNone in this period\./);
});

t.test('a factor confirmed at a step-up is used in the period too, not a sign-in', async (t) => {
  const stepUp = sec('2025-03-22T10:00:00.000Z', 'step_up_ok', { pid: 'p1', factor: 'webauthn', amr: 'pwd,hwk' });
  const r = buildReport(input({ records: [...records, stepUp] }));
  t.same(r.factors.usedInPeriod, { totp: 2, webauthn: 3, recovery: 1 });
  t.equal(r.signIns.total, 5);
});

t.test('a factor set up at a first sign-in is used in the period: that sign-in was proved with it', async (t) => {
  const firstSignIn = [
    sec('2025-03-23T10:00:00.000Z', 'password_ok', { pid: 'p4' }),
    sec('2025-03-23T10:00:20.000Z', 'factor_added', { pid: 'p4', factor: 'totp' }),
    sec('2025-03-23T10:00:20.000Z', 'enrolled', { pid: 'p4', factor: 'totp' }),
    sec('2025-03-23T10:01:00.000Z', 'session_started', { pid: 'p4', amr: 'pwd,otp', factor: 'totp' }),
  ];
  const r = buildReport(input({ records: [...records, ...firstSignIn] }));
  t.same(r.factors.usedInPeriod, { totp: 3, webauthn: 2, recovery: 1 });
  t.equal(r.signIns.withSecondFactor, 6);
  const added = sec('2025-03-24T10:00:00.000Z', 'factor_added', { pid: 'p4', factor: 'webauthn' });
  t.same(buildReport(input({ records: [...records, ...firstSignIn, added] })).factors.usedInPeriod, { totp: 3, webauthn: 2, recovery: 1 }, 'one added on the security page is not used by being added');
});

t.test('coverage: a user who entered their password but has no second factor', async (t) => {
  const r = buildReport(input({ records: [...records, sec('2025-03-21T10:00:00.000Z', 'password_ok', { pid: 'p4' })] }));
  t.same(r.coverage, { usersSeen: 4, enrolledOfSeen: 3, enrolledPercent: 75, totalEnrolled: 4 });
  t.ok(r.findings.includes('Of the users who entered their password, 3 of 4 have a second factor set up (75 %): this should be 100 %.'));
});

t.test('findings: old keys in use, a passkey counter going backwards', async (t) => {
  const r = buildReport(
    input({
      records: [sec('2025-03-21T10:00:00.000Z', 'webauthn_counter_regression', { pid: 'p1' })],
      keys: [{ purpose: 'session cookie', id: 'k-old', inUse: true, firstSeen: GENERATED - 366 * DAY }],
    }),
  );
  t.same(r.findings, [
    'The session cookie key "k-old" is 366 days old: replace it (at most 365 days).',
    '1 passkey reported a counter that went backwards: a security key may have been copied.',
  ]);
});

t.test('findings: factor records no configured key opens', async (t) => {
  const r = buildReport(input({ store: { enrolledUsers: new Set(['p1']), factorsByKind: { totp: 1, webauthn: 0, recovery: 1 }, unreadableFactorRecords: 2 } }));
  t.equal(r.factors.unreadableRecords, 2);
  t.ok(r.findings.some((f) => /^2 users' factor records cannot be opened with the configured encryption keys/.test(f)), 'a finding');
});

t.test('findings: records no signature covers inside the signed chain (a resumed writer), not the usual tail', async (t) => {
  const inside = { file: 'audit/audit.jsonl', line: 12, seq: 12, kind: 'unsealed-tail', message: '3 record(s) (records 12..14) had no valid checkpoint when the writer resumed', resumed: true };
  const tail = { file: 'audit/audit.jsonl', line: 37, seq: 37, kind: 'unsealed-tail', message: '4 record(s) after the last signature (record 36) are not covered by one' };
  const r = buildReport(input({ audit: { ok: true, records: 40, checkpoints: 3, chains: [{ trail: 'audit', lastSealedSeq: 36 }], problems: [inside, tail] } }));
  t.equal(r.audit.status, 'verified');
  t.same(r.findings.filter((f) => f.startsWith('The audit trail holds records no signature covers')).length, 1, 'flagged once');
  t.match(r.findings.join('\n'), 'from record 12 in audit/audit.jsonl)', 'the records inside the chain, not the tail');
});

t.test('several chains: each one with its own sealed position, in the text and the HTML', async (t) => {
  // A second instance that is running: its latest records wait for its next checkpoint, below the first one's seqs.
  const tail = { file: 'audit/b/audit.jsonl', line: 6, seq: 6, kind: 'unsealed-tail', message: '3 record(s) after the last signature (record 5) are not covered by one' };
  const chains = [
    { trail: 'audit/a', lastSealedSeq: 51 },
    { trail: 'audit/b', lastSealedSeq: 5 },
  ];
  const r = buildReport(input({ audit: { ok: true, records: 59, checkpoints: 3, chains, problems: [tail] } }));
  t.same(r.audit, { status: 'verified', records: 59, checkpoints: 3, chains, problems: [tail], unsigned: [], empty: [] });
  t.notOk(r.findings.some((f) => f.startsWith('The audit trail holds records no signature covers')), 'a running instance is not flagged');
  t.match(reportText(r), /\n {2}Last record covered by a signature in audit\/a +51\n {2}Last record covered by a signature in audit\/b +5\n/);
  t.match(reportHtml(r), '<th scope="row">Last record covered by a signature in audit/b</th><td class="num">5</td>');
});

t.test('records after the last signature are not called verified, nor a problem until overdue, then a finding and a problem', async (t) => {
  const young = buildReport(input());
  const text = reportText(young);
  t.notMatch(text, 'no sign of tampering.', 'not said of unsigned records');
  t.match(text, 'Result: verified up to the last signature of each trail');
  t.match(
    text,
    'audit: verified up to its last signature, at 2025-04-01 05:59 UTC (record 36). 4 records written since then are not signed yet, which is normal while the gateway runs: the next signature is due by 2025-04-01 06:03 UTC.',
    'information, due by a time rounded up to the minute',
  );
  t.notMatch(text, 'Problems', 'not listed as a problem');
  t.notMatch(text, 'unsealed-tail');
  t.notMatch(reportHtml(young), 'Problems');
  t.same(young.findings.filter((f) => f.includes('signature')), [], 'a running gateway signs them soon: no finding');
  t.equal(buildReport(input({ audit: { ...input().audit!, problems: [{ ...input().audit!.problems[0]!, unsigned: { ...YOUNG_TAIL, records: 1 } }] } })).audit.status, 'verified');
  t.match(
    reportText(buildReport(input({ audit: { ...input().audit!, problems: [{ ...input().audit!.problems[0]!, unsigned: { ...YOUNG_TAIL, records: 1 } }] } }))),
    '1 record written since then is not signed yet',
  );
  // A rewritten tail, or a gateway that crashed: written an hour before the report, and still not signed.
  const old = { ...YOUNG_TAIL, firstTime: '2025-04-01T05:00:00.000Z', lastTime: '2025-04-01T05:01:00.000Z', sealedTime: '2025-04-01T04:59:00.000Z' };
  const tail = { ...input().audit!.problems[0]!, unsigned: old };
  const r = buildReport(input({ audit: { ...input().audit!, problems: [tail] } }));
  t.equal(r.audit.status, 'verified');
  t.same(r.audit.status === 'disabled' ? null : r.audit.unsigned.map((u) => u.overdue), [true]);
  t.same(r.audit.status === 'disabled' ? null : r.audit.problems, [tail], 'overdue: a problem');
  t.match(r.findings.join('\n'), /^4 records in the audit trail audit after its last signature \(2025-04-01T04:59:00\.000Z, record 36\), the first written 2025-04-01T05:00:00\.000Z, have waited over 3 minutes .*without the key/m);
  t.match(reportText(r), 'audit: verified up to its last signature, at 2025-04-01 04:59 UTC (record 36). 4 records written since then were not signed in time: see Findings.');
  t.match(reportText(r), /Problems, in file order\n.*\n {2}audit\/audit\.jsonl:37 +37 +unsealed-tail/);
  const slow = buildReport(input({ audit: { ...input().audit!, problems: [tail] }, checkpointIntervalSeconds: 3600 }));
  t.notOk(slow.findings.some((f) => f.includes('after its last signature')), 'within two of its intervals: not overdue');
  t.same(slow.audit.status === 'disabled' ? null : slow.audit.problems, [], 'nor a problem');
});

t.test('audit problems show in the findings, the text and the HTML', async (t) => {
  const problem = { file: 'audit/audit-2025-03.jsonl', line: 7, seq: 7, kind: 'edited', message: 'content does not match its hash' };
  const r = buildReport(input({ audit: { ok: false, records: 40, checkpoints: 2, chains: [{ trail: 'audit', lastSealedSeq: 20 }], problems: [problem] } }));
  t.same(r.audit, { status: 'problems', records: 40, checkpoints: 2, chains: [{ trail: 'audit', lastSealedSeq: 20 }], problems: [problem], unsigned: [], empty: [] });
  t.ok(r.findings.includes('The audit trail failed its check (1 problem): records may have been altered or removed.'));
  const text = reportText(r);
  t.match(text, 'Result: PROBLEMS FOUND');
  t.match(text, /audit\/audit-2025-03\.jsonl:7 +7 +edited +content does not match its hash/);
  const html = reportHtml(r);
  t.match(html, '<th scope="row">audit/audit-2025-03.jsonl:7</th><td class="num">7</td><td>edited</td><td>content does not match its hash</td>');
});

t.test('audit trail switched off', async (t) => {
  const r = buildReport(input({ audit: null }));
  t.same(r.audit, { status: 'disabled' });
  t.ok(r.findings.includes('The audit trail is switched off: sign-ins and changes cannot be proven afterwards.'));
  t.match(reportText(r), 'The audit trail is switched off.');
});

t.test('an audit trail with no records is a finding, not a clean bill', async (t) => {
  const r = buildReport(input({ audit: { ok: true, records: 0, checkpoints: 0, chains: [{ trail: 'audit', lastSealedSeq: 0 }], problems: [] } }));
  t.ok(r.findings.includes('No audit records were found: check audit.dir (or --audit-dir); a trail that is missing proves nothing.'));
  t.notOk(buildReport(input()).findings.some((f) => f.startsWith('No audit records')), 'not when there are records');
});

t.test('no trail read at all (the audit directory is gone) is not verified', async (t) => {
  const r = buildReport(input({ audit: { ok: true, records: 0, checkpoints: 0, chains: [], problems: [] } }));
  t.equal(r.audit.status, 'unsigned', 'nothing was checked');
  t.notMatch(reportText(r), 'Result: verified');
  t.match(reportText(r), 'Result: not verified');
  t.ok(r.findings.some((f) => f.startsWith('No audit records were found')));
});

t.test('a trail not signed yet (a new gateway) is "not verified", not tampered with nor a finding; one that stays so is a finding', async (t) => {
  const young = { records: 3, firstTime: '2025-04-01T05:59:30.000Z', lastTime: '2025-04-01T05:59:40.000Z' };
  const unsigned = { file: 'audit/audit.jsonl', line: 1, seq: 1, kind: 'unsigned', message: 'no valid checkpoint: none of the 3 record(s) is covered by a signature', trail: 'audit', unsigned: young };
  const r = buildReport(input({ audit: { ok: false, records: 3, checkpoints: 0, chains: [{ trail: 'audit', lastSealedSeq: 0 }], problems: [unsigned] } }));
  t.equal(r.audit.status, 'unsigned');
  // Information until its first signature is due, as records after a signature are: said in the audit section only.
  t.same(r.findings.filter((f) => f.includes('signature') || f.includes('audit trail')), [], 'no finding, no claim of tampering');
  t.same(r.audit.status === 'disabled' ? null : r.audit.problems, [], 'nor a problem');
  t.match(
    reportText(r),
    'Result: not verified: a trail without records, or with records no signature covers, cannot be told from an emptied or forged one.\naudit: 3 records written since 2025-04-01 05:59 UTC are not signed yet, which is normal while the gateway runs: the first signature is due by 2025-04-01 06:03 UTC.',
  );
  t.notMatch(reportText(r), 'Problems, in file order', 'not a problem yet');
  const edited = { ...unsigned, line: 2, seq: 2, kind: 'edited', message: 'content does not match its hash' };
  t.equal(buildReport(input({ audit: { ok: false, records: 3, checkpoints: 0, chains: [{ trail: 'audit', lastSealedSeq: 0 }], problems: [unsigned, edited] } })).audit.status, 'problems', 'with another problem: problems');

  // A month old and never signed: not "normal".
  const old = { ...unsigned, unsigned: { ...young, firstTime: '2025-03-02T08:00:00.000Z' } };
  const o = buildReport(input({ audit: { ok: false, records: 3, checkpoints: 0, chains: [{ trail: 'audit', lastSealedSeq: 0 }], problems: [old] } }));
  t.notOk(o.findings.some((f) => f.includes('normal')), 'not normal');
  t.ok(o.findings.some((f) => f.startsWith('None of the 3 records in the audit trail audit is covered by a signature, the first written 2025-03-02T08:00:00.000Z, and they have waited over 3 minutes')));
});

t.test('an emptied trail next to a signed one: said of that trail, not of every record', async (t) => {
  const empty = { file: 'audit/gw', line: 0, kind: 'empty', message: 'no records: the trail is missing or was emptied', trail: 'audit/gw' };
  const chains = [
    { trail: 'audit/gw', lastSealedSeq: 0 },
    { trail: 'audit/gw/admin', lastSealedSeq: 12 },
  ];
  const r = buildReport(input({ audit: { ok: false, records: 12, checkpoints: 2, chains, problems: [empty] } }));
  t.notOk(r.findings.some((f) => /No audit record is covered|no record .* signed yet/i.test(f)), 'not "nothing is signed"');
  t.ok(r.findings.includes('The audit trail audit/gw holds no records: a gateway that has not written yet, or a trail that was deleted or emptied.'));
  t.match(reportText(r), '\naudit/gw: no records.\n');
});

t.test('text: headed sections, aligned numbers, the policy in plain words', async (t) => {
  const text = reportText(buildReport(input()));
  t.ok(text.endsWith('\n'));
  t.match(text, /^MFA gateway assurance report\nPeriod: 2025-03-01 00:00 UTC to 2025-04-01 00:00 UTC\n/);
  for (const heading of ['Findings', 'Sign-ins', 'Enrolment', 'Failed attempts', 'Access policy', 'Keys', 'Audit trail']) {
    t.match(text, `\n${heading}\n${'-'.repeat(heading.length)}\n`);
  }
  t.match(text, 'Requests to /appointments/* from the clinic network by members of staff need a second factor no older than 15 minutes.');
  t.match(text, /  Authenticator app +3 +2\n  Passkey +2 +2\n  Recovery codes +4 +1\n/);
  const ends = text
    .split('\n')
    .filter((l) => /^ {2}(Sign-ins|With a second factor|Without a second factor) +\d+$/.test(l))
    .map((l) => l.length);
  t.equal(ends.length, 3);
  t.equal(new Set(ends).size, 1, 'numbers end in one column');
});

t.test('a number among words is aligned as they are: right only in a column of numbers', async (t) => {
  const r = buildReport(input());
  const text = reportText(r);
  t.match(text, '\n  Session lifetime           8 hours\n  Wrong codes before a lock  100\n', 'the settings, numbers and words alike, from the left');
  t.match(text, /\n {2}Kind +Held now +Used in the period\n {2}Authenticator app +3 +2\n/, 'a column of numbers, heading and all, to the right');
  const html = reportHtml(r);
  t.match(html, '<th scope="row">Wrong codes before a lock</th><td>100</td>');
  t.match(html, '<th scope="col">Value</th>');
  t.match(html, '<th scope="col" class="num">Held now</th>');
  t.match(html, '<th scope="row">Authenticator app</th><td class="num">3</td><td class="num">2</td>');
});

t.test('HTML: one self-contained printable page, every value escaped', async (t) => {
  const hostile = '<script>alert(1)</script>';
  const r = buildReport(
    input({
      records: [...records, sec('2025-03-21T10:00:00.000Z', 'access_denied', { rule: hostile, reason: '"><img src=x onerror=alert(1)>' })],
      settings: [{ name: 'Portal name', value: `Riverbend & Co ${hostile}` }],
    }),
  );
  const html = reportHtml(r);
  t.ok(html.startsWith('<!doctype html>\n<html lang="en">'));
  t.match(html, /<title>MFA gateway assurance report, 2025-03-01 00:00 UTC to 2025-04-01 00:00 UTC<\/title>/);
  t.match(html, /<style>[^]*@media print[^]*<\/style>/);
  t.match(html, '<caption>Requests refused: 4</caption>');
  t.match(html, '<th scope="col">Rule</th>');
  t.match(html, '<th scope="row">&#60;script&#62;alert(1)&#60;/script&#62;</th>');
  t.match(html, 'Riverbend &#38; Co');
  t.notMatch(html, hostile);
  t.notMatch(html, '<img');
  t.notMatch(html, /<script|<link|<[^>]*\s(?:src|href)=|url\(/i, 'no scripts, no external resources');
  const page = reportHtml(r, { portal: '/' });
  t.match(page, '<header>\n<nav><a href="/">Back to the portal</a></nav>\n<h1>', "the gateway's page leads back to the portal");
  t.match(page, /@media print \{[^]*\n  nav \{ display: none; \}\n\}\n<\/style>/, 'not on paper');
  t.equal(page.replace('<nav><a href="/">Back to the portal</a></nav>\n', ''), html, 'and is otherwise the same');
  t.match(html, '<li>Requests to /appointments/* from the clinic network by members of staff need a second factor no older than 15 minutes.</li>');
});

t.test('settings: timeouts as configured, to the second', async (t) => {
  const timeouts = (idle: number, absolute: number) =>
    settingsInForce(testConfig('http://127.0.0.1:1', (raw) => (raw.session = { idleTimeoutSeconds: idle, absoluteTimeoutSeconds: absolute })))
      .filter((s) => s.name.startsWith('Session'))
      .map((s) => s.value);
  t.same(timeouts(900, 43200), ['15 minutes', '12 hours']);
  t.same(timeouts(20, 90), ['20 seconds', '90 seconds'], 'not "0 minutes", nor 90 s as 2 minutes');
});

t.test('settings: limits in words, each saying what happens', async (t) => {
  const settings = Object.fromEntries(settingsInForce(testConfig('http://127.0.0.1:1')).map((s) => [s.name, s.value]));
  t.same(
    [settings['Wrong passwords per account'], settings['Wrong second factors per user'], settings['Wrong codes in one login'], settings['Credential stuffing'], settings['Audit trail']],
    [
      '5 free, then waits from 1 second up to 15 minutes',
      '5 free, then growing waits; locked after 100 in a row',
      '5, then the password must be entered again',
      // The count starts again only after a pause that long, not every so many minutes.
      'an address whose wrong passwords reach 20 accounts, without a pause of 10 minutes between two, is blocked for 1 hour',
      'on, recording security events; signed every 1000 records or 1 minute',
    ],
  );
});

t.test('settings: TLS as far as the config tells it, a proxy never stated as checked', async (t) => {
  const tls = (c: ReturnType<typeof testConfig>) => settingsInForce(c).find((s) => s.name === 'TLS')?.value;
  const plain = testConfig('http://127.0.0.1:1');
  t.equal(tls(plain), 'none: the gateway serves plain HTTP itself (neither server.tls nor server.trustedProxies is set)');
  t.equal(tls(testConfig('http://127.0.0.1:1', (raw) => (raw.server.trustedProxies = ['10.0.0.10']))), 'terminated by a proxy in front (server.trustedProxies; not verified by the gateway)');
  t.equal(tls({ ...plain, server: { ...plain.server, tls: { certFile: '/tls/gw.crt', keyFile: '/tls/gw.key' } } }), 'the gateway terminates TLS 1.2 or later');
});

t.test('describePolicy: each decision and condition in plain words, then the default and legacy endpoints', async (t) => {
  const lines = describePolicy({
    rules: [
      { name: 'public', paths: ['/login', '/static/'], decision: 'public' },
      { name: 'closed', paths: ['/admin/'], decision: 'deny' },
      { name: 'portal', paths: ['/'], decision: 'mfa' },
      { name: 'strong', hosts: ['staff.example'], decision: 'mfa', factors: ['webauthn'] },
      { name: 'kiosk', paths: ['/kiosk/'], device: 'managed', decision: 'managed-device' },
      { name: 'not kiosk', device: 'unmanaged', decision: 'deny' },
      { name: 'appointments', paths: ['/appointments/*'], networks: ['clinic'], groups: ['staff'], decision: 'step-up', maxAgeSeconds: 900 },
      { name: 'prescriptions', paths: ['/prescriptions/**'], methods: ['post', 'PUT'], groups: ['doctors', 'nurses'], decision: 'step-up', factors: ['totp', 'webauthn'] },
      { name: 'reports', paths: ['/reports/*.pdf'], decision: 'step-up', maxAgeSeconds: 7200 },
      { name: 'quick', paths: ['/sign/'], decision: 'step-up', maxAgeSeconds: 90 },
      { name: 'lab', paths: ['/legacy/results'], networks: ['lab', '10.30.0.5'], allowLegacyAuth: true, decision: 'public' },
      { name: 'rest', decision: 'mfa' },
    ],
    default: 'mfa',
    caseSensitivePaths: false,
    networks: { clinic: ['10.20.0.0/16'], lab: ['10.30.0.0/24'] },
    legacyEndpoints: [],
  });
  t.same(lines, [
    'Requests to /login or /static/ are open to everyone, without signing in.',
    'Requests to /admin/ are refused.',
    'Requests to any page need a sign-in with a second factor.',
    'Requests on staff.example need a sign-in with a second factor (a passkey).',
    'Requests to /kiosk/ on a managed device need a managed device and a sign-in with a second factor.',
    'Requests on a device that is not managed are refused.',
    'Requests to /appointments/* from the clinic network by members of staff need a second factor no older than 15 minutes.',
    'POST or PUT requests to /prescriptions/** by members of doctors or nurses need a second factor (an authenticator app code or a passkey) no older than 5 minutes.',
    'Requests to /reports/*.pdf need a second factor no older than 2 hours.',
    'Requests to /sign/ need a second factor no older than 90 seconds.',
    'Requests to /legacy/results from the lab network or 10.30.0.5 are open to everyone, without signing in; old-style logins (HTTP Basic and similar) are let through.',
    'All requests need a sign-in with a second factor.',
    'Requests that no rule covers need a sign-in with a second factor.',
    'Old-style logins (HTTP Basic, Digest, NTLM, Negotiate, or passwords in the address) are refused unless a rule says otherwise.',
    'No old password endpoints are listed.',
  ]);
  const denyDefault = describePolicy({ ...policy, rules: [] });
  t.same(denyDefault, [
    'Requests that no rule covers are refused.',
    'Old-style logins (HTTP Basic, Digest, NTLM, Negotiate, or passwords in the address) are refused unless a rule says otherwise.',
    'These old password endpoints are always refused: /api/login, /xmlrpc.php.',
  ]);
});
