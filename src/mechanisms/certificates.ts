// Client certificates of managed devices: fingerprints, chain and validity checks, and CRL serial numbers.
import { X509Certificate } from 'node:crypto';

/** SHA-256 fingerprint as lower-case hex without separators (what `devices register` takes). */
export function fingerprintOf(cert: X509Certificate | { fingerprint256: string }): string {
  return normaliseFingerprint(cert.fingerprint256) ?? '';
}

/** Accepts `AB:CD:…` or plain hex (any case); null unless it is 32 bytes of hex. */
export function normaliseFingerprint(raw: string): string | null {
  const hex = raw.trim().replaceAll(':', '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}

/** Serial numbers compare as upper-case hex without leading zeros. */
export function normaliseSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** The certificates of a PEM bundle. */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/** Issued (and signed) by one of `cas`, and within its validity period at `now`. */
export function chainsTo(cert: X509Certificate, cas: readonly X509Certificate[], now: number): boolean {
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) return false;
  return cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
}

/**
 * Serial numbers listed in a PEM CRL (RFC 5280 §5.1). Only the structure needed to reach the revoked list is
 * read; the CRL's signature is checked by TLS, which is given the same file.
 */
export function crlSerials(pem: string): Set<string> {
  const serials = new Set<string>();
  const blocks = pem.match(/-----BEGIN X509 CRL-----([\s\S]+?)-----END X509 CRL-----/g);
  if (!blocks) throw new Error('no X509 CRL in file');
  for (const block of blocks) {
    const der = Buffer.from(block.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const list = tlv(der, 0);
    const tbs = tlv(der, list.start);
    let at = tbs.start;
    const next = () => {
      const t = tlv(der, at);
      at = t.end;
      return t;
    };
    let t = next();
    if (t.tag === 0x02) t = next(); // version
    next(); // issuer (t was the signature algorithm)
    t = next(); // thisUpdate
    if (at >= tbs.end) continue;
    t = next();
    if (t.tag === 0x17 || t.tag === 0x18) {
      if (at >= tbs.end) continue;
      t = next(); // after nextUpdate
    }
    if (t.tag !== 0x30) continue; // no revokedCertificates
    for (let e = t.start; e < t.end; ) {
      const entry = tlv(der, e);
      const serial = tlv(der, entry.start);
      if (serial.tag !== 0x02) throw new Error('malformed CRL entry');
      serials.add(normaliseSerial(der.subarray(serial.start, serial.end).toString('hex')));
      e = entry.end;
    }
  }
  return serials;
}

function tlv(buf: Buffer, offset: number): { tag: number; start: number; end: number } {
  const tag = buf[offset];
  let len = buf[offset + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated CRL');
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported length in CRL');
    len = buf.readUIntBE(start, n);
    start += n;
  }
  if (start + len > buf.length) throw new Error('truncated CRL');
  return { tag, start, end: start + len };
}
