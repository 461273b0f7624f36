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
  t.same(m.incomplete.map((c) => [c.file, c.missing.length]), [['mi.json', Object.keys(en).length - 2]], 'and said, for config check');
  t.same(new Messages(localesDir({ 'mi.json': en })).incomplete, [], 'a whole catalogue is not');
  t.same(new Messages(localesDir({ 'en-GB.json': { cancel: 'Cancel' } })).incomplete, [], 'nor an English variant (its fallbacks are its language)');
  t.equal(m.forRequest('de, fr;q=0.9').lang, 'en', 'none we have: the default');
  t.equal(m.forRequest('en;q=0.1, mi;q=0.9').lang, 'mi', 'by weight');
  t.equal(m.forRequest('mi;q=0, en').lang, 'en', 'q=0 means not wanted');
  t.equal(m.forRequest(undefined).lang, 'en');
  t.equal(m.forRequest('*').lang, 'en');
  // A weight that is not one leaves its language out, rather than putting it first.
  for (const bad of ['q=abc', 'q=-1', 'q=5', 'q=1.5', 'q=0.1234']) t.equal(m.forRequest(`mi;${bad}, en;q=0.5`).lang, 'en', bad);
  t.equal(m.forRequest('mi;q=0.001, en;q=0').lang, 'mi', 'three decimals');
  t.equal(m.forRequest('mi;Q=1.0').lang, 'mi', 'q in capitals');
});

t.test('a text is known as English where the catalogue left its message out, with any values filled in', async (t) => {
  const m = new Messages(localesDir({ 'mi.json': { verifyTitle: 'Whakaū ko koe tēnei', securityRemove: 'Tangohia {name}' }, 'en-GB.json': { cancel: 'Cancel' } }));
  const mi = m.forRequest('mi');
  t.ok(mi.english(mi.t('verifySubmit')), 'left out');
  t.ok(mi.english(mi.t('wrongCode', { left: 3 })), 'with a value');
  t.ok(mi.english(mi.t('securityRemoveTitle', { name: 'Blue key (1)?' })), "with a value that has the pattern's characters in it");
  t.ok(mi.english(mi.t('securityRemoveTitle')), 'with its placeholder left as it is');
  t.notOk(mi.english(mi.t('verifyTitle')), 'translated');
  t.notOk(mi.english(mi.t('securityRemove', { name: 'Remove Blue key' })), 'translated, whatever the value');
  t.notOk(mi.english(`${en.verifySubmit}!`), 'the whole text, not a part');
  t.notOk(mi.english(mi.t('wrongCode', { left: 3 }).replace('.', '!')), 'the words as they are: a full stop is no pattern');
  t.notOk(m.forRequest('en').english(en.verifySubmit), 'nothing on an English page');
  t.notOk(m.forRequest('en-GB').english(en.verifySubmit), 'nor on one in a variant of English');
});

t.test('the direction of each language: right to left for those written so', async (t) => {
  const m = new Messages(localesDir({ 'ar.json': {}, 'he.json': {}, 'fa-IR.json': {}, 'ur.json': {}, 'dv.json': {}, 'mi.json': {}, 'ku-Arab.json': {}, 'pa.json': {} }));
  for (const [lang, dir] of [['ar', 'rtl'], ['he', 'rtl'], ['fa-IR', 'rtl'], ['ur', 'rtl'], ['dv', 'rtl'], ['ku-Arab', 'rtl'], ['pa', 'ltr'], ['mi', 'ltr'], ['en', 'ltr']] as const) {
    t.equal(m.forRequest(lang).dir, dir, lang);
  }
  // Language tags Intl does not take (an extended language subtag, a grandfathered tag) go by their primary language.
  const odd = new Messages(localesDir({ 'zh-yue.json': {}, 'ar-aao.json': {}, 'en-gb-oed.json': {} }), 'zh-yue');
  for (const [lang, dir] of [['zh-yue', 'ltr'], ['ar-aao', 'rtl'], ['en-gb-oed', 'ltr']] as const) t.equal(odd.forRequest(lang).dir, dir, lang);
  t.equal(odd.forRequest(undefined).lang, 'zh-yue', 'and one may be the default');
});

t.test('a catalogue with a region is found by its language too; file names and the default language in any case', async (t) => {
  const m = new Messages(localesDir({ 'pt-BR.json': { verifyTitle: 'Confirme' }, 'fr.json': {} }), 'PT-br');
  t.equal(m.defaultLanguage, 'pt-br');
  t.equal(m.forRequest('pt').lang, 'pt-br', 'pt finds pt-BR');
  t.equal(m.forRequest('pt-PT, fr;q=0.5').lang, 'pt-br', 'as does another region of it, before a lower weight');
  t.equal(m.forRequest('pt-BR').lang, 'pt-br');
  t.equal(m.forRequest('fr-CA, pt;q=0.5').lang, 'fr', 'the language itself before another region');
  const brazil = new Messages(localesDir({ 'pt-BR.json': {} }));
  t.equal(brazil.forRequest('pt-BR;q=0, pt').lang, 'en', 'q=0 refuses a catalogue another tag would lead to');
  t.equal(brazil.forRequest('pt-PT;q=0, pt').lang, 'pt-br', 'a refused region refuses only itself');
});

t.test('of several catalogues of a language, the one closest to the tag asked for', async (t) => {
  // Chinese in both scripts: Taiwan and Hong Kong read Traditional characters, the mainland and Singapore Simplified.
  const chinese = new Messages(localesDir({ 'zh-Hans.json': {}, 'zh-Hant.json': {} }));
  for (const [header, lang] of [['zh-TW,zh;q=0.9', 'zh-hant'], ['zh-HK', 'zh-hant'], ['zh-Hant-TW', 'zh-hant'], ['zh-CN', 'zh-hans'], ['zh', 'zh-hans'], ['zh-Hans-SG', 'zh-hans']]) {
    t.equal(chinese.forRequest(header).lang, lang, header);
  }
  const byRegion = new Messages(localesDir({ 'zh-CN.json': {}, 'zh-TW.json': {}, 'zh.json': {} }));
  t.equal(byRegion.forRequest('zh-HK').lang, 'zh-tw', 'a region of the same script, before the language itself in another');
  t.equal(byRegion.forRequest('zh-SG').lang, 'zh', 'the language itself, before another region of its script');
  const serbian = new Messages(localesDir({ 'sr-Cyrl.json': {}, 'sr-Latn.json': {} }));
  t.equal(serbian.forRequest('sr-Latn-RS').lang, 'sr-latn');
  t.equal(serbian.forRequest('sr-RS').lang, 'sr-cyrl', 'the script usual for the region');
  const portuguese = new Messages(localesDir({ 'pt.json': {}, 'pt-BR.json': {}, 'pt-BR-abl1943.json': {} }));
  t.equal(portuguese.forRequest('pt-PT').lang, 'pt', 'the language itself before another region');
  t.equal(portuguese.forRequest('pt-BR-x-foo').lang, 'pt-br', 'the longest shorter form');
});

t.test('a broken translation file is a start-up error naming the problem', async (t) => {
  t.throws(() => new Messages(localesDir({ 'xx.json': { noSuchMessage: 'x' } })), /xx\.json: unknown message noSuchMessage/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { wrongCode: 'Left: {remaining}' } })), /uses \{remaining\}, which English does not/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { wrongCode: 5 } })), /is not text/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { wrongCode: 'Wrong code.' } })), /xx\.json: message wrongCode leaves out \{left\}, which English has/);
  t.throws(() => new Messages(localesDir({ 'xx.json': { toString: 'x' } })), /unknown message toString/, 'names every object has are no messages');
  t.throws(() => new Messages(localesDir({ 'fr_CA.json': {} })), /fr_CA\.json: the name is not a language tag/);
  t.throws(() => new Messages(localesDir({ 'messages.json': {} })), /not a language tag/);
  t.throws(() => new Messages(localesDir({ 'xx.json': '{' })), /^xx\.json: .*JSON/, 'broken JSON: the file named');
  for (const content of [null, 'a string', ['Wrong code.'], 5]) {
    t.throws(() => new Messages(localesDir({ 'xx.json': JSON.stringify(content) })), { message: 'xx.json: not an object of messages ({"name": "text", …})' }, JSON.stringify(content));
  }
  t.doesNotThrow(() => new Messages(localesDir({ 'xx.json': {} })), 'an empty object is a catalogue leaving everything out');
  t.throws(() => new Messages(undefined, 'fr'), /no messages for the default language fr/);
  t.equal(new Messages(localesDir({ 'fr.json': {} }), 'fr').forRequest(undefined).lang, 'fr', 'a dropped-in default language');
});

t.test('every error code has a public message; placeholders are filled', async (t) => {
  for (const code of Object.keys(ERRORS)) t.ok((en as Record<string, string>)[`error.${code}`], code);
  t.equal(english('securityRecoveryLeft', { left: 7 }), '7 of 10 recovery codes left.');
  t.equal(english('securityRecoveryLeft'), '{left} of 10 recovery codes left.', 'a missing parameter stays visible');
});
