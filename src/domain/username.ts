// Canonical usernames: spelling variants of one account share one identity, one factor set and one limit.

export type UsernameCase = 'lower' | 'preserve';

const MAX_LENGTH = 256;

/**
 * Trim, Unicode NFKC, optional lower-casing; null when nothing usable is left, or invisible characters or lone
 * surrogates appear. NFKC folds compatibility forms (full-width `ａlice`, ligatures) into the letters a portal's
 * collation may take them for; invisible characters (controls, zero-width and other format characters, soft hyphens)
 * are refused rather than dropped: a portal that ignores them would read another spelling of an account as the
 * account itself.
 */
/**
 * The account name a sign-in uses for `raw`: canonical, and matching `usernamePattern` (anchored: the whole name) when
 * one is configured; null when no sign-in could use it. The login uses it, and the admin commands for what they make
 * for a name (an enrolment code, a device bound to it).
 */
export function accountNames(login: { usernameCase: UsernameCase; usernamePattern?: string | undefined }): (raw: string) => string | null {
  const pattern = login.usernamePattern === undefined ? undefined : new RegExp(`^(?:${login.usernamePattern})$`);
  return (raw) => {
    const name = canonicalUsername(raw, login.usernameCase);
    return name !== null && (!pattern || pattern.test(name)) ? name : null;
  };
}

export function canonicalUsername(raw: string, rule: UsernameCase): string | null {
  const trimmed = raw.normalize('NFKC').trim();
  if (trimmed.length === 0 || trimmed.length > MAX_LENGTH) return null;
  // Control characters would also smuggle line breaks into logs. The zero-width (non-)joiner is part of how Persian
  // and Indic names are written: allowed between two letters or marks of such a script, never in Latin, Greek or
  // Cyrillic (no name there has one, and `ali\u200dce` would pass for alice).
  const visible = trimmed.replace(/(?<=[\p{L}\p{M}](?<![\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]))[\u200c\u200d](?=[\p{L}\p{M}](?<![\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]))/gu, '');
  // A lone surrogate (a JSON body's "\ud800") is no character at all: UTF-8 turns it into U+FFFD, so two names
  // would share one identity, and it cannot be put in a header.
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\p{Cs}]/u.test(visible)) return null;
  return rule === 'lower' ? trimmed.toLowerCase() : trimmed;
}
