// The session cookie's value: a short HS256 JWT (jose) naming the session; the session itself lives in the store.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';

export interface SigningKey {
  id: string;
  key: Uint8Array;
}

export interface SessionClaims {
  sub: string;
  sid: string;
}

const ALG = 'HS256';
const ISSUER = 'mfa-gateway';
const AUDIENCE = 'mfa-gateway:session';
const TYP = 'mfa-session+jwt';
// A cookie this long is not ours: refuse before any parsing (SECURITY R39).
const MAX_TOKEN_LENGTH = 1024;
const SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// WebCrypto verification costs ~100 µs per token in Node 20; tokens already verified are remembered (bounded).
const CACHE_SIZE = 10_000;

export class SessionTokens {
  // Keys are imported once: importing a raw key on every verification costs more than the HMAC itself.
  private readonly byId: Map<string, KeyObject>;
  private readonly active: { id: string; key: KeyObject };
  /**
   * signature → the whole token, its claims and expiry. A hit needs the whole token to be equal, so a changed byte
   * anywhere is a miss; the short signature is the map key because hashing the whole token costs more than the rest.
   */
  private readonly verified = new Map<string, SessionClaims & { token: string; exp: number; iat: number }>();

  constructor(keys: readonly SigningKey[], private readonly maxAgeSeconds: number) {
    if (!keys[0]) throw new TypeError('SessionTokens needs at least one key');
    this.byId = new Map(keys.map((k) => [k.id, createSecretKey(k.key)]));
    this.active = { id: keys[0].id, key: this.byId.get(keys[0].id)! };
  }

  sign(claims: SessionClaims, nowMs: number): Promise<string> {
    const iat = Math.floor(nowMs / 1000);
    return new SignJWT({ sid: claims.sid })
      .setProtectedHeader({ alg: ALG, typ: TYP, kid: this.active.id })
      .setSubject(claims.sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.maxAgeSeconds)
      .sign(this.active.key);
  }

  /**
   * The answer for a token verified before, without waiting: its claims, or null when it has expired since;
   * undefined when the token is not among those remembered (then `verify` decides).
   */
  known(token: string, nowMs: number): SessionClaims | null | undefined {
    if (token.length > MAX_TOKEN_LENGTH) return null;
    const cached = this.verified.get(signatureOf(token));
    if (cached?.token !== token) return undefined;
    const now = nowMs / 1000;
    // The same time checks as jwtVerify: expiry and maximum age, with the same tolerance.
    if (now >= cached.exp + 5 || now - cached.iat > this.maxAgeSeconds + 5 || cached.iat > now + 5) return null;
    return { sub: cached.sub, sid: cached.sid };
  }

  /** Claims of a genuine, unexpired session token, or null for anything else. */
  async verify(token: string, nowMs: number): Promise<SessionClaims | null> {
    const known = this.known(token, nowMs);
    if (known !== undefined) return known;
    // One spelling per signature: base64url's last character has bits no byte uses, which jose's decoding ignores.
    const signature = signatureOf(token);
    if (!SHAPE.test(token) || Buffer.from(signature, 'base64url').toString('base64url') !== signature) return null;
    try {
      const { payload } = await jwtVerify(
        token,
        // The kid only indexes a fixed map of configured keys: never a path, URL or embedded key.
        (header) => {
          const key = header.kid === undefined ? undefined : this.byId.get(header.kid);
          if (!key) throw new joseErrors.JWSInvalid('unknown kid');
          return key;
        },
        {
          algorithms: [ALG],
          issuer: ISSUER,
          audience: AUDIENCE,
          typ: TYP,
          requiredClaims: ['exp', 'iat', 'sub', 'sid'],
          maxTokenAge: this.maxAgeSeconds,
          clockTolerance: 5,
          currentDate: new Date(nowMs),
        },
      );
      if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string') return null;
      if (this.verified.size >= CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(signatureOf(token), { token, sub: payload.sub, sid: payload.sid, exp: payload.exp!, iat: payload.iat! });
      return { sub: payload.sub, sid: payload.sid };
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
  }
}

/** The third part of a compact JWT: the key of the remembered tokens. */
function signatureOf(token: string): string {
  return token.slice(token.lastIndexOf('.') + 1);
}
