// A valid configuration for tests, with fresh keys; callers override what they need.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

export const randomKey = () => randomBytes(32).toString('base64url');

// Every test gateway writes its audit trail (as production does), each in a directory of its own under this one.
let auditRoot: string | undefined;
export function freshAuditDir(): string {
  if (!auditRoot) {
    const root = mkdtempSync(join(tmpdir(), 'mfa-audit-'));
    auditRoot = root;
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  }
  return mkdtempSync(join(auditRoot, 'gw-'));
}

export function rawTestConfig(portalUrl: string): Record<string, any> {
  return {
    server: { host: '127.0.0.1', port: 0 },
    portal: {
      url: portalUrl,
      name: 'Riverbend Health Patient Portal',
      login: { paths: ['/login'], success: { status: [302], location: '^/' } },
      logoutPaths: ['/logout'],
      browserCookies: ['XSRF-TOKEN'],
      timeoutSeconds: 2,
    },
    mfa: { issuer: 'Riverbend Health' },
    // Most tests are about what comes after enrolment; the enrolment proof has tests of its own.
    enrolment: { proof: 'first-login' },
    // Refused logins are answered at once in tests (the delay has a test of its own).
    limits: { password: { refusalDelayMs: 0 } },
    // Passkey tests use a software authenticator on the page origin http://localhost.
    webauthn: { rpId: 'localhost', origins: ['http://localhost'] },
    policy: {
      rules: [
        { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
        { name: 'portal', paths: ['/'], decision: 'mfa' },
      ],
    },
    keys: {
      signing: [{ id: 's1', secret: randomKey() }],
      encryption: [{ id: 'e1', secret: randomKey() }],
      pseudonym: randomKey(),
    },
    audit: { dir: freshAuditDir(), signingKey: randomKey() },
    // Gateways run by `serve` in tests take any free admin port.
    admin: { port: 0 },
    log: { level: 'silent' },
  };
}

export function testConfig(portalUrl: string, patch: (raw: Record<string, any>) => void = () => {}): Config {
  const raw = rawTestConfig(portalUrl);
  patch(raw);
  return resolveConfig(raw);
}

/** Merges `patch` into `target`, object by object (a patch of one limit keeps the others). */
export function merge(target: Record<string, any>, patch: Record<string, any>): Record<string, any> {
  for (const [k, v] of Object.entries(patch)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && target[k] && typeof target[k] === 'object') merge(target[k], v);
    else target[k] = v;
  }
  return target;
}
