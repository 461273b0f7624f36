// A throw-away PKI for tests, made with the openssl command: a CA, server and client certificates, and a CRL.
import { execFileSync } from 'node:child_process';
import { X509Certificate, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** SHA-256 fingerprint, lower-case hex. */
  fingerprint: string;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

export class TestCa {
  readonly dir: string;
  readonly ca: Issued;
  private serial = 1;

  /**
   * `curve`: of the CA's key, which signs every certificate it issues (OpenSSL's name); `v1`: the CA's certificate in
   * the first X.509 version, without extensions (no basicConstraints), as old roots are; `ext`: an extension of the
   * CA's certificate besides OpenSSL's defaults (OpenSSL's -addext).
   */
  constructor(name: string, readonly curve = 'P-256', opts: { v1?: boolean; ext?: string } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), `mfa-pki-${name}-`));
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'crlnumber'), '01\n');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      `[ca]\ndefault_ca = ca\n[ca]\ndatabase = index.txt\ndefault_md = sha256\ncrlnumber = crlnumber\ndefault_crl_days = 1\n`,
    );
    if (opts.v1) {
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${curve}`, '-nodes', '-subj', `/CN=${name}`, '-keyout', 'ca.key', '-out', 'ca.csr'], this.dir);
      openssl(['x509', '-req', '-in', 'ca.csr', '-signkey', 'ca.key', '-days', '30', '-out', 'ca.pem'], this.dir);
    } else {
      const ext = opts.ext ? ['-addext', opts.ext] : [];
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${curve}`, '-nodes', '-days', '30', '-subj', `/CN=${name}`, ...ext, '-keyout', 'ca.key', '-out', 'ca.pem'], this.dir);
    }
    this.ca = this.load('ca');
  }

  /**
   * A certificate signed by this CA: a server (with SANs) or a client (device) certificate; `eku`: its extended key
   * usage instead (OpenSSL's names); `keyUsage`: a key usage extension (OpenSSL's names; none unless given); `serial`:
   * its serial number instead of the next one (OpenSSL's -set_serial); `ext`: more extensions (OpenSSL's extfile lines).
   */
  issue(cn: string, opts: { server?: boolean; days?: number; eku?: string; keyUsage?: string; serial?: string; ext?: string } = {}): Issued {
    const base = `${cn.replace(/\W/g, '_')}-${this.serial}`;
    const serial = opts.serial ?? String(0x1000 + this.serial);
    this.serial++;
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${base}.key`, '-out', `${base}.csr`], this.dir);
    const ext = opts.server
      ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
      : `extendedKeyUsage=${opts.eku ?? 'clientAuth'}\n${opts.keyUsage ? `keyUsage=critical,${opts.keyUsage}\n` : ''}${opts.ext ?? ''}`;
    writeFileSync(join(this.dir, `${base}.ext`), ext);
    openssl(
      ['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial, '-days', String(opts.days ?? 7), '-extfile', `${base}.ext`, '-out', `${base}.pem`],
      this.dir,
    );
    return this.load(base);
  }

  /**
   * An intermediate CA under this one: its certificate is issued by this CA, and it issues certificates itself
   * (`curve`: of its own key; `ext`: the extensions of its certificate, a CA's unless given).
   */
  intermediate(name: string, curve = 'P-256', ext = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n'): TestCa {
    const child = new TestCa(name, curve);
    openssl(['req', '-new', '-key', 'ca.key', '-subj', `/CN=${name}`, '-out', 'ca.csr'], child.dir);
    writeFileSync(join(child.dir, 'ca.ext'), ext);
    openssl(['x509', '-req', '-in', join(child.dir, 'ca.csr'), '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(0x9000 + this.serial++), '-days', '30', '-extfile', join(child.dir, 'ca.ext'), '-out', join(child.dir, 'ca.pem')], this.dir);
    Object.assign(child, { ca: child.load('ca') });
    return child;
  }

  /**
   * `of` (a CA certificate) with another serial number, expired long ago, and signed by this CA's key instead: its
   * name and public key are the CA's, so it looks like the issuer of the CA's certificates. Anyone can make one: it
   * needs only the CA's certificate, not its private key.
   */
  lookalike(of: Issued): Issued {
    const der = new X509Certificate(of.cert).raw;
    const tbs = tlv(der, tlv(der, 0).start);
    const fields: Buffer[] = [];
    for (let at = tbs.start; at < tbs.end; ) {
      const f = tlv(der, at);
      fields.push(der.subarray(at, f.end));
      at = f.end;
    }
    // version, serial, signature algorithm, issuer, validity, subject, key, extensions
    fields[1] = encode(0x02, Buffer.from([0x66, this.serial++]));
    fields[4] = encode(0x30, Buffer.concat([encode(0x17, Buffer.from('200101000000Z')), encode(0x17, Buffer.from('200201000000Z'))]));
    const newTbs = encode(0x30, Buffer.concat(fields));
    const signature = sign('sha256', newTbs, readFileSync(join(this.dir, 'ca.key'), 'utf8'));
    const cert = encode(0x30, Buffer.concat([newTbs, fields[2]!, encode(0x03, Buffer.concat([Buffer.from([0]), signature]))]));
    const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
    const certFile = join(this.dir, `lookalike-${this.serial}.pem`);
    writeFileSync(certFile, pem);
    return { certFile, keyFile: '', cert: pem, key: '', fingerprint: new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase() };
  }

  /** A CRL (PEM file) revoking these certificates; due to be replaced in a day, or at `nextUpdate` (a day after its lastUpdate). */
  crl(revoked: Issued[], file = 'ca.crl.pem', nextUpdate?: Date): string {
    writeFileSync(join(this.dir, 'index.txt'), '');
    for (const r of revoked) openssl(['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.pem', '-revoke', r.certFile], this.dir);
    const time = (d: Date) => `${d.toISOString().replace(/[-:T]|\.\d+/g, '')}`;
    const times = nextUpdate ? ['-crl_lastupdate', time(new Date(nextUpdate.getTime() - 86_400_000)), '-crl_nextupdate', time(nextUpdate)] : [];
    openssl(['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.pem', '-gencrl', ...times, '-out', file], this.dir);
    return join(this.dir, file);
  }

  private load(base: string): Issued {
    const certFile = join(this.dir, `${base}.pem`);
    const keyFile = join(this.dir, `${base}.key`);
    const cert = readFileSync(certFile, 'utf8');
    return { certFile, keyFile, cert, key: readFileSync(keyFile, 'utf8'), fingerprint: new X509Certificate(cert).fingerprint256.replaceAll(':', '').toLowerCase() };
  }
}

/** A DER element at `at`: where its content starts and where it ends. */
function tlv(b: Buffer, at: number): { at: number; start: number; end: number } {
  let length = b[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = b.readUIntBE(start, n);
    start += n;
  }
  return { at, start, end: start + length };
}

/** A DER element of `tag` holding `content`. */
function encode(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), content]);
}

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/**
 * The twin of a certificate signed with P-256: S of the signature replaced by n − s. Anyone holding the certificate
 * can make it; it verifies as well, with the same key and serial number, under another fingerprint.
 */
export function twinOf(issued: Issued, dir: string, order = P256_ORDER): Issued {
  const der = new X509Certificate(issued.cert).raw;
  const certificate = tlv(der, 0);
  const tbs = tlv(der, certificate.start);
  const algorithm = tlv(der, tbs.end);
  const bits = tlv(der, algorithm.end);
  const sig = der.subarray(bits.start + 1, bits.end);
  const r = tlv(sig, tlv(sig, 0).start);
  const s = tlv(sig, r.end);
  let hex = (order - BigInt(`0x${sig.subarray(s.start, s.end).toString('hex')}`)).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const bytes = Buffer.from(hex, 'hex');
  const twinS = encode(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
  const signature = encode(0x30, Buffer.concat([sig.subarray(r.at, r.end), twinS]));
  const twin = encode(0x30, Buffer.concat([der.subarray(certificate.start, algorithm.end), encode(0x03, Buffer.concat([Buffer.from([0]), signature]))]));
  const cert = `-----BEGIN CERTIFICATE-----\n${twin.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
  const certFile = join(dir, `twin-${issued.fingerprint.slice(0, 8)}.pem`);
  writeFileSync(certFile, cert);
  return { ...issued, certFile, cert, fingerprint: new X509Certificate(cert).fingerprint256.replaceAll(':', '').toLowerCase() };
}
