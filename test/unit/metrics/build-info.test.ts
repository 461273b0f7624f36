// The version comes from package.json above the code; an installation without one fails at once, never hangs.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { VERSION } from '../../../src/metrics/build-info.js';
import { TS_LOADER } from '../../helpers/cli.js';

t.test("the version is package.json's", async (t) => {
  t.equal(VERSION, (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version);
});

t.test('without a package.json above it, loading fails with why, rather than searching for ever', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-no-package-'));
  copyFileSync('src/metrics/build-info.ts', join(dir, 'build-info.ts'));
  const r = spawnSync(process.execPath, [TS_LOADER, '-e', `import(${JSON.stringify(join(dir, 'build-info.ts'))})`], { encoding: 'utf8', timeout: 20_000, cwd: process.cwd() });
  t.equal(r.signal, null, 'not killed by the timeout');
  t.not(r.status, 0);
  t.match(r.stderr, 'no package.json above');
});
