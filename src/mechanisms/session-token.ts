// The session cookie's value: a short HS256 JWT (jose) naming the session; the session itself lives in the store.
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

export class SessionTokens {
  private readonly byId: Map<string, Uint8Array>;
  private readonly active: SigningKey;

  constructor(keys: readonly SigningKey[], private readonly maxAgeSeconds: number) {
    if (!keys[0]) throw new TypeError('SessionTokens needs at least one key');
    this.active = keys[0];
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
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

  /** Claims of a genuine, unexpired session token, or null for anything else. */
  async verify(token: string, nowMs: number): Promise<SessionClaims | null> {
    if (token.length > MAX_TOKEN_LENGTH || !SHAPE.test(token)) return null;
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
      return { sub: payload.sub, sid: payload.sid };
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
  }
}
