// Runs the real command line (src/main.ts) in a child process, as an operator would.
import { spawnSync } from 'node:child_process';

/** The TypeScript loader the tests run with, for child processes that run source files. */
export const TS_LOADER = process.execArgv.find((a) => a.includes('@tapjs/typescript')) ?? '--import=tsx';

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TS_LOADER, 'src/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every admin command names its operator and reason (they go into the audit trail). */
export const OPERATOR = ['--operator', 'Dana Helpdesk', '--reason', 'ticket 4711'];
