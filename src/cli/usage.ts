// A command used the wrong way: main prints the message and the usage text, and exits 2.
import { readFileSync } from 'node:fs';

export class UsageError extends Error {}

/** A file named on the command line, read whole; one that cannot be read is a usage error, not a crash. */
export function readArgumentFile(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${option} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
