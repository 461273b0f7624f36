// The first thing every request meets: HSTS, the Host allow-list, who the client is (behind trusted proxies), its cookies.
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { loggedPath, loggedTarget } from '../domain/canonical-path.js';
import { AddressSet, clientView, type ClientView, type ForwardedHeader } from '../domain/client-address.js';
import type { AccessOutcome } from '../domain/policy.js';
import { GatewayError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The client's address and scheme, worked out once per request. */
    client: ClientView;
    /** The access decision for a request to the portal, and for whom (for the access log). */
    access: RequestAccess | null;
  }
}

export interface RequestAccess {
  /** The method the rules judged: the request's own, or in forward-auth mode the one the proxy forwards. */
  method: string;
  rule: string;
  verdict: AccessOutcome['verdict'];
  pid: string | undefined;
  path: string;
  /** SHA-256 fingerprint of the client certificate, when a rule looked at the device. */
  device: string | undefined;
}

/** What the access line says about a request, also given to metrics and the audit trail. */
export interface AnsweredRequest {
  method: string;
  path: string;
  ip: string;
  status: number;
  ms: number;
  access: RequestAccess | null;
}

export interface EdgeOptions {
  hosts: readonly string[];
  trustedProxies: readonly string[];
  forwardedHeader: ForwardedHeader;
  /** Paths answered whatever the Host (health checks address the gateway by IP, the portal fetches the JWKS). */
  anyHost: readonly string[];
  /** Every answered request, after its access line. */
  answered: (r: AnsweredRequest) => void;
  /** Whether the gateway is shutting down (new requests are refused). */
  closing: () => boolean;
  /**
   * The liveness path, answered while the gateway shuts down too: the process is alive until it exits, and a 503 there
   * would have an orchestrator restart it in the middle of its drain.
   */
  live: string;
}

/** On every answer, the gateway's own (the portal's is never passed on). */
export const HSTS = 'max-age=31536000; includeSubDomains';

export interface Edge {
  /**
   * The access line (and `answered`) of a request fastify's router refused before any hook ran (a malformed escape,
   * `/%zz`): a scanner sending such paths is logged, with its address, as any other request.
   */
  unrouted(req: FastifyRequest, reply: FastifyReply): void;
}

export function installEdge(app: FastifyInstance, opts: EdgeOptions): Edge {
  const hosts = new Set(opts.hosts.map((h) => h.toLowerCase()));
  const trusted = new AddressSet(opts.trustedProxies);
  const clientOf = (req: FastifyRequest) => clientView(req.socket.remoteAddress, (req.socket as TLSSocket).encrypted === true, req.headers, trusted, opts.forwardedHeader);
  app.decorateRequest('client', null as unknown as ClientView);
  app.decorateRequest('access', null);
  app.addHook('onRequest', (req, reply, done) => {
    // The cookie plugin's parsing, here rather than in a hook of its own (one hook less on every request); first, as
    // the plugin's hook ran, so an error page below still knows the browser's cookies.
    req.cookies = req.headers.cookie ? app.parseCookie(req.headers.cookie) : {};
    reply.header('strict-transport-security', HSTS);
    req.client = clientOf(req);
    // A request on a connection still open while the gateway shuts down: the client tries again, on another instance.
    if (opts.closing() && req.url.split('?')[0] !== opts.live) {
      done(new GatewayError('GW_ERR_SHUTTING_DOWN', 'shutting down', { retryAfterMs: 1000 }));
      return;
    }
    // Node keeps the first of two Host (or Authorization) headers, a proxy or the portal may read the last: the rules
    // would judge another request than the portal gets (in forward-auth mode, the proxy passes both on). One each, or
    // no answer.
    const repeated = repeatedHeader(req.raw.rawHeaders);
    if (repeated) {
      done(new GatewayError('GW_ERR_BAD_REQUEST', `more than one ${repeated} header`));
      return;
    }
    // Node takes the chunks off a body and leaves any other transfer coding on it (`gzip, chunked`): the portal would
    // get still-coded bytes as the body, and the login intercept read them as a form.
    const coding = req.headers['transfer-encoding'];
    if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') {
      done(new GatewayError('GW_ERR_BAD_REQUEST', 'a transfer coding other than chunked'));
      return;
    }
    // HTTP/1.0 has no transfer codings: a proxy in front may frame such a body otherwise than Node, which reads it as
    // chunked, and take the rest for another request (RFC 9112 §6.1: faulty framing, the connection closed).
    if (coding !== undefined && req.raw.httpVersionMinor === 0) {
      reply.header('connection', 'close');
      done(new GatewayError('GW_ERR_BAD_REQUEST', 'a transfer coding in an HTTP/1.0 request'));
      return;
    }
    // Links, redirects and cookies never come from an unknown Host (SECURITY R52, C-27).
    const host = hostName(req);
    // The exempt paths are compared whole and as sent: /_mfa/jwks.json/../x is not exempt (it would reach the portal).
    // They are answered without a Host too (a load balancer's HTTP/1.0 probe).
    if ((host === null || !hosts.has(host)) && !opts.anyHost.includes(req.url.split('?')[0]!)) {
      // Logged without what a broken client may put before an `@` (user:password@host).
      done(new GatewayError('GW_ERR_UNKNOWN_HOST', `host ${JSON.stringify(req.headers.host?.slice(req.headers.host.lastIndexOf('@') + 1))?.slice(0, 100)}`));
      return;
    }
    done();
  });
  // One line per request (fastify's own request lines are off): who, what, which rule decided, the answer.
  const answered = (req: FastifyRequest, reply: FastifyReply) => {
    const a = req.access;
    const r: AnsweredRequest = {
      method: a?.method ?? req.method,
      // The canonical path a rule decided on; the target as sent (its path only) for everything else.
      path: a ? loggedPath(a.path) : loggedTarget(req.url),
      ip: req.client?.ip ?? 'unknown',
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
      access: a,
    };
    if ((req.log as unknown as Logger).isLevelEnabled('info')) {
      req.log.info({ method: r.method, path: r.path, ip: r.ip, status: r.status, ms: r.ms, ...(a ? { rule: a.rule, verdict: a.verdict, pid: a.pid } : {}) }, 'request');
    }
    opts.answered(r);
  };
  app.addHook('onResponse', (req, reply, done) => {
    answered(req, reply);
    done();
  });
  return {
    unrouted: (req, reply) => {
      req.client = clientOf(req);
      answered(req, reply);
    },
  };
}

/**
 * Which of Host and Authorization raw headers (name, value, name, ...) hold more than once, if one does. On every
 * request: one pass, allocating nothing for the usual spellings.
 */
function repeatedHeader(raw: string[]): 'Host' | 'Authorization' | undefined {
  let host = false;
  let authorization = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 4 && (n === 'Host' || n === 'host' || n.toLowerCase() === 'host')) {
      if (host) return 'Host';
      host = true;
    } else if (n.length === 13 && (n === 'Authorization' || n === 'authorization' || n.toLowerCase() === 'authorization')) {
      if (authorization) return 'Authorization';
      authorization = true;
    }
  }
  return undefined;
}

/** The lower-case host name of the Host header, without port; null when absent or malformed. */
export function hostName(req: FastifyRequest): string | null {
  return parseHost(req.headers.host);
}

/** A Host value's lower-case host name, without port; null when absent or malformed (a port above 65535 too). */
export function parseHost(raw: string | undefined): string | null {
  if (!raw) return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw);
  return m && !(Number(m[2] ?? 0) > 65535) ? m[1]!.toLowerCase() : null;
}
