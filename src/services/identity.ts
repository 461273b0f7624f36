// Telling the portal who is asking: optional user and groups headers, and a signed assertion reused per session
// until half its lifetime is left (signing on every request would cost more than the rest of the request).
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { JWK } from 'jose';
import type { AssertionSigner } from '../mechanisms/assertion.js';
import { amrOf, type ActiveSession } from './sessions.js';

const CACHE_SIZE = 10_000;
const NONE: Readonly<Record<string, string>> = Object.freeze({});

export class IdentityService {
  private readonly cached = new Map<string, { token: string; renewAt: number; groups: string; amr: string[] }>();
  /** Lower-case names of every identity header: client-sent copies are always removed. */
  readonly headerNames: readonly string[];
  /** Whether any identity header is configured (the proxy skips the work when not). */
  readonly enabled: boolean;

  constructor(private readonly d: { config: Config; clock: Clock; signer: AssertionSigner | null }) {
    const i = d.config.identity;
    this.headerNames = [i.userHeader, i.groupsHeader, d.signer ? i.assertion?.header : undefined].filter((h): h is string => !!h).map((h) => h.toLowerCase());
    this.enabled = this.headerNames.length > 0;
  }

  /** The JWK Set of the assertion key, or null when no assertion is configured. */
  jwks(): Promise<{ keys: JWK[] }> | null {
    return this.d.signer?.jwks() ?? null;
  }

  /** The identity headers for a request of the session; `groups` as the access rules judged the request with. */
  async headersFor(active: ActiveSession, groups: readonly string[]): Promise<Readonly<Record<string, string>>> {
    if (!this.enabled) return NONE;
    const { identity } = this.d.config;
    const r = active.record;
    const out: Record<string, string> = {};
    if (identity.userHeader) out[identity.userHeader.toLowerCase()] = headerValue(r.username);
    if (identity.groupsHeader) out[identity.groupsHeader.toLowerCase()] = groups.map(headerValue).join(',');
    if (this.d.signer && identity.assertion) out[identity.assertion.header.toLowerCase()] = await this.assertion(active, groups);
    return out;
  }

  private async assertion(active: ActiveSession, groups: readonly string[]): Promise<string> {
    const now = this.d.clock.now();
    // Keyed by session id and factor time: a step-up (new id) or a new factor makes a new assertion, and so do
    // changed groups (the group file) and a changed proof (a removed passkey no longer counts as `hwk`), which the
    // portal must not go on believing.
    const key = `${active.sid}:${active.record.factorTime}`;
    // JSON, not joined with commas: ["cn=staff,o=clinic"] and ["cn=staff", "o=clinic"] are other groups.
    const claims = { groups: JSON.stringify(groups), amr: amrOf(active.record) };
    const hit = this.cached.get(key);
    if (hit && hit.renewAt > now && hit.groups === claims.groups && hit.amr.join() === claims.amr.join()) return hit.token;
    const signer = this.d.signer!;
    const token = await signer.sign({ sub: active.record.username, groups, amr: claims.amr, authTime: Math.floor(active.record.factorTime / 1000) }, now);
    if (this.cached.size >= CACHE_SIZE) this.cached.delete(this.cached.keys().next().value!);
    this.cached.set(key, { token, renewAt: now + (signer.lifetimeSeconds * 1000) / 2, ...claims });
    return token;
  }
}

/**
 * A name as a header value: header values carry printable ASCII only, so anything else (and `%`, and `,` which
 * separates groups) is percent-encoded UTF-8; decodeURIComponent gives the name back. "alice" stays "alice".
 */
export function headerValue(name: string): string {
  return name.replace(/[^\x21-\x7e]|[%,]/gu, encodeURIComponent);
}
