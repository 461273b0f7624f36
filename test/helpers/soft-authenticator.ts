// A software authenticator and browser (ES256 on node:crypto, attestation "none") that answers with the JSON a browser posts, with knobs for bad variants.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';

/** authenticatorData flags (WA3 §6.1): user present, user verified, backup eligible, backed up. */
export interface Flags {
  up?: boolean;
  uv?: boolean;
  be?: boolean;
  bs?: boolean;
}

/** What the server sent for navigator.credentials.create(): PublicKeyCredentialCreationOptionsJSON or the parsed HTTP body. */
export interface CreationRequest {
  challenge: string;
  rp: { id?: string };
  user: { id: string };
  excludeCredentials?: { id: string }[];
  pubKeyCredParams?: { alg: number }[];
  extensions?: { credProps?: boolean };
}

/** What the server sent for navigator.credentials.get(). */
export interface AssertionRequest {
  challenge: string;
  rpId?: string;
  allowCredentials?: { id: string }[];
}

/** Knobs shared by both ceremonies; each replaces what an honest browser and authenticator would put there. */
export interface CeremonyKnobs {
  /** clientData.origin (default: the authenticator's origin) */
  origin?: string;
  /** clientData.type (default: webauthn.create / webauthn.get) */
  type?: string;
  /** clientData.challenge (default: the server's) */
  challenge?: string;
  crossOrigin?: boolean;
  topOrigin?: string;
  /** The whole clientDataJSON text, as is (e.g. not JSON at all). */
  clientDataJSON?: string;
  /** The rp id whose SHA-256 goes into authenticatorData (default: the server's rp id). */
  rpId?: string;
  flags?: Flags;
  /** The sign counter in authenticatorData; the credential's own counter is left alone. */
  counter?: number;
}

export interface RegistrationKnobs extends CeremonyKnobs {
  /** A chosen credential id, base64url (e.g. someone else's, or 2 KB long). */
  credentialId?: string;
  /** The COSE alg label written into the public key; the key stays P-256. */
  alg?: number;
  transports?: string[];
  /** Create even though a held credential is in excludeCredentials (a browser would refuse). */
  ignoreExclude?: boolean;
}

export interface AssertionKnobs extends CeremonyKnobs {
  /** Which held credential answers (default: the first held one the server allows). */
  credentialId?: string;
  /** Sign with the key of this other held credential instead. */
  signWith?: string;
  /** The userHandle sent (default: the user id given at creation); null leaves it out. */
  userHandle?: string | null;
}

export interface SoftCredential {
  id: string;
  rpId: string;
  userHandle: string;
  privateKey: KeyObject;
  /** COSE_Key bytes, as in the attested credential data */
  publicKey: Buffer;
  counter: number;
  backupEligible: boolean;
  backedUp: boolean;
}

export interface SoftAuthenticatorOptions {
  /** The page origin the browser reports (default https://gw.example). */
  origin?: string;
  /** false: the counter stays 0, as synced passkeys do (default true: +1 per assertion). */
  countsSignatures?: boolean;
  attachment?: 'platform' | 'cross-platform';
  transports?: string[];
  /** true: its credentials are backup eligible and backed up, as a synced passkey's (default false: device-bound). */
  synced?: boolean;
}

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = [];
  readonly origin: string;
  private readonly countsSignatures: boolean;
  private readonly attachment: 'platform' | 'cross-platform';
  private readonly transports: string[];
  private readonly synced: boolean;

  constructor(options: SoftAuthenticatorOptions = {}) {
    this.origin = options.origin ?? 'https://gw.example';
    this.countsSignatures = options.countsSignatures ?? true;
    this.attachment = options.attachment ?? 'platform';
    this.transports = options.transports ?? ['internal'];
    this.synced = options.synced ?? false;
  }

  /** The host of the origin: the rp id used when the server's options name none. */
  get rpId(): string {
    return new URL(this.origin).hostname;
  }

  /** navigator.credentials.create() then PublicKeyCredential.toJSON(). The new credential is held. */
  register(request: CreationRequest, knobs: RegistrationKnobs = {}): RegistrationResponseJSON {
    const rpId = request.rp.id ?? this.rpId;
    const excluded = (request.excludeCredentials ?? []).some((e) => this.credentials.some((c) => c.id === e.id && c.rpId === rpId));
    if (excluded && !knobs.ignoreExclude) throw new Error('InvalidStateError: a held credential is in excludeCredentials');
    if (knobs.alg === undefined && request.pubKeyCredParams && !request.pubKeyCredParams.some((p) => p.alg === -7)) {
      throw new Error('NotSupportedError: ES256 (-7) not offered');
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const alg = knobs.alg ?? -7;
    const cose = cbor(
      new Map<number, Cbor>([
        [1, 2], // kty: EC2
        [3, alg],
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
    const id = knobs.credentialId ?? randomBytes(32).toString('base64url');
    const idBytes = Buffer.from(id, 'base64url');
    const flags = { up: true, uv: true, be: this.synced, bs: this.synced, ...knobs.flags };
    const counter = knobs.counter ?? 0;
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(idBytes.length);
    // Attested credential data (WA3 §6.5.2): AAGUID (zero for "none"), id length, id, COSE key.
    const attested = Buffer.concat([Buffer.alloc(16), idLength, idBytes, cose]);
    const authData = authenticatorData(knobs.rpId ?? rpId, flags, counter, attested);
    const attestationObject = cbor(
      new Map<string, Cbor>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    const held = this.credentials.findIndex((c) => c.id === id);
    if (held >= 0) this.credentials.splice(held, 1);
    this.credentials.push({ id, rpId, userHandle: request.user.id, privateKey, publicKey: cose, counter, backupEligible: flags.be, backedUp: flags.bs });
    return {
      id,
      rawId: id,
      type: 'public-key',
      authenticatorAttachment: this.attachment,
      clientExtensionResults: request.extensions?.credProps ? { credProps: { rk: true } } : {},
      response: {
        clientDataJSON: this.clientData('webauthn.create', request.challenge, knobs).toString('base64url'),
        attestationObject: attestationObject.toString('base64url'),
        authenticatorData: authData.toString('base64url'),
        transports: knobs.transports ?? this.transports,
        publicKeyAlgorithm: alg,
        publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64url'),
      },
    };
  }

  /** navigator.credentials.get() then PublicKeyCredential.toJSON(). */
  authenticate(request: AssertionRequest, knobs: AssertionKnobs = {}): AuthenticationResponseJSON {
    const rpId = request.rpId ?? this.rpId;
    const credential = knobs.credentialId === undefined ? this.allowed(request, rpId) : this.credential(knobs.credentialId);
    const signer = knobs.signWith === undefined ? credential : this.credential(knobs.signWith);
    if (knobs.counter === undefined && this.countsSignatures) credential.counter += 1;
    const flags = { up: true, uv: true, be: credential.backupEligible, bs: credential.backedUp, ...knobs.flags };
    const authData = authenticatorData(knobs.rpId ?? rpId, flags, knobs.counter ?? credential.counter);
    const clientData = this.clientData('webauthn.get', request.challenge, knobs);
    // WA3 §6.3.3: the signature covers authenticatorData ‖ SHA-256(clientDataJSON); ECDSA signatures are DER.
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientData)]), signer.privateKey);
    const userHandle = knobs.userHandle === undefined ? credential.userHandle : knobs.userHandle;
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      authenticatorAttachment: this.attachment,
      clientExtensionResults: {},
      response: {
        clientDataJSON: clientData.toString('base64url'),
        authenticatorData: authData.toString('base64url'),
        signature: signature.toString('base64url'),
        ...(userHandle === null ? {} : { userHandle }),
      },
    };
  }

  credential(id: string): SoftCredential {
    const found = this.credentials.find((c) => c.id === id);
    if (!found) throw new Error(`no credential ${id.slice(0, 16)}… held`);
    return found;
  }

  /** Another authenticator holding copies of these keys and counters: a cloned device (C-43). */
  clone(): SoftAuthenticator {
    const copy = new SoftAuthenticator({ origin: this.origin, countsSignatures: this.countsSignatures, attachment: this.attachment, transports: this.transports });
    copy.credentials.push(...this.credentials.map((c) => ({ ...c })));
    return copy;
  }

  private allowed(request: AssertionRequest, rpId: string): SoftCredential {
    const allow = request.allowCredentials ?? [];
    const found = this.credentials.find((c) => c.rpId === rpId && (allow.length === 0 || allow.some((a) => a.id === c.id)));
    if (!found) throw new Error('NotAllowedError: no held credential is allowed');
    return found;
  }

  /** clientDataJSON bytes in the order browsers serialise them (WA3 §5.8.1.1). */
  private clientData(type: string, challenge: string, knobs: CeremonyKnobs): Buffer {
    if (knobs.clientDataJSON !== undefined) return Buffer.from(knobs.clientDataJSON, 'utf8');
    const data = {
      type: knobs.type ?? type,
      challenge: knobs.challenge ?? challenge,
      origin: knobs.origin ?? this.origin,
      crossOrigin: knobs.crossOrigin ?? false,
      ...(knobs.topOrigin === undefined ? {} : { topOrigin: knobs.topOrigin }),
    };
    return Buffer.from(JSON.stringify(data), 'utf8');
  }
}

/** WA3 §6.1: rpIdHash (32) ‖ flags (1) ‖ signCount (4, big-endian) ‖ attested credential data. */
function authenticatorData(rpId: string, flags: Required<Flags>, counter: number, attested?: Buffer): Buffer {
  const head = Buffer.alloc(37);
  sha256(Buffer.from(rpId, 'utf8')).copy(head, 0);
  head[32] = (flags.up ? 0x01 : 0) | (flags.uv ? 0x04 : 0) | (flags.be ? 0x08 : 0) | (flags.bs ? 0x10 : 0) | (attested ? 0x40 : 0);
  head.writeUInt32BE(counter, 33);
  return attested ? Buffer.concat([head, attested]) : head;
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

type Cbor = number | string | Uint8Array | Map<number | string, Cbor>;

/** Definite-length CBOR (RFC 8949) for the few types WebAuthn needs: integers, byte and text strings, maps. */
export function cbor(value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? cborHead(0, value) : cborHead(1, -1 - value);
  if (typeof value === 'string') return withHead(3, Buffer.from(value, 'utf8'));
  if (value instanceof Uint8Array) return withHead(2, Buffer.from(value));
  return Buffer.concat([cborHead(5, value.size), ...[...value].flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

function withHead(major: number, body: Buffer): Buffer {
  return Buffer.concat([cborHead(major, body.length), body]);
}

function cborHead(major: number, n: number): Buffer {
  const type = major << 5;
  if (n < 24) return Buffer.of(type | n);
  if (n < 0x100) return Buffer.of(type | 24, n);
  if (n < 0x10000) return Buffer.of(type | 25, n >> 8, n & 0xff);
  const b = Buffer.alloc(5);
  b[0] = type | 26;
  b.writeUInt32BE(n, 1);
  return b;
}
