// Codes people type from paper or a message: recovery codes (ten, 80 bits each), enrolment codes (60 bits by
// letter or at the clinic; 8 digits by email or SMS). From a CSPRNG, stored only as salted scrypt hashes.
import { randomBytes, randomInt, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { typedCode } from './typed-code.js';

const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'; // no 0/O, 1/I: read aloud and typed from paper
const SCRYPT = { N: 16384, r: 8, p: 1 };

export interface RecoveryCodeSet {
  salt: string;
  /** base64 hashes; null marks a used code. */
  hashes: (string | null)[];
}

export const RECOVERY_CODE_COUNT = 10;

/** How many codes of a set are still unused. */
export function codesLeft(set: RecoveryCodeSet): number {
  return set.hashes.filter((h) => h !== null).length;
}

/** `length` characters × 5 bits, grouped by four: ABCD-EFGH-… */
function letterCode(length: number): string {
  const chars = Array.from(randomBytes(length), (b) => ALPHABET[b & 31]).join('');
  return chars.match(/.{4}/g)!.join('-');
}

export async function newRecoveryCodes(): Promise<{ codes: string[]; stored: RecoveryCodeSet }> {
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => letterCode(16)); // 80 bits each
  const salt = randomBytes(16);
  const hashes = await Promise.all(codes.map((c) => hash(normalise(c), salt)));
  return { codes, stored: { salt: salt.toString('base64'), hashes: hashes.map((h) => h.toString('base64')) } };
}

/** Index of the unused code that matches `input`, or -1. */
export async function matchRecoveryCode(set: RecoveryCodeSet, input: string): Promise<number> {
  const code = normalise(input);
  if (!/^[A-Z2-9]{16}$/.test(code)) return -1;
  const h = await hash(code, Buffer.from(set.salt, 'base64'));
  let found = -1;
  set.hashes.forEach((stored, i) => {
    if (stored !== null && timingSafeEqual(Buffer.from(stored, 'base64'), h)) found = i;
  });
  return found;
}

/**
 * As typed from paper (typedCode), lower case allowed; letters ASCII only (`ſ` upper-cases to S, `ß` to SS), but
 * for their full-width forms: a Japanese, Chinese or Korean input method left in full-width mode types `Ａ` for A.
 */
function normalise(input: string): string {
  return typedCode(input)
    .replace(/[\uFF21-\uFF3A\uFF41-\uFF5A]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0))
    .replace(/[a-z]/g, (c) => c.toUpperCase());
}

function hash(code: string, salt: Buffer): Promise<Buffer> {
  return scryptAsync(code, salt, 32, SCRYPT);
}

export interface HashedCode {
  salt: string;
  hash: string;
}

/** An enrolment code: 12 letters and digits (60 bits) for letters and the clinic, or 8 digits for email and SMS. */
export async function newEnrolmentCode(kind: 'letters' | 'digits'): Promise<{ code: string; stored: HashedCode }> {
  const code = kind === 'letters' ? letterCode(12) : String(randomInt(0, 100_000_000)).padStart(8, '0');
  const salt = randomBytes(16);
  return { code, stored: { salt: salt.toString('base64'), hash: (await hash(normalise(code), salt)).toString('base64') } };
}

export async function matchesCode(stored: HashedCode, input: string): Promise<boolean> {
  const code = normalise(input);
  if (code.length === 0 || code.length > 32) return false;
  return timingSafeEqual(Buffer.from(stored.hash, 'base64'), await hash(code, Buffer.from(stored.salt, 'base64')));
}
