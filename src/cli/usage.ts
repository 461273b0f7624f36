// A command used the wrong way: main prints the message and that command's usage, and exits 2.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { accountNames } from '../domain/username.js';
import type { Gateway } from '../gateway.js';

export class UsageError extends Error {}

/**
 * What a usage error shows beneath its message: the lines of `usage` (the whole text `help` prints) that describe
 * `command`, with the note above them that applies (the admin commands' --operator and --reason), then where the rest
 * is. The whole text would push the message off the screen. An unknown command, or none, gets the pointer only.
 */
export function usageOf(usage: string, command: string | undefined): string[] {
  const lines: string[] = [];
  let note: string | undefined;
  let entry = false;
  for (const line of usage.split('\n')) {
    // An entry: `  mfa-gateway COMMAND …`, continued on the lines indented further beneath it.
    if (line.startsWith('  mfa-gateway ')) {
      entry = line.split(' ')[3] === command;
      if (entry && note !== undefined && !lines.includes(note)) lines.push(note);
    } else if (!line.startsWith('   ')) {
      entry = false;
      // A note of its own (`  Admin commands …`) applies to the entries beneath it, up to a blank line.
      if (/^ {2}\S/.test(line)) note = line;
      if (line === '') note = undefined;
    }
    if (entry) lines.push(line);
  }
  return [...(lines.length > 0 ? ['Usage:', ...lines] : []), 'Run `mfa-gateway help` for every command.'];
}

/**
 * What wrong usage prints: the problem, then the usage of the command the line names (see usageOf). The line is read
 * again leniently, as parseArgs may have refused it: its command is its first word, but a word just after an unknown
 * option (`--port 8080 serve`: it may be that option's value) only if it names a command. An unknown option is said as
 * the other usage errors say it, not in parseArgs' words for programmers (a positional argument starting with '-').
 */
export function refusal(usage: string, options: NonNullable<ParseArgsConfig['options']>, argv: string[], err: Error): string[] {
  const { tokens } = parseArgs({ args: argv, allowPositionals: true, strict: false, options, tokens: true });
  const commands = new Set(usage.split('\n').flatMap((line) => (line.startsWith('  mfa-gateway ') ? [line.split(' ')[3]] : [])));
  const unknown = tokens.flatMap((token) => (token.kind === 'option' && !Object.hasOwn(options, token.name) ? [token] : []));
  const command = tokens.flatMap((token, i) => {
    if (token.kind !== 'positional') return [];
    const before = tokens[i - 1];
    const maybeValue = before?.kind === 'option' && unknown.includes(before) && before.inlineValue === undefined;
    return !maybeValue || commands.has(token.value) ? [token.value] : [];
  })[0];
  const option = (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? unknown[0]?.rawName : undefined;
  // A word that names no command is said first, as without the option.
  const problem = option === undefined ? err.message : command === undefined ? `unknown option ${option}` : commands.has(command) ? `${command} does not take ${option}` : `unknown command ${command}`;
  return [`mfa-gateway: ${problem}`, ...usageOf(usage, command)];
}

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
 * What an admin command's arguments are checked against: the config and the users' pseudonyms, both known before the
 * store or the audit trail is opened (a gateway has them too).
 */
export type Names = Pick<Gateway, 'pidOf' | 'config'>;

/**
 * The pseudonym of the user named by `--user`: a usage error with `missing` when there is none, and one naming it when
 * it is no name at all (blank, invisible characters). `signsIn`: for what is made for the name (a device bound to it),
 * it must also be one the login accepts (portal.login.usernamePattern); what an account already holds is reached
 * under a pattern set since, too.
 */
export function userPid(gw: Names, user: string | undefined, missing: string, signsIn = false): string {
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
