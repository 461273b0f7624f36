import t from 'tap';
import { randomBytes } from 'node:crypto';
import { SignJWT, base64url } from 'jose';
import { matchRecoveryCode, newRecoveryCodes } from '../../../src/mechanisms/recovery-codes.js';
import { Sealer } from '../../../src/mechanisms/sealer.js';
import { SessionTokens } from '../../../src/mechanisms/session-token.js';

const key = randomBytes(32);
const tokens = new SessionTokens([{ id: 'k1', key }], 43200);
const now = 1_800_000_000_000;
const sid = 'a'.repeat(43);

t.test('sealer: round trip, bound to its record, key rotation', async (t) => {
  const k1 = { id: 'k1', key: randomBytes(32) };
  const k2 = { id: 'k2', key: randomBytes(32) };
  const old = new Sealer([k1]);
  const sealed = old.seal('secret jar', 'session:{x}');
  t.notMatch(sealed, /secret jar/);
  t.equal(old.open(sealed, 'session:{x}'), 'secret jar');
  t.throws(() => old.open(sealed, 'session:{y}'), { code: 'SEAL_OPEN_FAILED' }, 'moved to another record');
  const [kid, iv, ct, tag] = sealed.split('.');
  // One bit of the ciphertext's last byte flipped (changing its text could touch only base64's padding bits).
  const sealedBytes = Buffer.from(ct!, 'base64url');
  sealedBytes[sealedBytes.length - 1]! ^= 1;
  const flipped = `${kid}.${iv}.${sealedBytes.toString('base64url')}.${tag}`;
  t.throws(() => old.open(flipped, 'session:{x}'), { code: 'SEAL_OPEN_FAILED' }, 'tampered');
  // A truncated GCM tag is a prefix of the full one: without the length check it would open.
  for (const bytes of [4, 8, 12, 15]) {
    const short = `${kid}.${iv}.${ct}.${Buffer.from(tag!, 'base64url').subarray(0, bytes).toString('base64url')}`;
    t.throws(() => old.open(short, 'session:{x}'), { code: 'SEAL_OPEN_FAILED' }, `a ${bytes}-byte tag`);
  }
  const rotated = new Sealer([k2, k1]);
  t.equal(rotated.open(sealed, 'session:{x}'), 'secret jar', 'old records readable after rotation');
  t.match(rotated.seal('x', 'a'), /^k2\./, 'new records use the first key');
  t.throws(() => new Sealer([k2]).open(sealed, 'session:{x}'), { code: 'SEAL_OPEN_FAILED' }, 'retired key');
});

t.test('sealer: a key id with "." is refused, as sealed values are split on it', async (t) => {
  t.throws(() => new Sealer([{ id: 'enc.2026', key: randomBytes(32) }]), /cannot contain "\."/, 'as the sealing key');
  t.throws(() => new Sealer([{ id: 'e1', key: randomBytes(32) }, { id: 'enc.2025', key: randomBytes(32) }]), /cannot contain "\."/, 'as an older key');
  const plain = new Sealer([{ id: 'enc-2026_a', key: randomBytes(32) }]);
  t.equal(plain.open(plain.seal('jar', 'session:{x}'), 'session:{x}'), 'jar', 'letters, digits, "-" and "_" round-trip');
});

t.test('session tokens: genuine tokens verify', async (t) => {
  const token = await tokens.sign({ sub: 'pid', sid }, now);
  t.same(await tokens.verify(token, now + 1000), { sub: 'pid', sid });
  const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
  t.same(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
  t.equal(header.alg, 'HS256');
  t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'sid', 'sub'], 'short claims, no personal data');
});

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

t.test('session tokens: forged, tampered, expired, alg:none, wrong kid, oversized are refused', async (t) => {
  const token = await tokens.sign({ sub: 'pid', sid }, now);
  const [h, p, s] = token.split('.') as [string, string, string];
  const enc = (o: object) => base64url.encode(JSON.stringify(o));
  const forgedKey = randomBytes(32);
  const sign = (kid: string, claims: object, alg = 'HS256', k: Uint8Array = key, typ = 'mfa-session+jwt') =>
    new SignJWT({ sid, ...claims }).setProtectedHeader({ alg, typ, kid }).setSubject('pid').setIssuer('mfa-gateway').setAudience('mfa-gateway:session').setIssuedAt(now / 1000).setExpirationTime(now / 1000 + 3600).sign(k);
  const cases: [string, string][] = [
    ['forged with another key', await sign('k1', {}, 'HS256', forgedKey)],
    ['tampered payload', `${h}.${enc({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'other' })}.${s}`],
    ['truncated signature', `${h}.${p}.${s.slice(0, 10)}`],
    // The same 32 bytes: only bits of the last character that no byte uses differ.
    ['signature in another spelling', `${h}.${p}.${s.slice(0, -1)}${B64URL[B64URL.indexOf(s.at(-1)!) ^ 1]}`],
    ['alg none', `${enc({ alg: 'none', typ: 'JWT' })}.${p}.`],
    ['alg none with kid', `${enc({ alg: 'none', kid: 'k1', typ: 'mfa-session+jwt' })}.${p}.x`],
    ['wrong kid', await sign('k2', {})],
    ['path kid', await sign('../../../../dev/null', {})],
    // Signed with the gateway's own key: each is refused for what its name says, not for a signature that fails.
    ['HS512', await sign('k1', {}, 'HS512')],
    ['wrong typ', await sign('k1', {}, 'HS256', key, 'JWT')],
    ['oversized', await sign('k1', { pad: 'A'.repeat(1024) })],
    ['empty', ''],
    ['four segments', `${token}.x`],
    ['NUL', '\u0000'],
  ];
  for (const [name, bad] of cases) t.equal(await tokens.verify(bad, now), null, name);
  t.equal(await tokens.verify(token, now + 43210_000), null, 'expired');
  t.equal(await tokens.verify(token, now - 60_000), null, 'issued in the future');
});

t.test('session tokens: known answers only for a token verified before, with the same time checks', async (t) => {
  const fresh = new SessionTokens([{ id: 'k1', key }], 43200);
  const token = await fresh.sign({ sub: 'pid', sid }, now);
  t.equal(fresh.known(token, now), undefined, 'never verified: verify decides');
  t.same(await fresh.verify(token, now), { sub: 'pid', sid });
  t.same(fresh.known(token, now + 1000), { sub: 'pid', sid }, 'verified before');
  const [h, p, s] = token.split('.') as [string, string, string];
  t.equal(fresh.known(`${h}.${p}x.${s}`, now), undefined, 'same signature, another token: not known');
  t.equal(fresh.known(token, now + 43210_000), null, 'expired since');
  t.equal(fresh.known(token, now - 60_000), null, 'issued in the future');
});

t.test('recovery codes: ten, 80-bit, hashed, each once', async (t) => {
  const { codes, stored } = await newRecoveryCodes();
  t.equal(codes.length, 10);
  t.equal(new Set(codes).size, 10);
  for (const c of codes) t.match(c, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
  t.notMatch(JSON.stringify(stored), codes[0]!.replaceAll('-', ''), 'stored as hashes');
  t.equal(await matchRecoveryCode(stored, codes[3]!), 3);
  t.equal(await matchRecoveryCode(stored, codes[3]!.toLowerCase().replaceAll('-', ' ')), 3, 'typed loosely');
  t.equal(await matchRecoveryCode(stored, 'AAAA-BBBB-CCCC-DDDD'), -1);
  const arabic = codes[3]!.replace(/[2-9]/g, (d) => String.fromCodePoint(0x660 + Number(d))).replaceAll('-', '\u2013');
  t.equal(await matchRecoveryCode(stored, `\u200e${arabic}`), 3, 'its digits typed on an Arabic keypad, dashes autocorrected');
  const fullWidth = [...codes[3]!.toLowerCase()].map((c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0)).join('');
  t.equal(await matchRecoveryCode(stored, fullWidth), 3, 'typed with an input method in full-width mode');
  // Letters that upper-case to the code's (long s to S) are other letters, not the code.
  let withS = await newRecoveryCodes();
  while (!withS.codes.some((c) => c.includes('S'))) withS = await newRecoveryCodes();
  const i = withS.codes.findIndex((c) => c.includes('S'));
  t.equal(await matchRecoveryCode(withS.stored, withS.codes[i]!.toLowerCase()), i);
  t.equal(await matchRecoveryCode(withS.stored, withS.codes[i]!.replace('S', 'ſ')), -1, 'a non-ASCII letter');
  t.equal(await matchRecoveryCode({ ...stored, hashes: stored.hashes.map((x, i) => (i === 3 ? null : x)) }, codes[3]!), -1, 'used code');
});
