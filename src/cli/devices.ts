// `mfa-gateway devices register|list|revoke`: the registry of managed-device certificates, in the configured store.
import type { Gateway } from '../gateway.js';
import { fingerprintOf, normaliseFingerprint, parseCertificates } from '../mechanisms/certificates.js';
import { UsageError, readArgumentFile, userPid, type Names } from './usage.js';

export interface DeviceArgs {
  fingerprint?: string;
  cert?: string;
  name?: string;
  user?: string;
  /** Registered for every account: a device bound to a user is unbound. */
  shared?: boolean;
}

export const DEVICES_ACTIONS = ['register', 'revoke', 'list'] as const;

/**
 * `devices ACTION`'s arguments, checked before the store and the audit trail are opened: the device (none for list)
 * and the user it is registered for.
 */
export function deviceArgs(names: Names, action: (typeof DEVICES_ACTIONS)[number], a: DeviceArgs): { fingerprint: string; pid: string | undefined } | null {
  if (action === 'list') return null;
  const fingerprint = fingerprintArg(a);
  if (action === 'revoke') return { fingerprint, pid: undefined };
  if (a.user !== undefined && a.shared) throw new UsageError('give --user USERNAME or --shared, not both');
  return { fingerprint, pid: a.user === undefined ? undefined : userPid(names, a.user, 'devices register --user needs USERNAME', true) };
}

export async function devicesCommand(gw: Gateway, action: (typeof DEVICES_ACTIONS)[number], a: DeviceArgs): Promise<string[]> {
  const registry = gw.stores.devices;
  const now = gw.clock.now();
  const device = deviceArgs(gw, action, a);
  if (device === null) {
    const all = await registry.list();
    if (!all.length) return ['no devices registered'];
    return all.map((d) => `${d.fingerprint}  ${d.status.padEnd(7)}  ${new Date(d.addedAt).toISOString()}  ${d.pid ? `user ${d.pid}  ` : ''}${d.name}`);
  }
  const { fingerprint, pid } = device;
  if (action === 'revoke') {
    const d = await registry.get(fingerprint);
    // A device never registered can still be cut off: it is recorded as revoked.
    await registry.put({ ...(d ?? { fingerprint, name: a.name ?? fingerprint.slice(0, 12), addedAt: now }), status: 'revoked', revokedAt: now });
    return [`revoked ${fingerprint}: it stops counting as managed on its next request`];
  }
  // Registered again (after a revoke, say), a device keeps its name; a device of one user never becomes managed
  // for every account by a command that did not say so.
  const before = await registry.get(fingerprint);
  const bound = before?.pid !== undefined || before?.wasBound === true;
  if (bound && !pid && !a.shared) throw new UsageError(`${fingerprint} is bound to a user: give --user USERNAME, or --shared to make it managed for every account`);
  await registry.put({ fingerprint, name: a.name ?? before?.name ?? fingerprint.slice(0, 12), status: 'active', addedAt: now, ...(pid ? { pid } : {}) });
  return [`registered ${fingerprint}${pid ? ` for ${a.user}` : bound ? ' for every account' : ''}`];
}

/** The device a command names, by --cert or --fingerprint (normalised, as the registry keys it). */
export function fingerprintArg(a: DeviceArgs): string {
  if (a.cert !== undefined && a.fingerprint !== undefined) throw new UsageError('give --cert FILE or --fingerprint SHA256, not both');
  if (a.cert) {
    const pem = readArgumentFile(a.cert, '--cert');
    let cert;
    try {
      [cert] = parseCertificates(pem);
    } catch {
      throw new UsageError(`${a.cert}: not a PEM certificate`);
    }
    if (!cert) throw new UsageError(`${a.cert}: no certificate`);
    return fingerprintOf(cert);
  }
  if (a.fingerprint === undefined) throw new UsageError('give --cert FILE or --fingerprint SHA256 (64 hex digits, colons allowed)');
  const fp = normaliseFingerprint(a.fingerprint);
  if (!fp) throw new UsageError(`--fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed): ${JSON.stringify(a.fingerprint)}`);
  return fp;
}
