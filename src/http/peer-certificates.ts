// Client certificates of the gateway's own TLS connections, each with the chain the client sent.
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

// Node gives the chain a client sent (issuerCertificate, which the gateway needs to find the issuer of a certificate
// an intermediate CA issued) with the first certificate read of a connection only, and none at all on a connection
// that resumed a TLS session (a session keeps the client's own certificate, not its chain). So each connection's
// certificate is read once, as its handshake ends, and a resumed connection gets the one read at the full handshake
// that began its session, kept by fingerprint for a number of devices no organisation reaches.
const KEPT = 10_000;
const bySocket = new WeakMap<TLSSocket, X509Certificate>();
const byFingerprint = new Map<string, X509Certificate>();

/** On each connection of the gateway's TLS listener, as its handshake ends ('secureConnection'). */
export function readPeerCertificate(socket: TLSSocket): void {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return;
  const resumed = socket.isSessionReused() ? byFingerprint.get(cert.fingerprint256) : undefined;
  bySocket.set(socket, resumed ?? cert);
  // Only a chain TLS verified is kept for later sessions; the longest unused goes first.
  const kept = resumed ?? (socket.authorized && cert.issuerCertificate ? cert : undefined);
  if (!kept) return;
  byFingerprint.delete(kept.fingerprint256);
  byFingerprint.set(kept.fingerprint256, kept);
  if (byFingerprint.size > KEPT) byFingerprint.delete(byFingerprint.keys().next().value!);
}

/**
 * The client certificate of a TLS connection, with the chain read at its handshake (see readPeerCertificate), and
 * whether TLS verified it against the device CA.
 */
export function peerCertificate(socket: TLSSocket): { certificate: X509Certificate; authorized: boolean } | undefined {
  // Node sets `authorized` at the first handshake and never takes it back: a renegotiation that brings a certificate
  // TLS does not verify (another CA's, sent with that CA) only sets `authorizationError`. Without this, a client that
  // opened its connection with any device certificate (one revoked in the registry, say) could swap in its own.
  const authorized = socket.authorized && !socket.authorizationError;
  const cert = socket.getPeerX509Certificate();
  const kept = bySocket.get(socket);
  if (!cert) return undefined;
  if (kept?.fingerprint256 === cert.fingerprint256) return { certificate: kept, authorized };
  // Another certificate than at the handshake: a renegotiation brought it.
  bySocket.set(socket, cert);
  return { certificate: cert, authorized };
}
