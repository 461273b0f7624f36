// One canonical form of a request path: what the gateway decides on is byte-for-byte what the portal receives.

export interface CanonicalTarget {
  /** Normalised, canonically percent-encoded path: what the portal receives. */
  path: string;
  /**
   * The path rules are matched against: `path` itself, or `path` without `;` parameters when they are allowed
   * (portals route on the segment names, so `/admin;x` is `/admin` to them).
   */
  matchPath: string;
  /** The query string without '?', forwarded unchanged; '' when absent. */
  query: string;
}

/** The path and the query (with its '?', when there is one) of a request, as a way back names it. */
export function pathAndQuery(t: { path: string; query: string }): string {
  return t.query ? `${t.path}?${t.query}` : t.path;
}

const MAX_PATH_CHARS = 4096;
// Characters left as they are in a path segment (RFC 3986 pchar minus '%' and ';').
const KEEP = /^[A-Za-z0-9\-._~!$&'()*+,=:@]$/;
const PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
// Characters Windows' best-fit conversion to an ANSI code page turns into `\` or `/`.
const BEST_FIT_SEPARATOR = /[\u00a5\u20a9\u2215\u2216\u2044]/;
// A name shaped as a Windows 8.3 short name (`ADMINI~1`, `REPORT~1.PDF`, `~ADMIN~1` of `~administration`): up to
// six characters, `~` and a number, an extension of up to three. Not any `~` and digit: `HEAD~1...main`, JSON
// Pointer's `~1` or a bundler's `vendors~main~4f6d7a3c.js` are other names.
const SHORT_NAME = /(^|\/)[^/.;]{1,6}~[0-9]{1,6}(\.[^/.;]{1,3})?(?=[/;]|$)/;
// Characters a portal or framework may strip as invisible (zero-width space, soft hyphen, BOM, bidi controls…).
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/u;
// Also names ending in a dot or starting with two: the slow path refuses those.
const DOT_OR_EMPTY = /\/\/|(^|\/)\.\.?(\/|$)|\.(\/|$)|\/\.\./;

/**
 * Decodes percent-encoding once, resolves dot segments and merges duplicate slashes. Returns null (targetOrRefusal says
 * why) for any input that two parsers could read differently: encoded '/' or '\', raw '\', NUL and control characters,
 * double encoding, invalid UTF-8, characters NFKC would change, invisible ones (Default_Ignorable_Code_Point) or ones
 * Windows would read as a separator, NTFS stream names (':$'), names shaped as Windows short names, names ending in '.'
 * or ' ' (before any parameters) or starting with '..', ';' path parameters (unless allowed; never on a dot segment,
 * never encoded), ASP.NET's cookieless `(S(…))` segments, fragments, absolute-form targets and ones starting with `//`
 * (an authority to URL parsers, which can carry `user:password@`), a query starting with '/', and a path longer than
 * 4096 characters.
 */
export function canonicalTarget(rawUrl: string, opts: { pathParameters?: boolean } = {}): CanonicalTarget | null {
  const target = targetOrRefusal(rawUrl, opts);
  return typeof target === 'string' ? null : target;
}

/** canonicalTarget's work: the canonical target, or why there is none, in words (`policy explain` says it). */
export function targetOrRefusal(rawUrl: string, opts: { pathParameters?: boolean } = {}): CanonicalTarget | string {
  if (!rawUrl.startsWith('/')) return "no path starting with '/' (an absolute URL, '*' or a relative path)";
  if (rawUrl.startsWith('//')) return "a target starting with '//', which URL parsers read as a host name (one that can carry user:password@)";
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  // IIS's own limit (maxUrl): no portal needs more, and it bounds the time rules with wildcards take to match.
  if (rawPath.length > MAX_PATH_CHARS) return 'a path longer than 4096 characters';
  const query = q === -1 ? '' : rawUrl.slice(q + 1);
  // A query that starts with '/' is the route to CodeIgniter (`/?/admin/users`, `/index.php?/login`): a path the
  // rules would never see.
  if (query.startsWith('/')) return "a query starting with '/', which a portal may route as a path (CodeIgniter's /?/admin)";
  // Most paths are already canonical: nothing encoded, no empty or dot segments, no segment starting with '(', no
  // short name.
  if (PLAIN.test(rawPath) && !DOT_OR_EMPTY.test(rawPath) && !rawPath.includes('/(') && !rawPath.includes(':') && !(rawPath.includes('~') && SHORT_NAME.test(rawPath)) && /^[\x21-\x7e]*$/.test(query) && !query.includes('#')) {
    return { path: rawPath, matchPath: rawPath, query };
  }
  // Only printable ASCII on the wire; '#' never belongs in a request target.
  if (!/^[\x21-\x7e]*$/.test(rawUrl)) return 'a character other than printable ASCII (a space, a control character, a letter not percent-encoded)';
  if (rawUrl.includes('#')) return "a '#', which never belongs in a request target";
  if (rawPath.includes('\\')) return "a '\\', which Windows servers read as '/'";
  if (rawPath.includes(';') && !opts.pathParameters) return "';' path parameters (server.pathParameters does not allow them)";
  const bytes: number[] = [];
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath.charCodeAt(i);
    if (ch !== 0x25) {
      bytes.push(ch);
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return "a '%' not followed by two hexadecimal digits";
    const b = parseInt(hex, 16);
    // Encoded separators, '%' (double encoding), ';', '?' and '#' (a portal that decodes before it splits the URL
    // reads `/admin%23/x` as `/admin`) and control characters are refused, not decoded.
    if (b === 0x2f || b === 0x5c || b === 0x25 || b === 0x3b || b === 0x3f || b === 0x23 || b < 0x20 || b === 0x7f) return encodedRefusal(b);
    // A decoded '/' never appears, so a decoded byte can never start a segment boundary; mark it for re-encoding.
    bytes.push(b);
    i += 2;
  }
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return 'percent-encoded bytes that are not UTF-8';
  }
  // A character that compatibility normalisation changes (fullwidth `ａ`, ligatures, superscripts) is another
  // character to a portal that applies NFKC or Windows' best-fit mapping: `/%EF%BD%81dmin` would be its `/admin`.
  // So is one that even canonical normalisation turns into ASCII (the Kelvin sign is `K`, U+037E is `;`). Names
  // in decomposed form (`u` and a combining diaeresis, as macOS writes them) are fine. A character that is invisible
  // by definition (zero-width space, soft hyphen, BOM, bidi controls, variation selectors) is one that portals and
  // frameworks strip: `/ad%E2%80%8Bmin` would be their `/admin`.
  if (/[^\x00-\x7f]/.test(decoded)) {
    if (IGNORABLE.test(decoded)) return 'an invisible character (a zero-width space, soft hyphen, BOM or bidi control), which portals may strip';
    if (normalisesAway(decoded)) return 'a character Unicode normalisation turns into another (a fullwidth letter, a ligature, a superscript)';
  }
  // Windows also maps characters NFKC keeps to a separator when a name goes through an ANSI code page ("best fit":
  // `¥` is `\` in Japanese, `₩` in Korean, `∕` and `⁄` are `/`), and NTFS reads `admin::$INDEX_ALLOCATION` and
  // `admin:$I30:$INDEX_ALLOCATION` as the folder `admin`: no stream name (`:$`) passes. Nor does an 8.3 short name:
  // where they are on (the default on system drives), `/ADMINI~1/` opens IIS's `/administration/`. Refused whatever
  // the portal runs on, as stream names are: a name of that shape is rare on any server.
  if (BEST_FIT_SEPARATOR.test(decoded)) return "a character Windows reads as '\\' or '/' (¥, ₩, ∕, ∖, ⁄)";
  if (decoded.includes(':$')) return "an NTFS stream name (':$', as in ::$DATA), which opens the file or folder before it";
  if (SHORT_NAME.test(decoded)) return 'a name shaped as a Windows 8.3 short name (ADMINI~1), which IIS may open as a longer name (/administration/)';
  const out: string[] = [];
  const segments = decoded.split('/').slice(1);
  // '..;x' is '..' to Tomcat and friends: a dot segment with parameters has no single reading. Nor has a segment of
  // parameters alone before another ('/;x/admin' is '//admin' to them, then '/admin'); only the last may be one
  // ('/app/;jsessionid=…', as servlet containers rewrite URLs).
  const parameters = segments.find((seg, i) => /^\.\.?;/.test(seg) || (seg.startsWith(';') && i < segments.length - 1));
  if (parameters !== undefined) {
    return parameters.startsWith(';') ? "a segment of ';' parameters alone before another ('/;x/admin' is '/admin' to servlet containers)" : "';' parameters on a dot segment ('..;x' is '..' to servlet containers)";
  }
  // Windows drops a name's trailing dots and spaces (`/admin.` is `/admin` to IIS), and a name starting with `..`
  // reads as a dot segment to some servers (reply-from refuses to send one). The name is what comes before its
  // parameters: the rules see `/admin.;x` as `/admin.`.
  const nameOf = (seg: string) => (seg.includes(';') ? seg.slice(0, seg.indexOf(';')) : seg);
  const name = segments.find((seg) => seg !== '.' && seg !== '..' && (/[. ]$/.test(nameOf(seg)) || seg.startsWith('..')));
  if (name !== undefined) {
    return name.startsWith('..') ? "a name starting with '..', which some servers read as a dot segment" : "a name ending in '.' or ' ', which Windows drops ('/admin.' is '/admin' to IIS)";
  }
  // ASP.NET takes a segment like `(S(x))` (cookieless session, forms ticket, anonymous id) out of the path before it
  // routes, in any app: `/(S(x))/admin/` is its `/admin/`, which the rules would never have seen.
  if (segments.some((seg) => /^\([A-Za-z]\(/.test(seg))) return "an ASP.NET cookieless segment ('(S(…))'), which ASP.NET takes out of the path before it routes";
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '.' || seg === '..') {
      if (seg === '..') out.pop();
      if (last) out.push('');
    } else if (seg !== '' || last) {
      out.push(seg);
    }
  });
  const path = `/${out.map(encodeSegment).join('/')}`;
  return { path, matchPath: path.includes(';') ? path.replace(/;[^/]*/g, '') : path, query };
}

/** Why a decoded byte is refused rather than decoded. */
function encodedRefusal(b: number): string {
  if (b === 0x2f || b === 0x5c) return "an encoded '/' or '\\' (%2F, %5C), which a portal that decodes first reads as a separator";
  if (b === 0x25) return "double encoding (%25), which a portal that decodes twice reads as another path";
  if (b === 0x3b) return "an encoded ';' (%3B), which a portal that decodes first reads as path parameters";
  if (b === 0x3f || b === 0x23) return "an encoded '?' or '#' (%3F, %23), where a portal that decodes first ends the path";
  return 'an encoded control character (%00 to %1F, %7F)';
}

/** Why a target that is not sameSegments is refused where a proxy in front passes it on (forward-auth). */
export const UNRESOLVED = 'dot or empty segments, which the proxy in front would pass to the portal unresolved';

/**
 * Whether a target canonicalTarget accepted names the same segments as its canonical form, differing at most in
 * percent-encoding (no dot or empty segment to resolve, in any encoding): a proxy that passes the target on as sent
 * then gives the portal the path that was judged.
 */
export function sameSegments(rawUrl: string): boolean {
  const segments = rawUrl.split('?', 1)[0]!.split('/').slice(1);
  return segments.every((seg, i) => {
    const s = decodeURIComponent(seg);
    return s !== '.' && s !== '..' && (s !== '' || i === segments.length - 1);
  });
}

// A path goes into the access line and any security event of its request: a longer one is cut, or a client could
// have each refused request write kilobytes to the audit trail.
const LOGGED_PATH_CHARS = 256;

/**
 * A path as logs and the audit trail show it: `;` parameter values left out (a servlet portal's `;jsessionid=…` is
 * its session credential), and cut after 256 characters (marked with `…`).
 */
export function loggedPath(path: string): string {
  const shown = path.includes(';') ? path.replace(/;([^/;=]*)=[^/;]*/g, ';$1=…') : path;
  return shown.length > LOGGED_PATH_CHARS ? `${shown.slice(0, LOGGED_PATH_CHARS)}…` : shown;
}

/**
 * A request target as the client sent it, for a request no rule decided on (refused earlier): its path as
 * loggedPath shows one, `;` parameters sent encoded (`%3B`, `%3D`) too. A target that is not a path (absolute-form, which
 * can carry `user:password@`, or `*`) or that starts with an authority (`//user:password@host/…`) is not shown.
 */
export function loggedTarget(url: string): string {
  const path = url.split('?', 1)[0]!;
  if (!path.startsWith('/') || path.startsWith('//')) return '(not a path)';
  return loggedPath(path.replace(/%3b/gi, ';').replace(/%3d/gi, '='));
}

/**
 * A canonical path (or path pattern) with its letters in composed form (NFC), for matching: a name written with a
 * letter and a combining accent (`ma%CC%84tauranga`, as macOS writes names) is the composed one
 * (`m%C4%81tauranga`) to a portal that normalises Unicode, as one applying NFKC does, and to a macOS file system. The
 * portal still gets the path as sent.
 */
export function composed(path: string): string {
  if (!path.includes('%')) return path;
  return path
    .split('/')
    .map((seg) => (seg.includes('%') ? encodeSegment(decodeURIComponent(seg).normalize('NFC')) : seg))
    .join('/');
}

/**
 * A canonical path (or path pattern) with its letters beyond ASCII composed (see composed) and folded to one case,
 * for matching regardless of case: a case-insensitive portal (IIS, a servlet comparing with equalsIgnoreCase) takes
 * `/M%C4%80TAURANGA/` for `/m%C4%81tauranga/`. ASCII is left as it is, for the case-insensitive match that follows.
 * One character for one, as those portals compare (`ß` stays `ß`); `İ` and `ı` are `i`, as Java's equalsIgnoreCase
 * has them.
 */
export function foldCase(path: string): string {
  if (!path.includes('%')) return path;
  return path
    .split('/')
    .map((seg) => encodeSegment([...decodeURIComponent(seg).normalize('NFC')].map(foldLetter).join('')))
    .join('/');
}

function foldLetter(ch: string): string {
  if (ch <= '\x7f') return ch;
  if (ch === '\u0130') return 'i';
  const upper = ch.toUpperCase();
  const lower = [...upper].length === 1 ? upper.toLowerCase() : ch.toLowerCase();
  return [...lower].length === 1 ? lower : ch;
}

function encodeSegment(seg: string): string {
  let s = '';
  for (const ch of seg) {
    // A raw ';' reaches here only when path parameters are allowed; it stays a parameter delimiter.
    if (KEEP.test(ch) || ch === ';') s += ch;
    else for (const b of Buffer.from(ch, 'utf8')) s += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return s;
}

/** Whether normalisation makes another text of `text`: NFKC beyond NFC, or a character NFC alone turns into ASCII. */
function normalisesAway(text: string): boolean {
  return text.normalize('NFKC') !== text.normalize('NFC') || [...text].some((ch) => ch > '\x7f' && /^[\x00-\x7f]+$/.test(ch.normalize('NFC')));
}
