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

  /**
   * `dir`: a folder of `<language>.json` files (e.g. `mi.json`) with the same keys as the English catalogue; a key
   * left out falls back to English, an unknown key or a placeholder that English does not have is an error.
   */
  constructor(dir: string | undefined, readonly defaultLanguage = 'en') {
    for (const file of dir ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []) {
      const lang = file.slice(0, -5).toLowerCase();
      const messages = JSON.parse(readFileSync(join(dir!, file), 'utf8')) as Record<string, unknown>;
      for (const [key, text] of Object.entries(messages)) {
        if (!(key in en)) throw new Error(`${file}: unknown message ${key}`);
        if (typeof text !== 'string') throw new Error(`${file}: message ${key} is not text`);
        const unknown = placeholders(text).filter((p) => !placeholders(en[key as MessageKey]).includes(p));
        if (unknown.length) throw new Error(`${file}: message ${key} uses ${unknown.map((p) => `{${p}}`).join(', ')}, which English does not`);
      }
      this.catalogues.set(lang, { ...en, ...(messages as Catalogue) });
    }
    if (!this.catalogues.has(defaultLanguage)) throw new Error(`no messages for the default language ${defaultLanguage}`);
  }

  get languages(): string[] {
    return [...this.catalogues.keys()];
  }

  /** The best language for an Accept-Language header, and its translate function. */
  forRequest(acceptLanguage: string | undefined): { lang: string; t: Translate } {
    const lang = negotiate(acceptLanguage, this.catalogues) ?? this.defaultLanguage;
    const catalogue = this.catalogues.get(lang)!;
    return { lang, t: (key, params) => fill(catalogue[key] ?? en[key], params) };
  }
}

/** English, for text that has no request (logs, the CLI). */
export const english: Translate = (key, params) => fill(en[key], params);

function fill(text: string, params: Record<string, string | number> | undefined): string {
  return params ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m)) : text;
}

function placeholders(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
}

/** RFC 9110 §12.5.4: the highest-weighted language we have, by full tag or by primary subtag. */
function negotiate(header: string | undefined, have: ReadonlyMap<string, unknown>): string | undefined {
  if (!header) return undefined;
  const wanted = header
    .split(',')
    .slice(0, 20)
    .map((part) => {
      const [tag = '', ...params] = part.trim().toLowerCase().split(';');
      const q = Number(/^\s*q=([0-9.]+)\s*$/.exec(params.find((p) => p.trim().startsWith('q=')) ?? '')?.[1] ?? 1);
      return { tag: tag.trim(), q: Number.isFinite(q) ? q : 0 };
    })
    .filter((w) => w.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const { tag } of wanted) {
    if (have.has(tag)) return tag;
    const primary = tag.split('-')[0]!;
    if (have.has(primary)) return primary;
  }
  return undefined;
}
