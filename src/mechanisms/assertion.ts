// The identity assertion for the portal: a short-lived ES256 JWT (jose) and the JWKS that verifies it.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JWK } from 'jose';

export interface AssertionClaims {
  sub: string;
  groups: readonly string[];
  amr: readonly string[];
  /** Seconds since the epoch: when the second factor was verified. */
  authTime: number;
}

export const ASSERTION_TYP = 'mfa-assertion+jwt';

export class AssertionSigner {
  private readonly key: KeyObject;

  /**
   * `pem`: an EC P-256 private key, PKCS#8 PEM (what ES256 signs with). `published`: other keys the JWKS lists, which
   * sign nothing (the next one, the one before: see Key rotation in the README).
   */
  constructor(
    pem: string,
    readonly keyId: string,
    private readonly issuer: string,
    private readonly audience: string,
    readonly lifetimeSeconds: number,
    private readonly published: readonly { keyId: string; publicKey: string }[] = [],
  ) {
    this.key = createPrivateKey(pem);
    if (this.key.asymmetricKeyType !== 'ec' || this.key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new TypeError('identity.assertion.signingKey must be an EC P-256 private key');
  }

  sign(c: AssertionClaims, nowMs: number): Promise<string> {
    const iat = Math.floor(nowMs / 1000);
    return new SignJWT({ groups: [...c.groups], amr: [...c.amr], auth_time: c.authTime })
      .setProtectedHeader({ alg: 'ES256', typ: ASSERTION_TYP, kid: this.keyId })
      .setSubject(c.sub)
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.lifetimeSeconds)
      .sign(this.key);
  }

  /** The public keys as a JWK Set, for the portal to verify assertions with: the one signing first. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const keys = [{ kid: this.keyId, key: createPublicKey(this.key) }, ...this.published.map((k) => ({ kid: k.keyId, key: createPublicKey(k.publicKey) }))];
    return { keys: await Promise.all(keys.map(async ({ kid, key }) => ({ ...(await exportJWK(key)), kid, alg: 'ES256', use: 'sig' }))) };
  }
}
