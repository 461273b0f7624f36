// The gateway as a browser reaches it: the scheme, host and port a browser puts in its Origin, its Referer and a
// passkey ceremony's client data.
import type { Config } from '../config/schema.js';

/**
 * The gateway at `name` (one of server.hosts, the first by default) as a browser reaches it, which names it in its
 * Origin and Referer, in a passkey ceremony's origin, and which the gateway names to the portal (X-Forwarded-Proto,
 * X-Forwarded-Host):
 * - server.trustedProxies set (with server.tls or without): behind a TLS proxy, https on the proxy's port, taken to be
 *   443 (server.port is where the proxy reaches the gateway);
 * - server.tls set (and no proxy): https on server.port;
 * - neither: plain http on server.port, the demo on http://localhost:8080. Browsers take that for a secure context
 *   only on localhost: on any other name they keep none of the gateway's cookies and offer no passkeys, so nobody
 *   signs in (it fails closed).
 * The port is left out where it is the scheme's own, as browsers leave it out, and for server.port 0 (any free port).
 */
export function gatewaySite(server: Config['server'], name = server.hosts[0]!): GatewaySite {
  const proto = server.tls || server.trustedProxies.length ? 'https' : 'http';
  const own = server.trustedProxies.length || server.port === 0 || server.port === (proto === 'https' ? 443 : 80);
  const host = `${name.toLowerCase()}${own ? '' : `:${server.port}`}`;
  return { proto, host, origin: `${proto}://${host}` };
}

export interface GatewaySite {
  proto: 'http' | 'https';
  /** As the browser's Host names it. */
  host: string;
  origin: string;
}

/**
 * A lower-case host name (IPv6 in brackets) of this machine: browsers keep Secure cookies and offer passkeys over
 * plain http there (a secure context), and a plain-http call to it crosses no network.
 */
export function loopbackName(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
