// TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step) on top of otplib; the time always comes from the server.
import { generateSecret, generateURI, verify } from 'otplib';
import { typedCode } from './typed-code.js';

export const TOTP_PERIOD_SECONDS = 30;

/** A fresh 20-byte secret from a CSPRNG, base32 encoded (RFC 4226 §4 R6). */
export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

export function totpUri(opts: { issuer: string; account: string; secret: string }): string {
  return generateURI({ issuer: opts.issuer, label: opts.account, secret: opts.secret });
}

/** The secret in groups of four characters, for typing into an app by hand. */
export function groupedSecret(secret: string): string {
  return secret.match(/.{1,4}/g)?.join(' ') ?? secret;
}

/** Normalises what a person typed (typedCode): exactly six digits, or null. */
export function normaliseTotpInput(input: string): string | null {
  const code = typedCode(input);
  return /^[0-9]{6}$/.test(code) ? code : null;
}

/** The time step the code matches within ±1 step of `nowMs`, or null. Replay is checked by the caller. */
export async function matchTotpStep(secret: string, code: string, nowMs: number): Promise<number | null> {
  const result = await verify({ secret, token: code, epoch: Math.floor(nowMs / 1000), epochTolerance: TOTP_PERIOD_SECONDS });
  return result.valid && 'timeStep' in result ? result.timeStep : null;
}
