// Managed devices: client certificates at the gateway's own TLS, behind a TLS-terminating proxy, the CRL and the
// device registry (also through the CLI, on a shared Redis).
import t, { type Test } from 'tap';
import { X509Certificate, randomBytes } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TLSSocket } from 'node:tls';
import { Agent } from 'undici';
import { Sealer } from '../../src/mechanisms/sealer.js';
import { ConfigError, decodeKey, resolveConfig } from '../../src/config/load.js';
import { fingerprintsOf } from '../../src/mechanisms/certificates.js';
import { DeviceRegistry } from '../../src/stores/device-registry.js';
import { rawRequest, type Browser } from '../helpers/browser.js';
import { OPERATOR, runCliAsync } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { TestCa, twinOf, type Issued } from '../helpers/pki.js';
import { ALICE, BOB, enrol, signUpAndEnrol, startStack, submitPassword, type Stack, startRedisStack } from '../helpers/stack.js';

const serverCa = new TestCa('server');
const server = serverCa.issue('gateway', { server: true });
const deviceCa = new TestCa('devices');
const laptop = deviceCa.issue('laptop-1');
const laptop2 = deviceCa.issue('laptop-2');
const stolen = deviceCa.issue('stolen');
const rogue = new TestCa('rogue').issue('laptop-1');
// Made before any gateway starts: a test gateway's clock begins at its start, and a certificate is valid from the
// second it was made.
const site = deviceCa.intermediate('site-ca');
// A device of another CA, sent with that CA (so its issuer is in the chain the client sent).
const forgedCa = new TestCa('forged');
const forged = forgedCa.issue('laptop-9');
const forgedChain = join(forgedCa.dir, 'forged-chain.pem');
writeFileSync(forgedChain, `${forged.cert}${forgedCa.ca.cert}`);
const issued = site.issue('laptop-3');
// The intermediate's name and key in an expired certificate of another CA, sent before the intermediate: TLS passes
// over it (it is not valid now) for the intermediate.
const lookalikeCa = new TestCa('lookalike');
const siteLookalike = lookalikeCa.lookalike(site.ca);
const unrevoked = site.issue('laptop-4');
const crlFile = deviceCa.crl([stolen]);
// A certificate on a curve of unknown order (config check refuses such a CA in devices.caFile, not in a chain).
const decoy = new TestCa('decoy', 'secp224r1');
const oddSite = deviceCa.intermediate('odd-site', 'secp224r1');
const kiosk = oddSite.issue('kiosk');
const P224_ORDER = 0xffffffffffffffffffffffffffff16a2e0b8f03e13dd29455c5c2a3dn;
// Certificates TLS refuses at the handshake: one for servers only, one whose issuer is no CA (basicConstraints
// CA:FALSE), and one of an intermediate CA whose own certificate has expired.
const serverOnly = deviceCa.issue('laptop-5', { eku: 'serverAuth' });
const notCa = deviceCa.intermediate('not-a-ca', 'P-256', 'basicConstraints=critical,CA:FALSE\n');
const ofNotCa = notCa.issue('laptop-6');
const oldSite = deviceCa.intermediate('old-site');
const ofOldSite = oldSite.issue('laptop-7');
// The intermediate's certificate (its name and key, issued by the device CA) expired long ago.
const oldSiteExpired = deviceCa.lookalike(oldSite.ca);
// TLS refuses these too: a certificate whose key usage allows no signing (it signs no handshake), and one of a CA
// issued by a CA with pathlen:0 (which may issue devices, no CAs); beside them one of that CA, for signing.
const encipherOnly = deviceCa.issue('laptop-8', { keyUsage: 'keyEncipherment' });
const lastCa = deviceCa.intermediate('last-ca', 'P-256', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
const ofLastCa = lastCa.issue('laptop-10', { keyUsage: 'digitalSignature' });
const belowLastCa = lastCa.intermediate('below-last-ca');
const ofBelowLastCa = belowLastCa.issue('laptop-11');

const rules = [
  { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
  { name: 'clinic workstation', paths: ['/admin/'], decision: 'managed-device' },
  { name: 'portal', paths: ['/'], decision: 'mfa' },
];

function tlsStack(patch: (raw: Record<string, any>) => void = () => {}) {
  return startStack({
    ca: serverCa.ca.cert,
    patch: (raw) => {
      raw.server.tls = { certFile: server.certFile, keyFile: server.keyFile };
      raw.devices = { caFile: deviceCa.ca.certFile, crlFile };
      raw.policy = { rules };
      patch(raw);
    },
  });
}

/**
 * A gateway behind a TLS-terminating proxy (127.0.0.1) that passes the device certificate in X-SSL-Client-Cert,
 * judged against `caFile` (and `crlFile`); with a browser signed in there as Alice, and the header that presents a certificate.
 */
async function proxyStack(t: Test, caFile: string, crlFile?: string): Promise<{ stack: Stack; b: Browser; header: (cert: Issued) => Record<string, string> }> {
  const stack = await startStack({
    patch: (raw) => {
      raw.server.trustedProxies = ['127.0.0.1'];
      raw.devices = { caFile, ...(crlFile ? { crlFile } : {}), header: { name: 'X-SSL-Client-Cert', format: 'pem' } };
      raw.policy = { rules };
    },
  });
  t.teardown(stack.close);
  const { b } = await signUpAndEnrol(stack, ALICE);
  return { stack, b, header: (cert) => ({ 'x-ssl-client-cert': encodeURIComponent(cert.cert) }) };
}

const agent = (cert?: Issued) =>
  new Agent({ connect: { ca: serverCa.ca.cert, ...(cert ? { cert: cert.cert, key: cert.key } : {}) } });

/** A browser presenting `cert`, signed in as `who` is. */
function withSession(s: Stack, who: Browser, cert: Issued): Browser {
  const b = s.browser(agent(cert));
  b.cookies.set('__Host-mfa-session', who.cookies.get('__Host-mfa-session')!);
  return b;
}

/**
 * The status of a request, and why the device did not count if a managed-device rule refused it (the access_denied
 * events it made): a refusal is for the reason its test names, not for any.
 */
async function judged(s: Stack, status: () => Promise<number>): Promise<[number, string | undefined]> {
  const from = s.logs.length;
  const answered = await status();
  const why = s.logs.slice(from).map((l) => JSON.parse(l)).filter((l) => l.security === 'access_denied').map((l) => `${l.reason}: ${l.why}`);
  return [answered, why.join(' + ') || undefined];
}
const refused = (why: string) => [403, `unmanaged-device: ${why}`];

function registry(s: Stack) {
  return new DeviceRegistry(s.kv, new Sealer(s.config.keys.encryption.map((k) => ({ id: k.id, key: decodeKey(k.secret) }))));
}

t.test('TLS client certificates: managed, unmanaged, foreign, revoked', async (t) => {
  const s = await tlsStack();
  t.teardown(s.close);
  t.match(s.url, /^https:/);
  const managed = (await signUpAndEnrol(s, ALICE)).b;
  // The same person on a laptop with the device certificate (the session cookie moves with them).
  const onLaptop = s.browser(agent(laptop));
  onLaptop.cookies.set('__Host-mfa-session', managed.cookies.get('__Host-mfa-session')!);
  const ok = await onLaptop.get('/admin/');
  t.equal(ok.status, 200, 'managed device');
  t.match(ok.body, 'Clinic administration');

  const none = s.browser(agent());
  none.cookies.set('__Host-mfa-session', managed.cookies.get('__Host-mfa-session')!);
  t.same(await judged(s, async () => (await none.get('/admin/')).status), refused('no certificate'), 'no certificate');
  t.match((await none.get('/admin/')).body, 'device managed by your organisation');
  t.equal((await none.get('/records')).status, 200, 'the rest of the portal works without one');

  for (const [name, cert] of [['another CA', rogue], ['revoked in the CRL', stolen]] as const) {
    const b = s.browser(agent(cert));
    b.cookies.set('__Host-mfa-session', managed.cookies.get('__Host-mfa-session')!);
    t.same(await judged(s, async () => (await b.get('/admin/')).status), refused('certificate not valid'), name);
  }
});

t.test('a CRL change applies on the next request, even on an open connection', async (t) => {
  const s = await tlsStack();
  t.teardown(s.close);
  const { b: browser } = await signUpAndEnrol(s, ALICE);
  const b = s.browser(agent(laptop2));
  b.cookies.set('__Host-mfa-session', browser.cookies.get('__Host-mfa-session')!);
  t.equal((await b.get('/admin/')).status, 200);
  writeFileSync(crlFile, crlText([stolen, laptop2]));
  s.clock.advance(1500);
  t.equal((await b.get('/admin/')).status, 403, 'revoked: refused on the same keep-alive connection');
  const fresh = s.browser(agent(laptop2));
  fresh.cookies.set('__Host-mfa-session', browser.cookies.get('__Host-mfa-session')!);
  t.equal((await fresh.get('/admin/')).status, 403, 'and on a new connection');
  writeFileSync(crlFile, crlText([stolen]));
  s.clock.advance(1500);
});

/** The text of a CRL listing `revoked` (made in a file of its own, then copied over the configured one). */
function crlText(revoked: Issued[]): string {
  return readFileSync(deviceCa.crl(revoked, `crl-${randomBytes(3).toString('hex')}.pem`), 'utf8');
}

t.test('the device registry: revoked at once, bound to a user, registration required', async (t) => {
  const s = await tlsStack((raw) => (raw.devices.requireRegistration = true));
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const bob = (await signUpAndEnrol(s, BOB)).b;
  const on = (who: Browser, cert: Issued) => withSession(s, who, cert);
  const aliceLaptop = on(alice, laptop);
  t.same(await judged(s, async () => (await aliceLaptop.get('/admin/')).status), refused('not registered'), 'not registered yet');
  const reg = registry(s);
  await reg.put({ fingerprint: laptop.fingerprint, name: 'laptop-1', status: 'active', addedAt: s.clock.now() });
  t.equal((await aliceLaptop.get('/admin/')).status, 200, 'registered');
  await reg.put({ fingerprint: laptop.fingerprint, name: 'laptop-1', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.same(await judged(s, async () => (await aliceLaptop.get('/admin/')).status), refused('revoked in the registry'), 'revoked: refused on the very next request');
  const { pseudonym } = await import('../../src/mechanisms/random.js');
  await reg.put({ fingerprint: laptop2.fingerprint, name: 'bob-laptop', status: 'active', addedAt: s.clock.now(), pid: pseudonym(decodeKey(s.config.keys.pseudonym), 'bob') });
  t.equal((await on(bob, laptop2).get('/admin/')).status, 200, "bob's registered laptop");
  t.same(await judged(s, async () => (await on(alice, laptop2).get('/admin/')).status), refused('registered to another user'), "alice on bob's laptop");
  t.same((await reg.list()).map((d) => d.name).sort(), ['bob-laptop', 'laptop-1']);

  // Bob erased: his laptop is no one's managed device (unbound, it would be everyone's).
  const { userCommand } = await import('../../src/cli/admin.js');
  await userCommand(s.app.gateway, 'erase', { user: 'bob', yes: true });
  t.same(await judged(s, async () => (await on(alice, laptop2).get('/admin/')).status), refused('revoked in the registry'), "alice on the erased user's laptop");
  const left = (await reg.list()).find((d) => d.name === 'bob-laptop')!;
  t.same([left.pid, left.status], [undefined, 'revoked'], 'the binding gone, the laptop revoked');
  // Registered again, it is not made managed for every account unasked.
  const { devicesCommand } = await import('../../src/cli/devices.js');
  await t.rejects(devicesCommand(s.app.gateway, 'register', { fingerprint: laptop2.fingerprint }), /is bound to a user: give --user USERNAME, or --shared/);
  t.same(await devicesCommand(s.app.gateway, 'register', { fingerprint: laptop2.fingerprint, shared: true }), [`registered ${laptop2.fingerprint} for every account`]);
  t.equal((await on(alice, laptop2).get('/admin/')).status, 200, 'shared when asked');
});

t.test('a device registered to a user, opened before anyone signs in on it: a sign-in first, then it is managed for that user only', async (t) => {
  const s = await tlsStack();
  t.teardown(s.close);
  const { pseudonym } = await import('../../src/mechanisms/random.js');
  await registry(s).put({ fingerprint: laptop.fingerprint, name: 'alice-laptop', status: 'active', addedAt: s.clock.now(), pid: pseudonym(decodeKey(s.config.keys.pseudonym), 'alice') });
  const [status, why] = await judged(s, async () => {
    const first = await s.browser(agent(laptop)).get('/admin/');
    t.match(first.headers.location, /^\/login/, 'to the sign-in');
    return first.status;
  });
  t.same([status, why], [302, undefined], 'not refused as an unmanaged device (nor logged as one used by another user)');
  t.same(await judged(s, async () => (await s.browser(agent()).get('/admin/')).status), refused('no certificate'), 'without a certificate: refused at once, as before');
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const bob = (await signUpAndEnrol(s, BOB)).b;
  t.equal((await withSession(s, alice, laptop).get('/admin/')).status, 200, 'its user, signed in');
  t.same(await judged(s, async () => (await withSession(s, bob, laptop).get('/admin/')).status), refused('registered to another user'), 'another user, signed in');
});

t.test('a device registered to a user, where a rule for devices covers the sign-in too: its owner signs in (no loop back to the sign-in)', async (t) => {
  // Clinic devices only, before anything else: the login page and the login are behind that rule too.
  const s = await tlsStack((raw) => {
    raw.policy.rules = [{ name: 'clinic devices only', paths: ['/'], device: 'unmanaged', decision: 'deny' }, ...rules];
  });
  t.teardown(s.close);
  const { pseudonym } = await import('../../src/mechanisms/random.js');
  const pidOf = (name: string) => pseudonym(decodeKey(s.config.keys.pseudonym), name);
  await registry(s).put({ fingerprint: laptop.fingerprint, name: 'alice-laptop', status: 'active', addedAt: s.clock.now(), pid: pidOf('alice') });
  const b = s.browser(agent(laptop));
  t.equal((await b.get('/login')).status, 200, 'the login page, not a sign-in asked of it');
  t.equal((await b.get('/records')).status, 302, 'a page: to the sign-in first');
  const password = await submitPassword(b, ALICE.username, ALICE.password);
  t.equal(password.status, 303, 'the password reaches the portal');
  t.equal((await s.browser(agent()).get('/login')).status, 403, 'the login page without a certificate: refused, as before');
  await enrol(s, b);
  t.equal((await b.get('/records')).status, 200, 'signed in on it, its user gets in');
  // Bob's password on Alice's laptop: the sign-in is let through, his session is not.
  const bob = s.browser(agent(laptop));
  t.equal((await submitPassword(bob, BOB.username, BOB.password)).status, 303);
  await enrol(s, bob);
  t.equal((await bob.get('/records')).status, 403, "Bob signed in on Alice's laptop: refused");
});

t.test("a device registered to a user counts as managed on the login page only as the portal serves it: a GET of its path", async (t) => {
  const s = await tlsStack((raw) => {
    raw.portal.login.page = '/signin?next={target}';
    raw.policy.rules = [{ name: 'clinic devices only', paths: ['/'], device: 'unmanaged', decision: 'deny' }, { name: 'its login page', paths: ['/signin'], decision: 'public' }, ...rules];
  });
  t.teardown(s.close);
  const { pseudonym } = await import('../../src/mechanisms/random.js');
  await registry(s).put({ fingerprint: laptop.fingerprint, name: 'alice-laptop', status: 'active', addedAt: s.clock.now(), pid: pseudonym(decodeKey(s.config.keys.pseudonym), 'alice') });
  const b = s.browser(agent(laptop));
  const reached = () => s.portalRequests.length;
  const before = reached();
  t.not((await b.get('/signin')).status, 302, 'GET of the page: to the portal');
  t.not((await b.get('/signin/')).status, 302, 'with a trailing slash too');
  t.equal(reached(), before + 2);
  t.equal((await b.post('/signin', { username: 'alice' })).status, 401, 'another method on its path is no sign-in: a sign-in first');
  t.equal((await b.get('/SignIn')).status, 302, 'another spelling is another page to the portal: a sign-in first');
  t.equal(reached(), before + 2, 'neither reached the portal');
});

t.test("a certificate's twin (its signature's other S: another fingerprint, the same device) is the same device to the registry", async (t) => {
  const s = await tlsStack();
  t.teardown(s.close);
  const twin = twinOf(laptop, deviceCa.dir);
  t.not(twin.fingerprint, laptop.fingerprint, 'the twin has a fingerprint of its own');
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const bob = (await signUpAndEnrol(s, BOB)).b;
  const on = (who: Browser, cert: Issued) => withSession(s, who, cert);
  t.equal((await on(alice, twin).get('/admin/')).status, 200, 'the twin is accepted by TLS: a managed device while nothing is registered');
  const reg = registry(s);
  const { pseudonym } = await import('../../src/mechanisms/random.js');
  await reg.put({ fingerprint: laptop.fingerprint, name: 'laptop-1', status: 'active', addedAt: s.clock.now(), pid: pseudonym(decodeKey(s.config.keys.pseudonym), 'alice') });
  t.equal((await on(bob, twin).get('/admin/')).status, 403, "alice's laptop, bound to her, as its twin in bob's hands");
  t.equal((await on(alice, twin).get('/admin/')).status, 200, 'and in hers');
  await reg.put({ fingerprint: laptop.fingerprint, name: 'laptop-1', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.equal((await on(alice, laptop).get('/admin/')).status, 403, 'revoked');
  t.equal((await on(alice, twin).get('/admin/')).status, 403, 'revoked as its twin too');
  await reg.put({ fingerprint: laptop2.fingerprint, name: 'laptop-2', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.equal((await on(alice, twinOf(twinOf(laptop2, deviceCa.dir), deviceCa.dir)).get('/admin/')).status, 403, "the twin's twin is the certificate itself");

});

t.test('a certificate of an intermediate CA the device sends along: its twin is known too', async (t) => {
  // devices.caFile holds the root only; no CRL (TLS would then want the intermediate's CRL too).
  const s = await tlsStack((raw) => delete raw.devices.crlFile);
  t.teardown(s.close);
  const withChain = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${site.ca.cert}` });
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const on = (cert: Issued) => withSession(s, alice, withChain(cert));
  t.equal((await on(issued).get('/admin/')).status, 200, 'managed, sent with its chain');
  // Node gives the chain the device sent with the first certificate read of a connection only, and none on a
  // connection that resumed a TLS session.
  const oneConnection = s.browser(new Agent({ connections: 1, connect: { ca: serverCa.ca.cert, cert: withChain(issued).cert, key: issued.key } }));
  oneConnection.cookies.set('__Host-mfa-session', alice.cookies.get('__Host-mfa-session')!);
  let resumed = 0;
  s.app.server.on('secureConnection', (socket: TLSSocket) => (resumed += socket.isSessionReused() ? 1 : 0));
  t.equal((await oneConnection.get('/admin/')).status, 200, 'first request on a connection');
  t.equal((await oneConnection.get('/admin/', { connection: 'close' })).status, 200, 'the next one on the same connection');
  t.equal((await oneConnection.get('/admin/')).status, 200, 'and one on a connection that resumed its TLS session');
  t.equal(resumed, 1, 'the session was resumed');
  await registry(s).put({ fingerprint: issued.fingerprint, name: 'laptop-3', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.equal((await on(issued).get('/admin/')).status, 403, 'revoked');
  t.equal((await on(twinOf(issued, site.dir)).get('/admin/')).status, 403, 'revoked as its twin too');
  // TLS finds the intermediate wherever it is in the chain; the gateway must find the same issuer, or the twin's
  // fingerprint is not looked up.
  const decoyFirst = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${decoy.ca.cert}${site.ca.cert}` });
  t.equal((await withSession(s, alice, decoyFirst(twinOf(issued, site.dir))).get('/admin/')).status, 403, 'revoked as its twin, with another certificate before the intermediate');
  t.equal((await withSession(s, alice, decoyFirst(unrevoked)).get('/admin/')).status, 200, 'such a chain still counts for a device that is not revoked');
  // An intermediate whose key is on a curve of unknown order: the twins of its certificates cannot be found.
  const withOdd = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${oddSite.ca.cert}` });
  t.equal((await withSession(s, alice, withOdd(kiosk)).get('/admin/')).status, 403, 'a certificate of such an intermediate does not count');
  await registry(s).put({ fingerprint: kiosk.fingerprint, name: 'kiosk', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.equal((await withSession(s, alice, withOdd(twinOf(kiosk, oddSite.dir, P224_ORDER))).get('/admin/')).status, 403, 'nor its twin, revoked or not');
});

t.test("a CRL file holding several CRLs (the root CA's and the intermediate's): TLS is given each, also when it is re-read", async (t) => {
  const file = `${deviceCa.dir}/crls.pem`;
  const crls = (revokedBySite: Issued[]) => {
    const name = randomBytes(3).toString('hex');
    return readFileSync(deviceCa.crl([stolen], `root-${name}.pem`), 'utf8') + readFileSync(site.crl(revokedBySite, `site-${name}.pem`), 'utf8');
  };
  writeFileSync(file, crls([]));
  const s = await tlsStack((raw) => (raw.devices.crlFile = file));
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const on = (cert: Issued) => withSession(s, alice, cert);
  const withChain = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${site.ca.cert}` });
  t.equal((await on(laptop).get('/admin/')).status, 200, "a device of the root CA, whose CRL is the file's first");
  t.equal((await on(stolen).get('/admin/')).status, 403, 'revoked there');
  t.equal((await on(withChain(issued)).get('/admin/')).status, 200, "a device of the intermediate, whose CRL is the file's second");
  writeFileSync(file, crls([issued]));
  s.clock.advance(1500);
  t.equal((await on(withChain(issued)).get('/admin/')).status, 403, 'revoked there');
  t.equal((await on(withChain(unrevoked)).get('/admin/')).status, 200, 'and another device of the intermediate, after the file was re-read');
  t.equal(new X509Certificate(laptop.cert).serialNumber, new X509Certificate(issued.cert).serialNumber);
  t.equal((await on(laptop).get('/admin/')).status, 200, "a device of the root CA with the serial number of the one the intermediate's CRL lists");
});

t.test('with a CRL file, a device of a CA that has no CRL in it counts on no path: TLS refuses it, and so does the gateway', async (t) => {
  const file = `${deviceCa.dir}/root-only-${randomBytes(3).toString('hex')}.pem`;
  writeFileSync(file, readFileSync(deviceCa.crl([stolen], `root-only-${randomBytes(3).toString('hex')}.crl.pem`), 'utf8'));
  const s = await tlsStack((raw) => (raw.devices.crlFile = file));
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const withChain = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${site.ca.cert}` });
  t.equal((await withSession(s, alice, laptop).get('/admin/')).status, 200, "a device of the root CA, whose CRL is there");
  t.equal((await withSession(s, alice, withChain(unrevoked)).get('/admin/')).status, 403, 'over TLS: a device of the intermediate, which has none');

  const bundle = `${deviceCa.dir}/root-and-site.pem`;
  writeFileSync(bundle, deviceCa.ca.cert + site.ca.cert);
  const { b, header } = await proxyStack(t, bundle, file);
  t.equal((await b.get('/admin/', header(laptop))).status, 200, "from the proxy: the root CA's device");
  t.equal((await b.get('/admin/', header(unrevoked))).status, 403, "from the proxy: the intermediate's device, whose revocations the gateway cannot know");
});

t.test('a CRL revoking an intermediate CA revokes its devices: on a TLS connection open before the change, and behind a proxy', async (t) => {
  const file = `${deviceCa.dir}/revokes-site.pem`;
  const crls = (revokedByRoot: Issued[]) => {
    const name = randomBytes(3).toString('hex');
    return readFileSync(deviceCa.crl([stolen, ...revokedByRoot], `root-${name}.pem`), 'utf8') + readFileSync(site.crl([], `site-${name}.pem`), 'utf8');
  };
  writeFileSync(file, crls([]));
  const s = await tlsStack((raw) => (raw.devices.crlFile = file));
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const withChain = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${site.ca.cert}` });
  const open = s.browser(new Agent({ connections: 1, connect: { ca: serverCa.ca.cert, cert: withChain(issued).cert, key: issued.key } }));
  open.cookies.set('__Host-mfa-session', alice.cookies.get('__Host-mfa-session')!);
  t.equal((await open.get('/admin/')).status, 200, 'a device of the intermediate');
  // The chain sent with the lookalike before the intermediate: TLS passes over it (it is not valid now).
  const withLookalike = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${siteLookalike.cert}${site.ca.cert}` });
  const disguised = s.browser(new Agent({ connections: 1, connect: { ca: serverCa.ca.cert, cert: withLookalike(issued).cert, key: issued.key } }));
  disguised.cookies.set('__Host-mfa-session', alice.cookies.get('__Host-mfa-session')!);
  t.equal((await disguised.get('/admin/')).status, 200, 'a device of the intermediate, its chain sent with a lookalike of it');
  writeFileSync(file, crls([site.ca]));
  s.clock.advance(1500);
  // TLS checked the chain at the handshake only; the gateway checks it on every request.
  t.equal((await open.get('/admin/')).status, 403, 'the intermediate revoked: refused on the connection open before');
  t.equal((await disguised.get('/admin/')).status, 403, 'also with the lookalike sent before it');
  t.equal((await withSession(s, alice, withChain(unrevoked)).get('/admin/')).status, 403, 'and on a new one');
  t.equal((await withSession(s, alice, laptop).get('/admin/')).status, 200, "the root CA's own devices still count");

  // Behind a proxy the gateway alone applies the CRL; the intermediate is in the bundle (the header holds one certificate).
  const bundle = `${deviceCa.dir}/root-and-site.pem`;
  writeFileSync(bundle, deviceCa.ca.cert + site.ca.cert);
  const { b, header } = await proxyStack(t, bundle, file);
  t.equal((await b.get('/admin/', header(unrevoked))).status, 403, 'a device of the revoked intermediate, from the proxy');
  t.equal((await b.get('/admin/', header(laptop))).status, 200, "one of the root CA's, from the proxy");
});

t.test("a certificate from the proxy is judged as TLS judges one: its purpose, the CAs above it, their validity and path length", async (t) => {
  // The gateway's own TLS refuses each at the handshake (no CRL: TLS would want the intermediates' too).
  const s = await tlsStack((raw) => delete raw.devices.crlFile);
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const on = (cert: Issued, chain = '') => withSession(s, alice, { ...cert, cert: `${cert.cert}${chain}` });
  t.equal((await on(laptop).get('/admin/')).status, 200, 'TLS: a device certificate');
  t.equal((await on(issued, site.ca.cert).get('/admin/')).status, 200, 'TLS: one of an intermediate, sent with it');
  t.same(await judged(s, async () => (await on(serverOnly).get('/admin/')).status), refused('certificate not valid'), 'TLS: a certificate for servers only');
  t.same(await judged(s, async () => (await on(ofNotCa, notCa.ca.cert).get('/admin/')).status), refused('certificate not valid'), 'TLS: one whose issuer is not a CA');
  t.same(await judged(s, async () => (await on(ofOldSite, oldSiteExpired.cert).get('/admin/')).status), refused('certificate not valid'), "TLS: one whose intermediate's certificate has expired");
  t.equal((await on(ofLastCa, lastCa.ca.cert).get('/admin/')).status, 200, 'TLS: one for signing, of a CA with pathlen:0');
  t.same(await judged(s, async () => (await on(encipherOnly).get('/admin/')).status), refused('certificate not valid'), 'TLS: one whose key usage allows no signing');
  t.same(await judged(s, async () => (await on(ofBelowLastCa, belowLastCa.ca.cert + lastCa.ca.cert).get('/admin/')).status), refused('certificate not valid'), 'TLS: one of a CA below a CA with pathlen:0');

  // A proxy that passes on certificates it did not verify (nginx `ssl_verify_client optional_no_ca`): the bundle
  // holds the intermediates (the header holds one certificate).
  const bundle = `${deviceCa.dir}/with-odd-intermediates.pem`;
  writeFileSync(bundle, deviceCa.ca.cert + site.ca.cert + notCa.ca.cert + oldSiteExpired.cert + lastCa.ca.cert + belowLastCa.ca.cert);
  const { stack, b, header } = await proxyStack(t, bundle);
  t.equal((await b.get('/admin/', header(laptop))).status, 200, 'proxy: a device certificate');
  t.equal((await b.get('/admin/', header(issued))).status, 200, 'proxy: one of an intermediate in the bundle');
  t.same(await judged(stack, async () => (await b.get('/admin/', header(serverOnly))).status), refused('certificate not valid'), 'proxy: a certificate for servers only');
  t.same(await judged(stack, async () => (await b.get('/admin/', header(ofNotCa))).status), refused('certificate not valid'), 'proxy: one whose issuer is not a CA');
  t.same(await judged(stack, async () => (await b.get('/admin/', header(ofOldSite))).status), refused('certificate not valid'), "proxy: one whose intermediate's certificate has expired");
  t.equal((await b.get('/admin/', header(ofLastCa))).status, 200, 'proxy: one for signing, of a CA with pathlen:0');
  t.same(await judged(stack, async () => (await b.get('/admin/', header(encipherOnly))).status), refused('certificate not valid'), 'proxy: one whose key usage allows no signing');
  t.same(await judged(stack, async () => (await b.get('/admin/', header(ofBelowLastCa))).status), refused('certificate not valid'), 'proxy: one of a CA below a CA with pathlen:0');
});

t.test("a CA's CRL past its next update makes its devices unmanaged: on new TLS connections, open ones, and behind a proxy", async (t) => {
  const file = `${deviceCa.dir}/due.pem`;
  // Due in ten minutes (a session stays signed in that long unused), or due an hour ago.
  const soon = 600_000;
  const hour = 3_600_000;
  // The root CA's CRL and the intermediate's, each due at the time given.
  const crls = (rootDue: number, siteDue: number) => {
    const name = randomBytes(3).toString('hex');
    return readFileSync(deviceCa.crl([stolen], `root-${name}.pem`, new Date(rootDue)), 'utf8') + readFileSync(site.crl([], `site-${name}.pem`, new Date(siteDue)), 'utf8');
  };
  writeFileSync(file, crls(Date.now() + soon, Date.now() + soon));
  const s = await tlsStack((raw) => (raw.devices.crlFile = file));
  t.teardown(s.close);
  const bundle = `${deviceCa.dir}/root-and-site-due.pem`;
  writeFileSync(bundle, deviceCa.ca.cert + site.ca.cert);
  const { stack: viaProxy, b } = await proxyStack(t, bundle, file);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const withChain = (c: Issued): Issued => ({ ...c, cert: `${c.cert}${site.ca.cert}` });
  const open = s.browser(new Agent({ connections: 1, connect: { ca: serverCa.ca.cert, cert: laptop.cert, key: laptop.key } }));
  open.cookies.set('__Host-mfa-session', alice.cookies.get('__Host-mfa-session')!);
  const statuses = async () => [
    (await open.get('/admin/')).status,
    (await withSession(s, alice, laptop).get('/admin/')).status,
    (await b.get('/admin/', { 'x-ssl-client-cert': encodeURIComponent(laptop.cert) })).status,
    (await withSession(s, alice, withChain(issued)).get('/admin/')).status,
    (await b.get('/admin/', { 'x-ssl-client-cert': encodeURIComponent(issued.cert) })).status,
  ];
  const reread = async (text: string) => {
    writeFileSync(file, text);
    s.clock.advance(1500);
    viaProxy.clock.advance(1500);
  };
  // [open connection, new connection, proxy] for a device of the root CA, then [new connection, proxy] for one of the intermediate.
  t.same(await statuses(), [200, 200, 200, 200, 200], 'both CRLs current');
  await reread(crls(Date.now() - hour, Date.now() + soon));
  t.same(await statuses(), [403, 403, 403, 403, 403], "the root CA's CRL past its next update: its devices unmanaged (TLS refuses new connections), the intermediate's too (whose certificate that CRL would list)");
  await reread(crls(Date.now() + soon, Date.now() - hour));
  t.same(await statuses(), [200, 200, 200, 403, 403], "the intermediate's CRL past its next update: its devices unmanaged, the root CA's not");
  await reread(crls(Date.now() + soon, Date.now() + soon));
  t.same(await statuses(), [200, 200, 200, 200, 200], 'fresh CRLs again');
  // The gateway's clock moves on: the CRLs fall due (by that clock, which TLS does not use).
  s.clock.advance(soon + 60_000);
  viaProxy.clock.advance(soon + 60_000);
  t.same(await statuses(), [403, 403, 403, 403, 403], 'past their next update while the gateway runs');
});

t.test('devices.caFile is read at start: TLS keeps trusting the CAs the gateway checks against when the CRL changes', async (t) => {
  const caFile = `${deviceCa.dir}/ca-copy.pem`;
  const file = `${deviceCa.dir}/ca-copy-crl.pem`;
  writeFileSync(caFile, deviceCa.ca.cert);
  writeFileSync(file, crlText([stolen]));
  const s = await tlsStack((raw) => Object.assign(raw.devices, { caFile, crlFile: file }));
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  t.equal((await withSession(s, alice, laptop).get('/admin/')).status, 200, 'a device of the CA');
  // The CA file edited while the gateway runs (another CA put in its place), then the CRL replaced.
  writeFileSync(caFile, forgedCa.ca.cert);
  writeFileSync(file, crlText([stolen, laptop2]));
  s.clock.advance(1500);
  t.equal((await withSession(s, alice, laptop2).get('/admin/')).status, 403, 'the new CRL applies');
  t.equal((await withSession(s, alice, laptop).get('/admin/')).status, 200, 'a device of the CA read at start, on a new connection');
  t.equal((await withSession(s, alice, { ...forged, cert: `${forged.cert}${forgedCa.ca.cert}` }).get('/admin/')).status, 403, 'not one of the CA in the file now, until a restart');
});

t.test('behind a TLS-terminating proxy: the certificate header counts only from trusted proxies and never reaches the portal', async (t) => {
  const { stack: viaProxy, b, header } = await proxyStack(t, deviceCa.ca.certFile, deviceCa.crl([stolen], 'proxy-crl.pem'));
  t.equal((await b.get('/admin/', header(laptop))).status, 200, 'verified certificate from the proxy');
  t.same(await judged(viaProxy, async () => (await b.get('/admin/', header(rogue))).status), refused('certificate not valid'), 'a certificate of another CA');
  t.same(await judged(viaProxy, async () => (await b.get('/admin/', header(stolen))).status), refused('certificate not valid'), 'a certificate in the CRL');
  t.same(await judged(viaProxy, async () => (await b.get('/admin/', { 'x-ssl-client-cert': 'junk' })).status), refused('certificate header not valid'), 'junk');
  await registry(viaProxy).put({ fingerprint: laptop2.fingerprint, name: 'laptop-2', status: 'revoked', addedAt: viaProxy.clock.now(), revokedAt: viaProxy.clock.now() });
  t.same(await judged(viaProxy, async () => (await b.get('/admin/', header(twinOf(laptop2, deviceCa.dir)))).status), refused('revoked in the registry'), "a revoked certificate's twin from the proxy");
  t.same(await judged(viaProxy, async () => (await b.get('/admin/')).status), refused('no certificate'), 'none');
  // A proxy that adds its own header to the client's instead of replacing it sends two (Node would keep the first).
  const twice = (...values: string[]) =>
    rawRequest(viaProxy.url, `GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: __Host-mfa-session=${b.cookies.get('__Host-mfa-session')}\r\n${values.map((v) => `X-SSL-Client-Cert: ${v}\r\n`).join('')}Connection: close\r\n\r\n`);
  t.match(await twice(encodeURIComponent(laptop.cert)), /^HTTP\/1\.1 200 /, 'control: the header once, as raw bytes');
  const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]);
  // A header sent more than once is taken as none.
  t.same(await judged(viaProxy, async () => statusOf(await twice(encodeURIComponent(laptop.cert), ''))), refused('no certificate'), 'the header twice, the first a real certificate: not a managed device');
  t.same(await judged(viaProxy, async () => statusOf(await twice(encodeURIComponent(laptop.cert), encodeURIComponent(laptop.cert)))), refused('no certificate'), 'nor twice the same');
  t.equal((await b.get('/records', { accept: 'application/json' })).status, 200, 'the request itself is not refused: only the device does not count');
  const echo = JSON.parse((await b.get('/echo', { ...header(laptop), accept: 'application/json' })).body);
  t.notOk('x-ssl-client-cert' in echo.headers, 'the header is removed before the portal');

  const direct = await startStack({
    patch: (raw) => {
      raw.server.trustedProxies = ['10.0.0.10'];
      raw.devices = { caFile: deviceCa.ca.certFile, header: { name: 'X-SSL-Client-Cert', format: 'pem' } };
      raw.policy = { rules };
    },
  });
  t.teardown(direct.close);
  const c = (await signUpAndEnrol(direct, ALICE)).b;
  t.same(await judged(direct, async () => (await c.get('/admin/', header(laptop))).status), refused('no certificate'), 'the same header from a client that is not a trusted proxy is ignored');
  const echo2 = JSON.parse((await c.get('/echo', { ...header(laptop), accept: 'application/json' })).body);
  t.notOk('x-ssl-client-cert' in echo2.headers, 'and removed');
});

t.test('devices CLI on a shared Redis: register, list, revoke take effect in the running gateway', async (t) => {
  const s = await startRedisStack(t, {
    ca: serverCa.ca.cert,
    patch: (raw) => {
      raw.server.tls = { certFile: server.certFile, keyFile: server.keyFile };
      raw.devices = { caFile: deviceCa.ca.certFile, requireRegistration: true };
      raw.policy = { rules };
    },
  });
  t.teardown(s.close);
  const configFile = `${deviceCa.dir}/gw-cli.json`;
  writeFileSync(configFile, JSON.stringify({ ...s.config, log: { level: 'silent' } }));
  const cli = (...args: string[]) => runCliAsync(['devices', ...args, '--config', configFile, ...OPERATOR]);
  const { b: signedIn } = await signUpAndEnrol(s, ALICE);
  const b = s.browser(agent(laptop));
  b.cookies.set('__Host-mfa-session', signedIn.cookies.get('__Host-mfa-session')!);
  t.equal((await b.get('/admin/')).status, 403);
  const reg = await cli('register', '--cert', laptop.certFile, '--name', 'front desk', '--user', 'Alice');
  t.equal(reg.code, 0, reg.stderr);
  t.match(reg.stdout, `registered ${laptop.fingerprint} for Alice`);
  t.equal((await b.get('/admin/')).status, 200, 'registered by the CLI');
  t.match((await cli('list')).stdout, new RegExp(`${laptop.fingerprint}  active .* front desk`));
  t.equal((await cli('revoke', '--fingerprint', laptop.fingerprint.match(/../g)!.join(':').toUpperCase())).code, 0, 'colon-separated upper-case fingerprints are fine');
  t.equal((await b.get('/admin/')).status, 403, 'revoked by the CLI: refused on the next request');
  t.match((await cli('list')).stdout, /revoked/);
  t.equal((await cli('register', '--fingerprint', 'xyz')).code, 2, 'a bad fingerprint is a usage error');
  // Registered again (after a revoke), a device bound to a user is not made managed for every account unasked.
  const unasked = await cli('register', '--fingerprint', laptop.fingerprint);
  t.same([unasked.code, /is bound to a user: give --user USERNAME, or --shared/.test(unasked.stderr)], [2, true], 'without --user or --shared: refused');
  t.match((await cli('list')).stdout, /revoked/, 'and left as it was');
  t.match((await cli('register', '--fingerprint', laptop.fingerprint, '--user', 'alice')).stdout, 'for alice');
  t.match((await cli('list')).stdout, new RegExp(`${laptop.fingerprint}  active .* user \\S+  front desk`), 'its name kept');
  // The list names the user by pseudonym only: a help desk checks a person's devices with user show.
  const shown = (u: string) => runCliAsync(['user', 'show', '--user', u, '--config', configFile, ...OPERATOR]);
  t.match((await shown('Alice')).stdout, `\ndevices:\n  ${laptop.fingerprint}  active  front desk\n`, "Alice's devices");
  t.notMatch((await shown('bob')).stdout, /^devices:/m, "Bob's: none");
  t.equal((await b.get('/admin/')).status, 200, 'managed again for Alice');
  const bob = s.browser(agent(laptop));
  bob.cookies.set('__Host-mfa-session', (await signUpAndEnrol(s, BOB)).b.cookies.get('__Host-mfa-session')!);
  t.equal((await bob.get('/admin/')).status, 403, 'but not for Bob');
  t.equal((await cli('register', '--fingerprint', laptop.fingerprint, '--user', 'alice', '--shared')).code, 2, '--user with --shared');
  t.match((await cli('register', '--fingerprint', laptop.fingerprint, '--shared')).stdout, 'for every account');
  t.equal((await bob.get('/admin/')).status, 200, 'shared: managed for Bob too');
  // Both ways of naming a device at once, or a file that is no certificate: usage errors, naming the file.
  const both = await cli('register', '--cert', laptop.certFile, '--fingerprint', 'ab'.repeat(32));
  t.same([both.code, /not both/.test(both.stderr)], [2, true], '--cert and --fingerprint');
  const junk = `${deviceCa.dir}/junk.pem`;
  writeFileSync(junk, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const bad = await cli('register', '--cert', junk);
  t.same([bad.code, bad.stderr.split('\n')[0]], [2, `mfa-gateway: ${junk}: not a PEM certificate`], 'a PEM block that is no certificate');
});

t.test('twins are found for a CA on a brainpool curve too; a CA on a curve of unknown order is refused by config check', async (t) => {
  const BRAINPOOL_P256_ORDER = 0xa9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7n;
  const bp = new TestCa('brainpool', 'brainpoolP256r1');
  const device = bp.issue('kiosk');
  const twin = twinOf(device, bp.dir, BRAINPOOL_P256_ORDER);
  t.ok(new X509Certificate(twin.cert).verify(new X509Certificate(bp.ca.cert).publicKey), 'the twin is signed as well');
  t.not(twin.fingerprint, device.fingerprint);
  t.same(fingerprintsOf(new X509Certificate(device.cert), [new X509Certificate(bp.ca.cert)]).sort(), [device.fingerprint, twin.fingerprint].sort(), 'both fingerprints name the device');

  const odd = new TestCa('odd-curve', 'secp224r1');
  const problems = (caFile: string) => {
    try {
      resolveConfig({ ...rawTestConfig('http://127.0.0.1:1'), devices: { caFile } });
      return [];
    } catch (err) {
      return (err as ConfigError).problems;
    }
  };
  t.match(problems(odd.ca.certFile), [/^devices\.caFile: an EC key on curve secp224r1/]);
  t.same(problems(bp.ca.certFile), [], 'a brainpool CA is fine');
});

// A TLS 1.2 client that renegotiates on its open connection with another certificate (and chain), as OpenSSL lets a
// client do: one request before, one after. Node's TLS client cannot change its certificate, so Perl's OpenSSL
// binding does it.
const RENEGOTIATE = String.raw`
use strict; use Socket; use Net::SSLeay;
Net::SSLeay::initialize();
my ($port, $cert1, $key1, $cert2, $key2, $request) = @ARGV;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die; connect($s, sockaddr_in($port, inet_aton('127.0.0.1'))) or die "connect: $!";
my $ctx = Net::SSLeay::CTX_new() or die; Net::SSLeay::CTX_set_max_proto_version($ctx, Net::SSLeay::TLS1_2_VERSION());
my $ssl = Net::SSLeay::new($ctx);
sub use_cert { Net::SSLeay::use_certificate_chain_file($ssl, $_[0]) == 1 or die "cert"; Net::SSLeay::use_PrivateKey_file($ssl, $_[1], Net::SSLeay::FILETYPE_PEM()) == 1 or die "key"; }
sub ask { Net::SSLeay::write($ssl, $request); my $answer = ''; while ($answer !~ /\r\n\r\n/) { my $r = Net::SSLeay::read($ssl); last unless defined $r && length $r; $answer .= $r; } my ($len) = $answer =~ /content-length: (\d+)/i; my $body = length($answer) - index($answer, "\r\n\r\n") - 4; while ($len && $body < $len) { my $r = Net::SSLeay::read($ssl); last unless defined $r && length $r; $body += length $r; } print +(split /\r\n/, $answer)[0], "\n"; }
use_cert($cert1, $key1);
Net::SSLeay::set_fd($ssl, fileno($s)); Net::SSLeay::connect($ssl) == 1 or die "handshake";
ask();
use_cert($cert2, $key2);
Net::SSLeay::renegotiate($ssl) && Net::SSLeay::do_handshake($ssl) == 1 or die "renegotiation";
ask();
`;
const execFileAsync = promisify(execFile);
const perlTls = (() => {
  try {
    execFileSync('perl', ['-MNet::SSLeay', '-e', '1'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

t.test('a certificate a renegotiation brings that TLS did not verify does not count', { skip: !perlTls && 'needs perl with Net::SSLeay' }, async (t) => {
  const s = await tlsStack();
  t.teardown(s.close);
  const alice = (await signUpAndEnrol(s, ALICE)).b;
  const request = `GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: __Host-mfa-session=${alice.cookies.get('__Host-mfa-session')}\r\n\r\n`;
  // Run apart (not synchronously): the gateway answers in this process.
  const statuses = async (first: Issued, second: { certFile: string; keyFile: string }) =>
    (await execFileAsync('perl', ['-e', RENEGOTIATE, new URL(s.url).port, first.certFile, first.keyFile, second.certFile, second.keyFile, request], { encoding: 'utf8', timeout: 20_000 })).stdout.trim().split('\n');
  t.same(await statuses(laptop, laptop), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'], 'the same certificate again: still managed');
  t.same(await statuses(laptop, { certFile: forgedChain, keyFile: forged.keyFile }), ['HTTP/1.1 200 OK', 'HTTP/1.1 403 Forbidden'], 'another CA after a managed device: not managed');
  // A stolen laptop revoked in the registry (which TLS does not know of) opens a connection for the forged one.
  await registry(s).put({ fingerprint: laptop2.fingerprint, name: 'laptop-2', status: 'revoked', addedAt: s.clock.now(), revokedAt: s.clock.now() });
  t.same(await statuses(laptop2, { certFile: forgedChain, keyFile: forged.keyFile }), ['HTTP/1.1 403 Forbidden', 'HTTP/1.1 403 Forbidden'], 'nor after a device revoked in the registry');
});

t.test('a TLS handshake that never finishes is cut off after server.headersTimeoutSeconds, as slow request headers are', async (t) => {
  // The headers' timer, or the request's when that is shorter (the headers' then 15 s, as by default).
  for (const timers of [{ headersTimeoutSeconds: 1 }, { requestTimeoutSeconds: 1, headersTimeoutSeconds: 15 }]) {
    const s = await tlsStack((raw) => Object.assign(raw.server, timers));
    t.teardown(s.close);
    const { port } = new URL(s.url);
    const started = Date.now();
    // A client that opens the connection and sends nothing (no ClientHello), then one that stops halfway.
    for (const first of ['', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03']) {
      const socket = connect(Number(port), '127.0.0.1', () => void socket.write(first));
      socket.on('error', () => {});
      const closed = await Promise.race([once(socket, 'close').then(() => true), new Promise((r) => setTimeout(() => r(false), 6000))]);
      socket.destroy();
      t.ok(closed, `closed by the gateway (${first ? 'half a handshake' : 'nothing sent'}, ${JSON.stringify(timers)})`);
    }
    t.ok(Date.now() - started < 12_000);
  }
});
