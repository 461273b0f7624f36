#!/usr/bin/env node
// The mfa-gateway command line: the only place that reads argv and the environment.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApp, createKvStore } from './app.js';
import { devicesCommand } from './cli/devices.js';
import { explainPolicy } from './cli/policy-explain.js';
import { UsageError } from './cli/usage.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import type { FactorKind } from './domain/policy.js';

const USAGE = `Usage:
  mfa-gateway serve --config FILE    run the gateway with a config file
  mfa-gateway demo                   run a demo portal with the gateway in front of it (memory store)
  mfa-gateway config check FILE      validate a config file and report every problem
  mfa-gateway policy explain --config FILE --path P [--ip A] [--user U] [--groups g1,g2] [--method M]
                             [--host H] [--managed] [--factor totp|webauthn|recovery] [--factor-age SECONDS]
                                     which rule decides a request, and why
  mfa-gateway devices register --config FILE (--cert PEM | --fingerprint SHA256) [--name N] [--user U]
  mfa-gateway devices revoke --config FILE (--cert PEM | --fingerprint SHA256)
  mfa-gateway devices list --config FILE
                                     the registry of managed-device certificates (in the configured store)
  mfa-gateway help                   show this text`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  path: { type: 'string' },
  ip: { type: 'string' },
  user: { type: 'string' },
  groups: { type: 'string' },
  method: { type: 'string' },
  host: { type: 'string' },
  managed: { type: 'boolean' },
  factor: { type: 'string' },
  'factor-age': { type: 'string' },
  fingerprint: { type: 'string' },
  cert: { type: 'string' },
  name: { type: 'string' },
} as const;

async function main(argv: string[]): Promise<number> {
  const { positionals, values: v } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  const [command, sub, arg] = positionals;
  const config = () => {
    if (!v.config) throw new UsageError(`${command} needs --config FILE`);
    return loadConfigFile(v.config);
  };
  const print = (lines: string[]) => process.stdout.write(`${lines.join('\n')}\n`);
  switch (command) {
    case 'serve':
      return serve(config());
    case 'demo':
      return demo();
    case 'config':
      if (sub !== 'check' || !arg) return usage('config check needs a FILE');
      loadConfigFile(arg);
      process.stdout.write(`${arg}: valid\n`);
      return 0;
    case 'policy': {
      if (sub !== 'explain' || !v.path) return usage('policy explain needs --config FILE and --path P');
      const factor = v.factor as FactorKind | undefined;
      if (factor !== undefined && !['totp', 'webauthn', 'recovery'].includes(factor)) return usage('--factor is totp, webauthn or recovery');
      print(
        explainPolicy(config(), {
          path: v.path,
          ip: v.ip,
          user: v.user,
          groups: v.groups?.split(',').map((g) => g.trim()).filter(Boolean),
          method: v.method,
          host: v.host,
          managed: v.managed,
          factor,
          factorAgeSeconds: v['factor-age'] === undefined ? undefined : Number(v['factor-age']),
        }),
      );
      return 0;
    }
    case 'devices': {
      const c = config();
      const kv = createKvStore(c, systemClock);
      try {
        await kv.ready();
        print(await devicesCommand(c, kv, sub ?? '', { fingerprint: v.fingerprint, cert: v.cert, name: v.name, user: v.user }));
      } finally {
        await kv.close();
      }
      return 0;
    }
    case 'help':
    case undefined:
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      return usage(`unknown command ${command}`);
  }
}

function usage(problem: string): number {
  process.stderr.write(`mfa-gateway: ${problem}\n${USAGE}\n`);
  return 2;
}

async function serve(config: Config, banner?: string): Promise<number> {
  const app = await buildApp(config);
  if (config.store.type === 'memory') app.log.warn('memory store: sessions and counters are lost on restart and not shared between instances');
  await app.listen({ host: config.server.host, port: config.server.port });
  if (banner) process.stdout.write(banner);
  await new Promise<void>((resolve) => {
    const stop = () => void app.close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

/** The demo: the legacy portal on one loopback port, the gateway on another, fresh keys each run. */
async function demo(): Promise<number> {
  const { startDemoPortal, DEMO_USERS } = await import('../test/fixtures/demo-portal.js');
  const portal = await startDemoPortal({ port: Number(process.env.PORTAL_PORT ?? 8081) });
  const key = () => randomBytes(32).toString('base64url');
  const env = { ...process.env, MFA_DEMO_PORTAL_URL: portal.url, MFA_DEMO_SIGNING_KEY: key(), MFA_DEMO_ENCRYPTION_KEY: key(), MFA_DEMO_PSEUDONYM_KEY: key() };
  const config = loadConfigFile(join(packageRoot(), 'config', 'demo.yaml'), env);
  const port = Number(process.env.PORT ?? config.server.port);
  const user = DEMO_USERS[0]!;
  const banner = `
  mfa-gateway demo
  Portal (behind the gateway): ${portal.url}
  Open the gateway:            http://localhost:${port}/
  Demo login:                  ${user.username} / ${user.password}
  You will need an authenticator app (or any TOTP app) to enrol. Stop with Ctrl+C.

`;
  try {
    return await serve({ ...config, server: { ...config.server, port } }, banner);
  } finally {
    await portal.close();
  }
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`mfa-gateway: ${err.message}\n`);
    else if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.exit(usage((err as Error).message));
    } else process.stderr.write(`mfa-gateway: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
