#!/usr/bin/env node
// The mfa-gateway command line: the only place that reads argv and the environment.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApp, type AppOverrides } from './app.js';
import { devicesCommand } from './cli/devices.js';
import { issueEnrolmentCodes } from './cli/enrol-codes.js';
import { blocksCommand, lockoutsCommand } from './cli/limits.js';
import { explainPolicy } from './cli/policy-explain.js';
import { UsageError } from './cli/usage.js';
import { ConfigError, configWarnings, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import type { FactorKind } from './domain/policy.js';
import { createGateway, type Gateway } from './gateway.js';
import { createLogger } from './log.js';
import { systemClock } from './clock.js';
import { MemoryKvStore } from './stores/memory-kv-store.js';

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
  mfa-gateway enrol-codes issue --config FILE (--user U | --csv FILE)
                                     enrolment codes to hand out (enrolment.proof: invite); prints CSV
  mfa-gateway blocks list|clear --config FILE [--ip A]
                                     client addresses blocked for credential stuffing
  mfa-gateway lockouts list|clear --config FILE [--user U] [--factor totp|webauthn|recovery|enrolment-code]
                                     factors disabled after too many failures
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
  'factor-age': { type: 'string' },
  fingerprint: { type: 'string' },
  cert: { type: 'string' },
  name: { type: 'string' },
  csv: { type: 'string' },
  factor: { type: 'string' },
} as const;

async function main(argv: string[]): Promise<number> {
  const { positionals, values: v } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  const [command, sub, arg] = positionals;
  const config = () => {
    if (!v.config) throw new UsageError(`${command} needs --config FILE`);
    return loadConfigFile(v.config);
  };
  const print = (lines: string[]): void => void process.stdout.write(`${lines.join('\n')}\n`);
  switch (command) {
    case 'serve':
      return serve(config());
    case 'demo':
      return demo();
    case 'config':
      if (sub !== 'check' || !arg) return usage('config check needs a FILE');
      for (const w of configWarnings(loadConfigFile(arg))) process.stdout.write(`warning: ${w}\n`);
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
    case 'devices':
      return withGateway(config(), async (gw) => print(await devicesCommand(gw, sub ?? '', { fingerprint: v.fingerprint, cert: v.cert, name: v.name, user: v.user })));
    case 'blocks':
      return withGateway(config(), async (gw) => print(await blocksCommand(gw, sub ?? '', { ip: v.ip })));
    case 'lockouts':
      return withGateway(config(), async (gw) => print(await lockoutsCommand(gw, sub ?? '', { user: v.user, factor: v.factor })));
    case 'enrol-codes':
      if (sub !== 'issue') return usage('enrol-codes issue needs --config FILE and --user U or --csv FILE');
      return withGateway(config(), async (gw) => print(await issueEnrolmentCodes(gw, { user: v.user, csv: v.csv })));
    case 'help':
    case undefined:
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      return usage(`unknown command ${command}`);
  }
}

/** Runs an operator command against the configured store (logs go to stderr, output to stdout). */
async function withGateway(config: Config, run: (gw: Gateway) => Promise<void>): Promise<number> {
  if (config.store.type === 'memory') throw new UsageError('this command acts on the configured store; with store.type memory there is nothing shared to act on');
  const gw = createGateway(config, { logger: createLogger(config.log.level === 'silent' ? 'silent' : 'warn', process.stderr) });
  try {
    await gw.kv.ready();
    await run(gw);
  } finally {
    await gw.close();
  }
  return 0;
}

function usage(problem: string): number {
  process.stderr.write(`mfa-gateway: ${problem}\n${USAGE}\n`);
  return 2;
}

async function serve(config: Config, banner?: string, overrides: AppOverrides = {}): Promise<number> {
  const app = await buildApp(config, overrides);
  for (const w of configWarnings(config)) app.log.warn(w);
  await app.listen({ host: config.server.host, port: config.server.port });
  if (banner) process.stdout.write(banner);
  await new Promise<void>((resolve) => {
    const stop = () => {
      // Requests in flight may finish; after the grace period the connections still open are closed.
      const force = setTimeout(() => app.server.closeAllConnections(), config.server.shutdownGraceSeconds * 1000);
      force.unref();
      void app.close().then(() => {
        clearTimeout(force);
        resolve();
      });
    };
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
  const port = Number(process.env.PORT ?? 8080);
  const env = { ...process.env, MFA_DEMO_PORTAL_URL: portal.url, MFA_DEMO_SIGNING_KEY: key(), MFA_DEMO_ENCRYPTION_KEY: key(), MFA_DEMO_PSEUDONYM_KEY: key() };
  const file = loadConfigFile(join(packageRoot(), 'config', 'demo.yaml'), env);
  // PORT moves the gateway, and with it the origin passkeys are made for.
  const config: Config = { ...file, server: { ...file.server, port }, webauthn: { ...file.webauthn, origins: [`http://localhost:${port}`] } };
  // The demo's store is made here, so the enrolment codes it prints are in the store the gateway uses.
  const kv = new MemoryKvStore(systemClock);
  const gw = createGateway(config, { kv, logger: createLogger('silent') });
  const codes = await Promise.all(DEMO_USERS.map(async (u) => ({ u, code: (await gw.enrolment.issueInvite(gw.pidOf(u.username)!)).code })));
  const banner = `
  mfa-gateway demo
  Portal (behind the gateway): ${portal.url}
  Open the gateway:            http://localhost:${port}/

  Demo logins (password, then the enrolment code the clinic would have given them):
${codes.map(({ u, code }) => `    ${u.username.padEnd(8)} ${u.password.padEnd(24)} enrolment code ${code}`).join('\n')}
  bob is in the staff group: only he may open /admin/. Repeat prescriptions (/prescriptions/) ask for a recent
  second step. Enrol with a passkey (this computer or phone) or an authenticator app. Stop with Ctrl+C.

`;
  try {
    return await serve(config, banner, { kv });
  } finally {
    await gw.close();
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
