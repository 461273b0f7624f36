// Client certificates of managed devices: fingerprints, chain and validity checks, and CRL serial numbers.
import { createHash, X509Certificate } from 'node:crypto';

/** SHA-256 fingerprint as lower-case hex without separators (what `devices register` takes). */
export function fingerprintOf(cert: X509Certificate | { fingerprint256: string }): string {
  return normaliseFingerprint(cert.fingerprint256) ?? '';
}

// Orders of the curves a device CA may sign with (SEC 2, RFC 5639); config check refuses a CA on any other curve.
const CURVE_ORDERS: Readonly<Record<string, bigint>> = {
  prime256v1: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  secp384r1: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  secp521r1: 0x01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
  secp256k1: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
  brainpoolP256r1: 0xa9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7n,
  brainpoolP384r1: 0x8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b31f166e6cac0425a7cf3ab6af6b7fc3103b883202e9046565n,
  brainpoolP512r1: 0xaadd9db8dbe9c48b3fd4e6ae33c9fc07cb308db3b3c9d20ed6639cca70330870553e5c414ca92619418661197fac10471db1d381085ddaddb58796829ca90069n,
};

/** Whether a CA's key signs certificates whose ECDSA twins can be found (not EC, or EC on a curve of known order). */
export function twinsKnown(ca: X509Certificate): boolean {
  const details = ca.publicKey.asymmetricKeyDetails;
  return ca.publicKey.asymmetricKeyType !== 'ec' || (details?.namedCurve !== undefined && details.namedCurve in CURVE_ORDERS);
}

// Answers worked out before, by certificate fingerprints: a device's certificate is checked on every request a device
// rule sees, a signature check costs of the order of 100 µs, a twin 20 µs and reading extensions a few, and no answer
// ever changes for the same certificates. Bounded: the oldest go first.
const SIGNED = new Map<string, boolean>();
const TWINS = new Map<string, string | null>();
const LIMITS = new Map<string, Limits | null>();
const KEPT = 10_000;

function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.set(key, value);
  if (map.size > KEPT) map.delete(map.keys().next().value!);
}

/** Whether `issuer` issued `cert` (names it as its issuer) and signed it. */
export function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  if (!cert.checkIssued(issuer)) return false;
  const key = `${cert.fingerprint256}>${issuer.fingerprint256}`;
  let signed = SIGNED.get(key);
  if (signed === undefined) {
    signed = cert.verify(issuer.publicKey);
    remember(SIGNED, key, signed);
  }
  return signed;
}

/**
 * The fingerprints a certificate issued by one of `cas` is known by: its own and, when an ECDSA key signed it, that
 * of its twin with the signature's other valid S (n − s). Anyone holding a certificate can make the twin: it is
 * signed as well, for the same key and serial number, but has another fingerprint, so a device revoked or bound to
 * a user by one fingerprint must be looked up by both. Null when the twin cannot be known, so the certificate must
 * not count: no certificate of the bundle or of the chain the client sent signed it (a client can put anything in
 * its chain before the intermediate TLS used), or its issuer has an EC key on a curve of unknown order.
 */
export function fingerprintsOf(cert: X509Certificate, cas: readonly X509Certificate[]): string[] | null {
  const issuer = [...cas, ...sentChain(cert)].find((c) => issuedBy(cert, c));
  if (!issuer || !twinsKnown(issuer)) return null;
  const own = fingerprintOf(cert);
  // The twin follows from the certificate alone (its signature, made with its issuer's key on that key's curve).
  let twin = TWINS.get(own);
  if (twin === undefined) {
    const curve = issuer.publicKey.asymmetricKeyDetails?.namedCurve;
    const order = curve === undefined ? undefined : CURVE_ORDERS[curve];
    const der = order === undefined ? null : ecdsaTwin(cert.raw, order);
    twin = der ? createHash('sha256').update(der).digest('hex') : null;
    remember(TWINS, own, twin);
  }
  return twin ? [own, twin] : [own];
}

/**
 * The CA certificates above `cert`, nearest first: every one among `cas` and the chain the client sent that issued
 * (and signed) it or one of those, up to self-issued ones (the trust anchors). Every one, not the first found: a
 * client can send, before the intermediate, another certificate with the intermediate's name and key (which needs
 * only the intermediate's certificate to make; expired, TLS passes over it), and the CRL must still be checked for
 * the intermediate TLS built its chain through.
 */
export function issuersOf(cert: X509Certificate, cas: readonly X509Certificate[]): X509Certificate[] {
  const known = [...cas, ...sentChain(cert)];
  const issuers: X509Certificate[] = [];
  for (let i = -1; i < issuers.length; i++) {
    const c = i < 0 ? cert : issuers[i]!;
    if (c.checkIssued(c)) continue;
    for (const k of known) if (!issuers.includes(k) && issuedBy(c, k)) issuers.push(k);
  }
  return issuers;
}

/** The certificates a TLS client sent after its own (at most a few: a chain is short). */
function sentChain(cert: X509Certificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let c = cert.issuerCertificate; c && chain.length < 8 && !chain.some((d) => d.fingerprint256 === c!.fingerprint256); c = c.issuerCertificate) chain.push(c);
  return chain;
}

/** The certificate (DER) with S of its ECDSA signature replaced by n − s; null when it holds no such signature. */
function ecdsaTwin(der: Buffer, order: bigint): Buffer | null {
  try {
    const certificate = tlv(der, 0);
    const tbs = tlv(der, certificate.start);
    const algorithm = tlv(der, tbs.end);
    const bits = tlv(der, algorithm.end);
    if (bits.tag !== 0x03 || der[bits.start] !== 0) return null;
    const sig = der.subarray(bits.start + 1, bits.end);
    const pair = tlv(sig, 0);
    const r = tlv(sig, pair.start);
    const s = tlv(sig, r.end);
    if (pair.tag !== 0x30 || r.tag !== 0x02 || s.tag !== 0x02 || s.end !== pair.end) return null;
    const value = BigInt(`0x${sig.subarray(s.start, s.end).toString('hex') || '0'}`);
    if (value <= 0n || value >= order) return null;
    const signature = encode(0x30, Buffer.concat([sig.subarray(pair.start, r.end), encodeInteger(order - value)]));
    return encode(0x30, Buffer.concat([der.subarray(certificate.start, algorithm.end), encode(0x03, Buffer.concat([Buffer.from([0]), signature]))]));
  } catch {
    return null;
  }
}

function encodeInteger(n: bigint): Buffer {
  const hex = n.toString(16);
  const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  return encode(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

/** A DER element: tag, minimal length, content. */
function encode(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), content]);
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

// The extended key usage of TLS client certificates (RFC 5280 §4.2.1.12).
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
// The key usage of a key that signs (a TLS client's handshake, RFC 8446 §4.4.3), and of one that signs certificates:
// bits of the first byte of the extension's value (RFC 5280 §4.2.1.3).
const DIGITAL_SIGNATURE = 0x80;
const KEY_CERT_SIGN = 0x04;

/** Whether a certificate is made for TLS clients: no extended key usage, or one that allows them. */
const forClients = (c: X509Certificate) => c.keyUsage === undefined || c.keyUsage.includes(CLIENT_AUTH);

/**
 * Whether a certificate is a CA: it says so (basicConstraints CA:TRUE), or it is a self-issued root of the first X.509
 * version (no extensions, so no CA flag), which TLS takes as one. Its key usage is checkIssued's to check.
 */
const actsAsCa = (c: X509Certificate) => c.ca || (firstVersion(c) && c.checkIssued(c));

/**
 * Whether `cert` is a device certificate as TLS verifies one at the handshake: made for TLS clients (an extended key
 * usage, when it has one, that allows it; a key usage, when it has one, that allows signing), and issued (and signed)
 * through CAs (basicConstraints CA:TRUE) made for TLS clients too, each with a key usage, when it has one, that allows
 * signing certificates (checkIssued sees to that) and a path length constraint, when it has one, that allows as many
 * CAs below it as there are on the way down, up to a self-issued CA of `cas`, every certificate on the way within its
 * validity period at `now`. The CAs between may come from `cas` or from the chain the client sent (one an expired
 * lookalike, TLS passes over it for the CA it looks like). A proxy may pass on a certificate it did not verify, and a
 * TLS connection can outlive its certificates: both are checked this way on every request.
 */
export function chainsTo(cert: X509Certificate, cas: readonly X509Certificate[], now: number): boolean {
  const known = [...cas, ...sentChain(cert)];
  const valid = (c: X509Certificate) => now >= Date.parse(c.validFrom) && now <= Date.parse(c.validTo);
  // A certificate whose extensions cannot be read is neither.
  const signs = (c: X509Certificate) => {
    const limits = limitsOf(c);
    return limits !== null && (limits.keyUsage === undefined || (limits.keyUsage & DIGITAL_SIGNATURE) !== 0);
  };
  const allowsBelow = (c: X509Certificate, below: number) => {
    const limits = limitsOf(c);
    return limits !== null && below <= (limits.pathLen ?? Infinity);
  };
  const chains = (c: X509Certificate, path: X509Certificate[]): boolean =>
    known.some(
      (issuer) =>
        !path.includes(issuer) && issuedBy(c, issuer) && valid(issuer) && actsAsCa(issuer) &&
        // Its path length constraint counts the CAs below it (RFC 5280 §4.2.1.9): those of the path but the device
        // (none self-issued: the path ends at the first).
        allowsBelow(issuer, path.length - 1) &&
        (issuer.checkIssued(issuer) ? cas.includes(issuer) : forClients(issuer) && path.length < 8 && chains(issuer, [...path, issuer])),
    );
  return valid(cert) && forClients(cert) && signs(cert) && chains(cert, [cert]);
}

/**
 * Why no device certificate under a CA of the bundle `cas` can count (chainsTo), one line each, naming the
 * certificate: its key usage or basic constraints cannot be read, its key usage does not allow signing certificates,
 * it is no CA, it is an intermediate not made for TLS clients, or it is more CAs below a CA of the bundle than that
 * one's path length constraint allows.
 */
export function unusableCas(cas: readonly X509Certificate[]): string[] {
  const named = (c: X509Certificate) => `${JSON.stringify(c.subject.replaceAll('\n', ', '))} (certificate ${cas.indexOf(c) + 1} in the file)`;
  const lines: string[] = [];
  for (const c of cas) {
    const limits = limitsOf(c);
    if (limits === null) lines.push(`${named(c)}: its keyUsage or basicConstraints cannot be read`);
    else if (limits.keyUsage !== undefined && (limits.keyUsage & KEY_CERT_SIGN) === 0) lines.push(`${named(c)}: its keyUsage does not allow signing certificates (no keyCertSign)`);
    else if (!actsAsCa(c)) lines.push(`${named(c)}: not a CA (its basicConstraints do not say CA:TRUE)`);
    else if (!c.checkIssued(c) && !forClients(c)) lines.push(`${named(c)}: an intermediate CA whose extendedKeyUsage leaves out clientAuth`);
  }
  // The CAs of the bundle above each intermediate, nearest first: a path length constraint counts the CAs below its
  // CA on the way down to a device, up to the first self-issued one.
  for (const c of cas) {
    let level = actsAsCa(c) && !c.checkIssued(c) ? [c] : [];
    const seen = new Set(level);
    for (let below = 1; level.length; below++) {
      const above = cas.filter((a) => !seen.has(a) && level.some((l) => issuedBy(l, a)));
      for (const a of above) {
        seen.add(a);
        const pathLen = limitsOf(a)?.pathLen;
        if (pathLen !== undefined && below > pathLen) {
          const nth = ['first', 'second', 'third'][below - 1] ?? `${below}th`;
          lines.push(`${named(c)}: the ${nth} CA below ${named(a)}, whose path length constraint (pathlen:${pathLen}) allows ${pathLen === 0 ? 'none' : pathLen === 1 ? 'one' : pathLen}`);
        }
      }
      level = above.filter((a) => !a.checkIssued(a));
    }
  }
  return lines;
}

/** What a certificate's extensions limit: its key usages (the first eight bits), and the CAs below it (pathLen). */
interface Limits {
  keyUsage?: number;
  pathLen?: number;
}

/** The limits of a certificate (see Limits), read once; null when an extension of them cannot be read. */
function limitsOf(cert: X509Certificate): Limits | null {
  let limits = LIMITS.get(cert.fingerprint256);
  if (limits === undefined) {
    limits = readLimits(cert.raw);
    remember(LIMITS, cert.fingerprint256, limits);
  }
  return limits;
}

/** The limits (see Limits) a certificate's DER holds in its extensions (RFC 5280 §4.1: tbsCertificate's [3]). */
function readLimits(der: Buffer): Limits | null {
  try {
    const limits: Limits = {};
    const tbs = tlv(der, tlv(der, 0).start);
    let at = tbs.start;
    while (at < tbs.end && der[at] !== 0xa3) at = tlv(der, at).end;
    if (at >= tbs.end) return limits;
    const list = tlv(der, tlv(der, at).start);
    for (let e = list.start; e < list.end; e = tlv(der, e).end) {
      // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
      const oid = tlv(der, tlv(der, e).start);
      const id = der.subarray(oid.start, oid.end).toString('hex');
      if (id !== '551d0f' && id !== '551d13') continue;
      let field = tlv(der, oid.end);
      if (field.tag === 0x01) field = tlv(der, field.end);
      // Only these two extensions' values are read (another's need not be DER).
      if (field.tag !== 0x04) return null;
      const value = tlv(der, field.start);
      if (id === '551d0f') {
        // keyUsage (2.5.29.15): a BIT STRING, its first byte the number of unused bits.
        if (value.tag !== 0x03) return null;
        limits.keyUsage = value.end - value.start > 1 ? der[value.start + 1]! : 0;
      } else if (id === '551d13') {
        // basicConstraints (2.5.29.19): SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL }.
        if (value.tag !== 0x30) return null;
        for (let f = value.start; f < value.end; f = tlv(der, f).end) {
          const n = tlv(der, f);
          if (n.tag !== 0x02) continue;
          if (n.end === n.start || der[n.start]! & 0x80) return null;
          limits.pathLen = n.end - n.start > 6 ? Infinity : der.readUIntBE(n.start, n.end - n.start);
        }
      }
    }
    return limits;
  } catch {
    return null;
  }
}

/** Whether a certificate is of the first X.509 version (its to-be-signed part starts without a version field). */
function firstVersion(cert: X509Certificate): boolean {
  const der = cert.raw;
  return tlv(der, tlv(der, tlv(der, 0).start).start).tag !== 0xa0;
}

/** The CRLs of a PEM file, each its own PEM block (TLS reads only the first CRL of a buffer given it). */
export function pemCrls(pem: string): string[] {
  return pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
}

/** What the device CAs' CRLs say (crlsOf). */
export interface Crls {
  /** The certificates listed, each as revocationKeyOf names it. */
  revoked: Set<string>;
  /** When each CA's list is due to be replaced (its CRLs' latest nextUpdate, ms), by issuer as issuerKeyOf names it. */
  nextUpdate: Map<string, number>;
  /** The CAs with a CRL in the file, as issuerKeyOf names them. */
  issuers: Set<string>;
}

/**
 * The certificates listed in PEM CRLs (RFC 5280 §5.1), each as revocationKeyOf names it: a CRL lists serial numbers
 * of the certificates its issuer issued, and another CA may have given the same number to one of its own. Only the
 * structure needed to reach the issuer, its next update and the revoked list is read; the CRL's signature is checked
 * by TLS, which is given the same file.
 */
export function crlsOf(pem: string): Crls {
  const serials = new Set<string>();
  const nextUpdate = new Map<string, number>();
  const issuers = new Set<string>();
  const blocks = pemCrls(pem);
  if (!blocks.length) throw new Error('no X509 CRL in file');
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
    const issuerAt = at; // (t was the signature algorithm)
    const issuer = nameKey(der.subarray(issuerAt, next().end));
    issuers.add(issuer);
    t = next(); // thisUpdate
    if (at >= tbs.end) continue;
    t = next();
    if (t.tag === 0x17 || t.tag === 0x18) {
      const due = derTime(der.subarray(t.start, t.end), t.tag);
      nextUpdate.set(issuer, Math.max(due, nextUpdate.get(issuer) ?? due));
      if (at >= tbs.end) continue;
      t = next(); // after nextUpdate
    }
    if (t.tag !== 0x30) continue; // no revokedCertificates
    for (let e = t.start; e < t.end; ) {
      const entry = tlv(der, e);
      const serial = tlv(der, entry.start);
      if (serial.tag !== 0x02) throw new Error('malformed CRL entry');
      serials.add(`${issuer}:${normaliseSerial(der.subarray(serial.start, serial.end).toString('hex'))}`);
      e = entry.end;
    }
  }
  return { revoked: serials, nextUpdate, issuers };
}

/** A UTCTime (tag 0x17, years 1950–2049) or GeneralizedTime (0x18) in UTC, as ms since the epoch. */
function derTime(value: Buffer, tag: number): number {
  const text = value.toString('latin1');
  const m = /^(\d{2,4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m || m[1]!.length !== (tag === 0x17 ? 2 : 4)) throw new Error('malformed CRL time');
  const year = tag === 0x17 ? (Number(m[1]) < 50 ? 2000 : 1900) + Number(m[1]) : Number(m[1]);
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/**
 * How a certificate is listed in crlsOf: its issuer (issuerKeyOf) and serial number, read from its bytes as the CRL's
 * are. Not as Node gives it (`serialNumber`): a number whose first bit is set, written without a zero byte before it
 * (as some CAs wrote random numbers), is negative, `-80` to Node where the CRL lists `80`.
 */
export function revocationKeyOf(cert: X509Certificate): string {
  const { serial, issuer } = serialAndIssuer(cert.raw);
  return `${nameKey(issuer)}:${normaliseSerial(serial.toString('hex'))}`;
}

/** A certificate's issuer's name, as the CRL of that issuer names it (crlsOf). */
export function issuerKeyOf(cert: X509Certificate): string {
  return nameKey(serialAndIssuer(cert.raw).issuer);
}

/** A certificate's serial number (the content of its DER INTEGER) and its issuer's name (DER). */
function serialAndIssuer(der: Buffer): { serial: Buffer; issuer: Buffer } {
  const tbs = tlv(der, tlv(der, 0).start);
  let t = tlv(der, tbs.start);
  if (t.tag === 0xa0) t = tlv(der, t.end); // version
  const signature = tlv(der, t.end); // after the serial number
  return { serial: der.subarray(t.start, t.end), issuer: der.subarray(signature.end, tlv(der, signature.end).end) };
}

/** A distinguished name (DER) compared as its CA writes it in both its certificates and its CRLs, shortened. */
function nameKey(name: Buffer): string {
  return createHash('sha256').update(name).digest('base64');
}

function tlv(buf: Buffer, offset: number): { tag: number; start: number; end: number } {
  const tag = buf[offset];
  let len = buf[offset + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated DER');
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = buf.readUIntBE(start, n);
    start += n;
  }
  if (start + len > buf.length) throw new Error('truncated DER');
  return { tag, start, end: start + len };
}
