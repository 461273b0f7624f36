// Legacy authentication: credentials that would let a password alone reach the portal (SECURITY R57, C-28..C-30).

// Schemes that carry a password (or a Windows logon) straight to the portal, skipping the second factor.
const LEGACY_SCHEME = /^\s*(basic|digest|ntlm|negotiate)(\s|$)/i;

/**
 * Whether a portal matching names loosely would read `name` as the configured `field`: case-insensitive, ignoring
 * -, _, . and whitespace (PHP turns . and spaces into _), only up to a NUL (where PHP ends a name), and, for a field
 * without brackets of its own, only up to a [ (PHP, Rails and qs read `name[]` or `name[x]` as the field `name`).
 */
export function sameFieldName(name: string, field: string): boolean {
  const cut = field.includes('[') ? /\0/ : /[\0[]/;
  const fold = (s: string) => s.split(cut, 1)[0]!.toLowerCase().replace(/[-_.\s]/g, '');
  return fold(name) === fold(field);
}

/** Authorization with a legacy scheme, or one of the login form's fields (in any spelling) in the query string. */
export function carriesLegacyCredentials(authorization: string | undefined, query: string, loginFields: readonly string[]): boolean {
  if (authorization !== undefined && LEGACY_SCHEME.test(authorization)) return true;
  return queryFieldNames(query).some((key) => loginFields.some((f) => sameFieldName(key, f)));
}

/** The field names of a query string, names after a ";" too: some portals split query fields on it as on "&". */
export function queryFieldNames(query: string): string[] {
  return query ? [...new URLSearchParams(query.replaceAll(';', '&')).keys()] : [];
}
