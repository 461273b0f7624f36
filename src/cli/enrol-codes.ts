// `mfa-gateway enrol-codes issue`: enrolment codes to hand out by letter or at the clinic (enrolment.proof: invite).
import { readFileSync } from 'node:fs';
import type { Gateway } from '../gateway.js';
import { UsageError } from './usage.js';

/** One user (`--user`) or every username in the first column of a CSV file (`--csv`; a header line is skipped). */
export async function issueEnrolmentCodes(gw: Gateway, a: { user?: string; csv?: string }): Promise<string[]> {
  if (gw.config.enrolment.proof !== 'invite') throw new UsageError(`enrolment codes are for enrolment.proof: invite (this config uses ${gw.config.enrolment.proof})`);
  const users = a.user !== undefined ? [a.user] : a.csv !== undefined ? usernamesFromCsv(readFileSync(a.csv, 'utf8')) : [];
  if (!users.length) throw new UsageError('give --user USERNAME or --csv FILE');
  const lines = ['username,code,expires'];
  for (const user of users) {
    const pid = gw.pidOf(user);
    if (!pid) throw new UsageError(`not a usable username: ${JSON.stringify(user)}`);
    const { code, expiresAt } = await gw.enrolment.issueInvite(pid);
    lines.push(`${user},${code},${new Date(expiresAt).toISOString().slice(0, 10)}`);
  }
  return lines;
}

function usernamesFromCsv(text: string): string[] {
  const rows = text.split(/\r?\n/).map((l) => l.split(',')[0]!.trim().replace(/^"(.*)"$/, '$1')).filter(Boolean);
  return /^(user(name)?|login|email)$/i.test(rows[0] ?? '') ? rows.slice(1) : rows;
}
