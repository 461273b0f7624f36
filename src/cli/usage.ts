// A command used the wrong way: main prints the message and the usage text, and exits 2.
import { readFileSync } from 'node:fs';

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

/** A file named on the command line, read whole; one that cannot be read is a usage error, not a crash. */
export function readArgumentFile(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${option} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
