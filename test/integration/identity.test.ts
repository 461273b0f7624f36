// Identity to the portal: user and groups headers, and the signed assertion, verified with jose against the JWKS.
import t from 'tap';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { request } from 'undici';
import { headerValue } from '../../src/services/identity.js';
import { inputValue } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { ALICE, BOB, signUpAndEnrol, signUpWithPasskey, startStack, totpAt, type Stack } from '../helpers/stack.js';

const ecKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const SPOOFED = { 'x-mfa-user': 'admin', 'X-MFA-Groups': 'staff,root', 'x-mfa-assertion': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.' };

async function identityStack(t: { teardown(fn: () => unknown): void }): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-identity-'));
  writeFileSync(join(dir, 'groups.yaml'), 'alice: [patients, carers]\n');
  const s = await startStack({
    patch: (raw) => {
      raw.groups = { file: join(dir, 'groups.yaml') };
      raw.identity = { userHeader: 'X-MFA-User', groupsHeader: 'X-MFA-Groups', assertion: { signingKey: ecKey(), keyId: 'portal-2026', lifetimeSeconds: 120 } };
    },
  });
  t.teardown(s.close);
  return s;
}

const groupsFileOf = (s: Stack) => s.config.groups.file!;

async function jwks(s: Stack): Promise<JSONWebKeySet> {
  // The portal fetches it by the gateway's internal address: any Host is answered.
  const res = await request(`${s.url}/_mfa/jwks.json`, { headers: { host: 'gateway.internal' } });
  t.equal(res.statusCode, 200, 'the JWKS answers any Host');
  return (await res.body.json()) as JSONWebKeySet;
}

t.test('the portal learns who is asking and can verify it with the JWKS', async (t) => {
  const s = await identityStack(t);
  const { b } = await signUpAndEnrol(s);
  const seen = JSON.parse((await b.get('/echo', SPOOFED)).body).headers as Record<string, string>;
  t.equal(seen['x-mfa-user'], ALICE.username, 'the user header is the signed-in user, not the client copy');
  t.equal(seen['x-mfa-groups'], 'patients,carers', 'groups from the group file, not the client copy');

  const token = seen['x-mfa-assertion']!;
  // As the README tells portals to check it.
  const keySet = createLocalJWKSet(await jwks(s));
  const asPortal = (jwt: string) =>
    jwtVerify(jwt, keySet, {
      algorithms: ['ES256'],
      typ: 'mfa-assertion+jwt',
      issuer: 'mfa-gateway',
      audience: new URL(s.portal.url).origin,
      requiredClaims: ['sub', 'exp', 'auth_time'],
      currentDate: new Date(s.clock.now()),
    });
  const { payload, protectedHeader } = await asPortal(token);
  t.equal(protectedHeader.kid, 'portal-2026');
  t.equal(payload.sub, ALICE.username);
  t.same(payload.groups, ['patients', 'carers']);
  t.same(payload.amr, ['pwd', 'otp'], 'RFC 8176: password and one-time code');
  t.equal(payload.auth_time, Math.floor(s.clock.now() / 1000), 'when the second factor was verified');
  t.equal(payload.exp! - payload.iat!, 120);

  // Cached per session: the next request carries the same assertion until half its life is left.
  const again = JSON.parse((await b.get('/echo')).body).headers['x-mfa-assertion'];
  t.equal(again, token, 'not signed again on every request');
  s.clock.advance(61_000);
  const renewed = JSON.parse((await b.get('/echo')).body).headers['x-mfa-assertion'];
  t.not(renewed, token, 'renewed once half its lifetime has passed');
  t.equal(decodeJwt(renewed).iat, Math.floor(s.clock.now() / 1000));

  // A change in the group file reaches the assertion with the next request, not when the cached one is renewed.
  writeFileSync(groupsFileOf(s), 'alice: [patients]\n');
  s.clock.advance(1500);
  const regrouped = JSON.parse((await b.get('/echo')).body).headers as Record<string, string>;
  t.equal(regrouped['x-mfa-groups'], 'patients');
  t.same(decodeJwt(regrouped['x-mfa-assertion']!).groups, ['patients'], 'the assertion names the groups as they are now');

  // A forged or altered assertion does not verify, each for its own reason (as the portal checks it, with the clock at
  // the assertion's time: none is refused as expired instead).
  const [h, , sig] = token.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...payload, sub: BOB.username })).toString('base64url');
  await t.rejects(asPortal(`${h}.${forgedPayload}.${sig}`), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'an edited subject fails the signature');
  const otherKey = await new SignJWT({ ...payload, sub: BOB.username }).setProtectedHeader(protectedHeader as { alg: string }).sign(createPrivateKey(ecKey()));
  await t.rejects(asPortal(otherKey), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, "signed by another key under the gateway's kid: fails the signature");
  await t.rejects(asPortal(SPOOFED['x-mfa-assertion']), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }, 'an unsigned token (alg none) is refused for its algorithm');
});

t.test('the portal gets the groups the rules judged, also when the group file changes in between', async (t) => {
  const s = await identityStack(t);
  const { b } = await signUpAndEnrol(s);
  // The file changes (and is due to be read again) right after the decision.
  const access = s.app.gateway.access;
  const decide = access.decide.bind(access);
  access.decide = async (req) => {
    const decided = await decide(req);
    writeFileSync(groupsFileOf(s), 'alice: [patients]\n');
    s.clock.advance(1500);
    return decided;
  };
  const seen = JSON.parse((await b.get('/echo')).body).headers as Record<string, string>;
  t.equal(seen['x-mfa-groups'], 'patients,carers', 'the groups the decision was made with');
  t.same(decodeJwt(seen['x-mfa-assertion']!).groups, ['patients', 'carers'], 'in the assertion too');
  access.decide = decide;
  t.equal(JSON.parse((await b.get('/echo')).body).headers['x-mfa-groups'], 'patients', 'the next request has the new ones');
});

t.test('client-sent identity headers never reach the portal', async (t) => {
  const s = await identityStack(t);
  const anon = s.browser();
  // A public page: the portal sees no identity at all, whatever the client sent.
  await anon.get('/login', SPOOFED);
  const login = s.portalRequests.at(-1)!;
  t.equal(login.url, '/login');
  for (const h of ['x-mfa-user', 'x-mfa-groups', 'x-mfa-assertion']) t.equal(login.headers[h], undefined, `${h} removed from a public request`);
  // The password post itself: replayed to the portal without them.
  const b = s.browser();
  const page = await b.get('/login');
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
  await b.post('/login', { username: ALICE.username, password: ALICE.password, csrf }, SPOOFED);
  const replay = s.portalRequests.findLast((r) => r.method === 'POST' && r.url === '/login')!;
  for (const h of ['x-mfa-user', 'x-mfa-groups', 'x-mfa-assertion']) t.equal(replay.headers[h], undefined, `${h} removed from the login replay`);
});

t.test('without identity settings: no JWKS, nothing added, and client copies still removed', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  t.equal((await request(`${s.url}/_mfa/jwks.json`)).statusCode, 404);
  const { b } = await signUpAndEnrol(s);
  const seen = JSON.parse((await b.get('/echo', { ...SPOOFED, 'x-remote-user': 'admin' })).body).headers as Record<string, string>;
  for (const h of ['x-mfa-user', 'x-mfa-groups', 'x-mfa-assertion', 'x-remote-user']) t.equal(seen[h], undefined, `${h} never passes`);
});

t.test('names that are not printable ASCII reach the portal percent-encoded, never as a broken header', async (t) => {
  for (const name of ['alice', 'Łukasz', 'josé', 'a b', '100%', 'x,y', 'a@b.org', '😀']) {
    const value = headerValue(name);
    t.match(value, /^[\x21-\x7e]+$/, `${name}: printable ASCII only`);
    t.notOk(value.includes(','), `${name}: no comma (groups are comma-separated)`);
    t.equal(decodeURIComponent(value), name, `${name}: decodeURIComponent gives it back`);
  }
  t.equal(headerValue('alice'), 'alice', 'plain names unchanged');
});

t.test('a removed passkey that proved the session: the next assertion no longer says hwk', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.identity = { assertion: { signingKey: ecKey(), lifetimeSeconds: 3600 } }) });
  t.teardown(s.close);
  // Device-bound (BE=0): the session counts as proven with a key that cannot leave its device.
  const { b } = await signUpWithPasskey(s, new SoftAuthenticator({ origin: 'http://localhost' }));
  const amr = async () => decodeJwt(JSON.parse((await b.get('/echo')).body).headers['x-mfa-assertion']).amr;
  t.same(await amr(), ['pwd', 'hwk']);
  // An app added, so the passkey can go.
  const setup = await b.get('/_mfa/security/totp');
  const secret = /id="secret">([^<]+)</.exec(setup.body)![1]!.replaceAll(' ', '');
  s.clock.advance(30_000);
  t.equal((await b.post('/_mfa/security/totp', { csrf: inputValue(setup.body, 'csrf'), name: 'app', code: await totpAt(secret, s.clock.now()) })).status, 303);
  const pid = s.app.gateway.pidOf(ALICE.username)!;
  const passkey = (await s.app.gateway.stores.factors.get(pid))!.factors.find((f) => f.kind === 'webauthn')!;
  const page = await b.get('/_mfa/security');
  t.equal((await b.post('/_mfa/security/remove', { csrf: inputValue(page.body, 'csrf'), factor: passkey.id })).status, 303);
  t.same(await amr(), ['pwd', 'swk'], "within the cached assertion's lifetime: a new one");
});

t.test('groups that change only in where the commas fall make a new assertion', async (t) => {
  const s = await identityStack(t);
  writeFileSync(groupsFileOf(s), 'alice: ["cn=staff,o=clinic"]\n');
  s.clock.advance(1500);
  const { b } = await signUpAndEnrol(s);
  const first = JSON.parse((await b.get('/echo')).body).headers;
  t.same(decodeJwt(first['x-mfa-assertion']).groups, ['cn=staff,o=clinic']);
  // LDAP-style names hold commas: one group, then two.
  writeFileSync(groupsFileOf(s), 'alice: ["cn=staff", "o=clinic"]\n');
  s.clock.advance(1500);
  const second = JSON.parse((await b.get('/echo')).body).headers;
  t.same(decodeJwt(second['x-mfa-assertion']).groups, ['cn=staff', 'o=clinic'], 'not the earlier list, signed earlier');
});

t.test("groups the portal names in its login answer (groups.loginHeader) reach the rules and the portal", async (t) => {
  const s = await startStack({
    patch: (raw) => {
      raw.groups = { loginHeader: 'X-Portal-Roles' };
      raw.identity = { groupsHeader: 'X-MFA-Groups' };
      raw.policy.rules = [{ name: 'staff only', paths: ['/admin/'], groups: ['staff'], decision: 'mfa' }, { name: 'no admin', paths: ['/admin/'], decision: 'deny' }, ...raw.policy.rules];
    },
  });
  t.teardown(s.close);
  const bob = await signUpAndEnrol(s, BOB);
  t.equal(JSON.parse((await bob.b.get('/echo', { 'x-portal-roles': 'root' })).body).headers['x-mfa-groups'], 'staff', "the portal's login answer named him staff");
  t.equal((await bob.b.get('/admin/')).status, 200, 'a staff rule lets him in');
  const alice = await signUpAndEnrol(s);
  t.equal(JSON.parse((await alice.b.get('/echo')).body).headers['x-mfa-groups'], '', 'none named for her');
  t.equal((await alice.b.get('/admin/')).status, 403, 'and the staff rule does not match');
});

t.test('assertion key rotation: keys published ahead and after, signing nothing; config check refuses a wrong one', async (t) => {
  const [older, current, next] = [ecKey(), ecKey(), ecKey()];
  const publicOf = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'pem' }) as string;
  const s = await startStack({
    patch: (raw) => {
      raw.identity = { assertion: { signingKey: current, keyId: 'a2', publishedKeys: [{ keyId: 'a3', publicKey: publicOf(next) }, { keyId: 'a1', publicKey: older }] } };
    },
  });
  t.teardown(s.close);
  const set = await jwks(s);
  t.same(set.keys.map((k) => k.kid), ['a2', 'a3', 'a1'], 'the signing key first, then the others');
  const { b } = await signUpAndEnrol(s);
  const token = JSON.parse((await b.get('/echo')).body).headers['x-mfa-assertion'] as string;
  const options = { issuer: 'mfa-gateway', audience: new URL(s.portal.url).origin, algorithms: ['ES256'], currentDate: new Date(s.clock.now()) };
  t.equal((await jwtVerify(token, createLocalJWKSet(set), options)).protectedHeader.kid, 'a2', 'signed with the signing key only');
  const byOld = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'a1' }).setIssuer('mfa-gateway').setAudience(options.audience).sign(createPrivateKey(older));
  t.ok(await jwtVerify(byOld, createLocalJWKSet(set), options), 'what the key before signed still verifies');
  t.notOk(JSON.stringify(set).includes('"d"'), 'no private part published');

  const { rawTestConfig } = await import('../helpers/config.js');
  const { ConfigError, resolveConfig } = await import('../../src/config/load.js');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.identity = { assertion: { signingKey: current, keyId: 'a2', publishedKeys: [{ keyId: 'a2', publicKey: publicOf(next) }, { keyId: 'x', publicKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }) }] } };
  const problems = (() => {
    try {
      resolveConfig(raw);
      return [];
    } catch (err) {
      return (err as InstanceType<typeof ConfigError>).problems;
    }
  })();
  t.same(problems.sort(), ['identity.assertion.publishedKeys.1.publicKey: not an EC P-256 key (PEM)', 'identity.assertion.publishedKeys: key ids must differ from each other and from identity.assertion.keyId']);
});
