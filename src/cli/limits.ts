// `mfa-gateway blocks list|clear` and `lockouts list|clear`: blocked client addresses and disabled factors.
import { normaliseAddress } from '../domain/client-address.js';
import { addressBucket } from '../services/login-limits.js';
import { ATTEMPT_KINDS, type AttemptKind } from '../services/ceremony.js';
import type { Gateway } from '../gateway.js';
import { UsageError, userPid, type Names } from './usage.js';

export const BLOCKS_ACTIONS = ['list', 'clear'] as const;

/** `blocks ACTION`'s arguments, checked before the store and the audit trail are opened: the address to clear. */
export function blocksArgs(action: (typeof BLOCKS_ACTIONS)[number], a: { ip?: string }): string | null {
  if (action === 'list') return null;
  if (!a.ip) throw new UsageError('blocks clear needs --ip ADDRESS');
  // Spelt as the gateway spells the addresses it blocks (::ffff:192.0.2.7 is 192.0.2.7, IPv6 in lower case), or
  // as `blocks list` prints an IPv6 block (its /64).
  const range = /^(.+)\/64$/.exec(a.ip);
  const ip = normaliseAddress(range ? range[1]! : a.ip);
  if (!ip || (range && !ip.includes(':'))) throw new UsageError(`--ip is not an IP address: ${JSON.stringify(a.ip)}`);
  return ip;
}

export async function blocksCommand(gw: Gateway, action: (typeof BLOCKS_ACTIONS)[number], a: { ip?: string }): Promise<string[]> {
  const login = gw.limits.login;
  const ip = blocksArgs(action, a);
  if (ip === null) {
    const blocked = await login.blocked();
    return blocked.length ? blocked.map((b) => `${b.address}  until ${new Date(b.until).toISOString()}`) : ['no blocked addresses'];
  }
  const was = await login.unblock(ip);
  if (was) gw.security('block_cleared', { ip: addressBucket(ip) });
  return [was ? `cleared ${addressBucket(ip)}` : `${addressBucket(ip)} was not blocked (check the address; its failures are forgotten all the same)`];
}

export const LOCKOUTS_ACTIONS = ['list', 'clear'] as const;

/** `lockouts ACTION`'s arguments, checked first (see blocksArgs): the user whose factors are turned back on. */
export function lockoutsArgs(names: Names, action: (typeof LOCKOUTS_ACTIONS)[number], a: { user?: string; factor?: string }): string | null {
  if (action === 'list') return null;
  const pid = userPid(names, a.user, 'lockouts clear needs --user USERNAME');
  if (a.factor !== undefined && !ATTEMPT_KINDS.includes(a.factor as AttemptKind)) throw new UsageError(`--factor is one of ${ATTEMPT_KINDS.join(', ')}`);
  return pid;
}

export async function lockoutsCommand(gw: Gateway, action: (typeof LOCKOUTS_ACTIONS)[number], a: { user?: string; factor?: string }): Promise<string[]> {
  const attempts = gw.limits.attempts;
  const pid = lockoutsArgs(gw, action, a);
  if (pid === null) {
    const locked = await attempts.lockedOut();
    return locked.length ? locked.map((l) => `user ${l.pid}  ${l.kind}`) : ['no disabled factors'];
  }
  const disabled = await attempts.clear(pid, a.factor as AttemptKind | undefined);
  // Only a kind turned back on is an event (the report counts them); a misspelt name, or a wait lifted, is not.
  if (disabled.length) gw.security('lockout_cleared', { pid, kinds: disabled.join(',') });
  return [`cleared ${a.factor ?? 'every kind of factor'} for ${a.user}: ${disabled.length ? `${disabled.join(', ')} turned back on` : 'none was disabled (check the spelling)'}`];
}
