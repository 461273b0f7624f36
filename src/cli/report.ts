// `mfa-gateway report`: the assurance report for a period, as text, JSON or printable HTML.
import { existsSync, statSync } from 'node:fs';
import type { Gateway } from '../gateway.js';
import { assuranceReport } from '../services/report.js';
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

/** The period: --from/--to (dates or ISO times), or the last --days (default 30) up to now. */
export function reportPeriod(a: ReportArgs, now: number): { from: number; to: number } {
  const to = a.to === undefined ? now : Date.parse(a.to);
  const days = a.days === undefined ? 30 : Number(a.days);
  if (!Number.isInteger(days) || days < 1) throw new UsageError('--days is a whole number of days');
  const from = a.from === undefined ? to - days * DAY_MS : Date.parse(a.from);
  if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) throw new UsageError('--from and --to are dates (2026-11-01) or ISO times, --from before --to');
  return { from, to };
}

export async function reportCommand(gw: Gateway, a: ReportArgs): Promise<string> {
  const format = a.format ?? 'text';
  if (!['text', 'json', 'html'].includes(format)) throw new UsageError('--format is text, json or html');
  const missing = (a.auditDirs ?? []).filter((d) => !existsSync(d) || !statSync(d).isDirectory());
  if (missing.length) throw new UsageError(`--audit-dir: no such directory: ${missing.join(', ')}`);
  const now = gw.clock.now();
  const report = await assuranceReport({ config: gw.config, kv: gw.kv, factors: gw.stores.factors, admin: gw.admin }, reportPeriod(a, now), now, a.auditDirs);
  return format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'html' ? reportHtml(report) : reportText(report);
}
