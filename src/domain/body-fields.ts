// The login's fields in the body of a request to another path (SECURITY C-30): a portal that signs a session in
// wherever they appear (a PHP front controller, a common include, a filter on every path) would take a password there
// without its second factor, for the session's own portal cookies or a signed-out browser's.
import { queryFieldNames, sameFieldName } from './legacy-auth.js';

/** Why a body cannot go to the portal: the login's fields in it, or a body that cannot be read for them. */
export type BodyRefusal = { refuse: 'login-fields' } | { refuse: 'unreadable'; why: string };

// Charsets in which the login's field names are the ASCII bytes the readers look for.
const ASCII_COMPATIBLE = /^(utf-?8|us-ascii|ascii|iso-?8859-\d{1,2}|latin-?[1-9]|windows-125\d|cp125\d)$/i;

/**
 * Why a body with these headers cannot be read for the login's fields (a charset in which field names are other
 * bytes, UTF-16 or UTF-7, which a portal may decode; a multipart body without a boundary), or null.
 */
export function unreadableBody(contentType: string | undefined): string | null {
  for (const [, charset] of (contentType ?? '').matchAll(/charset\s*=\s*"?([^";,\s]*)/gi)) {
    if (!ASCII_COMPATIBLE.test(charset!)) return `charset ${charset!.slice(0, 40)}`;
  }
  const multipart = /multipart/i.test(contentType ?? '') ? boundaries(contentType!).length : 0;
  if (mediaType(contentType).startsWith('multipart/') && multipart === 0) return 'a multipart body without a boundary';
  // Each is a reading of the whole body: a header naming hundreds would multiply the work.
  if (multipart > MAX_BOUNDARIES) return 'a multipart body with too many boundaries';
  return null;
}

/** Whether a portal framework may unpack a compressed body of this type before reading its fields (body-parser does). */
export function fieldsType(contentType: string | undefined): boolean {
  const media = mediaType(contentType);
  return media.includes('json') || media.includes('form') || media.startsWith('multipart/');
}

const mediaType = (contentType: string | undefined) => (contentType ?? '').split(/[;,]/, 1)[0]!.trim().toLowerCase();

/**
 * Every boundary a multipart parser may read from the header: each `boundary` parameter in any case (parsers take the
 * first, the last, or the first spelt in lower case), quoted or up to `;`, `,`, a quote or a space, and as PHP reads
 * it, from the first `=` after the word to a `,` or `;`.
 */
function boundaries(contentType: string): string[] {
  const found = new Set<string>();
  for (const m of contentType.matchAll(/boundary/gi)) {
    const after = contentType.slice(m.index + m[0].length);
    const eq = after.indexOf('=');
    if (eq === -1) continue;
    // PHP and older Rack keep a space after the =: its delimiter is `-- B`.
    const raw = after.slice(eq + 1);
    const value = raw.trimStart();
    const readings = [/^"([^"]*)"/.exec(value)?.[1], /^[^;,"\s]*/.exec(value)![0], value.split(/[;,]/, 1)[0]!.trim(), raw.split(/[;,]/, 1)[0], /^"?([^";,]+)/.exec(raw)?.[1]];
    for (const v of readings) if (v) found.add(v.slice(0, 200));
  }
  return [...found];
}

// Longer names (in bytes, leading spaces aside) are kept to this length, and a longer JSON key is none: no login
// field is named so long, and a name cannot grow memory.
const MAX_NAME = 1024;
// More readings of a multipart Content-Type's boundary than a header has by any parser's reading.
const MAX_BOUNDARIES = 8;
// A multipart part's headers longer than this make the body unreadable.
const MAX_PART_HEADERS = 16 * 1024;

/**
 * Reads a body as it streams, every way a portal may read fields from it: as an urlencoded form and as JSON (keys at
 * any depth), whatever its Content-Type says (a front controller may read `php://input` as either), and as multipart
 * by each boundary its Content-Type may name. Refuses once it has held a username field (one of `usernameFields`)
 * and the password field, in any spelling a portal matching names loosely reads as them (sameFieldName): in a form
 * only with values (a page's empty login box sent with every postback is no login).
 */
export class LoginFieldsScanner {
  private username = false;
  private password = false;
  private readers: NameReader[];
  private unreadable: string | null = null;
  private started = false;
  private readonly json: boolean;
  /** The fields folded, when each is plain ASCII without brackets (see saw). */
  private readonly plain: { password: string; usernames: string[]; shortest: number } | null;
  private readonly parts: NameReader[];
  /**
   * Whether a NUL byte ends reading the body as a form or JSON: one of another type (an upload) that holds one is
   * binary, which no portal reads fields from (raw in JSON, a NUL is an error).
   */
  private binaryEnds: boolean;

  constructor(
    contentType: string | undefined,
    private readonly usernameFields: readonly string[],
    private readonly passwordField: string,
  ) {
    const folded = { password: foldPlain(passwordField), usernames: usernameFields.map(foldPlain) };
    this.plain = [...usernameFields, passwordField].every((f) => PLAIN.test(f)) ? { ...folded, shortest: Math.min(...[folded.password, ...folded.usernames].map((f) => f.length)) } : null;
    const media = mediaType(contentType);
    this.json = media.includes('json');
    const parts = (/multipart/i.test(contentType ?? '') ? boundaries(contentType!) : []).map((b) => new MultipartNames(b));
    // A multipart/form-data body is read as such only: an upload costs a search for its delimiters. Any other is read
    // as a form and as JSON, whatever its type.
    const firsts = new Set(
      [...usernameFields, passwordField].flatMap((f) => {
        const first = f.replace(/[-_.\s]/g, '').charAt(0);
        return [first.toLowerCase().charCodeAt(0), first.toUpperCase().charCodeAt(0)];
      }),
    );
    // A name that may be a login field's begins with its first letter, or with what a loose reading drops or decodes
    // (%, -, _, ., [ and ] (Rack drops both), a space or control, a non-ASCII character): others are not decoded.
    const mayBe = (b: number) => firsts.has(b) || b <= 0x20 || b >= 0x80 || b === 0x25 || b === 0x2d || b === 0x5f || b === 0x2e || b === 0x5b || b === 0x5d;
    // PHP leaves php://input empty for multipart/form-data only, its type as PHP cuts it (at ; , or a space, tabs kept).
    const formData = (contentType ?? '').split(/[;, ]/, 1)[0]!.toLowerCase() === 'multipart/form-data';
    this.readers = formData ? parts : [new FormNames(mayBe), new JsonKeys(mayBe), ...parts];
    this.parts = parts;
    this.binaryEnds = !fieldsType(contentType);
  }

  /** Reads the next chunk: a refusal once the body cannot go on, else null. */
  write(chunk: Buffer): BodyRefusal | null {
    // JSON in UTF-16 or UTF-32 (a byte-order mark, or a NUL among the first bytes), which Jackson and Python read.
    if (!this.started && this.json && chunk.length && (chunk[0] === 0xfe || chunk[0] === 0xff || chunk.subarray(0, 4).includes(0))) this.unreadable = 'JSON not in UTF-8';
    this.started ||= chunk.length > 0;
    if (this.binaryEnds && chunk.includes(0)) {
      this.readers = this.parts;
      this.binaryEnds = false;
    }
    for (const r of this.readers) r.write(chunk, this.saw);
    return this.verdict();
  }

  /** Reads the end of the body: a refusal, or null when it may go to the portal. */
  end(): BodyRefusal | null {
    for (const r of this.readers) r.end(this.saw);
    return this.verdict();
  }

  private verdict(): BodyRefusal | null {
    if (this.username && this.password) return { refuse: 'login-fields' };
    const why = this.unreadable ?? this.readers.map((r) => r.unreadable).find((u) => u);
    return why ? { refuse: 'unreadable', why } : null;
  }

  private readonly saw = (name: string, filled = true): void => {
    if (!filled) return;
    // A plain ASCII name (most are) against plain fields: folded and compared at once, as sameFieldName would.
    if (this.plain && PLAIN.test(name)) {
      // Folding only takes characters away.
      if (name.length < this.plain.shortest) return;
      const folded = foldPlain(name);
      if (folded === this.plain.password) this.password = true;
      if (this.plain.usernames.includes(folded)) this.username = true;
      return;
    }
    if (!this.password && sameFieldName(name, this.passwordField)) this.password = true;
    if (!this.username && this.usernameFields.some((f) => sameFieldName(name, f))) this.username = true;
  };
}

/** Printable ASCII without the brackets PHP and Rack read keys from. */
const PLAIN = /^[\x20-\x5a\x5c\x5e-\x7e]*$/;
/** sameFieldName's folding of a plain name: case, and -, _, . and spaces, dropped. */
const foldPlain = (name: string) => name.toLowerCase().replace(/[-_. ]/g, '');

type Saw = (name: string, filled?: boolean) => void;

interface NameReader {
  write(chunk: Buffer, saw: Saw): void;
  end(saw: Saw): void;
  /** Why the body cannot be read this way, once it cannot. */
  unreadable?: string;
}

/**
 * Field names of an urlencoded form, split on & and ; (some portals split on both), raw bytes read as UTF-8 and
 * escapes decoded as queries' are, leading spaces dropped (PHP drops them), each told with whether it has a value.
 */
class FormNames implements NameReader {
  private inName = true;
  private name: number[] = [];
  /** A name that cannot be a login field's, by its first byte: not collected. */
  private other = false;
  /** A name whose value has not shown a byte yet. */
  private waiting: string | null = null;

  /** `mayBe`: whether a name beginning with this byte (leading spaces aside) may be a login field's. */
  constructor(private readonly mayBe: (byte: number) => boolean) {}

  write(chunk: Buffer, saw: Saw): void {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (byte === 0x26 || byte === 0x3b) {
        this.close(saw);
        this.inName = true;
      } else if (!this.inName) {
        if (this.waiting !== null) saw(this.waiting, true);
        this.waiting = null;
        // The rest of the value, up to the next separator, at native speed.
        i = nextSeparator(chunk, i) - 1;
      } else if (byte === 0x3d) {
        this.waiting = this.decoded() || null;
        this.inName = false;
      } else if (this.other || (this.name.length === 0 && (byte === 0x20 || byte === 0x2b))) {
        // A leading space (raw or +) is no part of the name.
      } else if (this.name.length === 0 && !this.mayBe(byte)) {
        this.other = true;
      } else if (this.name.length < MAX_NAME) {
        this.name.push(byte);
        // Nor is a leading %20.
        if (this.name.length === 3 && this.name[0] === 0x25 && this.name[1] === 0x32 && this.name[2] === 0x30) this.name = [];
      }
    }
  }

  end(saw: Saw): void {
    this.close(saw);
  }

  /** The end of a field: a name without a value, or one whose value stayed empty. */
  private close(saw: Saw): void {
    if (this.inName) {
      const name = this.decoded();
      if (name) saw(name, false);
    } else if (this.waiting !== null) saw(this.waiting, false);
    this.waiting = null;
  }

  /** The name so far, decoded as the legacy check decodes a query's (+, %XX, and %uXXXX as ASP.NET reads it). */
  private decoded(): string {
    const bytes = this.name;
    this.name = [];
    const other = this.other;
    this.other = false;
    if (other || bytes.length === 0) return '';
    // ASCII only: nothing to decode (no % or +) or only what decodeURIComponent decodes as queries' names are (no %u).
    if (bytes.every((b) => b < 0x80)) {
      const raw = String.fromCharCode(...bytes);
      if (!/[%+]/.test(raw)) return raw;
      if (!/%u/i.test(raw)) {
        try {
          return decodeURIComponent(raw.replaceAll('+', ' '));
        } catch {
          // A % not followed by two hex digits, or bytes that are no UTF-8: as URLSearchParams reads them, below.
        }
      }
    }
    return queryFieldNames(`${Buffer.from(bytes).toString('utf8')}=`)[0] ?? '';
  }
}

/** Where the next & or ; is from `from` on, or the chunk's end. */
function nextSeparator(chunk: Buffer, from: number): number {
  const amp = chunk.indexOf(0x26, from);
  const semi = chunk.indexOf(0x3b, from);
  const end = amp === -1 ? semi : semi === -1 ? amp : Math.min(amp, semi);
  return end === -1 ? chunk.length : end;
}

/**
 * The keys of a JSON text at any depth: each string followed by a colon. Read as the lenient parsers of legacy stacks
 * read JSON (Json.NET, JSON5): single-quoted strings, bare-word keys (`{username: 'x'}`), comments and any space
 * (a non-breaking one, a byte-order mark) between tokens. Not validated.
 */
class JsonKeys implements NameReader {
  /** `mayBe`: whether a key beginning with this byte may be a login field's (others are not decoded). */
  constructor(private readonly mayBe: (byte: number) => boolean) {}

  private state: 'out' | 'string' | 'escape' | 'unicode' | 'word' | 'after' | 'slash' | 'block' | 'blockStar' | 'line' = 'out';
  /** Where a comment returns to. */
  private resume: 'out' | 'after' = 'out';
  private quote = 0;
  private bytes: number[] = [];
  private text = '';
  private hex = '';
  /** A key too long, or one whose first character no login field's has: not collected. */
  private ignored = false;

  write(chunk: Buffer, saw: Saw): void {
    for (let i = 0; i < chunk.length; i++) {
      if (this.state === 'string') {
        // A string's plain bytes, up to its quote or a backslash, at once.
        let j = i;
        while (j < chunk.length && chunk[j] !== this.quote && chunk[j] !== 0x5c) j++;
        if (j > i) this.addRange(chunk, i, j);
        if (j === chunk.length) return;
        i = j;
      } else if (this.state === 'word' && this.ignored) {
        while (i < chunk.length && wordByte(chunk[i]!)) i++;
        if (i === chunk.length) return;
      }
      this.step(chunk[i]!, saw);
    }
  }

  end(): void {}

  private addRange(chunk: Buffer, from: number, to: number): void {
    if (this.ignored || (this.text.length + this.bytes.length === 0 && !this.mayBe(chunk[from]!))) return void (this.ignored = true);
    const room = MAX_NAME - this.text.length - this.bytes.length;
    if (to - from > room) this.ignored = true;
    for (let k = from; k < Math.min(to, from + Math.max(room, 0)); k++) this.bytes.push(chunk[k]!);
  }

  private step(byte: number, saw: Saw): void {
    switch (this.state) {
      case 'out':
        if (byte === 0x2f) this.comment('out');
        else this.begin(byte);
        break;
      case 'string':
        if (byte === this.quote) this.state = 'after';
        else if (byte === 0x5c) this.state = 'escape';
        else this.add(byte);
        break;
      case 'escape':
        if (byte === 0x75) {
          this.hex = '';
          this.state = 'unicode';
        } else {
          this.add(ESCAPED[byte] ?? byte);
          this.state = 'string';
        }
        break;
      case 'unicode':
        this.hex += String.fromCharCode(byte);
        if (this.hex.length === 4) {
          this.flush();
          if (this.text.length >= MAX_NAME || (this.text.length === 0 && !this.mayBe(parseInt(this.hex, 16)))) this.ignored = true;
          else if (/^[0-9a-f]{4}$/i.test(this.hex)) this.text += String.fromCharCode(parseInt(this.hex, 16));
          this.state = 'string';
        }
        break;
      case 'word':
        if (wordByte(byte)) return this.add(byte);
        this.state = 'after';
        return this.step(byte, saw);
      case 'after':
        if (byte === 0x3a) {
          // Only a key that may be a login field's is decoded.
          if (!this.ignored) {
            this.flush();
            saw(this.text);
          }
          this.state = 'out';
        } else if (byte === 0x2f) this.comment('after');
        else if (!spaceByte(byte)) this.begin(byte);
        break;
      case 'slash':
        if (byte === 0x2a) this.state = 'block';
        else if (byte === 0x2f) this.state = 'line';
        else {
          this.state = this.resume;
          this.step(byte, saw);
        }
        break;
      case 'block':
        if (byte === 0x2a) this.state = 'blockStar';
        break;
      case 'blockStar':
        if (byte === 0x2f) this.state = this.resume;
        else if (byte !== 0x2a) this.state = 'block';
        break;
      case 'line':
        if (byte === 0x0a || byte === 0x0d) this.state = this.resume;
        break;
    }
  }

  private comment(from: 'out' | 'after'): void {
    this.resume = from;
    this.state = 'slash';
  }

  /** A string or a bare word beginning at this byte, or nothing. */
  private begin(byte: number): void {
    const quoted = byte === 0x22 || byte === 0x27;
    this.state = quoted ? 'string' : wordByte(byte) ? 'word' : 'out';
    if (this.state === 'out') return;
    this.quote = byte;
    this.ignored = !quoted && !this.mayBe(byte);
    this.bytes = quoted || this.ignored ? [] : [byte];
    this.text = '';
  }

  private add(byte: number): void {
    if (this.ignored) return;
    if (this.text.length + this.bytes.length === 0 && !this.mayBe(byte)) this.ignored = true;
    else if (this.text.length + this.bytes.length < MAX_NAME) this.bytes.push(byte);
    else this.ignored = true;
  }

  private flush(): void {
    if (this.bytes.length) this.text += this.bytes.every((b) => b < 0x80) ? String.fromCharCode(...this.bytes) : Buffer.from(this.bytes).toString('utf8');
    this.bytes = [];
  }
}

/** A byte of a bare word: letters, digits, _ and $, and a UTF-8 sequence's (not of a space: see spaceByte). */
const wordByte = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f || b === 0x24 || (b >= 0x80 && !spaceByte(b));
/**
 * A byte of a space between tokens: ASCII controls and space, and the bytes of the non-breaking space (C2 A0), the
 * byte-order mark (EF BB BF) and the spaces and separators of U+2000–U+205F and U+3000 (E2 80 xx, E2 81 9F, E3 80 80),
 * which lenient parsers take as whitespace. A name holding such bytes is no login field's.
 */
const spaceByte = (b: number) => b <= 0x20 || b === 0xc2 || b === 0xa0 || b === 0xef || b === 0xbb || b === 0xbf || b === 0xe2 || b === 0xe3 || b === 0x80 || b === 0x81 || b === 0x9f;

const ESCAPED: Readonly<Record<number, number>> = { 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09 };

/**
 * The names of a multipart body's parts by one boundary: every `name` (quoted with " or ', or bare) and RFC 5987
 * `name*` parameter of each part's Content-Disposition, wherever it stands in the value and however many there are,
 * its headers read as lenient parsers read them (lines ending in LF or CRLF, folded lines joined).
 */
class MultipartNames implements NameReader {
  unreadable?: string;
  private readonly delimiter: Buffer;
  private pending = Buffer.alloc(0);
  private inHeaders = false;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`, 'utf8');
  }

  write(chunk: Buffer, saw: Saw): void {
    let rest = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      if (!this.inHeaders) {
        const at = rest.indexOf(this.delimiter);
        if (at === -1) {
          // The start of a delimiter may end this chunk.
          rest = rest.subarray(Math.max(0, rest.length - this.delimiter.length + 1));
          break;
        }
        rest = rest.subarray(at + this.delimiter.length);
        // The closing delimiter: no part follows it.
        if (rest.length < 2 && rest[0] !== 0x0a && rest[0] !== 0x0d) {
          this.pending = Buffer.concat([this.delimiter, rest]);
          return;
        }
        if (rest[0] === 0x2d && rest[1] === 0x2d) continue;
        this.inHeaders = true;
      }
      // The delimiter's line, then header lines up to an empty one.
      const end = headersEnd(rest);
      if (end === -1) {
        if (rest.length > MAX_PART_HEADERS) this.unreadable = 'multipart part headers too long';
        break;
      }
      this.headers(rest.subarray(0, end).toString('utf8'), saw);
      rest = rest.subarray(end);
      this.inHeaders = false;
    }
    this.pending = Buffer.from(rest.length > MAX_PART_HEADERS ? rest.subarray(0, 0) : rest);
  }

  end(saw: Saw): void {
    if (this.inHeaders) this.headers(this.pending.toString('utf8'), saw);
  }

  private headers(text: string, saw: Saw): void {
    // The first line is the rest of the delimiter's.
    const lines = text.split('\n').slice(1).map((l) => l.replace(/\r$/, ''));
    const joined: string[] = [];
    for (const line of lines) {
      if (joined.length && (/^\s/.test(line) || !line.includes(':'))) joined[joined.length - 1] += ` ${line.trim()}`;
      else joined.push(line);
    }
    // Anywhere in a line: PHP cuts a line longer than its buffer (5 KiB) and reads the rest as a line of its own.
    for (const [, value] of joined.flatMap((header) => [...header.matchAll(/content-disposition\s*:((?:(?!content-disposition\s*:)[^])*)/gi)])) {
      for (const m of value!.matchAll(/(?:^|[\s;:])name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^;\s]*))/gi)) {
        saw((m[1]?.replace(/\\(.)/g, '$1') ?? m[2] ?? m[3] ?? '').slice(0, MAX_NAME));
      }
      for (const m of value!.matchAll(/(?:^|[\s;:])name\*\s*=\s*[^']*'[^']*'([^;\s]*)/gi)) {
        for (const n of queryFieldNames(`${m[1]}=`)) saw(n.slice(0, MAX_NAME));
      }
    }
  }
}

/** Where a part's headers end (after the empty line that ends them, LF or CRLF), or -1 while it has not come. */
function headersEnd(rest: Buffer): number {
  let from = rest.indexOf(0x0a);
  while (from !== -1) {
    const next = rest.indexOf(0x0a, from + 1);
    if (next === -1) return -1;
    if (next === from + 1 || (next === from + 2 && rest[from + 1] === 0x0d)) return next + 1;
    from = next;
  }
  return -1;
}
