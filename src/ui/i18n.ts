// The message catalogue: English built in, other languages dropped in as JSON files; one language per request.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import en from './locales/en.json' with { type: 'json' };

export type MessageKey = keyof typeof en;
/** A message in the request's language, with `{name}` placeholders filled in. */
export type Translate = (key: MessageKey, params?: Record<string, string | number>) => string;

type Catalogue = Readonly<Record<string, string>>;

export class Messages {
  private readonly catalogues = new Map<string, Catalogue>([['en', en]]);
  /** The direction of each catalogue's language, and its script (see scriptOf), worked out once. */
  private readonly directions = new Map<string, 'ltr' | 'rtl'>();
  private readonly scripts = new Map<string, string | undefined>();
  /** Of each catalogue that leaves messages out: their English texts (see englishText). */
  private readonly fallbacks = new Map<string, RegExp>();
  /** Catalogues that leave messages out (shown in English, marked so on the pages). */
  readonly incomplete: { file: string; missing: string[] }[] = [];

  /**
   * `dir`: a folder of `<language>.json` files (e.g. `mi.json`, `pt-BR.json`) with the same keys as the English
   * catalogue; a key left out falls back to English. An unknown key, a file name that is no language tag, and a
   * message whose placeholders differ from English's (one left out would drop the number of tries left, or make
   * every factor's Rename and Remove buttons read the same) are errors.
   */
  constructor(dir: string | undefined, defaultLanguage = 'en') {
    for (const file of dir ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []) {
      const lang = file.slice(0, -5).toLowerCase();
      if (!LANGUAGE_TAG.test(lang)) throw new Error(`${file}: the name is not a language tag (such as mi.json or pt-BR.json)`);
      let messages: Record<string, unknown>;
      try {
        messages = JSON.parse(readFileSync(join(dir!, file), 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new Error(`${file}: ${(err as Error).message}`);
      }
      // A list or a plain value would be read as messages named 0, 1, … (or none), not as the file it is.
      if (typeof messages !== 'object' || messages === null || Array.isArray(messages)) throw new Error(`${file}: not an object of messages ({"name": "text", …})`);
      for (const [key, text] of Object.entries(messages)) {
        if (!Object.hasOwn(en, key)) throw new Error(`${file}: unknown message ${key}`);
        if (typeof text !== 'string') throw new Error(`${file}: message ${key} is not text`);
        const [theirs, english] = [placeholders(text), placeholders(en[key as MessageKey])];
        const unknown = theirs.filter((p) => !english.includes(p));
        if (unknown.length) throw new Error(`${file}: message ${key} uses ${unknown.map((p) => `{${p}}`).join(', ')}, which English does not`);
        const left = english.filter((p) => !theirs.includes(p));
        if (left.length) throw new Error(`${file}: message ${key} leaves out ${left.map((p) => `{${p}}`).join(', ')}, which English has`);
      }
      this.catalogues.set(lang, { ...en, ...(messages as Catalogue) });
      const missing = Object.keys(en).filter((key) => !Object.hasOwn(messages, key));
      // English variants (en-GB) fall back to their own language.
      if (missing.length && lang.split('-')[0] !== 'en') {
        this.incomplete.push({ file, missing });
        this.fallbacks.set(lang, englishText(missing));
      }
    }
    this.defaultLanguage = defaultLanguage.toLowerCase();
    if (!this.catalogues.has(this.defaultLanguage)) throw new Error(`no messages for the default language ${defaultLanguage}`);
    for (const lang of this.catalogues.keys()) {
      this.directions.set(lang, textDirection(lang));
      this.scripts.set(lang, scriptOf(lang));
    }
  }

  readonly defaultLanguage: string;

  get languages(): string[] {
    return [...this.catalogues.keys()];
  }

  /**
   * The best language for an Accept-Language header, the direction of its script, its translate function, and
   * whether a text from it is a message the catalogue leaves out, shown in English (to be marked so on a page).
   */
  forRequest(acceptLanguage: string | undefined): { lang: string; dir: 'ltr' | 'rtl'; t: Translate; english: (text: string) => boolean } {
    const lang = negotiate(acceptLanguage, this.scripts) ?? this.defaultLanguage;
    const catalogue = this.catalogues.get(lang)!;
    const fallbacks = this.fallbacks.get(lang);
    return {
      lang,
      dir: this.directions.get(lang)!,
      t: (key, params) => fill(catalogue[key] ?? en[key], params),
      english: (text) => fallbacks?.test(text) ?? false,
    };
  }
}

/** English, for text that has no request (logs, the CLI). */
export const english: Translate = (key, params) => fill(en[key], params);

function fill(text: string, params: Record<string, string | number> | undefined): string {
  return params ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m)) : text;
}

/**
 * The English texts of the messages a catalogue leaves out, with any values filled in (a page gets "Attempts left: 3",
 * not the message's key): each message's words as they are, each placeholder any text. By text, so that a message
 * reaches the page as a string wherever it was looked up (a route's error, a field's label). A translated message
 * that reads as one of those (its translator kept the English) is taken as English too, which it is.
 */
function englishText(missing: string[]): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^(?:${missing.map((key) => en[key as MessageKey].split(/\{\w+\}/).map(escape).join('[^]*')).join('|')})$`);
}

function placeholders(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
}

// The living scripts written right to left: Arabic, Hebrew, Syriac, Thaana, N'Ko, Adlam, Hanifi Rohingya.
const RIGHT_TO_LEFT = new Set(['Arab', 'Hebr', 'Syrc', 'Thaa', 'Nkoo', 'Adlm', 'Rohg']);

/**
 * Right to left for a language whose script (named in its tag, or its usual one) is written so: ar, he, fa, ur,
 * ku-Arab… A tag Intl does not take (`zh-yue`, an extended language subtag) goes by its primary language.
 */
function textDirection(lang: string): 'ltr' | 'rtl' {
  return RIGHT_TO_LEFT.has(scriptOf(lang) ?? scriptOf(lang.split('-', 1)[0]!) ?? '') ? 'rtl' : 'ltr';
}

/** The script of a language tag, named in it or its usual one (`zh-TW`: Hant); none for a tag Intl does not take. */
function scriptOf(tag: string): string | undefined {
  try {
    return new Intl.Locale(tag).maximize().script;
  } catch {
    return undefined;
  }
}

/** A language tag as a catalogue's file name gives it (lower case): a primary language and subtags. */
const LANGUAGE_TAG = /^[a-z]{2,3}(-[a-z0-9]{1,8})*$/;

/**
 * RFC 9110 §12.5.4: the highest-weighted language we have, by full tag, or else by the closest other tag of that
 * language: in the same script first (`zh-tw` finds `zh-hant`, not `zh-hans`), then a shorter form of the tag
 * (`mi-nz` finds `mi`), then the most subtags in common (`pt` finds `pt-br`). A weight that is not one (`q=abc`,
 * `q=5`) leaves its language out. `have`: the catalogues' languages, each with its script.
 */
function negotiate(header: string | undefined, have: ReadonlyMap<string, string | undefined>): string | undefined {
  if (!header) return undefined;
  const wanted = header
    .split(',')
    .slice(0, 20)
    .map((part) => {
      const [tag = '', ...params] = part.trim().toLowerCase().split(';');
      const weight = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      const q = weight === undefined ? 1 : /^q=(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(weight) ? Number(weight.slice(2)) : NaN;
      return { tag: tag.trim(), q };
    });
  // q=0: not wanted, also where another tag would lead to it (`pt-BR;q=0, pt`).
  const refused = new Set(wanted.filter((w) => w.q === 0).map((w) => w.tag));
  const usable = (lang: string) => have.has(lang) && !refused.has(lang);
  for (const { tag } of wanted.filter((w) => w.q > 0).sort((a, b) => b.q - a.q)) {
    if (usable(tag)) return tag;
    const subtags = tag.split('-');
    const script = scriptOf(tag);
    const closeness = (lang: string) => {
      const theirs = lang.split('-');
      const shared = theirs.findIndex((s, i) => s !== subtags[i]);
      return [script !== undefined && have.get(lang) === script ? 1 : 0, shared === -1 ? 1 : 0, shared === -1 ? theirs.length : shared];
    };
    // Stable: of equally close ones, the first catalogue.
    const closest = [...have.keys()]
      .filter((lang) => lang.split('-')[0] === subtags[0] && usable(lang))
      .map((lang) => ({ lang, rank: closeness(lang) }))
      .sort((a, b) => b.rank[0]! - a.rank[0]! || b.rank[1]! - a.rank[1]! || b.rank[2]! - a.rank[2]!)[0];
    if (closest) return closest.lang;
  }
  return undefined;
}
