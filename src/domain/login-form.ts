// Reads a portal's login page as a browser fills it in: the form that holds the username field, and what it sends.

export interface LoginForm {
  /** The action as written, the first submit button's formaction if it has one, else the form's (undefined: the page's own address). */
  action: string | undefined;
  /** The page's `<base href>` as written, which an action is read from instead of the page's address (undefined: none). */
  base: string | undefined;
  /** Upper case, the first submit button's formmethod if it has one, else the form's; a form without one sends GET. */
  method: string;
  /**
   * How a POST encodes the fields, lower case: application/x-www-form-urlencoded (also for none, or one a browser does
   * not know), multipart/form-data or text/plain; the first submit button's formenctype, if it has one, else the form's.
   */
  enctype: string;
  /** The username field the form holds (one of the configured names). */
  usernameField: string;
  /** Every field the form sends as it stands, in order: hidden fields (a CSRF token) above all. */
  fields: [string, string][];
}

// A tag's attributes, quoted values and all: a `>` inside quotes does not end the tag. A tag or a quote never closed
// runs to the page's end, as a browser reads it: a tag is then never read a long way only to be given up, which, tried
// again at each `<form` or `<input` after it, would take time quadratic in the page's length (minutes for a 1 MiB page).
const ATTRIBUTES = String.raw`((?:[^>"']|"[^"]*(?:"|$)|'[^']*(?:'|$))*)(?:>|$)`;
const FORM = new RegExp(String.raw`<form\b${ATTRIBUTES}([\s\S]*?)(?:</form\s*>|$)`, 'gi');
const BASE = new RegExp(String.raw`<base\b${ATTRIBUTES}`, 'gi');
// A field: an input or button tag; a textarea with its text, which no tag ends but its end tag; a select with its
// options, ended as a browser ends it, also by a field it cannot hold (a select left open stops at the next input).
// A textarea or select never closed runs to the page's end, as a tag does, for the same reason.
const FIELD = new RegExp(
  String.raw`<(input|button)\b${ATTRIBUTES}|<(textarea)\b${ATTRIBUTES}([\s\S]*?)(?:</textarea\s*>|$)|<(select)\b${ATTRIBUTES}([\s\S]*?)(?:</select\s*>|(?=<(?:input|keygen|select|textarea)\b)|$)`,
  'gi',
);
// An option's text runs to the next option or group (a browser ignores the tags in it).
const OPTION = new RegExp(String.raw`<option\b${ATTRIBUTES}([\s\S]*?)(?=</?(?:option|optgroup)\b|$)`, 'gi');
const ATTRIBUTE = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
// The encodings a form can send its fields in (HTML's enctype keywords).
const ENCTYPES = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);
// Inputs a browser sends only when clicked or chosen, or never as text.
const NOT_SENT = new Set(['submit', 'image', 'button', 'reset', 'file']);

/**
 * The first form of the page with an input named as one of `usernameFields`, or null. Its inputs, buttons, selects and
 * textareas are read; a checkbox or radio button is sent only when checked, a disabled field never, a button only
 * when it is the first submit button, a select with its chosen options (see chosenOptions).
 * Comments and scripts are left out first: a form written there is none the browser shows.
 */
export function loginFormOf(html: string, usernameFields: readonly string[]): LoginForm | null {
  const page = html.replace(/<!--[\s\S]*?(?:-->|$)/g, '').replace(/<(script|style|template)\b[\s\S]*?(?:<\/\1\s*>|$)/gi, '');
  for (const [, formAttributes = '', content = ''] of page.matchAll(FORM)) {
    const tags = [...content.matchAll(FIELD)].map((m): Field => ({ tag: (m[1] ?? m[3] ?? m[6])!.toLowerCase(), attributes: attributesOf(m[2] ?? m[4] ?? m[7] ?? ''), content: m[5] ?? m[8] ?? '' }));
    const inputs = tags.filter((t) => t.tag === 'input').map((t) => t.attributes);
    const usernameField = usernameFields.find((f) => inputs.some((i) => i.get('name') === f));
    if (usernameField === undefined) continue;
    const form = attributesOf(formAttributes);
    // The first submit button goes with the form, as its click or Enter sends it: many portals sign in only with its
    // name in the body (PHP's `isset($_POST['login'])`).
    const submitter = tags.find(isSubmitButton);
    const fields: [string, string][] = [];
    for (const field of tags) fields.push(...(field === submitter ? submitted(field) : sent(field)));
    // Its formaction, formmethod and formenctype, where it has them, stand for the form's.
    const chosen = (attribute: string) => submitter?.attributes.get(`form${attribute}`) ?? form.get(attribute);
    const enctype = (chosen('enctype') ?? '').toLowerCase();
    return { action: chosen('action') || undefined, base: baseOf(page), method: (chosen('method') ?? 'GET').toUpperCase(), enctype: ENCTYPES.has(enctype) ? enctype : 'application/x-www-form-urlencoded', usernameField, fields };
  }
  return null;
}

/** The href of the page's first base element that has one, as browsers take it (wherever it stands). */
function baseOf(page: string): string | undefined {
  for (const [, attributes = ''] of page.matchAll(BASE)) {
    const href = attributesOf(attributes).get('href');
    if (href !== undefined) return href;
  }
  return undefined;
}

interface Field {
  tag: string;
  attributes: Map<string, string>;
  /** A textarea's or a select's, as written. */
  content: string;
}

/** What a field other than the submitter adds to its form. */
function sent({ tag, attributes, content }: Field): [string, string][] {
  const name = attributes.get('name');
  if (!name || attributes.has('disabled')) return [];
  if (tag === 'select') return chosenOptions(attributes, content).map((value) => [name, value]);
  // The parser drops a newline right after the start tag; a form sends each line break as CRLF.
  if (tag === 'textarea') return [[name, decodeEntities(content.replace(/^(?:\r\n?|\n)/, '')).replace(/\r\n?|\n/g, '\r\n')]];
  const type = (attributes.get('type') ?? 'text').toLowerCase();
  if (tag !== 'input' || NOT_SENT.has(type) || ((type === 'checkbox' || type === 'radio') && !attributes.has('checked'))) return [];
  return [[name, attributes.get('value') ?? (type === 'checkbox' || type === 'radio' ? 'on' : '')]];
}

/**
 * The values a select sends, as a browser chooses them: with `multiple`, each option marked selected; else the last
 * one marked (as the parser leaves it), or when none is, the first that is not disabled, unless the select shows
 * several rows (`size`), which then chooses none. A disabled option is never sent. An option's value is its `value`,
 * else its text with ASCII spaces collapsed and trimmed (a no-break space stays).
 */
function chosenOptions(select: Map<string, string>, content: string): string[] {
  const options = [...content.matchAll(OPTION)].map(([, attributes = '', text = '']) => ({ attributes: attributesOf(attributes), text }));
  const marked = options.filter((o) => o.attributes.has('selected'));
  const rows = parseInt(select.get('size') ?? '', 10) > 1;
  const chosen = select.has('multiple') ? marked : marked.length ? marked.slice(-1) : rows ? [] : options.filter((o) => !o.attributes.has('disabled')).slice(0, 1);
  return chosen
    .filter((o) => !o.attributes.has('disabled'))
    .map((o) => o.attributes.get('value') ?? decodeEntities(o.text.replace(/<\/?[a-z][^>]*>?/gi, '')).replace(/[\t\n\f\r ]+/g, ' ').replace(/^ | $/g, ''));
}

function isSubmitButton({ tag, attributes }: Field): boolean {
  const type = (attributes.get('type') ?? (tag === 'button' ? 'submit' : 'text')).toLowerCase();
  return type === 'submit' || (tag === 'input' && type === 'image');
}

/** What a submit button adds to its form: its name and value, or an image button's click point (Enter's: 0, 0). */
function submitted({ tag, attributes }: Field): [string, string][] {
  if (attributes.has('disabled')) return [];
  const name = attributes.get('name') ?? '';
  const at = name ? `${name}.` : '';
  if (tag === 'input' && attributes.get('type')!.toLowerCase() === 'image') return [[`${at}x`, '0'], [`${at}y`, '0']];
  return name ? [[name, attributes.get('value') ?? '']] : [];
}

/** A tag's attributes by lower-case name, values with their character references decoded; the first of a name counts. */
function attributesOf(text: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const [, name = '', double, single, bare] of text.matchAll(ATTRIBUTE)) {
    const key = name.toLowerCase();
    if (!attributes.has(key)) attributes.set(key, decodeEntities(double ?? single ?? bare ?? ''));
  }
  return attributes;
}

const NAMED = new Map([['amp', '&'], ['lt', '<'], ['gt', '>'], ['quot', '"'], ['apos', "'"], ['nbsp', '\u00a0']]);

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref: string) => {
    if (ref[0] !== '#') return NAMED.get(ref.toLowerCase()) ?? whole;
    const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}
