// The message catalogue: languages dropped in as files, negotiation by Accept-Language, English as the fallback.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRORS } from '../../../src/errors.js';
import { english, Messages } from '../../../src/ui/i18n.js';
import en from '../../../src/ui/locales/en.json' with { type: 'json' };

function localesDir(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-locales-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  return dir;
}

t.test('a language is a file drop; missing messages fall back to English', async (t) => {
  const m = new Messages(localesDir({ 'mi.json': { verifyTitle: 'Whakaū ko koe tēnei', wrongCode: 'Kāore i tika. Ngā whakamātau e toe ana: {left}.' } }));
  t.same(m.languages.sort(), ['en', 'mi']);
  const mi = m.forRequest('mi-NZ, en;q=0.5');
  t.equal(mi.lang, 'mi', 'primary subtag');
  t.equal(mi.t('verifyTitle'), 'Whakaū ko koe tēnei');
  t.equal(mi.t('wrongCode', { left: 3 }), 'Kāore i tika. Ngā whakamātau e toe ana: 3.');
  t.equal(mi.t('verifySubmit'), en.verifySubmit, 'not translated yet: English');
  t.equal(m.forRequest('de, fr;q=0.9').lang, 'en', 'none we have: the default');
  t.equal(m.forRequest('en;q=0.1, mi;q=0.9').lang, 'mi', 'by weight');
  t.equal(m.forRequest('mi;q=0, en').lang, 'en', 'q=0 means not wanted');
  t.equal(m.forRequest(undefined).lang, 'en');
  t.equal(m.forRequest('*').lang, 'en');
});

t.test('a broken translation file is a start-up error naming the problem', async (t) => {
  t.throws(() => new Messages(localesDir({ 'xx.json': { noSuchMessage: 'x' } })), /xx\.json: unknown message noSuchMessage/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { wrongCode: 'Left: {remaining}' } })), /uses \{remaining\}, which English does not/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { wrongCode: 5 } })), /is not text/);
  t.throws(() => new Messages(localesDir({ 'xx.json': '{' })), /JSON/);
  t.throws(() => new Messages(undefined, 'fr'), /no messages for the default language fr/);
  t.equal(new Messages(localesDir({ 'fr.json': {} }), 'fr').forRequest(undefined).lang, 'fr', 'a dropped-in default language');
});

t.test('every error code has a public message; placeholders are filled', async (t) => {
  for (const code of Object.keys(ERRORS)) t.ok((en as Record<string, string>)[`error.${code}`], code);
  t.equal(english('securityRecoveryLeft', { left: 7 }), '7 of 10 recovery codes left.');
  t.equal(english('securityRecoveryLeft'), '{left} of 10 recovery codes left.', 'a missing parameter stays visible');
});
