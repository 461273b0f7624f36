// CRL entries and the chain above a device certificate: what the gateway checks against the CRL on every request.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chainsTo, crlsOf, issuerKeyOf, issuersOf, revocationKeyOf } from '../../../src/mechanisms/certificates.js';
import { TestCa } from '../../helpers/pki.js';

const root = new TestCa('root');
// The root's first device and the site's first device: each CA numbers its own certificates, so both are 0x1001.
const laptop = root.issue('laptop');
const site = root.intermediate('site');
const kiosk = site.issue('kiosk');
const x509 = (pem: string) => new X509Certificate(pem);

t.test('a CRL entry names a certificate of the CRL\'s issuer: the same serial number from another CA is not revoked', async (t) => {
  t.equal(x509(laptop.cert).serialNumber, x509(kiosk.cert).serialNumber, 'two CAs, one serial number');
  const { revoked } = crlsOf(readFileSync(site.crl([kiosk], 'site-revokes-kiosk.pem'), 'utf8'));
  t.ok(revoked.has(revocationKeyOf(x509(kiosk.cert))), "the site CA's device it revoked");
  t.notOk(revoked.has(revocationKeyOf(x509(laptop.cert))), "the root CA's device with the same number");
});

t.test('a certificate whose serial number is negative (its first bit set, no zero byte before it) is found in its CRL', async (t) => {
  // As some CAs wrote a random serial number; Node gives it as -80, the CRL lists its bytes, 80.
  const negative = root.issue('negative', { serial: '-128' });
  t.equal(x509(negative.cert).serialNumber, '-80');
  const { revoked } = crlsOf(readFileSync(root.crl([negative], 'root-revokes-negative.pem'), 'utf8'));
  t.ok(revoked.has(revocationKeyOf(x509(negative.cert))), 'revoked');
  t.notOk(revoked.has(revocationKeyOf(x509(laptop.cert))), 'not another of its CA');
});

t.test('the CAs above a certificate, up to the trust anchor, from the bundle and the chain the device sent', async (t) => {
  const subjects = (certs: X509Certificate[]) => certs.map((c) => c.subject);
  t.same(subjects(issuersOf(x509(kiosk.cert), [x509(root.ca.cert), x509(site.ca.cert)])), ['CN=site', 'CN=root'], 'both in the bundle');
  t.same(subjects(issuersOf(x509(kiosk.cert), [x509(root.ca.cert)])), [], 'the intermediate neither in the bundle nor sent');
  t.same(subjects(issuersOf(x509(laptop.cert), [x509(root.ca.cert)])), ['CN=root']);
  // A root CA's CRL revoking the intermediate: found by walking up from the device.
  const { revoked } = crlsOf(readFileSync(root.crl([site.ca], 'root-revokes-site.pem'), 'utf8') + readFileSync(site.crl([], 'site-empty.pem'), 'utf8'));
  const chain = [x509(kiosk.cert), ...issuersOf(x509(kiosk.cert), [x509(root.ca.cert), x509(site.ca.cert)])];
  t.same(chain.map((c) => revoked.has(revocationKeyOf(c))), [false, true, false], 'the intermediate is listed, its device itself is not');
});

t.test("when each CA's CRL is due to be replaced: its nextUpdate, by the CA whose certificates it lists", async (t) => {
  const rootDue = Date.UTC(2031, 4, 6, 7, 8, 9);
  const siteDue = Date.UTC(2051, 0, 2, 3, 4, 5); // after 2049: a GeneralizedTime
  const { nextUpdate } = crlsOf(readFileSync(root.crl([], 'root-due.pem', new Date(rootDue)), 'utf8') + readFileSync(site.crl([], 'site-due.pem', new Date(siteDue)), 'utf8'));
  t.equal(nextUpdate.get(issuerKeyOf(x509(laptop.cert))), rootDue, "the root CA's devices");
  t.equal(nextUpdate.get(issuerKeyOf(x509(kiosk.cert))), siteDue, "the intermediate's");
});

t.test('a root CA in the first X.509 version (no extensions, as old roots are) is a trust anchor, as TLS takes it; a v1 certificate below it is no CA', async (t) => {
  const old = new TestCa('old-root', 'P-256', { v1: true });
  t.equal(x509(old.ca.cert).ca, false, 'no basicConstraints');
  // Issued before the time it is judged at: its notBefore (whole seconds) could otherwise fall after that time.
  const oldLaptop = old.issue('old-laptop');
  const now = Date.now();
  t.ok(chainsTo(x509(oldLaptop.cert), [x509(old.ca.cert)], now), 'its device counts');
  t.ok(chainsTo(x509(laptop.cert), [x509(root.ca.cert)], now), 'as a v3 root\'s does');
  t.notOk(chainsTo(x509(laptop.cert), [x509(old.ca.cert)], now), 'not another CA\'s device');
  // A root of a later version that says it is no CA is none, as TLS refuses it.
  const notCa = new TestCa('not-a-ca', 'P-256', { ext: 'basicConstraints=critical,CA:FALSE' });
  t.notOk(chainsTo(x509(notCa.issue('its-laptop').cert), [x509(notCa.ca.cert)], Date.now()), 'a self-signed certificate marked CA:FALSE issues no devices');
  // Below a root, a CA must say it is one: a device certificate (no CA) cannot issue others.
  t.notOk(chainsTo(x509(kiosk.cert), [x509(root.ca.cert), x509(laptop.cert)], now), 'not a certificate signed by a device');
});

t.test('a device certificate with a key usage counts only when that allows signing, as a TLS client signs its handshake', async (t) => {
  const usages = ['digitalSignature', 'digitalSignature,keyEncipherment', 'keyEncipherment', 'keyCertSign', 'keyAgreement'];
  const devices = usages.map((keyUsage) => root.issue(`usage-${keyUsage}`, { keyUsage }));
  const now = Date.now();
  // keyAgreement alone (static Diffie-Hellman) signs nothing: refused, though OpenSSL's TLS lets it through.
  t.same(devices.map((d) => chainsTo(x509(d.cert), [x509(root.ca.cert)], now)), [true, true, false, false, false]);
});

t.test("another extension's value is not read: one that is no DER (a vendor's own) leaves the device managed", async (t) => {
  const device = root.issue('vendor-extension', { keyUsage: 'digitalSignature', ext: '1.3.6.1.4.1.99999.1=DER:3080\n1.3.6.1.4.1.99999.2=DER:04847FFFFFFF\n' });
  t.ok(chainsTo(x509(device.cert), [x509(root.ca.cert)], Date.now()));
});

t.test("a CA's path length constraint: a CA with pathlen:0 issues devices, not CAs; with pathlen:1, one CA below it", async (t) => {
  const caExt = (pathlen: number) => `basicConstraints=critical,CA:TRUE,pathlen:${pathlen}\nkeyUsage=critical,keyCertSign,cRLSign\n`;
  const last = root.intermediate('last', 'P-256', caExt(0));
  const belowLast = last.intermediate('below-last');
  const one = root.intermediate('one', 'P-256', caExt(1));
  const belowOne = one.intermediate('below-one');
  const bundle = [root, last, belowLast, one, belowOne].map((c) => x509(c.ca.cert));
  const ofLast = last.issue('of-last');
  const ofBelowLast = belowLast.issue('of-below-last');
  const ofBelowOne = belowOne.issue('of-below-one');
  // A root with pathlen:0 (TLS holds a trust anchor to its constraint too).
  const lastRoot = new TestCa('last-root', 'P-256', { ext: 'basicConstraints=critical,CA:TRUE,pathlen:0' });
  const belowLastRoot = lastRoot.intermediate('below-last-root');
  const ofLastRoot = lastRoot.issue('of-last-root');
  const ofBelowLastRoot = belowLastRoot.issue('of-below-last-root');
  const now = Date.now();
  t.ok(chainsTo(x509(ofLast.cert), bundle, now), 'a device of the CA with pathlen:0');
  t.ok(chainsTo(x509(ofBelowOne.cert), bundle, now), 'a device of a CA below the CA with pathlen:1');
  t.notOk(chainsTo(x509(ofBelowLast.cert), bundle, now), 'not one of a CA below the CA with pathlen:0');
  const rootBundle = [x509(lastRoot.ca.cert), x509(belowLastRoot.ca.cert)];
  t.ok(chainsTo(x509(ofLastRoot.cert), rootBundle, now), "a device of the root with pathlen:0");
  t.notOk(chainsTo(x509(ofBelowLastRoot.cert), rootBundle, now), 'not one of a CA below it');
});

t.test('a CA whose key usage does not allow signing certificates issues no devices', async (t) => {
  const unsigning = root.intermediate('unsigning', 'P-256', 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n');
  const device = unsigning.issue('of-unsigning');
  const now = Date.now();
  t.notOk(chainsTo(x509(device.cert), [x509(root.ca.cert), x509(unsigning.ca.cert)], now), 'an intermediate without keyCertSign');
  t.ok(chainsTo(x509(kiosk.cert), [x509(root.ca.cert), x509(site.ca.cert)], now), 'as one with it issues them');
});
