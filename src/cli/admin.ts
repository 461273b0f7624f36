// The admin commands on users, sessions and keys, and the operator accountability every store-acting command needs.
import type { AuditValue } from '../audit/record.js';
import { accountNames, canonicalUsername } from '../domain/username.js';
import type { Gateway } from '../gateway.js';
import type { KeyUse, UserSummary } from '../services/admin.js';
import { PartlyDone } from '../services/best-effort.js';
import { PartialOutput, UsageError, userPid, type Names } from './usage.js';

/** Who ran an admin command, and why: written with the action into the admin audit chain. */
export interface Operator {
  operator: string;
  reason: string;
}

const FREE_TEXT = /^[^\p{Cc}]{1,200}$/u;

/**
 * --operator and --reason, both required; the reason must not name the user, nor any user of a --csv file (`users`):
 * the audit trail holds only pseudonyms.
 */
export function operatorFrom(v: { operator?: string; reason?: string; user?: string; users?: readonly string[] }): Operator {
  const operator = v.operator?.trim() ?? '';
  const reason = v.reason?.trim() ?? '';
  if (!FREE_TEXT.test(operator) || !FREE_TEXT.test(reason)) throw new UsageError('admin commands need --operator NAME and --reason TEXT (each 1-200 characters): every action is audited');
  // Compared as the sign-in reads a name (Unicode NFKC), in any case: `--user ＡＬＩＣＥ` is alice, in a reason too.
  const folded = (text: string) => text.normalize('NFKC').trim().toLowerCase();
  const named = (user: string | undefined) => Boolean(user && folded(user)) && folded(reason).includes(folded(user!));
  if (named(v.user) || v.users?.some(named)) throw new UsageError('--reason must not contain the username (refer to a ticket instead): the audit trail keeps only pseudonyms');
  return { operator, reason };
}

/** One admin action in the audit trail (and the log): what, by whom, why, on whom (pseudonym), and how it ended. */
export function recordAdmin(gw: Gateway, by: Operator, action: string, fields: Readonly<Record<string, AuditValue | undefined>>): void {
  gw.audit?.append({ kind: 'admin', action, operator: by.operator, reason: by.reason, ...fields });
  gw.logger.info({ admin: action, operator: by.operator, ...fields }, `admin action: ${action}`);
}

export const USER_ACTIONS = ['show', 'export', 'reset-factors', 'erase'] as const;

/** `user ACTION`'s arguments, checked before the store and the audit trail are opened: the user's pseudonym. */
export function userArgs(names: Names, action: (typeof USER_ACTIONS)[number], a: { user?: string; yes?: boolean }): string {
  const pid = userPid(names, a.user, `user ${action} needs --user USERNAME`);
  if (action === 'erase' && !a.yes) throw new UsageError('user erase deletes everything held about the user: add --yes');
  return pid;
}

export async function userCommand(gw: Gateway, action: (typeof USER_ACTIONS)[number], a: { user?: string; yes?: boolean }): Promise<string[]> {
  const pid = userArgs(gw, action, a);
  switch (action) {
    case 'show':
      return showUser(a.user!, await gw.admin.show(pid));
    case 'export':
      // The account's name as the gateway holds it (as the sign-in made it canonical), not as typed.
      return [JSON.stringify({ username: canonicalUsername(a.user!, gw.config.portal.login.usernameCase), ...(await gw.admin.export(pid)) }, null, 2)];
    case 'reset-factors': {
      // No enrolment code for a name the login refuses (portal.login.usernamePattern set since the account was made).
      const signsIn = accountNames(gw.config.portal.login)(a.user!) !== null;
      const r = await partly(gw.admin.resetFactors(pid, canonicalUsername(a.user!, gw.config.portal.login.usernameCase)!, signsIn), (r) => [`ended ${r.sessionsEnded} session(s) of ${a.user}; the factors may not all be removed`]);
      const ended = `ended ${r.sessionsEnded} session(s)`;
      return [
        r.factorsRemoved === null
          ? `removed the factor record of ${a.user}, which no configured key opens, and ${ended}; the next sign-in enrols again`
          : r.factorsRemoved
            ? `removed every factor of ${a.user} (${r.factorsRemoved}) and ${ended}; the next sign-in enrols again`
            : `${a.user} held no factor: check the spelling (a name never enrolled holds none); ${ended}`,
        ...(r.invite ? [`enrolment code (give it only after checking who is asking): ${r.invite.code}  expires ${new Date(r.invite.expiresAt).toISOString().slice(0, 10)}`] : []),
        ...(gw.config.enrolment.proof === 'invite' && !signsIn ? ['no enrolment code: the name does not match portal.login.usernamePattern, so no sign-in can use it'] : []),
      ];
    }
    case 'erase': {
      const ended = (r: { sessionsEnded: number; devicesRevoked: number }) => `${r.sessionsEnded} session(s) ended, ${r.devicesRevoked} device(s) bound to the user revoked`;
      const done = (r: { keysDeleted: number; sessionsEnded: number; devicesRevoked: number }) => `${r.keysDeleted} key(s) deleted, ${ended(r)}`;
      // The user's keys are counted before they are deleted: after a failed step, not all of them are gone.
      const r = await partly(gw.admin.erase(pid), (r) => [`erased ${a.user} in part: ${r.keysDeleted} key(s) held, not all of them deleted, ${ended(r)}`]);
      // A misspelt name holds nothing: "erased" alone would have the access request answered while the account stays.
      const held = r.keysDeleted + r.sessionsEnded + r.devicesRevoked > 0;
      return [
        held
          ? `erased ${a.user}: ${done(r)}; the audit trail keeps its pseudonymous records of user ${pid}`
          : `nothing was held about ${a.user}: check the spelling (a name that never signed in holds nothing); the audit trail keeps its pseudonymous records of user ${pid}`,
      ];
    }
  }
}

export const SESSIONS_ACTIONS = ['revoke'] as const;

/** `sessions revoke`'s arguments, checked first (see userArgs): the user's pseudonym, null for every user (--all). */
export function sessionsArgs(names: Names, a: { user?: string; all?: boolean }): string | null {
  if (a.all && a.user !== undefined) throw new UsageError('sessions revoke takes --user USERNAME or --all, not both');
  return a.all ? null : userPid(names, a.user, 'sessions revoke needs --user USERNAME or --all');
}

/** `sessions revoke`, its one action. */
export async function sessionsCommand(gw: Gateway, a: { user?: string; all?: boolean }): Promise<string[]> {
  const pid = sessionsArgs(gw, a);
  const ended = (n: number) => [`ended ${n} session(s) of ${pid === null ? 'every user' : a.user}`];
  return ended(await partly(pid === null ? gw.admin.revokeAllSessions() : gw.admin.revokeSessions(pid), ended));
}

/**
 * What an action gave; one that failed part-way (PartlyDone: the store failed, and the steps it could still do were
 * done) prints `done`'s lines with a note, then its failure (exit 1).
 */
async function partly<T>(action: Promise<T>, done: (partial: T) => string[]): Promise<T> {
  try {
    return await action;
  } catch (err) {
    if (!(err instanceof PartlyDone)) throw err;
    throw new PartialOutput([...done(err.done as T), 'not finished: a step failed; what could still be ended or deleted was (run the command again once the store works)'], err.cause);
  }
}

export const KEYS_ACTIONS = ['rotate', 'status'] as const;

export async function keysCommand(gw: Gateway, action: (typeof KEYS_ACTIONS)[number]): Promise<string[]> {
  switch (action) {
    case 'rotate': {
      const r = await gw.admin.rotateKeys();
      return [
        `re-sealed ${r.resealed} record(s) with encryption key ${gw.stores.sealer.activeId}; ${r.current} already used it${r.unreadable ? `; ${r.unreadable} could not be opened with any configured key` : ''}`,
        'run `keys status` to see whether an old key still seals anything',
      ];
    }
    case 'status': {
      const now = gw.clock.now();
      const uses = await gw.admin.keyStatus();
      return uses.map((k) => {
        const age = k.firstSeen === null ? 'age unknown' : `first seen ${Math.floor((now - k.firstSeen) / 86_400_000)} day(s) ago`;
        const configured = gw.config.keys[k.purpose].some((c) => c.id === k.id);
        const role = configured ? keyRole(k, uses) : 'removed';
        return `${k.purpose.padEnd(10)}  ${k.id.padEnd(12)}  ${role.padEnd(9)}  ${age}  ${keyUse(k, role)}${configured ? '' : '  NOT CONFIGURED: these records cannot be read'}`;
      });
    }
  }
}

type KeyRole = 'active' | 'staged' | 'retiring' | 'not first' | 'removed';

/**
 * A key's place in a rotation. Every key but the first only reads (decrypts, verifies); of those, one first seen after
 * the active key was added for the rotation to come (step 1 of Key rotation: it must stay, and move first), one seen
 * before it is the key the rotation retires. Without both ages, neither is said.
 */
function keyRole(k: KeyUse, all: readonly KeyUse[]): KeyRole {
  if (k.active) return 'active';
  const active = all.find((a) => a.purpose === k.purpose && a.active);
  if (k.firstSeen === null || active?.firstSeen == null) return 'not first';
  return k.firstSeen > active.firstSeen ? 'staged' : 'retiring';
}

/** What a key does, and for one that only reads, whether and when it may be removed. */
function keyUse(k: KeyUse, role: KeyRole): string {
  const reads = k.purpose === 'encryption' ? 'decrypts only' : 'verifies only';
  const count = k.purpose === 'encryption' ? `${k.records ?? 0} record(s); ` : '';
  switch (role) {
    case 'active':
      return k.purpose === 'encryption' ? `${count}seals new records` : 'signs new sessions';
    case 'staged':
      return `${count}not first: ${reads} (added for a rotation: move it first); not the key to remove`;
    case 'retiring':
      return k.purpose === 'encryption'
        ? `${count}not first: decrypts only; remove it once it seals 0 (keys rotate)`
        : 'not first: verifies sessions signed before the rotation; remove it once session.absoluteTimeoutSeconds has passed';
    case 'not first':
      return `${count}${reads}`;
    case 'removed':
      return `${count}`.replace(/; $/, '');
  }
}

function showUser(username: string, u: UserSummary): string[] {
  const lines = [`user ${username} (pseudonym ${u.pid})`];
  lines.push(u.factors.length ? 'factors:' : 'factors: none (the next sign-in enrols)');
  for (const f of u.factors) lines.push(`  ${f.kind.padEnd(8)}  ${f.name}  added ${f.addedAt}  last used ${f.lastUsedAt ?? 'never'}  id ${f.id}`);
  if (u.recoveryCodes) lines.push(`recovery codes: ${u.recoveryCodes.left} of a set of ${u.recoveryCodes.total} left, made ${u.recoveryCodes.addedAt}`);
  lines.push(u.sessions.length ? 'sessions:' : 'sessions: none');
  for (const s of u.sessions) lines.push(`  signed in ${s.signedInAt} with ${s.factor}, last seen ${s.lastSeenAt}`);
  if (u.devices.length) lines.push('devices:', ...u.devices.map((d) => `  ${d.fingerprint}  ${d.status}  ${d.name}`));
  if (u.disabledFactorKinds.length) lines.push(`disabled after too many failures: ${u.disabledFactorKinds.join(', ')}`);
  if (u.enrolmentCode) lines.push(`an enrolment code is waiting, until ${u.enrolmentCode.expiresAt}`);
  return lines;
}
