// Which version of the gateway runs: package.json's, read once (the image and a clone both hold it, above dist/).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    // At the root with none found: an installation without its package.json, which no start can go on from.
    if (dirname(dir) === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = dirname(dir);
  }
  return join(dir, 'package.json');
}

/** The version of mfa-gateway (package.json's `version`): `mfa-gateway --version`, the start's log line, mfa_gateway_build_info. */
export const VERSION: string = (JSON.parse(readFileSync(packageJson(), 'utf8')) as { version: string }).version;
