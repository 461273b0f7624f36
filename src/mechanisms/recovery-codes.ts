// Recovery codes: ten 80-bit codes from a CSPRNG, shown once, stored as salted scrypt hashes, each usable once.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'; // no 0/O, 1/I: read aloud and typed from paper
const SCRYPT = { N: 16384, r: 8, p: 1 };

export interface RecoveryCodeSet {
  salt: string;
  /** base64 hashes; null marks a used code. */
  hashes: (string | null)[];
}

export const RECOVERY_CODE_COUNT = 10;

export async function newRecoveryCodes(): Promise<{ codes: string[]; stored: RecoveryCodeSet }> {
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const bytes = randomBytes(16);
    const chars = Array.from(bytes, (b) => ALPHABET[b & 31]).join(''); // 16 chars × 5 bits = 80 bits
    return chars.match(/.{4}/g)!.join('-');
  });
  const salt = randomBytes(16);
  const hashes = await Promise.all(codes.map((c) => hash(normalise(c), salt)));
  return { codes, stored: { salt: salt.toString('base64'), hashes: hashes.map((h) => h.toString('base64')) } };
}

/** Index of the unused code that matches `input`, or -1. */
export async function matchRecoveryCode(set: RecoveryCodeSet, input: string): Promise<number> {
  const code = normalise(input);
  if (code.length !== 16) return -1;
  const h = await hash(code, Buffer.from(set.salt, 'base64'));
  let found = -1;
  set.hashes.forEach((stored, i) => {
    if (stored !== null && timingSafeEqual(Buffer.from(stored, 'base64'), h)) found = i;
  });
  return found;
}

function normalise(input: string): string {
  return input.toUpperCase().replace(/[\s-]/g, '');
}

function hash(code: string, salt: Buffer): Promise<Buffer> {
  return scryptAsync(code, salt, 32, SCRYPT);
}
