// The gateway's own routes under the reserved prefix: assets, health, and the sign-in and security pages.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import formbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import { loginPageFor } from '../domain/redirect.js';
import { GatewayError } from '../errors.js';
import { reportHtml } from '../ui/report.js';
import { READY_TIMEOUT_MS, readinessProbe } from './admin-server.js';
import type { HttpContext } from './context.js';
import { COOKIE } from './cookies.js';
import { hostName } from './edge.js';
import { checkBodyType, checkSameOrigin } from './forms.js';
import { forwardAuthRoutes } from './forward-auth.js';
import { PAGE_HEADERS } from './pages.js';
import { securityRoutes } from './security-routes.js';
import { signInRoutes } from './sign-in-routes.js';

// Gateway forms are tiny; anything bigger is not one of ours.
const FORM_BODY_LIMIT = 16 * 1024;
// The report page is built again for the same period at most this often.
const REPORT_REUSE_MS = 5 * 60_000;
// Report builds waiting or running at most; one more period asked for meanwhile is refused (429).
const REPORT_BUILDS = 4;
const asset = (name: string) => readFileSync(new URL(`../ui/assets/${name}`, import.meta.url));
// The browser half of @simplewebauthn, served from the gateway's own origin (no CDN).
const WEBAUTHN_BROWSER = readFileSync(join(dirname(createRequire(import.meta.url).resolve('@simplewebauthn/browser')), '..', 'dist', 'bundle', 'index.umd.min.js'));
const GATEWAY_JS = asset('gateway.js');
const LOGO_TYPES: Record<string, string> = { '.png': 'image/png', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };

export async function gatewayRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config } = ctx;
  const p = config.server.prefix;
  await app.register(formbody, { bodyLimit: FORM_BODY_LIMIT });
  // Another site's POST gets nothing here, not even a wait, nor a cookie cleared (a sign-in in progress, a session):
  // refused before anything is read, and as what it is (its form's type, text/plain, is not what is wrong with it).
  // Then a form route takes only a form, a JSON route (`config: { body: 'json' }`) only JSON.
  app.addHook('onRequest', (req, _reply, done) => {
    if (req.method === 'POST') checkSameOrigin(req);
    checkBodyType(req);
    done();
  });
  // Every answer of the gateway's own routes (JSON calls too): never read as another type, never cached unless it
  // says so (the assets do). The proxy's routes are another scope: portal answers keep their own headers.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (!reply.hasHeader('x-content-type-options')) reply.header('x-content-type-options', 'nosniff');
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    done(null, payload);
  });

  // The accent colour comes from the config (its contrast with white is checked there).
  const css = asset('gateway.css').toString('utf8').replace('--accent: #0b5cad', `--accent: ${config.ui.accentColour}`);
  const assetHeaders = (type: string) => ({ 'content-type': type, 'cache-control': 'public, max-age=3600', 'x-content-type-options': 'nosniff' });
  app.get(`${p}/assets/gateway.css`, (_req, reply) => reply.headers(assetHeaders('text/css; charset=utf-8')).send(css));
  app.get(`${p}/assets/gateway.js`, (_req, reply) => reply.headers(assetHeaders('text/javascript; charset=utf-8')).send(GATEWAY_JS));
  app.get(`${p}/assets/webauthn-browser.js`, (_req, reply) => reply.headers(assetHeaders('text/javascript; charset=utf-8')).send(WEBAUTHN_BROWSER));
  if (config.ui.logoFile) {
    const logo = readFileSync(config.ui.logoFile);
    const type = LOGO_TYPES[extname(config.ui.logoFile).toLowerCase()] ?? 'application/octet-stream';
    // An SVG logo is shown as an image; its own CSP keeps any script in it inert if opened directly.
    app.get(`${p}/assets/logo`, (_req, reply) => reply.headers({ ...assetHeaders(type), 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" }).send(logo));
  }

  app.get(`${p}/health/live`, async () => ({ status: 'ok' }));
  // Bounded as on the admin listener: a Redis that hangs makes the probe answer 503, not hang with it.
  const ready = readinessProbe(ctx.ready, READY_TIMEOUT_MS);
  app.get(`${p}/health/ready`, async (_req, reply) => ((await ready()).ok ? { status: 'ready' } : reply.code(503).send({ status: 'unavailable' })));

  app.get(`${p}/jwks.json`, async (_req, reply) => {
    const jwks = await ctx.identity.jwks();
    if (!jwks) throw new GatewayError('GW_ERR_NOT_FOUND', 'no identity assertion configured');
    return reply.header('cache-control', 'public, max-age=300').send(jwks);
  });

  if (ctx.report) {
    const report = ctx.report;
    // Building reads the whole audit trail and scans the store: at most once per period length every 5 minutes,
    // shared by concurrent viewers, one build at a time (the others wait their turn) and a few waiting at most, so
    // refreshing the page or asking for many periods cannot load the gateway nor keep its reader busy for hours.
    const built = new Map<number, { at: number; html: Promise<string> }>();
    let previous: Promise<unknown> = Promise.resolve();
    let pending = 0;
    const page = (days: number): Promise<string> => {
      const now = ctx.clock.now();
      const hit = built.get(days);
      if (hit && now - hit.at < REPORT_REUSE_MS) return hit.html;
      if (pending >= REPORT_BUILDS) throw new GatewayError('GW_ERR_RATE_LIMITED', 'report builds waiting', { retryAfterMs: 60_000 });
      if (built.size >= 8) built.clear();
      pending++;
      const html = previous.then(() => report.build({ from: now - days * 86_400_000, to: now })).then((r) => reportHtml(r, { portal: '/' }));
      previous = html.catch(() => undefined).then(() => void pending--);
      built.set(days, { at: now, html });
      html.catch(() => built.delete(days));
      return html;
    };
    // The assurance report, read-only, for the groups (and networks) of admin.report; ?days=N (default 30).
    app.get(`${p}/admin/report`, async (req, reply) => {
      const active = await ctx.sessions.authenticate(req.cookies[COOKIE.session]);
      const { outcome } = await report.access.decide({
        host: hostName(req)!,
        method: 'GET',
        path: `${p}/admin/report`,
        query: '',
        authorization: req.headers.authorization,
        client: req.client,
        tlsCertificate: undefined,
        deviceHeader: undefined,
        session: active,
        signingIn: false,
      });
      if (outcome.verdict === 'sign-in') return reply.redirect(loginPageFor(ctx.config.portal.login.page, req.url), 302);
      if (outcome.verdict !== 'allow') throw new GatewayError('GW_ERR_ACCESS_DENIED', `admin report: ${outcome.verdict}`);
      // Digits only, given once: Number() would also take `1e2`, `0x10` and ` 7` (and `days=1&days=2` is a list).
      const asked = (req.query as Record<string, unknown>).days ?? '30';
      const days = typeof asked === 'string' && /^\d+$/.test(asked) ? Number(asked) : NaN;
      if (!Number.isInteger(days) || days < 1 || days > 3660) throw new GatewayError('GW_ERR_BAD_REQUEST', 'days');
      const html = await page(days);
      return reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        .headers(PAGE_HEADERS)
        .send(html);
    });
  }

  await signInRoutes(app, ctx);
  await securityRoutes(app, ctx);
  if (ctx.config.forwardAuth.enabled) await forwardAuthRoutes(app, ctx);
}
