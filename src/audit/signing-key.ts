// The checkpoint signing key: Ed25519, configured as a PKCS#8 PEM or a base64/base64url 32-byte seed.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { AuditError } from './audit-error.js';

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410 section 7): this prefix, then the 32 seed bytes.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SEED = /^[A-Za-z0-9+/_-]{43}=?$/;

/** Turns the configured key into a private KeyObject; throws AuditError AUDIT_KEY_INVALID (never echoing the key). */
export function parseSigningKey(text: string): KeyObject {
  const s = text.trim();
  let key: KeyObject;
  try {
    if (s.startsWith('-----BEGIN')) key = createPrivateKey(s);
    else if (SEED.test(s)) key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.from(s, 'base64')]), format: 'der', type: 'pkcs8' });
    else throw new TypeError('neither a PEM nor 43-44 characters of base64');
  } catch (cause) {
    throw new AuditError('AUDIT_KEY_INVALID', undefined, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new AuditError('AUDIT_KEY_INVALID', `found a ${key.asymmetricKeyType} key`);
  return key;
}

/** The SPKI PEM public key auditors need, from the configured key (string) or a private KeyObject. */
export function publicKeyPem(key: string | KeyObject): string {
  return createPublicKey(typeof key === 'string' ? parseSigningKey(key) : key).export({ type: 'spki', format: 'pem' }) as string;
}
