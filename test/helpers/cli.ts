// Runs the real command line (src/main.ts) in a child process, as an operator would.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

/**
 * The TypeScript loader of child processes that run source files: tsx (esbuild) starts the command line in a fraction
 * of the time the test runner's own loader takes to compile it, and the tests start it hundreds of times.
 */
export const TS_LOADER = '--import=tsx';

/** Preloads test/helpers/signal-self.ts: the process signals itself at a point of its start (SIGNAL_SELF_AT). */
export const SIGNAL_SELF = '--import=./test/helpers/signal-self.ts';

/** Preloads test/helpers/plant-link.ts: a link to PLANT_TARGET is put beside the demo's audit directory (PLANT_SUFFIX). */
export const PLANT_LINK = '--import=./test/helpers/plant-link.ts';

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TS_LOADER, 'src/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * runCli without blocking this process (`stdin`: what the command reads there, then its end): for a test whose gateway runs in this process and serves it around the
 * commands (a blocked event loop for the seconds a command takes fires every timer at once afterwards, and a kept-alive
 * connection may then be reset under the next request).
 */
export async function runCliAsync(args: string[], env: NodeJS.ProcessEnv = {}, stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [TS_LOADER, 'src/main.ts', ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
  child.stdin.end(stdin);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** Every admin command names its operator and reason (they go into the audit trail). */
export const OPERATOR = ['--operator', 'Dana Helpdesk', '--reason', 'ticket 4711'];

/** A gateway process from the real command line (`serve`) on a config file, once it is ready on `port`. */
export async function gatewayProcess(configFile: string, port: number, env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}`);
    if (await request(`${url}/_mfa/health/ready`).then((r) => (r.body.dump(), r.statusCode === 200), () => false)) return { proc, url };
    await sleep(100);
  }
  proc.kill();
  throw new Error('gateway did not start');
}
