// The checkpoint signing key: PEM and seed forms, refusals, and verifying with the public key alone.
import t from 'tap';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { parseSigningKey, publicKeyPem } from '../../../src/audit/signing-key.js';
import { verifyAuditText } from '../../../src/audit/verify-audit.js';
import { openLog, readSegments, tempDir } from './helpers.js';

const pair = generateKeyPairSync('ed25519');
const pem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
// The seed is the last 32 bytes of the PKCS#8 DER (RFC 8410).
const seed = (pair.privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer).subarray(-32);
const expectedPublic = pair.publicKey.export({ format: 'pem', type: 'spki' }) as string;

t.test('signing key: PKCS#8 PEM and a base64 or base64url seed are the same key', async (t) => {
  const forms = {
    pem,
    'pem with surrounding whitespace': `\n${pem}\n`,
    base64: seed.toString('base64'),
    'base64 without padding': seed.toString('base64').replace(/=+$/, ''),
    base64url: seed.toString('base64url'),
  };
  for (const [name, text] of Object.entries(forms)) {
    const key = parseSigningKey(text);
    t.equal(key.asymmetricKeyType, 'ed25519', name);
    t.equal(publicKeyPem(key), expectedPublic, `${name}: same public key`);
    t.ok(verify(null, Buffer.from('x'), pair.publicKey, sign(null, Buffer.from('x'), key)), `${name}: signs for the public key`);
  }
  t.equal(publicKeyPem(seed.toString('base64url')), expectedPublic, 'publicKeyPem takes the config string too');
  t.match(publicKeyPem(pem), /^-----BEGIN PUBLIC KEY-----\n/);
});

t.test('signing key: anything else is refused, without echoing the key', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const bad = {
    'an RSA key': rsa,
    'a public key': expectedPublic,
    '31 bytes': seed.subarray(1).toString('base64url'),
    '33 bytes': Buffer.concat([seed, Buffer.from([1])]).toString('base64url'),
    'hex': seed.toString('hex'),
    'empty': '',
    'a cut PEM': pem.replace(/\n(.{20}).*\n/, '\n$1\n'),
  };
  for (const [name, text] of Object.entries(bad)) {
    t.throws(() => parseSigningKey(text), { code: 'AUDIT_KEY_INVALID' }, name);
    // From the middle of the text: a PEM's end is its armour, which says nothing of the key.
    const middle = text.slice(text.length / 2 - 8, text.length / 2 + 8);
    if (text) t.notMatch(messageOf(() => parseSigningKey(text)), middle, `${name}: not in the message`);
  }
});

t.test('signing key: an auditor with only the public key PEM verifies the trail', async (t) => {
  const dir = tempDir(t);
  const { log } = openLog(dir, { signingKey: parseSigningKey(seed.toString('base64url')) });
  log.append({ name: 'password_ok', pid: 'p1' });
  await log.close();
  const publicOnly = publicKeyPem(pem);
  t.same(verifyAuditText(readSegments(dir), publicOnly).problems, []);
  t.same(verifyAuditText(readSegments(dir), createPublicKey(publicOnly)).problems, [], 'as a KeyObject');
  t.same(verifyAuditText(readSegments(dir), { 'audit-1': publicOnly }).problems, [], 'by key id');
  const other = verifyAuditText(readSegments(dir), { 'audit-2': publicOnly });
  t.same(other.problems.map((p) => [p.kind, p.seq]), [['unsigned', 1], ['bad-checkpoint', 2]], 'unknown key id; in file order');
  t.match(other.problems[1]!.message, /unknown key id "audit-1"/);
});

/** The message of what `fn` throws. */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('nothing thrown');
}
