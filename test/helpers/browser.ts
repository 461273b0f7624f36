// A minimal browser for tests: keeps cookies by name (Secure cookies are kept over loopback http, as browsers
// do for localhost), follows nothing by itself, and reads forms.
import { connect } from 'node:net';
import { request, type Dispatcher } from 'undici';

export interface Page {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  location?: string;
}

export class Browser {
  readonly cookies = new Map<string, string>();

  /** `dispatcher`: e.g. an undici Agent with TLS options (a CA to trust, a client certificate). */
  constructor(readonly base: string, private readonly dispatcher?: Dispatcher) {}

  async get(path: string, headers: Record<string, string> = {}): Promise<Page> {
    return this.send('GET', path, undefined, headers);
  }

  async post(path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Page> {
    return this.send('POST', path, new URLSearchParams(form).toString(), { 'content-type': 'application/x-www-form-urlencoded', ...headers });
  }

  async send(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Page> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await request(new URL(path, this.base), {
      method: method as 'GET',
      body,
      headers: { accept: 'text/html', ...(cookie ? { cookie } : {}), ...headers },
      ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
    });
    const text = await res.body.text();
    for (const sc of [res.headers['set-cookie'] ?? []].flat()) {
      const [pair, ...attrs] = sc.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const location = res.headers.location;
    return { status: res.statusCode, headers: res.headers, body: text, location: Array.isArray(location) ? location[0] : location };
  }
}

/** The value of a hidden or text input in a page. */
export function inputValue(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html) ?? new RegExp(`value="([^"]*)"[^>]*name="${name}"`).exec(html);
  if (!m) throw new Error(`no input ${name} in page`);
  return m[1]!;
}

/** Sends bytes exactly as given (for requests HTTP clients refuse to send) and returns the raw answer. */
export function rawRequest(base: string, text: string): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), '127.0.0.1', () => sock.write(text));
    let data = '';
    sock.on('data', (d) => {
      data += d;
      const head = data.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(data)?.[1] ?? NaN);
      if (head !== -1 && Buffer.byteLength(data.slice(head + 4)) >= length) {
        sock.destroy();
        resolve(data);
      }
    });
    // An answer without Content-Length (or a parser error) ends with the connection.
    sock.on('close', () => resolve(data));
    sock.on('error', reject);
  });
}
