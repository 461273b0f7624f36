// The gateway's own routes under the reserved prefix: assets, health, and the sign-in and security pages.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import formbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import type { HttpContext } from './context.js';
import { securityRoutes } from './security-routes.js';
import { signInRoutes } from './sign-in-routes.js';

// Gateway forms are tiny; anything bigger is not one of ours.
const FORM_BODY_LIMIT = 16 * 1024;
const asset = (name: string) => readFileSync(new URL(`../ui/assets/${name}`, import.meta.url));
// The browser half of @simplewebauthn, served from the gateway's own origin (no CDN).
const WEBAUTHN_BROWSER = readFileSync(join(dirname(createRequire(import.meta.url).resolve('@simplewebauthn/browser')), '..', 'dist', 'bundle', 'index.umd.min.js'));
const GATEWAY_JS = asset('gateway.js');
const LOGO_TYPES: Record<string, string> = { '.png': 'image/png', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };

export async function gatewayRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { config } = ctx;
  const p = config.server.prefix;
  await app.register(formbody, { bodyLimit: FORM_BODY_LIMIT });

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
  app.get(`${p}/health/ready`, async (_req, reply) => {
    try {
      await ctx.kv.ping();
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ status: 'unavailable' });
    }
  });

  await signInRoutes(app, ctx);
  await securityRoutes(app, ctx);
}
