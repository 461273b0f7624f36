// The assurance report for a practice manager: plain text, and one self-contained printable HTML page.
import type { FactorKind } from '../domain/policy.js';
import { plural, type Report, type Tally } from '../domain/report.js';
import en from './locales/en.json' with { type: 'json' };

type Cell = string | number;

/** The first cell of each row names it. */
interface Table {
  caption: string;
  head?: string[];
  rows: Cell[][];
}

interface Section {
  title: string;
  notes: string[];
  list?: { ordered: boolean; items: string[] };
  tables: Table[];
}

const TITLE = 'MFA gateway assurance report';
const FACTOR_NAMES: Record<FactorKind, string> = { totp: 'Authenticator app', webauthn: 'Passkey', recovery: 'Recovery codes' };
const REASONS: Readonly<Record<string, string>> = {
  rule: 'refused by the rule',
  'unmanaged-device': 'device not managed',
  'unknown-address': 'address unknown',
  'method-override': 'method override in the address',
  'legacy-endpoint': 'old password endpoint',
  'legacy-auth': 'old-style login',
};

const pct = (n: number, whole: number, none: string) => (whole === 0 ? none : `${n} %`);
const factorName = (f: string) => FACTOR_NAMES[f as FactorKind] ?? f;
const when = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
/** A time something is due by, to the minute after it: `when` would put it up to a minute too early. */
const by = (iso: string) => when(new Date(Math.ceil(Date.parse(iso) / 60_000) * 60_000).toISOString());

function sections(r: Report): Section[] {
  const none = (t: readonly unknown[]) => (t.length === 0 ? ['None in this period.'] : []);
  const tallyTable = (caption: string, head: string[], t: Tally): Table[] => (t.length === 0 ? [] : [{ caption, head, rows: t.map((e) => [e.name, e.count]) }]);
  const { signIns: s, coverage: c, failures: f, lockouts: l, audit: a } = r;
  return [
    { title: 'Findings', notes: r.findings.length === 0 ? ['Nothing to flag.'] : [], list: { ordered: false, items: r.findings }, tables: [] },
    {
      title: 'Sign-ins',
      notes: [],
      tables: [
        {
          caption: 'Sign-ins in the period',
          rows: [
            ['Sign-ins', s.total],
            ['With a second factor', s.withSecondFactor],
            ['Without a second factor', s.withoutSecondFactor],
            ['Share with a second factor (must be 100 %)', pct(s.secondFactorPercent, s.total, 'no sign-ins')],
          ],
        },
      ],
    },
    {
      title: 'Enrolment',
      notes: [],
      tables: [
        {
          caption: 'Users and their second factors',
          rows: [
            ['Users who entered their password in the period', c.usersSeen],
            ['… of them with a second factor set up', c.enrolledOfSeen],
            ['Share set up', pct(c.enrolledPercent, c.usersSeen, 'nobody signed in')],
            ['Users with a second factor set up, in all', c.totalEnrolled],
          ],
        },
      ],
    },
    {
      title: 'Second factors',
      notes: ['Recovery codes held: users with at least one unused recovery code.'],
      tables: [
        {
          caption: 'Second factors by kind',
          head: ['Kind', 'Held now', 'Used in the period'],
          rows: (Object.keys(FACTOR_NAMES) as FactorKind[]).map((k) => [FACTOR_NAMES[k], r.factors.held[k], r.factors.usedInPeriod[k]]),
        },
      ],
    },
    {
      title: 'Failed attempts',
      notes: [],
      tables: [
        {
          caption: 'Failed and refused attempts in the period',
          rows: [
            ['Wrong passwords', f.passwordFailed],
            ['Password attempts slowed down or refused', f.passwordThrottled],
            ['Wrong second factors', f.mfaFailed.total],
            ...f.mfaFailed.byFactor.map((e) => [`… ${factorName(e.name)}`, e.count]),
            ['Codes used a second time (refused)', f.mfaReplayed],
            ['Sign-ins stopped after too many wrong codes', f.mfaAttemptsExhausted],
            ['Passkeys whose counter went backwards', f.webauthnCounterRegressions],
          ],
        },
      ],
    },
    {
      title: 'Lockouts and blocks',
      notes: [],
      tables: [
        {
          caption: 'Lockouts and blocks in the period',
          rows: [
            ['Second factors locked', l.factorLocked.total],
            ...l.factorLocked.byFactor.map((e) => [`… ${factorName(e.name)}`, e.count]),
            ['Addresses blocked (many accounts tried)', l.addressBlocked],
            ['Surges of failed logins', l.loginFailureSurges],
            ['Lockouts cleared by an administrator', l.lockoutsCleared],
            ['Blocks cleared by an administrator', l.blocksCleared],
          ],
        },
      ],
    },
    {
      title: 'Old-style logins refused',
      notes: none(r.legacyAuthBlocked.byRule),
      tables: tallyTable(`Old-style logins (HTTP Basic and similar) refused: ${r.legacyAuthBlocked.total}`, ['Rule', 'Refused'], r.legacyAuthBlocked.byRule),
    },
    {
      title: 'Requests refused by the access policy',
      notes: none(r.policyDenials.byRule),
      tables:
        r.policyDenials.byRule.length === 0
          ? []
          : [
              {
                caption: `Requests refused: ${r.policyDenials.total}`,
                head: ['Rule', 'Refused', 'Why'],
                rows: r.policyDenials.byRule.map((d) => [d.rule, d.count, d.reasons.map((e) => `${REASONS[e.name] ?? e.name}: ${e.count}`).join(', ')]),
              },
            ],
    },
    {
      title: 'Administrator actions',
      notes: none(r.adminActions.byAction),
      tables: tallyTable(`Administrator actions: ${r.adminActions.total}`, ['Action', 'Count'], r.adminActions.byAction),
    },
    {
      title: 'Access policy',
      notes: ['Rules are checked in order: the first that fits a request decides.'],
      list: { ordered: true, items: r.policy.description },
      tables: [],
    },
    {
      title: 'Security settings',
      notes: r.policy.settings.length === 0 ? ['No settings listed.'] : [],
      tables: r.policy.settings.length === 0 ? [] : [{ caption: 'Settings in force', head: ['Setting', 'Value'], rows: r.policy.settings.map((x) => [x.name, x.value]) }],
    },
    {
      title: 'Keys',
      notes: r.policy.keys.length === 0 ? ['No keys listed.'] : [],
      tables:
        r.policy.keys.length === 0
          ? []
          : [
              {
                caption: 'Keys and their age',
                head: ['Purpose', 'Key id', 'In use', 'Age'],
                rows: r.policy.keys.map((k) => [k.purpose, k.id, k.inUse ? 'yes' : 'no', k.ageDays === null ? 'unknown' : `${k.ageDays} days`]),
              },
            ],
    },
    auditSection(a),
  ];
}

function auditSection(a: Report['audit']): Section {
  if (a.status === 'disabled') return { title: 'Audit trail', notes: ['The audit trail is switched off.'], tables: [] };
  // Records no signature covers are never called verified: anyone who can write the files can rewrite them.
  const result =
    a.status === 'verified'
      ? a.unsigned.length === 0
        ? 'Result: verified, no sign of tampering.'
        : 'Result: verified up to the last signature of each trail, no sign of tampering in the records it covers. The records written since (below) are counted in the figures, but nothing vouches for them until they are signed.'
      : a.status === 'unsigned'
        ? 'Result: not verified: a trail without records, or with records no signature covers, cannot be told from an emptied or forged one.'
        : 'Result: PROBLEMS FOUND. Records may have been altered or removed.';
  // Records a gateway has yet to sign are information; once overdue they are a finding and a problem.
  const trails = [
    ...a.unsigned.map((u) => {
      const [is, was] = u.records === 1 ? ['is', 'was'] : ['are', 'were'];
      const records = `${plural(u.records, 'record')} written since ${u.signedUpTo ? 'then' : when(u.firstTime)}`;
      const state = u.overdue
        ? `${was} not signed in time: see Findings.`
        : `${is} not signed yet, which is normal while the gateway runs: the ${u.signedUpTo ? 'next' : 'first'} signature is due by ${by(u.dueBy!)}.`;
      return u.signedUpTo
        ? `${u.trail}: verified up to its last signature, at ${when(u.signedUpTo.time)} (record ${u.signedUpTo.seq}). ${records} ${state}`
        : `${u.trail}: ${records} ${state}`;
    }),
    ...a.empty.map((t) => `${t}: no records.`),
  ];
  const checked: Table = {
    caption: 'Check of the audit trail',
    rows: [
      ['Records', a.records],
      ['Signed checkpoints', a.checkpoints],
      // Each chain counts its own seqs: one figure per directory.
      ...a.chains.map((c): Cell[] => [`Last record covered by a signature in ${c.trail}`, c.lastSealedSeq]),
    ],
  };
  const problems: Table = {
    caption: 'Problems, in file order',
    head: ['Where', 'Record', 'Kind', 'What'],
    rows: a.problems.map((p) => [`${p.file}:${p.line}`, p.seq ?? '–', p.kind, p.message]),
  };
  return { title: 'Audit trail', notes: [result, ...trails], tables: a.problems.length === 0 ? [checked] : [checked, problems] };
}

const NUMERIC = /^(?:-?\d+(?:\.\d+)?(?: %)?|–)$/;
const numeric = (c: Cell) => NUMERIC.test(String(c));
/** Per column: whether it holds numbers only, so is aligned right (a number among words is aligned as they are). */
const numberColumns = (t: Table): boolean[] =>
  Array.from({ length: Math.max(...[t.head ?? [], ...t.rows].map((row) => row.length)) }, (_, i) => i > 0 && t.rows.every((row) => numeric(row[i] ?? '')));

function textTable(t: Table): string[] {
  const rows = t.head ? [t.head, ...t.rows] : t.rows;
  const cells = rows.map((row) => row.map(String));
  const right = numberColumns(t);
  const widths = right.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [t.caption, ...cells.map((row) => `  ${line(row)}`)];
}

export function reportText(r: Report): string {
  const head = [TITLE, `Period: ${when(r.period.from)} to ${when(r.period.to)}`, `Generated: ${when(r.generatedAt)}`];
  const body = sections(r).map((s) => {
    const items = s.list?.items.map((item, i) => `${s.list!.ordered ? `${i + 1}.` : '-'} ${item}`) ?? [];
    const tables = s.tables.flatMap((t) => ['', ...textTable(t)]);
    return [s.title, '-'.repeat(s.title.length), ...s.notes, ...items, ...tables].join('\n');
  });
  return `${[head.join('\n'), ...body].join('\n\n')}\n`;
}

const esc = (v: Cell) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function htmlTable(t: Table): string {
  const right = numberColumns(t);
  const num = (i: number) => (right[i] ? ' class="num"' : '');
  const head = t.head ? `<thead><tr>${t.head.map((h, i) => `<th scope="col"${num(i)}>${esc(h)}</th>`).join('')}</tr></thead>\n` : '';
  const rows = t.rows
    .map(([first, ...rest]) => `<tr><th scope="row">${esc(first ?? '')}</th>${rest.map((c, i) => `<td${num(i + 1)}>${esc(c)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table>\n<caption>${esc(t.caption)}</caption>\n${head}<tbody>\n${rows}\n</tbody>\n</table>`;
}

function htmlSection(s: Section): string {
  const tag = s.list?.ordered ? 'ol' : 'ul';
  const list = s.list && s.list.items.length > 0 ? `<${tag}>\n${s.list.items.map((i) => `<li>${esc(i)}</li>`).join('\n')}\n</${tag}>` : '';
  return [`<section>\n<h2>${esc(s.title)}</h2>`, ...s.notes.map((n) => `<p>${esc(n)}</p>`), list, ...s.tables.map(htmlTable), '</section>'].filter(Boolean).join('\n');
}

const STYLE = `body { font: 11pt/1.4 system-ui, sans-serif; color: #111; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.25rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #999; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.25rem; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th[scope="row"] { font-weight: normal; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  section { break-inside: avoid; }
  h2 { break-after: avoid; }
  nav { display: none; }
}`;

/**
 * `portal`: the portal's address, for the gateway's page: a link back to it. The command line's page, a file, has no
 * link.
 */
export function reportHtml(r: Report, opts: { portal?: string } = {}): string {
  const body = sections(r).map(htmlSection);
  const back = opts.portal === undefined ? '' : `<nav><a href="${esc(opts.portal)}">${esc(en.backToPortal)}</a></nav>\n`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(TITLE)}, ${esc(when(r.period.from))} to ${esc(when(r.period.to))}</title>
<style>
${STYLE}
</style>
</head>
<body>
<header>
${back}<h1>${esc(TITLE)}</h1>
<p>Period: ${esc(when(r.period.from))} to ${esc(when(r.period.to))}. Generated: ${esc(when(r.generatedAt))}.</p>
</header>
<main>
${body.join('\n')}
</main>
</body>
</html>
`;
}
