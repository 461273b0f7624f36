#!/usr/bin/env node
// The mfa-gateway command line: the only place that reads argv and the environment.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApp } from './app.js';
import { ConfigError, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';

const USAGE = `Usage:
  mfa-gateway serve --config FILE    run the gateway with a config file
  mfa-gateway demo                   run a demo portal with the gateway in front of it (memory store)
  mfa-gateway config check FILE      validate a config file and report every problem
  mfa-gateway help                   show this text`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: 'string', short: 'c' } } });
  const [command, sub, arg] = positionals;
  switch (command) {
    case 'serve':
      if (!values.config) return usage('serve needs --config FILE');
      return serve(loadConfigFile(values.config));
    case 'demo':
      return demo();
    case 'config':
      if (sub !== 'check' || !arg) return usage('config check needs a FILE');
      loadConfigFile(arg);
      process.stdout.write(`${arg}: valid\n`);
      return 0;
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
    else process.stderr.write(`mfa-gateway: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
