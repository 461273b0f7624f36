// `serve` on a port it cannot listen on: the error names the option whose port it is, and what to do.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TS_LOADER } from '../helpers/cli.js';
import { rawTestConfig } from '../helpers/config.js';
import { freePorts } from '../helpers/redis.js';

for (const option of ['server.port', 'admin.port'] as const) {
  t.test(`the ${option} another process listens on: the error names ${option} and what to do, exit 1`, async (t) => {
    const [port, adminPort] = await freePorts(2);
    const taken = createServer();
    taken.listen(option === 'server.port' ? port : adminPort, '127.0.0.1');
    await once(taken, 'listening');
    t.teardown(() => taken.close());
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.server = { ...raw.server, port };
    raw.admin = { port: adminPort };
    const file = join(mkdtempSync(join(tmpdir(), 'mfa-listen-')), 'gw.json');
    writeFileSync(file, JSON.stringify(raw));
    const proc = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'serve', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.teardown(() => proc.kill('SIGKILL'));
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(proc, 'close')) as [number | null];
    t.equal(code, 1);
    const at = option === 'server.port' ? port : adminPort;
    t.match(stderr, `mfa-gateway: ${option} ${at}: address already in use (EADDRINUSE, 127.0.0.1:${at}): another process listens there; stop it, or set another ${option}\n`);
    t.notOk(existsSync(join(raw.audit.dir, 'audit.lock')), 'the audit lock is released');
  });
}
