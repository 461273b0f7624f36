// Managed devices: a client certificate from the device CA, not revoked (CRL or registry), bound to the user if set.
import { X509Certificate } from 'node:crypto';
import type { Clock } from '../clock.js';
import { chainsTo, fingerprintsOf, issuerKeyOf, issuersOf, normaliseFingerprint, revocationKeyOf, type Crls } from '../mechanisms/certificates.js';
import type { WatchedFile } from '../mechanisms/watched-file.js';
import type { DeviceRegistry } from '../stores/device-registry.js';

export interface DeviceState {
  managed: boolean;
  fingerprint?: string;
  /** Why the device does not count (for the access_denied event). */
  reason?: string;
  /** Registered to a user, and nobody is signed in: it counts once that user signs in (the rules ask for a sign-in). */
  bound?: true;
}

export interface DeviceServiceDeps {
  clock: Clock;
  registry: DeviceRegistry;
  /** The device CA(s); without them only fingerprints vouched for by a trusted proxy can count. */
  cas: readonly X509Certificate[];
  /** What the device CAs' CRLs say (crlsOf the CRL file's current content). */
  crl: WatchedFile<Crls> | null;
  headerFormat: 'pem' | 'fingerprint';
  requireRegistration: boolean;
}

const NONE: DeviceState = { managed: false, reason: 'no certificate' };
const HEADER_NOT_VALID: DeviceState = { managed: false, reason: 'certificate header not valid' };

export class DeviceService {
  private readonly certificates = new Map<string, X509Certificate | null>();

  constructor(private readonly d: DeviceServiceDeps) {}

  /**
   * The state of the device behind this request, checked now: a certificate of the TLS connection (verified by TLS
   * against the device CA) or one passed by a trusted proxy, then the CRL and the registry. `pid`: the signed-in user.
   */
  async stateOf(
    tls: { certificate: X509Certificate; authorized: boolean } | undefined,
    header: string | undefined,
    pid: string | null,
  ): Promise<DeviceState> {
    let fingerprints: string[] | DeviceState;
    if (tls) {
      // TLS checked the chain, validity and CRL at the handshake; they are checked again for this request, since a
      // connection can outlive its certificates' validity and the CRL it was checked with.
      fingerprints = this.judged(tls.certificate, tls.authorized);
    } else if (!header) {
      return NONE;
    } else if (this.d.headerFormat === 'fingerprint') {
      const fingerprint = normaliseFingerprint(header);
      fingerprints = fingerprint === null ? HEADER_NOT_VALID : [fingerprint];
    } else {
      // Judged as the gateway's own TLS judges a certificate: a proxy may pass on one it did not verify (nginx
      // `ssl_verify_client optional_no_ca`).
      const cert = this.parsed(header);
      fingerprints = cert ? this.judged(cert, true) : HEADER_NOT_VALID;
    }
    if (!Array.isArray(fingerprints)) return fingerprints;
    // A certificate's twin (see fingerprintsOf) is the same device: a record under either fingerprint applies.
    const fingerprint = fingerprints[0]!;
    const records = (await Promise.all(fingerprints.map((f) => this.d.registry.get(f)))).filter((r) => r !== null);
    if (records.some((r) => r.status === 'revoked')) return { managed: false, fingerprint, reason: 'revoked in the registry' };
    if (!records.length && this.d.requireRegistration) return { managed: false, fingerprint, reason: 'not registered' };
    if (records.some((r) => r.pid && r.pid !== pid)) return pid === null ? { managed: false, fingerprint, bound: true } : { managed: false, fingerprint, reason: 'registered to another user' };
    return { managed: true, fingerprint };
  }

  /** The fingerprints a certificate is known by (see fingerprintsOf), or why it does not count. */
  private judged(cert: X509Certificate, authorized: boolean): string[] | DeviceState {
    if (!authorized || !this.current(cert)) return { managed: false, reason: 'certificate not valid' };
    return fingerprintsOf(cert, this.d.cas) ?? { managed: false, reason: 'certificate issuer not known' };
  }

  /** The certificate's chain as TLS verifies it (see chainsTo), and no certificate of it in the CRL. */
  private current(cert: X509Certificate): boolean {
    const now = this.d.clock.now();
    if (!chainsTo(cert, this.d.cas, now)) return false;
    const crls = this.d.crl?.current();
    if (!crls) return true;
    // The CRL of the CA above an intermediate may revoke the intermediate, and with it every certificate it issued. A
    // CA's CRL past its next update may miss revocations made since: as TLS refuses new connections then, no
    // certificate that CA issued counts until a fresh CRL is in the file. Nor does one of a CA that has no CRL in the
    // file (its revocations cannot be known), as TLS, checking every certificate of the chain, refuses it.
    return ![cert, ...issuersOf(cert, this.d.cas)].some((c) => {
      if (c.checkIssued(c)) return false;
      const issuer = issuerKeyOf(c);
      return !crls.issuers.has(issuer) || crls.revoked.has(revocationKeyOf(c)) || now > (crls.nextUpdate.get(issuer) ?? Infinity);
    });
  }

  /**
   * The certificate of a header value (URL-encoded PEM), parsed once per value (about 130 µs): a device sends the same
   * one on every request. Bounded: only trusted proxies set the header, and the oldest go first.
   */
  private parsed(value: string): X509Certificate | null {
    let cert = this.certificates.get(value);
    if (cert === undefined) {
      try {
        cert = new X509Certificate(decodeURIComponent(value));
      } catch {
        cert = null;
      }
      this.certificates.set(value, cert);
      if (this.certificates.size > 1000) this.certificates.delete(this.certificates.keys().next().value!);
    }
    return cert;
  }
}
