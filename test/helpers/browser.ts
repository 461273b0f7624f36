// A minimal browser for tests: keeps cookies by name (Secure cookies are kept over loopback http, as browsers
// do for localhost), follows nothing by itself, and reads forms.
import { request } from 'undici';

export interface Page {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  location?: string;
}

export class Browser {
  readonly cookies = new Map<string, string>();

  constructor(readonly base: string) {}

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
