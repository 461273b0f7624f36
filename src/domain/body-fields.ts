// The login's fields in the body of a request to another path (SECURITY C-30): a portal that signs a session in
// wherever they appear (a PHP front controller, a common include, a filter on every path) would take a password there
// without its second factor, for the session's own portal cookies or a signed-out browser's.
import { queryFieldNames, sameFieldName } from './legacy-auth.js';

/** A body a portal reads fields from: a form (urlencoded or multipart) or JSON. */
export type FieldBody = { kind: 'form' | 'json' } | { kind: 'multipart'; boundary: string };

/**
 * How a portal may read a request body's fields, by its Content-Type read as loosely as lenient portals read it (any
 * case, the type anywhere in the header), or null for a body no framework reads fields from.
 */
export function fieldBody(contentType: string | undefined): FieldBody | null {
  const type = (contentType ?? '').toLowerCase();
  if (type.includes('x-www-form-urlencoded')) return { kind: 'form' };
  if (type.includes('multipart/')) {
    const boundary = /boundary\s*=\s*(?:"([^"]*)"|([^;,\s]+))/i.exec(contentType!);
    const value = boundary?.[1] ?? boundary?.[2];
    // Without a boundary no part can be told from another, by the portal either.
    return value ? { kind: 'multipart', boundary: value } : null;
  }
  if (type.includes('json')) return { kind: 'json' };
  return null;
}

// Longer names (in bytes) are kept to this length, and a longer JSON key is none: no login field is named so long,
// and a name cannot grow memory.
const MAX_NAME = 1024;
// A multipart part's headers are looked at up to this length.
const MAX_PART_HEADERS = 16 * 1024;

/**
 * Reads a body as it streams and tells once it has held both a username field (one of `usernameFields`) and the
 * password field, in any spelling a portal matching names loosely reads as them (sameFieldName): form fields, JSON
 * keys at any depth, multipart parts by their name.
 */
export class LoginFieldsScanner {
  private username = false;
  private password = false;
  private readonly names: NameReader;

  constructor(
    body: FieldBody,
    private readonly usernameFields: readonly string[],
    private readonly passwordField: string,
  ) {
    this.names = body.kind === 'multipart' ? new MultipartNames(body.boundary) : body.kind === 'form' ? new FormNames() : new JsonKeys();
  }

  /** Reads the next chunk; true once the body has held both fields. */
  write(chunk: Buffer): boolean {
    this.names.write(chunk, (name) => this.saw(name));
    return this.found;
  }

  /** Reads the end of the body; true once the body has held both fields. */
  end(): boolean {
    this.names.end((name) => this.saw(name));
    return this.found;
  }

  get found(): boolean {
    return this.username && this.password;
  }

  private saw(name: string): void {
    if (!this.password && sameFieldName(name, this.passwordField)) this.password = true;
    if (!this.username && this.usernameFields.some((f) => sameFieldName(name, f))) this.username = true;
  }
}

interface NameReader {
  write(chunk: Buffer, saw: (name: string) => void): void;
  end(saw: (name: string) => void): void;
}

/**
 * Field names of an urlencoded form, split on & and ; (some portals split on both), raw bytes read as UTF-8 and
 * escapes decoded as queries' are.
 */
class FormNames implements NameReader {
  private inName = true;
  private name: number[] = [];

  write(chunk: Buffer, saw: (name: string) => void): void {
    for (const byte of chunk) {
      if (byte === 0x26 || byte === 0x3b) {
        if (this.inName) this.emit(saw);
        this.inName = true;
      } else if (this.inName) {
        if (byte === 0x3d) {
          this.emit(saw);
          this.inName = false;
        } else if (this.name.length < MAX_NAME) this.name.push(byte);
      }
    }
  }

  end(saw: (name: string) => void): void {
    if (this.inName) this.emit(saw);
  }

  private emit(saw: (name: string) => void): void {
    // Decoded as the legacy check decodes a query's names (+, %XX, and %uXXXX as ASP.NET reads it).
    if (this.name.length) for (const n of queryFieldNames(`${Buffer.from(this.name).toString('utf8')}=`)) saw(n);
    this.name = [];
  }
}

/**
 * The keys of a JSON text at any depth: each string followed by a colon. Read as the lenient parsers of legacy stacks
 * read JSON (Json.NET, JSON5): single-quoted strings and bare-word keys (`{username: 'x'}`) too. Not validated.
 */
class JsonKeys implements NameReader {
  private state: 'out' | 'string' | 'escape' | 'unicode' | 'word' | 'after' = 'out';
  private quote = 0;
  private bytes: number[] = [];
  private text = '';
  private hex = '';
  private long = false;

  write(chunk: Buffer, saw: (name: string) => void): void {
    for (const byte of chunk) this.step(byte, saw);
  }

  end(): void {}

  private step(byte: number, saw: (name: string) => void): void {
    switch (this.state) {
      case 'out':
        this.begin(byte);
        break;
      case 'string':
        if (byte === this.quote) {
          this.flush();
          this.state = 'after';
        } else if (byte === 0x5c) this.state = 'escape';
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
          if (this.text.length >= MAX_NAME) this.long = true;
          else if (/^[0-9a-f]{4}$/i.test(this.hex)) this.text += String.fromCharCode(parseInt(this.hex, 16));
          this.state = 'string';
        }
        break;
      case 'word':
        if (wordByte(byte)) return this.add(byte);
        this.flush();
        this.state = 'after';
        return this.step(byte, saw);
      case 'after':
        if (byte === 0x3a) {
          if (!this.long) saw(this.text);
          this.state = 'out';
        } else if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) this.begin(byte);
        break;
    }
  }

  /** A string or a bare word beginning at this byte, or nothing. */
  private begin(byte: number): void {
    const quoted = byte === 0x22 || byte === 0x27;
    this.state = quoted ? 'string' : wordByte(byte) ? 'word' : 'out';
    if (this.state === 'out') return;
    this.quote = byte;
    this.bytes = quoted ? [] : [byte];
    this.text = '';
    this.long = false;
  }

  private add(byte: number): void {
    if (this.text.length + this.bytes.length < MAX_NAME) this.bytes.push(byte);
    else this.long = true;
  }

  private flush(): void {
    if (this.bytes.length) this.text += Buffer.from(this.bytes).toString('utf8');
    this.bytes = [];
  }
}

/** A byte of a bare word: letters, digits, _ and $, and any byte of a UTF-8 sequence. */
const wordByte = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f || b === 0x24 || b >= 0x80;

const ESCAPED: Readonly<Record<number, number>> = { 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09 };

/**
 * The names of a multipart body's parts, from each part's Content-Disposition (`name="…"`, or RFC 5987's `name*=`),
 * its headers ending at an empty line with CRLF or LF alone, as lenient parsers read them.
 */
class MultipartNames implements NameReader {
  private readonly delimiter: Buffer;
  private pending = Buffer.alloc(0);
  private inHeaders = false;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`, 'latin1');
  }

  write(chunk: Buffer, saw: (name: string) => void): void {
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
        this.inHeaders = true;
      }
      const crlf = rest.indexOf('\r\n\r\n');
      const lf = rest.indexOf('\n\n');
      const end = crlf === -1 ? lf : lf === -1 ? crlf : Math.min(crlf, lf);
      if (end === -1) {
        // Headers that go on and on are no part a parser reads: the search for the next delimiter goes on after them.
        if (rest.length > MAX_PART_HEADERS) this.inHeaders = false;
        else break;
        continue;
      }
      this.headers(rest.subarray(0, end).toString('utf8'), saw);
      rest = rest.subarray(end + 2);
      this.inHeaders = false;
    }
    this.pending = Buffer.from(rest);
  }

  end(saw: (name: string) => void): void {
    if (this.inHeaders) this.headers(this.pending.toString('utf8'), saw);
  }

  private headers(text: string, saw: (name: string) => void): void {
    for (const line of text.split(/\r?\n/)) {
      if (!/^\s*content-disposition\s*:/i.test(line)) continue;
      const plain = /;\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/i.exec(line);
      if (plain) saw((plain[1]?.replace(/\\(.)/g, '$1') ?? plain[2] ?? '').slice(0, MAX_NAME));
      const extended = /;\s*name\*\s*=\s*[^']*'[^']*'([^;\s]*)/i.exec(line);
      if (extended) for (const n of queryFieldNames(`${extended[1]}=`)) saw(n.slice(0, MAX_NAME));
    }
  }
}
