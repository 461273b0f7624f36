import t from 'tap';
import { createHmac } from 'node:crypto';
import { generate } from 'otplib';
import { base32 } from '../../helpers/base32.js';
import { groupedSecret, matchTotpStep, newTotpSecret, normaliseTotpInput, totpUri } from '../../../src/mechanisms/totp.js';

// RFC 6238 Appendix B, SHA-1 seed "12345678901234567890"; the 6-digit codes authenticator apps show.
const SEED = base32(Buffer.from('12345678901234567890'));
const VECTORS: [number, string][] = [
  [59, '287082'],
  [1111111109, '081804'],
  [1111111111, '050471'],
  [1234567890, '005924'],
  [2000000000, '279037'],
  [20000000000, '353130'],
];

t.test('RFC 6238 Appendix B vectors (6 digits, leading zeros kept)', async (t) => {
  for (const [time, code] of VECTORS) {
    t.equal(await generate({ secret: SEED, epoch: time }), code, `generate at ${time}`);
    t.equal(await matchTotpStep(SEED, code, time * 1000), Math.floor(time / 30), `verify at ${time}`);
  }
});

t.test('the 8-digit RFC values truncate to the app codes (cross-check with a plain HMAC)', async (t) => {
  const hotp = (counter: bigint) => {
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(counter);
    const h = createHmac('sha1', '12345678901234567890').update(msg).digest();
    const o = h[19]! & 0xf;
    return ((h.readUInt32BE(o) & 0x7fffffff) % 1e8).toString().padStart(8, '0');
  };
  t.equal(hotp(1n), '94287082');
  t.equal(hotp(0x27bc86aan), '65353130');
});

t.test('accepts ±1 step, refuses ±2 steps', async (t) => {
  const now = 1_700_000_000_000;
  const at = (offsetSteps: number) => generate({ secret: SEED, epoch: now / 1000 + offsetSteps * 30 });
  const step = Math.floor(now / 30_000);
  t.equal(await matchTotpStep(SEED, await at(-1), now), step - 1);
  t.equal(await matchTotpStep(SEED, await at(1), now), step + 1);
  t.equal(await matchTotpStep(SEED, await at(-2), now), null);
  t.equal(await matchTotpStep(SEED, await at(2), now), null);
});

t.test('input normalisation: six digits, as typed on any keypad', async (t) => {
  t.equal(normaliseTotpInput(' 287 082 '), '287082');
  t.equal(normaliseTotpInput('287-082'), '287082');
  t.equal(normaliseTotpInput('287\u2013082\u00a0'), '287082', 'a dash, a no-break space');
  t.equal(normaliseTotpInput('٢٨٧٠٨٢'), '287082', 'Arabic-Indic digits');
  t.equal(normaliseTotpInput('\u200f۲۸۷۰۸۲\u200f'), '287082', 'Persian digits with right-to-left marks');
  t.equal(normaliseTotpInput('२८७०८२'), '287082', 'Devanagari digits');
  t.equal(normaliseTotpInput('２８７０８２'), '287082', 'full-width digits');
  t.equal(normaliseTotpInput('𝟐𝟖𝟕𝟎𝟖𝟐'), '287082', 'digits of a run that follows another (mathematical bold)');
  t.equal(normaliseTotpInput('\u{116da}\u{116d0}\u{116d9}'), null, 'three digits (Myanmar, a second run of ten right after the first)');
  t.equal(normaliseTotpInput('\u{116da}\u{116db}\u{116dc}\u{116d0}\u{116d1}\u{116d2}'), '012012');
  t.equal(normaliseTotpInput('2870821'), null, '7 digits');
  t.equal(normaliseTotpInput('28708'), null, '5 digits');
  t.equal(normaliseTotpInput('28708a'), null);
  t.equal(normaliseTotpInput('²⁸⁷⁰⁸²'), null, 'superscripts are no digits typed');
});

t.test('secrets: 20 bytes, unique; URI and grouping', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) seen.add(newTotpSecret());
  t.equal(seen.size, 200);
  const s = [...seen][0]!;
  t.equal(s.length, 32, '20 bytes = 32 base32 characters');
  const uri = new URL(totpUri({ issuer: 'Riverbend Health', account: 'alice', secret: s }));
  t.equal(uri.protocol, 'otpauth:');
  t.equal(uri.searchParams.get('secret'), s);
  t.equal(uri.searchParams.get('issuer'), 'Riverbend Health');
  t.equal(groupedSecret('ABCDEFGHIJ'), 'ABCD EFGH IJ');
});
