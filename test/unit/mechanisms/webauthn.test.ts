import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  authenticationOptions,
  newChallenge,
  registrationOptions,
  relyingParty,
  verifyAuthentication,
  verifyRegistration,
  type RelyingParty,
  type StoredCredential,
  type WebAuthnRejection,
} from '../../../src/mechanisms/webauthn.js';
import { testConfig } from '../../helpers/config.js';
import { SoftAuthenticator, type AssertionKnobs, type RegistrationKnobs } from '../../helpers/soft-authenticator.js';

const RP: RelyingParty = {
  id: 'gw.example',
  name: 'Riverbend Health',
  origins: ['https://gw.example'],
  userVerification: 'required',
  attestation: 'none',
};
const PREFERRED: RelyingParty = { ...RP, userVerification: 'preferred' };
const ALICE = { handle: randomBytes(32).toString('base64url'), name: 'alice', displayName: 'Alice' };
const BOB_HANDLE = randomBytes(32).toString('base64url');

type Result = { ok: true } | WebAuthnRejection;
const outcome = (r: Result) => (r.ok ? 'ok' : r.reason);

/** A registration ceremony: the soft authenticator answers the real options, `knobs` spoil the answer. */
async function register(knobs: RegistrationKnobs = {}, rp = RP, auth = new SoftAuthenticator()) {
  const challenge = newChallenge();
  const response = auth.register(await registrationOptions(rp, ALICE, [], challenge), knobs);
  return { auth, response, result: await verifyRegistration(rp, response, challenge), challenge };
}

async function enrolled(knobs: RegistrationKnobs = {}, auth = new SoftAuthenticator()) {
  const { result } = await register(knobs, RP, auth);
  if (!result.ok) throw new Error(`enrolment failed: ${result.reason}`);
  return { auth, credential: result.credential };
}

/** An authentication ceremony against `credential` with a fresh challenge. */
async function authenticate(
  auth: SoftAuthenticator,
  credential: StoredCredential,
  knobs: AssertionKnobs = {},
  rp = RP,
  expectedUserHandle: string | null = ALICE.handle,
) {
  const challenge = newChallenge();
  const response = auth.authenticate(await authenticationOptions(rp, [credential], challenge), knobs);
  return { response, result: await verifyAuthentication(rp, response, challenge, credential, expectedUserHandle ?? undefined) };
}

t.test('challenges: 32 bytes from the CSPRNG, base64url, unique', async (t) => {
  const seen = new Set(Array.from({ length: 100 }, newChallenge));
  t.equal(seen.size, 100);
  for (const c of seen) t.match(c, /^[A-Za-z0-9_-]{43}$/);
});

t.test('registration: options from configuration, a browser response accepted, the record to store', async (t) => {
  const challenge = newChallenge();
  const existing = (await enrolled()).credential;
  const options = await registrationOptions(RP, ALICE, [existing], challenge);
  t.equal(options.challenge, challenge, 'the challenge is ours, not re-encoded');
  t.same(options.rp, { id: 'gw.example', name: 'Riverbend Health' });
  t.same(options.user, { id: ALICE.handle, name: 'alice', displayName: 'Alice' });
  t.same(
    options.pubKeyCredParams.map((p) => p.alg),
    [-8, -7, -257],
  );
  t.equal(options.attestation, 'none');
  t.equal(options.timeout, 300_000);
  t.equal(options.authenticatorSelection?.userVerification, 'required');
  t.same(
    options.excludeCredentials?.map((c) => c.id),
    [existing.id],
  );

  const auth = new SoftAuthenticator();
  const response = auth.register(options);
  const result = await verifyRegistration(RP, response, challenge);
  t.ok(result.ok);
  if (!result.ok) return;
  t.same(result.credential, {
    id: response.id,
    publicKey: result.credential.publicKey,
    counter: 0,
    transports: ['internal'],
    backedUp: false,
    deviceType: 'singleDevice',
    uvInitialized: true,
  });
  t.equal(Buffer.from(result.credential.publicKey, 'base64url')[0], 0xa5, 'a COSE_Key: a CBOR map of five entries');
  const again = await registrationOptions(RP, ALICE, [result.credential], newChallenge());
  t.throws(() => auth.register(again), /InvalidStateError/, 'the soft authenticator honours excludeCredentials like a browser');
});

t.test('registration: a synced passkey (BE=1, BS=1) is recorded as multi-device and backed up', async (t) => {
  const { credential } = await enrolled({ flags: { be: true, bs: true } });
  t.equal(credential.deviceType, 'multiDevice');
  t.equal(credential.backedUp, true);
});

t.test('registration: the wrapper reports the authenticator-chosen id; refusing a duplicate is the caller’s job (C-44)', async (t) => {
  const alice = await enrolled();
  const { result } = await register({ credentialId: alice.credential.id });
  t.ok(result.ok);
  if (result.ok) t.equal(result.credential.id, alice.credential.id);
});

t.test('authentication: options list the allowed credentials; a browser assertion accepted; counter moves on', async (t) => {
  const { auth, credential } = await enrolled();
  const challenge = newChallenge();
  const options = await authenticationOptions(RP, [credential], challenge);
  t.equal(options.challenge, challenge);
  t.equal(options.rpId, 'gw.example');
  t.equal(options.userVerification, 'required');
  t.same(
    options.allowCredentials?.map((c) => c.id),
    [credential.id],
  );
  const first = await verifyAuthentication(RP, auth.authenticate(options), challenge, credential, ALICE.handle);
  t.same(first, { ok: true, counter: 1, backedUp: false, userVerified: true });
  const second = await authenticate(auth, { ...credential, counter: 1 });
  t.same(second.result, { ok: true, counter: 2, backedUp: false, userVerified: true });
});

t.test('origin: exact match on scheme, host and port (R25, C-41)', async (t) => {
  for (const origin of ['https://evil.example', 'http://gw.example', 'https://gw.example:8443', 'https://x.gw.example', 'https://gw.example.evil.example']) {
    t.equal(outcome((await register({ origin })).result), 'origin', `create from ${origin}`);
    const { auth, credential } = await enrolled();
    t.equal(outcome((await authenticate(auth, credential, { origin })).result), 'origin', `get from ${origin}`);
  }
  const twoOrigins = { ...RP, origins: ['https://gw.example', 'https://portal.gw.example'] };
  const other = new SoftAuthenticator({ origin: 'https://portal.gw.example' });
  const { result } = await register({}, twoOrigins, other);
  t.equal(outcome(result), 'ok', 'any configured origin, with the configured rp id');
});

t.test('origins by default: where a browser has the gateway, its port included, and no other', async (t) => {
  const config = ({ tls, ...server }: Record<string, unknown>, webauthn?: Record<string, unknown>) => {
    const c = testConfig('http://portal.internal:8080', (raw) => {
      raw.webauthn = webauthn;
      Object.assign(raw.server, server);
    });
    // Only that the gateway terminates TLS counts here (no certificate file is read).
    return tls ? { ...c, server: { ...c.server, tls: { certFile: 'cert.pem', keyFile: 'key.pem' } } } : c;
  };
  const onPort = relyingParty(config({ hosts: ['portal.other.test'], port: 18443, tls: true }));
  t.same(onPort.origins, ['https://portal.other.test:18443', 'https://portal.other.test'], "TLS in the gateway on a port of its own: that port, and 443 (a container's port published as 443)");
  for (const origin of onPort.origins) t.equal(outcome((await register({}, onPort, new SoftAuthenticator({ origin }))).result), 'ok', `a ceremony at ${origin}`);
  for (const origin of ['https://portal.other.test:8443', 'http://portal.other.test:18443', 'http://portal.other.test', 'https://other.test:18443']) {
    t.equal(outcome((await register({}, onPort, new SoftAuthenticator({ origin }))).result), 'origin', `refused from ${origin}`);
  }
  t.same(relyingParty(config({ hosts: ['portal.other.test'], port: 443, tls: true })).origins, ['https://portal.other.test'], "https's own port: none");
  t.same(relyingParty(config({ hosts: ['portal.other.test'], port: 8080, trustedProxies: ['10.0.0.1'] })).origins, ['https://portal.other.test'], "behind a TLS proxy: https on 443, not the gateway's port");
  t.same(relyingParty(config({ hosts: ['portal.other.test'], port: 8080 })).origins, ['https://portal.other.test'], 'plain HTTP under another name: https on 443, where a TLS proxy server.trustedProxies leaves out has it (browsers offer no passkeys over http there)');
  t.same(relyingParty(config({ hosts: ['localhost', '127.0.0.1'], port: 8080 }, { rpId: 'localhost' })).origins, ['http://localhost:8080'], 'plain HTTP on localhost: the demo');
  t.same(
    relyingParty(config({ hosts: ['portal.other.test', 'other.test'], port: 18443, tls: true }, { rpId: 'other.test' })).origins,
    ['https://portal.other.test:18443', 'https://portal.other.test', 'https://other.test:18443', 'https://other.test'],
    'each name under the rp id',
  );
  t.same(relyingParty(config({ hosts: ['portal.other.test'], port: 18443, tls: true }, { origins: ['https://portal.other.test'] })).origins, ['https://portal.other.test'], 'webauthn.origins given: those only');
});

t.test('rp id: authenticatorData names our rp id, not another domain nor the parent (C-41)', async (t) => {
  for (const rpId of ['evil.example', 'example']) {
    const { result } = await register({ rpId });
    t.equal(outcome(result), 'rp-id', `create for ${rpId}`);
    if (!result.ok) t.type(result.cause, Error, 'the library error is kept for the log');
    const { auth, credential } = await enrolled();
    t.equal(outcome((await authenticate(auth, credential, { rpId })).result), 'rp-id', `get for ${rpId}`);
  }
});

t.test('challenge: the one issued for this ceremony (R21, C-42)', async (t) => {
  t.equal(outcome((await register({ challenge: newChallenge() })).result), 'challenge');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { challenge: newChallenge() })).result), 'challenge');
  // A captured assertion replayed against a new challenge.
  const { response } = await authenticate(auth, credential);
  t.equal(outcome(await verifyAuthentication(RP, response, newChallenge(), credential)), 'challenge');
});

t.test('type: a create answer does not pass in a get ceremony, nor the reverse', async (t) => {
  t.equal(outcome((await register({ type: 'webauthn.get' })).result), 'type');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { type: 'webauthn.create' })).result), 'type');
  const { response, challenge } = await register();
  t.equal(outcome(await verifyAuthentication(RP, response, challenge, credential)), 'malformed', 'a whole registration response');
});

t.test('user presence is always required', async (t) => {
  t.equal(outcome((await register({ flags: { up: false } }, PREFERRED)).result), 'user-presence');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { flags: { up: false } }, PREFERRED)).result), 'user-presence');
});

t.test('user verification: required by policy refuses UV=0; preferred accepts it and says so', async (t) => {
  t.equal(outcome((await register({ flags: { uv: false } })).result), 'user-verification');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { flags: { uv: false } })).result), 'user-verification');

  const preferred = await register({ flags: { uv: false } }, PREFERRED);
  t.ok(preferred.result.ok);
  if (preferred.result.ok) t.equal(preferred.result.credential.uvInitialized, false);
  const fresh = await enrolled();
  const { result } = await authenticate(fresh.auth, fresh.credential, { flags: { uv: false } }, PREFERRED);
  t.same(result, { ok: true, counter: 1, backedUp: false, userVerified: false });
});

t.test('sign counter: must grow unless both are 0 (R24, C-43)', async (t) => {
  const { auth, credential } = await enrolled();
  const at = (stored: number, received: number) => authenticate(auth, { ...credential, counter: stored }, { counter: received });
  t.equal(outcome((await at(5, 4)).result), 'counter-regression', 'lower');
  t.equal(outcome((await at(5, 5)).result), 'counter-regression', 'equal');
  t.equal(outcome((await at(5, 0)).result), 'counter-regression', '0 after non-zero');
  t.equal(outcome((await at(0, 0)).result), 'ok', '0 and 0: an authenticator without a counter');
  t.equal(outcome((await at(5, 6)).result), 'ok');

  // A cloned device: the original is used twice, then the copy answers with the counter it was copied with.
  const copy = auth.clone();
  let stored = credential;
  for (const expected of [1, 2]) {
    const { result } = await authenticate(auth, stored);
    t.same(result, { ok: true, counter: expected, backedUp: false, userVerified: true });
    stored = { ...stored, counter: expected };
  }
  t.equal(outcome((await authenticate(copy, stored)).result), 'counter-regression', 'the clone');
});

t.test('a counter regression is reported only for a genuine signature', async (t) => {
  const auth = new SoftAuthenticator();
  const alice = await enrolled({}, auth);
  const mallory = await enrolled({}, auth);
  const stored = { ...alice.credential, counter: 9 };
  t.equal(outcome((await authenticate(auth, stored, { counter: 1 })).result), 'counter-regression');
  const forged = await authenticate(auth, stored, { counter: 1, signWith: mallory.credential.id });
  t.equal(outcome(forged.result), 'signature', 'a forged low counter raises no clone alarm');
});

t.test('signature: made by the stored key over authenticatorData ‖ hash(clientDataJSON)', async (t) => {
  const auth = new SoftAuthenticator();
  const alice = await enrolled({}, auth);
  const mallory = await enrolled({}, auth);
  t.equal(auth.credentials.length, 2, 'one authenticator holds both credentials');
  t.equal(outcome((await authenticate(auth, alice.credential, { signWith: mallory.credential.id })).result), 'signature', 'another key');

  // Another credential's whole assertion, renamed to Alice's credential.
  const challenge = newChallenge();
  const theirs = auth.authenticate(await authenticationOptions(RP, [mallory.credential], challenge), { userHandle: null });
  const renamed = { ...theirs, id: alice.credential.id, rawId: alice.credential.id };
  t.equal(outcome(await verifyAuthentication(RP, renamed, challenge, alice.credential)), 'signature', 'renamed assertion');
  t.equal(outcome(await verifyAuthentication(RP, theirs, challenge, alice.credential)), 'credential-id', 'assertion of another credential');

  const { response } = await authenticate(auth, alice.credential);
  const sig = Buffer.from(response.response.signature, 'base64url');
  sig[sig.length - 1]! ^= 1;
  const challenge2 = newChallenge();
  const fresh = auth.authenticate(await authenticationOptions(RP, [alice.credential], challenge2));
  const flipped = { ...fresh, response: { ...fresh.response, signature: sig.toString('base64url') } };
  t.equal(outcome(await verifyAuthentication(RP, flipped, challenge2, alice.credential)), 'signature', 'a signature over other data');
});

t.test('cross-origin: a ceremony inside another site’s frame is refused (C-41)', async (t) => {
  t.equal(outcome((await register({ crossOrigin: true })).result), 'cross-origin');
  t.equal(outcome((await register({ crossOrigin: true, topOrigin: 'https://evil.example' })).result), 'cross-origin');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { crossOrigin: true })).result), 'cross-origin', 'crossOrigin alone');
  t.equal(outcome((await authenticate(auth, credential, { topOrigin: 'https://evil.example' })).result), 'cross-origin', 'topOrigin alone');
});

t.test('backup state: BS=1 needs BE=1, and BE never changes (C-45)', async (t) => {
  t.equal(outcome((await register({ flags: { be: false, bs: true } })).result), 'backup-state');
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { flags: { be: false, bs: true } })).result), 'backup-state', 'BS without BE');
  t.equal(outcome((await authenticate(auth, credential, { flags: { be: true } })).result), 'backup-state', 'BE appeared');
  const passkey = await enrolled({ flags: { be: true, bs: false } });
  t.same((await authenticate(passkey.auth, passkey.credential, { flags: { bs: true } })).result, {
    ok: true,
    counter: 1,
    backedUp: true,
    userVerified: true,
  }, 'BS may change: the passkey got backed up');
});

t.test('user handle: when the authenticator names a user, it is the expected one (C-44)', async (t) => {
  const { auth, credential } = await enrolled();
  t.equal(outcome((await authenticate(auth, credential, { userHandle: BOB_HANDLE })).result), 'user-handle');
  t.equal(outcome((await authenticate(auth, { ...credential, counter: 1 }, { userHandle: null })).result), 'ok', 'no handle sent');
  t.equal(outcome((await authenticate(auth, { ...credential, counter: 2 }, { userHandle: BOB_HANDLE }, RP, null)).result), 'ok', 'none expected');
  t.equal(outcome((await authenticate(auth, { ...credential, counter: 3 }, { userHandle: '' })).result), 'ok', 'an empty handle (a security key in Safari) names no user');
});

t.test('algorithm: only EdDSA, ES256 and RS256 keys are registered', async (t) => {
  for (const alg of [-35, -47, -65535]) t.equal(outcome((await register({ alg })).result), 'algorithm', `alg ${alg}`);
});

t.test('attestation: `none` is refused when the policy asks for direct attestation', async (t) => {
  t.equal(outcome((await register({}, { ...RP, attestation: 'direct' })).result), 'attestation');
});

t.test('credential id: at most 1023 bytes, and the one inside the signed data', async (t) => {
  t.equal(outcome((await register({ credentialId: randomBytes(2048).toString('base64url') })).result), 'credential-too-long', '2 KB');
  t.equal(outcome((await register({ credentialId: randomBytes(1023).toString('base64url') })).result), 'ok', '1023 bytes');
  const { response, challenge } = await register();
  const long = randomBytes(2048).toString('base64url');
  t.equal(outcome(await verifyRegistration(RP, { ...response, id: long, rawId: long }, challenge)), 'credential-too-long', 'JSON id of 2 KB');
  const other = randomBytes(32).toString('base64url');
  t.equal(outcome(await verifyRegistration(RP, { ...response, id: other, rawId: other }, challenge)), 'credential-id', 'renamed');
  const { auth, credential } = await enrolled();
  const assertion = (await authenticate(auth, credential)).response;
  t.equal(outcome(await verifyAuthentication(RP, { ...assertion, id: long, rawId: long }, newChallenge(), credential)), 'credential-too-long');
});

t.test('malformed: untrusted JSON is checked for shape, size and encoding before the library sees it (C-45)', async (t) => {
  const { response: reg, challenge: regChallenge } = await register();
  const { auth, credential } = await enrolled();
  const getChallenge = newChallenge();
  const get = auth.authenticate(await authenticationOptions(RP, [credential], getChallenge));
  const huge = 'A'.repeat(1_000_000);
  const withReg = (patch: object) => ({ ...reg, response: { ...reg.response, ...patch } });
  const withGet = (patch: object) => ({ ...get, response: { ...get.response, ...patch } });
  const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64url');

  const registrations: [string, unknown][] = [
    ['null', null],
    ['a string', JSON.stringify(reg)],
    ['an array', [reg]],
    ['a number', 42],
    ['no response', { ...reg, response: undefined }],
    ['response is a string', { ...reg, response: 'x' }],
    ['id is a number', { ...reg, id: 7, rawId: 7 }],
    ['rawId differs from id', { ...reg, rawId: credential.id }],
    ['empty id', { ...reg, id: '', rawId: '' }],
    ['type is not public-key', { ...reg, type: 'password' }],
    ['huge clientDataJSON', withReg({ clientDataJSON: huge })],
    ['huge attestationObject', withReg({ attestationObject: huge })],
    ['base64 with +/', withReg({ clientDataJSON: reg.response.clientDataJSON.replace(/-/g, '+').replace(/_/g, '/') + '+/' })],
    ['padded base64url', withReg({ clientDataJSON: reg.response.clientDataJSON + '=' })],
    ['impossible length', withReg({ clientDataJSON: reg.response.clientDataJSON + 'A' })],
    ['clientDataJSON not JSON', withReg({ clientDataJSON: b64('<html>') })],
    ['clientDataJSON an array', withReg({ clientDataJSON: b64('["webauthn.create"]') })],
    ['clientDataJSON with a BOM', withReg({ clientDataJSON: b64('\uFEFF' + Buffer.from(reg.response.clientDataJSON, 'base64url').toString()) })],
    ['clientDataJSON not UTF-8', withReg({ clientDataJSON: b64(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])) })],
    ['origin is a number', withReg({ clientDataJSON: b64(`{"type":"webauthn.create","challenge":"${regChallenge}","origin":1}`) })],
    ['crossOrigin is a string', withReg({ clientDataJSON: b64(`{"type":"webauthn.create","challenge":"${regChallenge}","origin":"https://gw.example","crossOrigin":"false"}`) })],
    ['attestationObject not CBOR', withReg({ attestationObject: b64('not cbor at all') })],
    ['transports not an array', withReg({ transports: 'usb' })],
    ['CBOR nested 12 000 deep', withReg({ attestationObject: b64(Buffer.concat([Buffer.alloc(12_000, 0x81), Buffer.of(0)])) })],
    ['CBOR of indefinite length', withReg({ attestationObject: b64(Buffer.of(0xbf, 0x63, 0x66, 0x6d, 0x74, 0x64, 0x6e, 0x6f, 0x6e, 0x65, 0xff)) })],
  ];
  for (const [what, input] of registrations) t.equal(outcome(await verifyRegistration(RP, input, regChallenge)), 'malformed', `create: ${what}`);

  const duplicate = `{"type":"webauthn.create","challenge":"${regChallenge}","origin":"https://evil.example","origin":"https://gw.example"}`;
  t.equal(outcome((await register({ clientDataJSON: duplicate })).result), 'malformed', 'create: a member named twice');

  const authData = Buffer.from(get.response.authenticatorData, 'base64url');
  const assertions: [string, unknown][] = [
    ['undefined', undefined],
    ['an empty object', {}],
    ['no signature', withGet({ signature: undefined })],
    ['huge signature', withGet({ signature: huge })],
    ['huge authenticatorData', withGet({ authenticatorData: huge })],
    ['userHandle is a number', withGet({ userHandle: 5 })],
    ['userHandle over 64 bytes', withGet({ userHandle: randomBytes(65).toString('base64url') })],
    ['authenticatorData truncated', withGet({ authenticatorData: b64(authData.subarray(0, 36)) })],
    ['authenticatorData with trailing bytes', withGet({ authenticatorData: b64(Buffer.concat([authData, Buffer.of(0)])) })],
    ['clientDataJSON not JSON', withGet({ clientDataJSON: b64('{"type":') })],
  ];
  for (const [what, input] of assertions) {
    t.equal(outcome(await verifyAuthentication(RP, input, getChallenge, credential)), 'malformed', `get: ${what}`);
  }
});

t.test('caller misuse throws: an empty expected challenge, a challenge that is not base64url', async (t) => {
  const { response, challenge } = await register();
  await t.rejects(verifyRegistration(RP, response, ''), TypeError);
  await t.rejects(registrationOptions(RP, ALICE, [], 'not base64url!'), TypeError);
  t.ok((await verifyRegistration(RP, response, challenge)).ok);
});
