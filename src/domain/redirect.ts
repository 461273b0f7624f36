// Redirect safety: only relative paths on the portal's own origin are followed; anything else becomes '/'.

/** Returns a path+query on `origin`, or '/' for anything that could lead elsewhere (RFC 9700 §4.11). */
export function safeRelativeTarget(target: string | undefined, origin: string): string {
  if (!target) return '/';
  // Backslashes, whitespace and control characters are read as '/' or dropped by some browsers.
  if (/[\\\s\p{Cc}]/u.test(target)) return '/';
  let url: URL;
  try {
    url = new URL(target, origin);
  } catch {
    return '/';
  }
  if (url.origin !== new URL(origin).origin) return '/';
  const rel = `${url.pathname}${url.search}`;
  return rel.startsWith('/') && !rel.startsWith('//') ? rel : '/';
}
