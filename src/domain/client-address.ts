// Client addresses: address sets (CIDR lists) and the client behind trusted proxies (right-most untrusted hop).
import { BlockList, isIP } from 'node:net';

/** A set of addresses and networks, e.g. ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32']. */
export class AddressSet {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(readonly entries: readonly string[]) {
    for (const entry of entries) {
      const parsed = parseCidr(entry);
      if (!parsed) throw new TypeError(`not an address or network: ${entry}`);
      this.list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
    this.empty = entries.length === 0;
  }

  has(address: string): boolean {
    if (this.empty) return false;
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `ipv6/n`; null when it is none of these. */
export function parseCidr(entry: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const [address = '', bits, extra] = entry.trim().split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return null;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { address, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

const PLAIN_V4 = /^[\d.]+$/;

/** An address as written by a peer or a proxy: IPv4-mapped IPv6 becomes IPv4; ports and brackets go; else null. */
export function normaliseAddress(raw: string): string | null {
  // The usual case, a socket's plain IPv4 peer, in one check (anything else below gives the same answer for it).
  if (PLAIN_V4.test(raw)) return isIP(raw) === 4 ? raw : null;
  let a = raw.trim();
  if (a.startsWith('"') && a.endsWith('"')) a = a.slice(1, -1);
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  if (a.toLowerCase().startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  return isIP(a) ? a.toLowerCase() : null;
}

export interface ForwardingHeaders {
  'x-forwarded-for'?: string | string[];
  forwarded?: string | string[];
  'x-forwarded-proto'?: string | string[];
}

export interface ClientView {
  /** The client's address, or null when a trusted proxy passed one that cannot be read (fail closed). */
  ip: string | null;
  /** The scheme the client used: from the socket, or from a trusted proxy's header (X-Forwarded-Proto, or Forwarded's proto=). */
  proto: 'http' | 'https';
}

/** The forwarding header the trusted proxies write (server.forwardedHeader). */
export type ForwardedHeader = 'x-forwarded-for' | 'forwarded';

/**
 * Who is asking. Forwarding headers count only when the peer itself is a trusted proxy; then the client is the
 * right-most address that is not a trusted proxy (SECURITY R55: earlier hops are whatever the client wrote). Only the
 * header the proxies write is read: a proxy passes a client's own copy of the other on.
 */
export function clientView(peer: string | undefined, tls: boolean, headers: ForwardingHeaders, trusted: AddressSet, header: ForwardedHeader = 'x-forwarded-for'): ClientView {
  const socketIp = normaliseAddress(peer ?? '');
  const own: ClientView = { ip: socketIp, proto: tls ? 'https' : 'http' };
  if (socketIp === null || !trusted.has(socketIp)) return own;
  const value = joined(headers[header]);
  const other = joined(headers[header === 'forwarded' ? 'x-forwarded-for' : 'forwarded']);
  // Without the header its proxies write, a request is the peer's own; with only the other one it is a client's
  // copy that came through, where the proxy wrote nothing: the address is unknown (fail closed).
  const unforwarded = other === undefined ? socketIp : null;
  if (header === 'x-forwarded-for') {
    const ip = value === undefined ? unforwarded : (nearestUntrusted(value.split(','), trusted)?.ip ?? null);
    return { ip, proto: scheme(joined(headers['x-forwarded-proto'])?.split(',').pop()) ?? own.proto };
  }
  if (value === undefined) return { ip: unforwarded, proto: own.proto };
  // RFC 7239: each element describes one hop; the scheme is the one of the element the client's address came from.
  const elements = value.split(',');
  const client = nearestUntrusted(forwardedFor(elements), trusted);
  return { ip: client?.ip ?? null, proto: (client && scheme(forwardedParam(elements[client.at]!, 'proto'))) ?? own.proto };
}

/** Right to left, the first hop that is not a trusted proxy (or the left-most), and where; null when a hop cannot be read. */
function nearestUntrusted(hops: string[], trusted: AddressSet): { ip: string; at: number } | null {
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseAddress(hops[i]!);
    if (hop === null) return null;
    if (!trusted.has(hop) || i === 0) return { ip: hop, at: i };
  }
  return null;
}

/**
 * Each element's `for=`. One without it (or with `for=unknown`, an obfuscated name) is an unreadable hop: the client
 * is not found past it, but one to its right still counts (what is left of the client is the client's own writing).
 */
function forwardedFor(elements: string[]): string[] {
  return elements.map((element) => forwardedParam(element, 'for') ?? '');
}

/** The value of one parameter (`for`, `proto`) of one element of a Forwarded header (RFC 7239 §4). */
function forwardedParam(element: string, name: string): string | undefined {
  const pair = element.split(';').map((p) => p.trim()).find((p) => p.toLowerCase().startsWith(`${name}=`));
  return pair?.slice(name.length + 1);
}

function scheme(v: string | undefined): 'http' | 'https' | undefined {
  const s = v?.trim().replace(/^"(.*)"$/, '$1').toLowerCase();
  return s === 'https' || s === 'http' ? s : undefined;
}

function joined(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}
