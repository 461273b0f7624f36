// WebAuthn ceremonies (WA3 §7.1 registration, §7.2 assertion) on @simplewebauthn/server: bounded input, one precise reason per failed check.
import { randomBytes } from 'node:crypto';
import {
  PQCNotSupportedError,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Config } from '../config/schema.js';
import { gatewaySite, loopbackName } from '../domain/gateway-site.js';

/** The gateway as a relying party; always from configuration, never from a request. */
export interface RelyingParty {
  id: string;
  name: string;
  origins: readonly string[];
  userVerification: 'required' | 'preferred';
  attestation: 'none' | 'direct';
}

/** The gateway as a WebAuthn relying party: from the config, never from a request (SECURITY R25). */
export function relyingParty(config: Config): RelyingParty {
  // Host names are case-insensitive, and browsers send them (in the origin and the RP ID hash) in lower case.
  const id = (config.webauthn.rpId ?? config.server.hosts[0]!.replace(/^\[|\]$/g, '')).toLowerCase();
  return {
    id,
    name: config.webauthn.rpName ?? config.portal.name,
    origins: (config.webauthn.origins ?? defaultOrigins(config.server, id)).map(browserOrigin),
    userVerification: config.webauthn.userVerification,
    attestation: config.webauthn.attestation,
  };
}

/**
 * Where passkeys are used when no origins are configured: the gateway's names (server.hosts) that the relying party
 * id covers, the id itself when none does. An id set to the parent domain (`example.org`) then still takes the name
 * the gateway is served at (`portal.example.org`), where a ceremony's origin is. Each name on https without a port,
 * where a browser has a gateway behind a TLS proxy or a container's port 443; and where a browser may have it
 * otherwise (gatewaySite): with server.tls on another port, there too (`https://portal.example:8443`); over plain
 * http, on a loopback name only (the demo's `http://localhost:8080`), as browsers offer passkeys over http nowhere
 * else: any other name is on https in front of the gateway, if anywhere (a TLS proxy server.trustedProxies leaves out).
 */
function defaultOrigins(server: Config['server'], id: string): string[] {
  const covered = server.hosts.map((h) => h.toLowerCase()).filter((h) => h === id || h.endsWith(`.${id}`));
  return (covered.length ? covered : [id]).flatMap((h) => {
    const { proto, origin } = gatewaySite(server, h);
    if (proto === 'http') return [loopbackName(h) ? origin : `https://${h}`];
    return origin === `https://${h}` ? [origin] : [origin, `https://${h}`];
  });
}

/**
 * An origin as browsers put it in a ceremony's client data (the HTML serialisation): scheme and host in lower case,
 * and no port where it is the scheme's own. `https://portal.example:443` in the config would otherwise match no
 * browser, and every passkey would be refused.
 */
function browserOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin.toLowerCase();
  }
}

export interface StoredCredential {
  /** base64url */
  id: string;
  /** base64url COSE_Key */
  publicKey: string;
  counter: number;
  transports?: string[];
  backedUp: boolean;
  deviceType: 'singleDevice' | 'multiDevice';
  uvInitialized: boolean;
}

export interface WebAuthnUser {
  /** base64url, random per user (WA3 §14.6.1: no personal data in the user handle) */
  handle: string;
  name: string;
  displayName: string;
}

export type WebAuthnFailure =
  | 'malformed'
  | 'credential-too-long'
  | 'credential-id'
  | 'user-handle'
  | 'type'
  | 'challenge'
  | 'origin'
  | 'cross-origin'
  | 'rp-id'
  | 'user-presence'
  | 'user-verification'
  | 'backup-state'
  | 'algorithm'
  | 'attestation'
  | 'signature'
  | 'counter-regression';

/** A refused response; `cause` is the library's error, for the log only. */
export interface WebAuthnRejection {
  ok: false;
  reason: WebAuthnFailure;
  cause?: unknown;
}
export type RegistrationResult = { ok: true; credential: StoredCredential } | WebAuthnRejection;
export type AuthenticationResult = { ok: true; counter: number; backedUp: boolean; userVerified: boolean } | WebAuthnRejection;

/** Offered and accepted COSE algorithms, most preferred first: EdDSA, ES256, RS256 (R22). */
export const WEBAUTHN_ALGORITHMS: readonly number[] = [-8, -7, -257];
/** What the browser is told to wait; the stored challenge should live as long (R21; WA3 recommends 300 s). */
export const WEBAUTHN_TIMEOUT_MS = 300_000;

// WA3 §7.1: credential ids are at most 1023 bytes, i.e. 1364 base64url characters.
const MAX_ID_CHARS = 1364;
// Longest base64url text accepted per field: browsers send a few hundred bytes; attestation certificates need more.
const MAX_CHARS = { clientDataJSON: 4096, authenticatorData: 4096, signature: 2048, attestationObject: 16384, userHandle: 86 };
const TRANSPORTS = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);
// A member named twice may be read differently by two parsers (C-45).
const CLIENT_DATA_MEMBERS = /"(type|challenge|origin|crossOrigin|topOrigin)"\s*:/g;

/** Whether a credential cannot leave its authenticator: not backup eligible (BE=0), fixed at its creation. */
export function isDeviceBound(credential: StoredCredential): boolean {
  return credential.deviceType === 'singleDevice';
}

/** 32 bytes from the CSPRNG, base64url (R21: at least 16). */
export function newChallenge(): string {
  return randomBytes(32).toString('base64url');
}

export async function registrationOptions(
  rp: RelyingParty,
  user: WebAuthnUser,
  exclude: readonly StoredCredential[],
  challenge: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userID: bytes(user.handle, 'user handle'),
    userName: user.name,
    userDisplayName: user.displayName,
    // v13+ reads a string challenge as UTF-8 text: hand over the bytes so options.challenge is ours unchanged.
    challenge: bytes(challenge, 'challenge'),
    timeout: WEBAUTHN_TIMEOUT_MS,
    attestationType: rp.attestation,
    excludeCredentials: exclude.map((c) => ({ id: c.id, transports: c.transports })),
    // Phones and computers make a passkey; a security key with few slots may still make a non-resident credential.
    authenticatorSelection: { residentKey: 'preferred', userVerification: rp.userVerification },
    supportedAlgorithmIDs: [...WEBAUTHN_ALGORITHMS],
  });
}

export async function authenticationOptions(
  rp: RelyingParty,
  allow: readonly StoredCredential[],
  challenge: string,
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({
    rpID: rp.id,
    allowCredentials: allow.map((c) => ({ id: c.id, transports: c.transports })),
    challenge: bytes(challenge, 'challenge'),
    timeout: WEBAUTHN_TIMEOUT_MS,
    userVerification: rp.userVerification,
  });
}

/** WA3 §7.1. The caller still refuses a credential id already registered to anyone (R22, C-44). */
export async function verifyRegistration(rp: RelyingParty, input: unknown, expectedChallenge: string): Promise<RegistrationResult> {
  requireChallenge(expectedChallenge);
  try {
    const response = registrationShape(input);
    checkClientData(rp, response.response.clientDataJSON, 'webauthn.create', expectedChallenge);
    // The library checks, in order: rpIdHash = SHA-256(rp.id), UP, UV if required, alg offered, attestation statement, BS ⇒ BE.
    const result = await verifyRegistrationResponse({
      response,
      expectedChallenge,
      expectedOrigin: [...rp.origins],
      expectedRPID: rp.id,
      expectedType: 'webauthn.create',
      requireUserPresence: true,
      requireUserVerification: rp.userVerification === 'required',
      supportedAlgorithmIDs: [...WEBAUTHN_ALGORITHMS],
    });
    // The attestation statement verified.
    check(result.verified, 'attestation');
    const info = result.registrationInfo;
    // Attestation `none` is accepted only when the policy asks for none (R22).
    check(rp.attestation === 'none' || info.fmt !== 'none', 'attestation');
    // The credential id inside the signed authenticator data is at most 1023 bytes (WA3 §7.1).
    check(info.credential.id.length <= MAX_ID_CHARS, 'credential-too-long');
    // The id the browser names is the one the authenticator created, so the caller's uniqueness check is on the real id.
    check(info.credential.id === response.id, 'credential-id');
    return {
      ok: true,
      credential: {
        id: info.credential.id,
        publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        transports: response.response.transports,
        backedUp: info.credentialBackedUp,
        deviceType: info.credentialDeviceType,
        uvInitialized: info.userVerified,
      },
    };
  } catch (err) {
    return rejection(err);
  }
}

/** WA3 §7.2. `credential` is the caller's record for `response.id`, among those of the user this ceremony is for (R23). */
export async function verifyAuthentication(
  rp: RelyingParty,
  input: unknown,
  expectedChallenge: string,
  credential: StoredCredential,
  expectedUserHandle?: string,
): Promise<AuthenticationResult> {
  requireChallenge(expectedChallenge);
  try {
    const response = assertionShape(input);
    // The assertion names the credential whose public key is about to be used.
    check(response.id === credential.id, 'credential-id');
    // When the authenticator names its user, it is the user this ceremony is for (C-44).
    const handle = response.response.userHandle;
    check(handle === undefined || expectedUserHandle === undefined || handle === expectedUserHandle, 'user-handle');
    checkClientData(rp, response.response.clientDataJSON, 'webauthn.get', expectedChallenge);
    // The library checks, in order: rpIdHash = SHA-256(rp.id), UP, UV if required, BS ⇒ BE, then the signature.
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge,
      expectedOrigin: [...rp.origins],
      expectedRPID: rp.id,
      expectedType: 'webauthn.get',
      // Counter 0 turns off the library's counter check, which runs before the signature: ours runs after it.
      credential: { id: credential.id, publicKey: new Uint8Array(Buffer.from(credential.publicKey, 'base64url')), counter: 0 },
      requireUserVerification: rp.userVerification === 'required',
    });
    // The signature over authenticatorData ‖ SHA-256(clientDataJSON) verifies with the stored public key.
    check(result.verified, 'signature');
    const info = result.authenticationInfo;
    // The sign counter moved forward unless both counters are 0; otherwise the authenticator may be cloned (R24, C-43).
    check(counterMoved(info.newCounter, credential.counter), 'counter-regression');
    // Backup eligibility never changes after creation (WA3 §7.2, BE flag).
    check((info.credentialDeviceType === 'multiDevice') === (credential.deviceType === 'multiDevice'), 'backup-state');
    return { ok: true, counter: info.newCounter, backedUp: info.credentialBackedUp, userVerified: info.userVerified };
  } catch (err) {
    return rejection(err);
  }
}

/** Whether an assertion's sign counter is past the stored one (both 0: an authenticator that keeps no counter). */
export function counterMoved(received: number, stored: number): boolean {
  return (received === 0 && stored === 0) || received > stored;
}

class Rejection extends Error {
  constructor(readonly reason: WebAuthnFailure, cause?: unknown) {
    super(reason, { cause });
  }
}

function check(condition: boolean, reason: WebAuthnFailure): asserts condition {
  if (!condition) throw new Rejection(reason);
}

function checkClientData(rp: RelyingParty, clientDataJSON: string, type: 'webauthn.create' | 'webauthn.get', challenge: string): void {
  const data = parseClientData(clientDataJSON);
  // The browser ran the ceremony this endpoint is for: create for registration, get for authentication.
  check(data.type === type, 'type');
  // The authenticator signed the challenge this server issued for this ceremony (R21, C-42).
  check(data.challenge === challenge, 'challenge');
  // The calling page is one of ours, exactly: scheme, host and port (R25, C-41).
  check(rp.origins.includes(data.origin), 'origin');
  // The ceremony did not run in a frame embedded by another site (R22, C-41); the library ignores crossOrigin alone.
  check(data.crossOrigin !== true && data.topOrigin === undefined, 'cross-origin');
}

interface ClientData {
  type: string;
  challenge: string;
  origin: string;
  crossOrigin?: boolean;
  topOrigin?: string;
}

function parseClientData(clientDataJSON: string): ClientData {
  let text: string;
  let data: unknown;
  try {
    // Strict UTF-8, and a BOM is kept so that JSON.parse refuses it: browsers send neither.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Buffer.from(clientDataJSON, 'base64url'));
    data = JSON.parse(text);
  } catch (cause) {
    throw new Rejection('malformed', cause);
  }
  check(isRecord(data), 'malformed');
  check(typeof data.type === 'string' && typeof data.challenge === 'string' && typeof data.origin === 'string', 'malformed');
  check(data.crossOrigin === undefined || typeof data.crossOrigin === 'boolean', 'malformed');
  check(data.topOrigin === undefined || typeof data.topOrigin === 'string', 'malformed');
  const names = [...text.matchAll(CLIENT_DATA_MEMBERS)].map((m) => m[1]);
  check(new Set(names).size === names.length, 'malformed');
  return data as unknown as ClientData;
}

/** Only the fields the library reads, each checked for type, size and encoding. */
function registrationShape(input: unknown): RegistrationResponseJSON {
  const { id, response } = credentialShape(input);
  const transports = response.transports;
  check(transports === undefined || (Array.isArray(transports) && transports.length <= 8), 'malformed');
  check((transports ?? []).every((t: unknown) => typeof t === 'string' && t.length <= 32), 'malformed');
  return {
    id,
    rawId: id,
    type: 'public-key',
    clientExtensionResults: {},
    response: {
      clientDataJSON: base64urlField(response, 'clientDataJSON'),
      attestationObject: base64urlField(response, 'attestationObject'),
      // Unknown transports are hints only: dropped, not refused.
      transports: transports === undefined ? undefined : (transports as string[]).filter((t) => TRANSPORTS.has(t)),
    },
  };
}

function assertionShape(input: unknown): AuthenticationResponseJSON {
  const { id, response } = credentialShape(input);
  // Browsers send null or leave it out when the credential is not discoverable; some (Safari with a security key)
  // give an empty handle instead, which the browser script sends as "": it names no user either.
  const named = response.userHandle !== null && response.userHandle !== undefined && response.userHandle !== '';
  const userHandle = named ? base64urlField(response, 'userHandle') : undefined;
  return {
    id,
    rawId: id,
    type: 'public-key',
    clientExtensionResults: {},
    response: {
      clientDataJSON: base64urlField(response, 'clientDataJSON'),
      authenticatorData: base64urlField(response, 'authenticatorData'),
      signature: base64urlField(response, 'signature'),
      ...(userHandle === undefined ? {} : { userHandle }),
    },
  };
}

function credentialShape(input: unknown): { id: string; response: Record<string, unknown> } {
  check(isRecord(input), 'malformed');
  const { id, rawId, type, response } = input;
  check(typeof id === 'string' && typeof rawId === 'string', 'malformed');
  check(id.length <= MAX_ID_CHARS && rawId.length <= MAX_ID_CHARS, 'credential-too-long');
  check(id.length > 0 && id === rawId && isBase64url(id), 'malformed');
  check(type === 'public-key', 'malformed');
  check(isRecord(response), 'malformed');
  return { id, response };
}

function base64urlField(record: Record<string, unknown>, name: keyof typeof MAX_CHARS): string {
  const value = record[name];
  check(typeof value === 'string' && value.length > 0 && value.length <= MAX_CHARS[name] && isBase64url(value), 'malformed');
  return value;
}

/** Canonical unpadded base64url: decoding and re-encoding gives the same text. */
function isBase64url(value: string): boolean {
  return /^[A-Za-z0-9_-]*$/.test(value) && Buffer.from(value, 'base64url').toString('base64url') === value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bytes(value: string, what: string): Uint8Array<ArrayBuffer> {
  if (!value || !isBase64url(value)) throw new TypeError(`${what} must be canonical base64url`);
  return new Uint8Array(Buffer.from(value, 'base64url'));
}

function requireChallenge(challenge: string): void {
  // An empty expected challenge would match a response carrying an empty one.
  if (typeof challenge !== 'string' || challenge.length < 22) throw new TypeError('expected challenge must be at least 16 bytes, base64url');
}

// The checks only the library makes, by error name or by the fixed start of its message (what follows may be attacker data).
const LIBRARY_FAILURES: [RegExp, WebAuthnFailure][] = [
  [/^Unexpected RP ID hash/, 'rp-id'],
  [/^User presence was required|^User not present/, 'user-presence'],
  [/^User verification (was )?required/, 'user-verification'],
  [/^Unexpected public key alg|^Credential public key was missing numeric alg/, 'algorithm'],
  [/^Single-device credential indicated that it was backed up/, 'backup-state'],
  [/^Unsupported Attestation Format|^None attestation had unexpected attestation statement/, 'attestation'],
];

function rejection(err: unknown): WebAuthnRejection {
  if (err instanceof Rejection) return { ok: false, reason: err.reason, ...(err.cause === undefined ? {} : { cause: err.cause }) };
  if (err instanceof PQCNotSupportedError) return { ok: false, reason: 'algorithm', cause: err };
  const message = err instanceof Error ? err.message : '';
  const reason = LIBRARY_FAILURES.find(([pattern]) => pattern.test(message))?.[1] ?? 'malformed';
  return { ok: false, reason, cause: err };
}
