// `mfa-gateway enrol-codes issue`: enrolment codes to hand out by letter or at the clinic (enrolment.proof: invite).
import type { Gateway } from '../gateway.js';
import { UsageError, readArgumentFile } from './usage.js';

/**
 * One user (`--user`) or every username in the first column of a CSV file (`--csv`; a header line is skipped).
 * Every username is checked before the first code is issued: a new code replaces the earlier one, so a file that
 * stopped half-way would have replaced codes already handed out without printing the new ones.
 */
export async function issueEnrolmentCodes(gw: Gateway, a: { user?: string; csv?: string }): Promise<string[]> {
  if (gw.config.enrolment.proof !== 'invite') throw new UsageError(`enrolment codes are for enrolment.proof: invite (this config uses ${gw.config.enrolment.proof})`);
  const users = a.user !== undefined ? [a.user] : a.csv !== undefined ? usernamesFromCsv(readArgumentFile(a.csv, '--csv')) : [];
  if (!users.length) throw new UsageError('give --user USERNAME or --csv FILE');
  const pids = users.map((user) => ({ user, pid: gw.pidOf(user) }));
  const unusable = pids.filter((u) => !u.pid).map((u) => JSON.stringify(u.user));
  if (unusable.length) throw new UsageError(`not a usable username (no code was issued): ${unusable.join(', ')}`);
  // One code per user: a second row for the same user (`Alice`, `alice`) would replace the code printed for the first.
  const once = pids.filter((u, i) => pids.findIndex((v) => v.pid === u.pid) === i);
  const lines = ['username,code,expires'];
  for (const { user, pid } of once) {
    const { code, expiresAt } = await gw.enrolment.issueInvite(pid!);
    lines.push(`${user},${code},${new Date(expiresAt).toISOString().slice(0, 10)}`);
  }
  return lines;
}

function usernamesFromCsv(text: string): string[] {
  const rows = text.split(/\r?\n/).map((l) => l.split(',')[0]!.trim().replace(/^"(.*)"$/, '$1')).filter(Boolean);
  return /^(user(name)?|login|email)$/i.test(rows[0] ?? '') ? rows.slice(1) : rows;
}
