// `mfa-gateway report`: the assurance report for a period, as text, JSON or printable HTML.
import { existsSync, statSync } from 'node:fs';
import { distinctDirs, openAuditDir } from '../audit/file-sink.js';
import { parseRecord } from '../audit/record.js';
import type { Gateway } from '../gateway.js';
import { assuranceReport } from '../services/report.js';
import { readTrail, type TrailRequest } from '../services/report-trail.js';
import { reportHtml, reportText } from '../ui/report.js';
import { UsageError } from './usage.js';

const DAY_MS = 86_400_000;

export interface ReportArgs {
  from?: string;
  to?: string;
  days?: string;
  format?: string;
  auditDirs?: string[];
}

/**
 * The period: --from/--to, or the last --days (default 30) up to now. A date is a UTC day: `--to 2026-05-04` takes
 * that day in, so `--from D --to D` is the day D. A time needs its offset (`Z`, `+02:00`): without one it would be read
 * in the machine's own zone.
 */
export function reportPeriod(a: ReportArgs, now: number): { from: number; to: number } {
  if (a.days !== undefined && (a.from !== undefined || a.to !== undefined)) throw new UsageError('give --days N or --from/--to, not both');
  const to = a.to === undefined ? now : instant(a.to, '--to', DAY_MS);
  // Digits only: Number() would also take `1e2`, `0x10` and ` 7`.
  const days = a.days === undefined ? 30 : /^\d+$/.test(a.days) ? Number(a.days) : NaN;
  // Up to a hundred years: further back, the period's start is not a date.
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw new UsageError('--days is a whole number of days, 1 to 36500');
  const from = a.from === undefined ? to - days * DAY_MS : instant(a.from, '--from', 0);
  if (from >= to) throw new UsageError('--from comes before --to');
  return { from, to };
}

/** A date (`2026-05-01`, its UTC day's start plus `dayEnd`) or an ISO time with its offset, as given (no 30 February). */
function instant(text: string, option: string, dayEnd: number): number {
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const time = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  const parts = date ?? time;
  const at = Date.parse(text);
  const day = parts && Date.UTC(Number(parts[1]), Number(parts[2]) - 1, Number(parts[3]));
  if (!parts || !Number.isFinite(at) || new Date(day!).toISOString().slice(0, 10) !== text.slice(0, 10)) {
    throw new UsageError(`${option} is a date (2026-05-01) or an ISO time with its offset (2026-05-01T08:00Z), found ${JSON.stringify(text.slice(0, 40))}`);
  }
  return date ? at + dayEnd : at;
}

/**
 * The --audit-dir directories: each must be there, and each a trail of its own. One named twice is read once; two
 * whose first records are the same are one trail and a copy of it (a backup, another path to it), whose records
 * would count twice: refused.
 */
export function checkAuditDirs(dirs: readonly string[]): void {
  const missing = dirs.filter((d) => !existsSync(d) || !statSync(d).isDirectory());
  if (missing.length) throw new UsageError(`--audit-dir: no such directory: ${missing.join(', ')}`);
  const byFirst = new Map<string, string>();
  for (const dir of distinctDirs(dirs)) {
    const first = firstRecordHash(dir);
    if (first === undefined) continue;
    const other = byFirst.get(first);
    if (other !== undefined) throw new UsageError(`--audit-dir ${other} and ${dir} hold the same trail (their first records are the same): give each trail once`);
    byFirst.set(first, dir);
  }
}

/** The hash of a trail's first record, if it starts with one. */
function firstRecordHash(dir: string): string | undefined {
  const trail = openAuditDir(dir);
  try {
    for (let f = 0; f < trail.files.length; f++) {
      for (const { line, complete } of trail.lines(f)) {
        const parsed = complete ? parseRecord(line) : undefined;
        return parsed && 'record' in parsed ? parsed.record.hash : undefined;
      }
    }
    return undefined;
  } finally {
    trail.close();
  }
}

export async function reportCommand(gw: Gateway, a: ReportArgs): Promise<string> {
  const format = a.format ?? 'text';
  if (!['text', 'json', 'html'].includes(format)) throw new UsageError('--format is text, json or html');
  checkAuditDirs(a.auditDirs ?? []);
  const now = gw.clock.now();
  const deps = { config: gw.config, kv: gw.kv, factors: gw.stores.factors, admin: gw.admin, readTrail: async (r: TrailRequest) => readTrail(r) };
  const report = await assuranceReport(deps, reportPeriod(a, now), now, a.auditDirs);
  return format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'html' ? reportHtml(report) : reportText(report);
}
