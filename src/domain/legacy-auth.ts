// Legacy authentication: credentials that would let a password alone reach the portal (SECURITY R57, C-28..C-30).

// Schemes that carry a password (or a Windows logon) straight to the portal, skipping the second factor.
const LEGACY_SCHEME = /^\s*(basic|digest|ntlm|negotiate)(\s|$)/i;

/**
 * Field names a loosely matching portal would read as the same field: case-insensitive, ignoring -, _, . and
 * whitespace (PHP turns . and spaces into _), and only up to a NUL or a [ (PHP ends a name at a NUL, and PHP, Rails
 * and qs read `name[]` or `name[x]` as the field `name`).
 */
export function sameFieldName(a: string, b: string): boolean {
  const fold = (s: string) => s.split(/[\0[]/, 1)[0]!.toLowerCase().replace(/[-_.\s]/g, '');
  return fold(a) === fold(b);
}

/** Authorization with a legacy scheme, or one of the login form's fields (in any spelling) in the query string. */
export function carriesLegacyCredentials(authorization: string | undefined, query: string, loginFields: readonly string[]): boolean {
  if (authorization !== undefined && LEGACY_SCHEME.test(authorization)) return true;
  if (!query) return false;
  for (const key of new URLSearchParams(query).keys()) {
    if (loginFields.some((f) => sameFieldName(key, f))) return true;
  }
  return false;
}
