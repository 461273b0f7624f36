// Legacy authentication: credentials that would let a password alone reach the portal (SECURITY R57, C-28..C-30).

// Schemes that carry a password (or a Windows logon) straight to the portal, skipping the second factor. Whatever
// follows the name: Spring Security takes `BasicXYWxp…` (anything in the sixth place) and Apache Shiro `Basicx YWxp…`
// for Basic.
const LEGACY_SCHEME = /^\s*(basic|digest|ntlm|negotiate)/i;
// Windows logons sign in the connection, not the request: the portal would take every later request on that
// (shared, kept-alive) portal connection as the same account, whoever's browser sent it.
const CONNECTION_SCHEME = /^\s*(ntlm|negotiate)/i;

/**
 * Credentials that let a password alone reach the portal: 'request' (Basic, Digest, the login form's fields in the
 * query) or 'connection' (NTLM, Negotiate); false for none.
 */
export type LegacyCredentials = false | 'request' | 'connection';

/**
 * Whether a portal matching names loosely would read `name` as the configured `field` (SECURITY C-35): the field's
 * keys begin the keys of the name as PHP reads it or as a lenient parser (older Rack) does, each key compared
 * case-insensitively and ignoring -, _, . and whitespace (PHP drops leading spaces and turns spaces and dots into _),
 * and a name only up to a NUL (where PHP ends it). So `name[]` and `name[x]` are the field `name` (PHP, Rails and qs
 * read them so), and `login[username]x` is `login[username]` (PHP ignores what follows the last `]`).
 */
export function sameFieldName(name: string, field: string): boolean {
  const want = phpKeys(field).map(foldKey);
  const cut = name.split('\0', 1)[0]!;
  const begins = (keys: string[]) => want.every((k, i) => i < keys.length && foldKey(keys[i]!) === k);
  return begins(phpKeys(cut)) || begins(cut.split(/[[\]]+/).filter(Boolean));
}

/** The configured name(s) of the username field (portal.login.usernameField: one, or a list). */
export function usernameFields(login: { usernameField: string | readonly string[] }): readonly string[] {
  return typeof login.usernameField === 'string' ? [login.usernameField] : login.usernameField;
}

/** Every configured login field: the username field(s) and the password field. */
export function loginFields(login: { usernameField: string | readonly string[]; passwordField: string }): string[] {
  return [...usernameFields(login), login.passwordField];
}

/**
 * Whether a form or JSON field is named as login forms commonly name their username (`j_username`, `UserName`,
 * `email`, `login_id`, ASP.NET's `ctl00$Main$UserName`...): a field the portal may read the username from at a login
 * path whose field the configuration does not name. The whole name is compared, folded, also as PHP reads it
 * (`user[name` is user_name) and as a list (`email[]`, `email[0]`: PHP, Rails and qs read a list of one), but not
 * by an array key (`user[password]` is not `user`); an ASP.NET name by its last part. Not `login`, which names many
 * a form's submit button.
 */
export function namedLikeAUsername(name: string): boolean {
  const whole = name.split('\0', 1)[0]!;
  const [first = '', ...rest] = phpKeys(whole);
  const readings = [whole, whole.slice(whole.lastIndexOf('$') + 1), ...(rest.every((k) => /^\d*$/.test(k)) ? [first] : [])];
  return readings.some((r) => USERNAME_NAMES.has(foldKey(r)));
}

const USERNAME_NAMES = new Set(['username', 'jusername', 'user', 'userid', 'loginid', 'loginname', 'logonname', 'email', 'emailaddress']);

/**
 * A key as the loosest comparison reads it: case-insensitive as Java's equalsIgnoreCase or Python's casefold (`ſ` is
 * s, `ı` and `İ` are i, `ｕ` is u), accents dropped, and without -, _, . and whitespace.
 */
const foldKey = (key: string) => unmarked(unmarked(key).toUpperCase().toLowerCase()).replace(/[-_.\s]/g, '');
// Compatibility forms decomposed first (`𝐔` is U), then accents dropped.
const unmarked = (s: string) => s.normalize('NFKD').replace(/\p{M}/gu, '');

/**
 * The keys PHP reads a field name as: `a[b][c]` is a, b, c. A [ without a ] after it is no array: PHP turns it into
 * _ (`user[name` is user_name), and what follows a ] that no [ follows is ignored.
 */
function phpKeys(name: string): string[] {
  const open = name.indexOf('[');
  if (open === -1 || name.indexOf(']', open) === -1) return [name.replaceAll('[', '_')];
  const keys = [name.slice(0, open)];
  for (let at = open; name[at] === '['; ) {
    const close = name.indexOf(']', at + 1);
    if (close === -1) break;
    keys.push(name.slice(at + 1, close));
    at = close + 1;
  }
  return keys;
}

/** Authorization with a legacy scheme, or one of the login form's fields (in any spelling) in the query string. */
export function carriesLegacyCredentials(authorization: string | undefined, query: string, loginFields: readonly string[]): LegacyCredentials {
  if (authorization !== undefined && LEGACY_SCHEME.test(authorization)) return CONNECTION_SCHEME.test(authorization) ? 'connection' : 'request';
  return queryFieldNames(query).some((key) => loginFields.some((f) => sameFieldName(key, f))) && 'request';
}

/**
 * Whether a query holds one of the login form's fields inside another (`session[username]`): on the login request,
 * Rails then reads that wrapper instead of wrapping the body itself. Elsewhere such fields are ordinary
 * (`filter[username]`).
 */
export function queryWrapsLoginField(query: string, loginFields: readonly string[]): boolean {
  return queryFieldNames(query).some((key) => key.split(/[[\]]+/).slice(1).some((inner) => loginFields.some((f) => sameFieldName(inner, f))));
}

/**
 * The field names of a query string as the most lenient portal reads them: names after a ";" too (some split query
 * fields on it as on "&"), and `%uXXXX` as the character XXXX, as ASP.NET and older Jetty decode it
 * (`%u0075sername` is their `username`).
 */
export function queryFieldNames(query: string): string[] {
  return queryFields(query).map(([name]) => name);
}

/** The fields of a query string, name and value, read as queryFieldNames reads them. */
export function queryFields(query: string): [string, string][] {
  return query ? [...new URLSearchParams(query.replaceAll(';', '&').replace(/%u([0-9A-Fa-f]{4})/g, utf8Escape))] : [];
}

function utf8Escape(_: string, hex: string): string {
  const ch = String.fromCharCode(parseInt(hex, 16));
  return /[\uD800-\uDFFF]/.test(ch) ? '%EF%BF%BD' : encodeURIComponent(ch);
}
