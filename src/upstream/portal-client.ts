// Direct requests from the gateway to the portal (the login replay and logout), with bounded time and size.
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { Agent, request, errors as undiciErrors } from 'undici';
import { GatewayError } from '../errors.js';
import type { InFlight } from './in-flight.js';

export interface PortalResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface PortalRequest {
  method: string;
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  body?: Buffer;
}

// A login answer larger than this is not a login page.
const MAX_BODY_BYTES = 1024 * 1024;

export class PortalClient {
  private readonly agent: Agent;
  // Logins and logouts waiting for the portal, which close() lets finish for a while.
  private readonly sending = new Set<Promise<PortalResponse>>();

  constructor(readonly origin: string, timeoutMs: number, private readonly inFlight: InFlight) {
    this.agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs });
  }

  async send(opts: PortalRequest): Promise<PortalResponse> {
    const sent = this.exchange(opts);
    this.sending.add(sent);
    try {
      return await sent;
    } finally {
      this.sending.delete(sent);
    }
  }

  private async exchange(opts: PortalRequest): Promise<PortalResponse> {
    const leave = this.inFlight.enter();
    try {
      // Appended to the origin, never resolved against it: a path that starts with `//` would name another host.
      if (!opts.pathAndQuery.startsWith('/')) throw new GatewayError('GW_ERR_BAD_PATH', 'a portal path must start with /');
      const res = await request(new URL(`${this.origin}${opts.pathAndQuery}`), {
        method: opts.method as 'POST',
        headers: { ...opts.headers, host: new URL(this.origin).host },
        body: opts.body,
        dispatcher: this.agent,
      });
      // Node passes a status line of 600 and above on; no browser or rule can make sense of it.
      if (res.statusCode > 599) {
        await res.body.dump();
        throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `portal answered with status ${res.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_BODY_BYTES) {
          res.body.destroy();
          throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', 'portal login answer too large');
        }
        chunks.push(chunk as Buffer);
      }
      return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      throw new GatewayError(timeout ? 'GW_ERR_UPSTREAM_TIMEOUT' : 'GW_ERR_UPSTREAM_UNAVAILABLE', `portal: ${(err as Error).message}`, { cause: err });
    } finally {
      leave();
    }
  }

  /**
   * Lets logins and logouts still waiting for the portal finish for at most `maxMs`, then cuts them off. At shutdown
   * their browsers' connections are already closed (server.shutdownGraceSeconds); waiting out portal.timeoutSeconds
   * (30 s by default) for a slow portal would outlast the time the container is given to stop, and the gateway would
   * be killed before it seals its audit trail and releases its lock.
   */
  async close(maxMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(this.sending), new Promise((r) => (timer = setTimeout(r, maxMs)))]);
    clearTimeout(timer);
    // Not undici's close() first: it lets go of its connections at once, so a destroy after it would cut nothing off
    // and the login would go on waiting, its connection to the portal open, for portal.timeoutSeconds.
    await this.agent.destroy();
  }
}

/**
 * The answer's body as text, decoded as its Content-Encoding says (gzip, deflate, br: a portal may compress although
 * asked not to), up to the size limit, in the charset its Content-Type names (UTF-8 when it names none): a legacy
 * portal's pages in ISO-8859-1 or windows-1252 would not match a rule naming their accented words. Null for another
 * encoding, a charset the gateway does not know, or a body that does not decode within the limit.
 */
export function bodyText(res: PortalResponse): string | null {
  const encoding = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
  const limit = { maxOutputLength: MAX_BODY_BYTES };
  try {
    const text = new TextDecoder(charsetOf(res.headers['content-type']) ?? 'utf-8');
    if (encoding === '' || encoding === 'identity') return text.decode(res.body);
    if (encoding === 'gzip' || encoding === 'x-gzip') return text.decode(gunzipSync(res.body, limit));
    if (encoding === 'deflate') return text.decode(inflateSync(res.body, limit));
    if (encoding === 'br') return text.decode(brotliDecompressSync(res.body, limit));
    return null;
  } catch {
    return null;
  }
}

/** The charset parameter of a Content-Type, if it has one. */
function charsetOf(contentType: string | string[] | undefined): string | undefined {
  const header = Array.isArray(contentType) ? contentType[0] : contentType;
  const param = header?.split(';').slice(1).map((p) => p.trim().split('=')).find(([name]) => name!.trim().toLowerCase() === 'charset');
  const value = param?.slice(1).join('=').trim().replace(/^"(.*)"$/, '$1');
  return value || undefined;
}
