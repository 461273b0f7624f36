// AES-256-GCM encryption of records at rest, with a key id for rotation and the record id as associated data.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export interface SealKey {
  id: string;
  key: Buffer;
}

const TAG_BYTES = 16;

export class SealError extends Error {
  readonly code = 'SEAL_OPEN_FAILED';
}

export class Sealer {
  private readonly byId: Map<string, Buffer>;
  private readonly active: SealKey;

  /** The first key seals; every key opens. */
  constructor(keys: readonly SealKey[]) {
    if (!keys[0] || keys.some((k) => k.key.length !== 32)) throw new TypeError('Sealer needs 32-byte keys');
    // "." separates the parts of a sealed value: a record sealed under such an id could never be opened.
    if (keys.some((k) => k.id.includes('.'))) throw new TypeError('Sealer key ids cannot contain "."');
    this.active = keys[0];
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  /** The id of the key that seals. */
  get activeId(): string {
    return this.active.id;
  }

  /** The id of the key a sealed value was sealed with (not checked), or null when it is not one. */
  static keyIdOf(sealed: string): string | null {
    const parts = sealed.split('.');
    return parts.length === 4 && parts[0] ? parts[0] : null;
  }

  /** Returns `kid.iv.ciphertext.tag` (base64url); `aad` binds the ciphertext to the record it belongs to. */
  seal(plaintext: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.active.key, iv);
    cipher.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [this.active.id, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  /** Throws SealError when the key is unknown, the data was altered or it belongs to another record. */
  open(sealed: string, aad: string): string {
    const [kid, iv, ct, tag, extra] = sealed.split('.');
    const key = kid === undefined ? undefined : this.byId.get(kid);
    if (!key || iv === undefined || ct === undefined || tag === undefined || extra !== undefined) throw new SealError('unknown key or malformed record');
    try {
      // The full 16-byte tag only: GCM would also check a shortened one, which is far easier to forge.
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    } catch (cause) {
      throw new SealError('record failed authentication', { cause });
    }
  }
}
