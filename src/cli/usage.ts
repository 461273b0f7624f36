// A command used the wrong way: main prints the message and the usage text, and exits 2.
import { readFileSync } from 'node:fs';
import { accountNames } from '../domain/username.js';
import type { Gateway } from '../gateway.js';

export class UsageError extends Error {}

/**
 * A command that failed after it made part of its output, which must not be lost (enrolment codes issued before the
 * store failed replaced the earlier ones): the lines are printed, then the cause is reported.
 */
export class PartialOutput extends Error {
  constructor(
    readonly lines: string[],
    override readonly cause: unknown,
  ) {
    super('stopped part-way', { cause });
  }
}

/**
 * The pseudonym of the user named by `--user`: a usage error with `missing` when there is none, and one naming it when
 * it is no name at all (blank, invisible characters). `signsIn`: for what is made for the name (a device bound to it),
 * it must also be one the login accepts (portal.login.usernamePattern); what an account already holds is reached
 * under a pattern set since, too.
 */
export function userPid(gw: Pick<Gateway, 'pidOf' | 'config'>, user: string | undefined, missing: string, signsIn = false): string {
  if (user === undefined) throw new UsageError(missing);
  const pid = signsIn && accountNames(gw.config.portal.login)(user) === null ? null : gw.pidOf(user);
  if (!pid) throw new UsageError(`not a usable username (no sign-in can use it): ${JSON.stringify(user)}`);
  return pid;
}

/** A file named on the command line, read whole; one that cannot be read is a usage error, not a crash. */
export function readArgumentFile(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${option} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
