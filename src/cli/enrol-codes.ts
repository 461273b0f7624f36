// `mfa-gateway enrol-codes issue`: enrolment codes to hand out by letter or at the clinic (enrolment.proof: invite).
import { accountNames } from '../domain/username.js';
import type { Gateway } from '../gateway.js';
import { PartialOutput, UsageError, readArgumentFile, type Names } from './usage.js';

/**
 * The users to issue codes to, each once: one user (`--user`) or the usernames of a CSV file (`--csv`, read once by
 * csvUsernames: `users`). Every username is checked before the first code is issued (and before the store and the audit
 * trail are opened): a new code replaces the earlier one, so a file that stopped half-way would have replaced codes
 * already handed out without printing the new ones.
 */
export function enrolCodeArgs(names: Names, a: { user?: string; users?: readonly string[] }): { user: string; pid: string }[] {
  if (names.config.enrolment.proof !== 'invite') throw new UsageError(`enrolment codes are for enrolment.proof: invite (this config uses ${names.config.enrolment.proof})`);
  if (a.user !== undefined && a.users !== undefined) throw new UsageError('give --user USERNAME or --csv FILE, not both');
  const users = a.user !== undefined ? [a.user] : a.users;
  if (users === undefined) throw new UsageError('give --user USERNAME or --csv FILE');
  // Codes only for names a sign-in can use (portal.login.usernamePattern too).
  const usable = accountNames(names.config.portal.login);
  const pids = users.map((user) => ({ user, pid: usable(user) === null ? null : names.pidOf(user) }));
  const unusable = pids.filter((u) => !u.pid).map((u) => JSON.stringify(u.user));
  if (unusable.length) throw new UsageError(`not a usable username (no code was issued): ${unusable.join(', ')}`);
  // One code per user: a second row for the same user (`Alice`, `alice`) would replace the code printed for the first.
  return pids.filter((u, i) => pids.findIndex((v) => v.pid === u.pid) === i) as { user: string; pid: string }[];
}

/**
 * Issues the codes (see enrolCodeArgs). A store failing part-way, or `stop` (the command interrupted, checked before each
 * code), ends in PartialOutput: the codes issued so far replaced earlier ones, and are printed all the same.
 */
export async function issueEnrolmentCodes(gw: Gateway, a: { user?: string; users?: readonly string[] }, stop?: AbortSignal): Promise<string[]> {
  const once = enrolCodeArgs(gw, a);
  const lines = ['username,code,expires'];
  for (const { user, pid } of once) {
    if (stop?.aborted) {
      if (lines.length === 1) throw stop.reason;
      throw new PartialOutput(lines, stop.reason);
    }
    try {
      const { code, expiresAt } = await gw.enrolment.issueInvite(pid);
      lines.push([user, code, new Date(expiresAt).toISOString().slice(0, 10)].map(csvCell).join(','));
    } catch (err) {
      // The store failed part-way: the codes issued so far replaced earlier ones, and are printed all the same.
      if (lines.length === 1) throw err;
      throw new PartialOutput(lines, err);
    }
  }
  return lines;
}

/**
 * The usernames in the first column of a --csv file (a header line is skipped), read once, before the run: --reason
 * is checked against them before it is written to the audit trail. A file that cannot be read, is refused or holds
 * no usernames is a usage error then, and nothing is written.
 */
export function csvUsernames(file: string): string[] {
  const users = usernamesFromCsv(readArgumentFile(file, '--csv'));
  if (!users.length) throw new UsageError(`${file}: no usernames found (no code was issued)`);
  return users;
}

function usernamesFromCsv(text: string): string[] {
  let rows: string[][];
  try {
    rows = csvRows(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new UsageError(`--csv: ${(err as Error).message} (no code was issued)`);
  }
  const names = rows.map((r) => r[0]!.trim()).filter(Boolean);
  // A spreadsheet saved with semicolons or tabs (as in many locales) would make each whole line a username.
  if (names.some((n) => /[;\t]/.test(n))) throw new UsageError('--csv: a name holds ";" or a tab: save the file separated by commas (no code was issued)');
  return /^(user(name)?|login|email)$/i.test(names[0] ?? '') ? names.slice(1) : names;
}

/** The rows of a CSV text (RFC 4180: quoted fields with commas, line breaks and doubled quotes; CRLF or LF). */
function csvRows(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') field += text[i++];
      else quoted = false;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      rows.push([...row, field]);
      [row, field] = [[], ''];
    } else field += c;
  }
  if (quoted) throw new Error('a quoted field is not closed');
  if (field !== '' || row.length) rows.push([...row, field]);
  return rows;
}

/**
 * A CSV cell (RFC 4180), safe to open in a spreadsheet: a cell a spreadsheet would run as a formula (`=`, `+`, `-`,
 * `@`, a tab or a carriage return first, also after spaces, which a spreadsheet may trim on import, and in their
 * full-width and small forms and as the minus sign, which some read as the same) starts with `'`, as OWASP advises.
 */
export function csvCell(value: string): string {
  const inert = /^\s*[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20\uFE62\uFE63\uFE66\uFE6B\u2212]/u.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(inert) ? `"${inert.replaceAll('"', '""')}"` : inert;
}
