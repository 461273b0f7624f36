// The README keeps up with the code: every config option (and its default), every error code, every command and flag.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema } from '../../src/config/schema.js';
import { ERRORS } from '../../src/errors.js';
import { ALERT_EVENTS, NOTIFICATION_EVENTS } from '../../src/services/notifier.js';

const readme = readFileSync('README.md', 'utf8');
const documented = (path: string) => readme.includes(`\`${path}\``) || inParentRow(path);

/** A small settings object may be documented on one row, naming each of its fields: `{freeAttempts: 5, …}`. */
function inParentRow(path: string): boolean {
  const at = path.lastIndexOf('.');
  if (at === -1) return false;
  const row = readme.split('\n').find((l) => l.startsWith(`| \`${path.slice(0, at)}\` |`));
  return row !== undefined && row.includes(`${path.slice(at + 1)}:`);
}

/** Every option path of the schema; items of an array of objects are `a.b[].c`, record entries `a.<name>`. */
function optionPaths(schema: TSchema, prefix: string, arrayPath?: string): { path: string; arrayPath?: string }[] {
  const s = schema as TSchema & { properties?: Record<string, TSchema>; items?: TSchema; patternProperties?: Record<string, TSchema>; anyOf?: TSchema[] };
  if (s.properties) return Object.entries(s.properties).flatMap(([k, v]) => optionPaths(v, prefix ? `${prefix}.${k}` : k, arrayPath));
  if (s.patternProperties) return [{ path: `${prefix}.<name>` }];
  if (s.type === 'array' && s.items && (s.items as { properties?: unknown }).properties) {
    return [{ path: prefix }, ...optionPaths(s.items, `${prefix}[]`, prefix)];
  }
  return [{ path: prefix, ...(arrayPath ? { arrayPath } : {}) }];
}

t.test('every configuration option is in the README', async (t) => {
  const paths = optionPaths(ConfigSchema, '');
  t.ok(paths.length > 50);
  for (const { path, arrayPath } of paths) t.ok(documented(path) || (arrayPath !== undefined && documented(arrayPath)), path);
});

t.test("the README's default of each option is the schema's", async (t) => {
  const cells = new Map([...readme.matchAll(/^\| `([^`]+)` \| ([^|]*?) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]));
  const show = (v: unknown): string => (Array.isArray(v) ? `[${v.map(show).join(', ')}]` : String(v));
  let compared = 0;
  const walk = (schema: TSchema, path: string): void => {
    const s = schema as TSchema & { properties?: Record<string, TSchema>; items?: TSchema };
    if (s.properties) return Object.entries(s.properties).forEach(([k, v]) => walk(v, path ? `${path}.${k}` : k));
    if (s.type === 'array' && (s.items as { properties?: unknown } | undefined)?.properties) return walk(s.items!, `${path}[]`);
    const cell = cells.get(path);
    if (cell === undefined || !('default' in s) || (typeof s.default === 'object' && !Array.isArray(s.default))) return;
    compared++;
    t.equal(cell, `\`${show(s.default)}\``, path);
  };
  walk(ConfigSchema, '');
  t.ok(compared > 50, `${compared} defaults compared`);
});

t.test('every configuration option is in the commented example config', async (t) => {
  // Keys as written, set or commented out (`# name:`), with `_FILE` variants counting as the option.
  const example = readFileSync('config/gateway.example.yaml', 'utf8');
  const keys = new Set([...example.matchAll(/^\s*(?:#\s*)?(?:-\s+)?([A-Za-z]+)(?:_FILE)?:/gm)].map((m) => m[1]!));
  for (const m of example.matchAll(/\{([^}]*)\}/g)) for (const k of m[1]!.matchAll(/([A-Za-z]+):/g)) keys.add(k[1]!);
  for (const { path } of optionPaths(ConfigSchema, '')) {
    const leaf = path.split('.').at(-1)!.replace('[]', '');
    if (leaf === '<name>') continue;
    t.ok(keys.has(leaf), path);
  }
});

t.test('every error code is in the README, with its status', async (t) => {
  for (const [code, { status }] of Object.entries(ERRORS)) t.match(readme, `| \`${code}\` | ${status} |`, code);
});

t.test('every command is in the README', async (t) => {
  const main = readFileSync('src/commands.ts', 'utf8');
  const usage = /const USAGE = `([\s\S]+?)`;/.exec(main)![1]!;
  // `user show|export` is two commands.
  const commands = [...usage.matchAll(/^ {2}mfa-gateway ([a-z-]+)(?: ([a-z|-]+))?/gm)].flatMap((m) => (m[2] ?? '').split('|').map((sub) => `${m[1]} ${sub}`.trim()));
  t.ok(commands.length >= 20, `${commands.length} commands`);
  for (const c of commands) t.match(readme, `\`mfa-gateway ${c}`, c);
  const options = /const OPTIONS = \{([\s\S]+?)\n\} as const;/.exec(main)![1]!;
  const flags = [...options.matchAll(/^ {2}'?([a-z-]+)'?:/gm)].map((m) => m[1]!);
  t.ok(flags.length >= 20, `${flags.length} flags`);
  for (const f of flags) t.match(readme, `--${f}`, `--${f}`);
  // A short option the usage text does not name is one nobody knows of (-c was in the README only).
  const shorts = [...options.matchAll(/^ {2}'?([a-z-]+)'?: \{[^}]*short: '(\w)'/gm)].map((m) => ({ long: m[1]!, short: m[2]! }));
  t.ok(shorts.length >= 2, `${shorts.length} short options`);
  for (const { long, short } of shorts) {
    t.match(usage, new RegExp(`(?<![\\w-])-${short}\\b[^\\n]* for --${long}\\b`), `the usage text: -${short}`);
    t.match(readme, new RegExp(`\`-${short}( [A-Z]+)?\` is short for \`--${long}\\b`), `the README: -${short}`);
  }
});

t.test("the README's command rows name each option's value as the usage text does", async (t) => {
  // `--cert PEM` in the usage and `--cert FILE` in the README: one of them misleads (it is a file, holding a PEM).
  const usage = /const USAGE = `([\s\S]+?)`;/.exec(readFileSync('src/commands.ts', 'utf8'))![1]!;
  const rows = readme.split('\n').filter((l) => l.startsWith('| `mfa-gateway ')).map((l) => l.split('` |')[0]!).join('\n');
  const values = (text: string) => {
    const found = new Map<string, Set<string>>();
    for (const [, option, value] of text.matchAll(/--([a-z-]+) ([A-Z][A-Z0-9]*)\b/g)) found.set(option!, (found.get(option!) ?? new Set()).add(value!));
    return found;
  };
  const [inUsage, inReadme] = [values(usage), values(rows)];
  t.ok(inReadme.size >= 15, `${inReadme.size} options with a value in the README`);
  for (const [option, named] of inReadme) t.same([...named], [...(inUsage.get(option) ?? [])], `--${option}`);
});

t.test("each command's row in the README names every option the command takes", async (t) => {
  // An option left out of its row looks like one the command refuses (an option a command does not take is wrong usage).
  const main = readFileSync('src/commands.ts', 'utf8');
  const table = /const OPTIONS_OF = new Map<[^>]+>\(Object\.entries\(\{([\s\S]+?)\n\}\)\);/.exec(main)![1]!;
  // The admin commands' own (ADMIN: --config, --operator, --reason) too: without them each is refused (exit 2).
  const admin = [...(/const ADMIN = \[([^\]]+)\]/.exec(main)![1]!.matchAll(/'([a-z-]+)'/g))].map((m) => m[1]!);
  const takes = [...table.matchAll(/^ {2}'?([a-z][a-z -]*?)'?: (.+),$/gm)].map((m) => ({
    command: m[1]!,
    options: [...(m[2]!.includes('ADMIN') ? admin : []), ...[...m[2]!.matchAll(/'([a-z-]+)'/g)].map((o) => o[1]!)],
  }));
  t.ok(takes.length >= 15, `${takes.length} commands`);
  t.ok(takes.filter((c) => c.options.includes('operator')).length >= 10, 'the admin commands');
  const rows = [...readme.matchAll(/^\| `mfa-gateway ([^|]*?(?:\\\|[^|]*?)*)` \|/gm)].map((m) => m[1]!);
  for (const { command, options } of takes) {
    const own = rows.filter((r) => r === command || r.startsWith(`${command} `));
    t.ok(own.length > 0, `a row for ${command}`);
    for (const o of options) t.ok(own.some((r) => r.includes(`--${o}`)), `${command}: --${o}`);
  }
});

t.test("every reason a session_ended event gives is in the README's list", async (t) => {
  const sessions = readFileSync('src/services/sessions.ts', 'utf8');
  const type = /export type EndReason =([^;]+);/.exec(sessions)![1]!;
  const reasons = [...type.matchAll(/'([a-z-]+)'/g), ...readFileSync('src/domain/session-times.ts', 'utf8').matchAll(/state: '((?!active)[a-z-]+)'/g)].map((m) => m[1]!);
  t.ok(reasons.length >= 10, `${reasons.length} reasons`);
  const list = /`session_ended` \(with its `reason`: ([^\n]+)/.exec(readme.replace(/\n {2}/g, ' '))![1]!;
  for (const r of new Set(reasons)) t.match(list, `\`${r}\``, r);
});

t.test("every notification and alert has its row in the README's Notifications tables, and nothing else has one", async (t) => {
  const section = /^## Notifications\n([\s\S]+?)^## /m.exec(readme)![1]!;
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!);
  t.same(rows.sort(), [...NOTIFICATION_EVENTS, ...ALERT_EVENTS].sort());
});

t.test('every command the operator docs show is one the CLI has, with options it takes', async (t) => {
  const main = readFileSync('src/commands.ts', 'utf8');
  const table = /const OPTIONS_OF = new Map<[^>]+>\(Object\.entries\(\{([\s\S]+?)\n\}\)\);/.exec(main)![1]!;
  const admin = [...(/const ADMIN = \[([^\]]+)\]/.exec(main)![1]!.matchAll(/'([a-z-]+)'/g))].map((m) => m[1]!);
  const takes = new Map([...table.matchAll(/^ {2}'?([a-z][a-z -]*?)'?: (.+),$/gm)].map((m) => [m[1]!, [...(m[2]!.includes('ADMIN') ? admin : []), ...[...m[2]!.matchAll(/'([a-z-]+)'/g)].map((o) => o[1]!)]]));
  // The actions of each command, from the usage text (`user show|export|…`).
  const usage = /const USAGE = `([\s\S]+?)`;/.exec(main)![1]!;
  const actions = new Map<string, Set<string>>();
  for (const m of usage.matchAll(/^ {2}mfa-gateway ([a-z-]+) ([a-z|-]+)/gm)) for (const a of m[2]!.split('|')) actions.set(m[1]!, (actions.get(m[1]!) ?? new Set()).add(a));

  /** Command lines: `mfa-gateway …` in code (a span, a block, a line of its own) and `node dist/src/main.js …` anywhere. */
  const commandLines = (text: string): string[] => {
    const lines: string[] = [];
    // A line continued with \ (in a block or a comment) is one command.
    const joined = text.replace(/\\\n[#\s]*/g, ' ');
    const outside = joined.replace(/^```[a-z]*\n([\s\S]*?)^```/gm, (_, block: string) => (lines.push(...block.split('\n')), ''));
    // Code spans may run over a line break (in a table cell, a folded YAML string).
    for (const m of outside.matchAll(/`([^`]+)`/g)) lines.push(m[1]!.replace(/\n[#\s]*/g, ' '));
    lines.push(...joined.split('\n'));
    return lines.flatMap((l) => [...l.matchAll(/(?:^\s*(?:\$ )?mfa-gateway |\bmain\.js )([a-z][^`]*)/g)].map((m) => m[1]!));
  };
  const files = ['docs/operations.md', 'docs/forward-auth/README.md', 'docs/alerts/mfa-gateway.rules.yml', 'docker/k8s/README.md', 'docker/compose.yaml', 'README.md'];
  let checked = 0;
  for (const file of files) {
    for (const line of commandLines(readFileSync(file, 'utf8'))) {
      const [command, sub] = line.split(/\s+/);
      const action = sub && /^[a-z][a-z-]*$/.test(sub) ? sub : undefined;
      const options = takes.get(`${command} ${action}`) ?? takes.get(command!) ?? (command === 'help' || command === 'version' ? [] : undefined);
      t.ok(options, `${file}: ${command} is a command (${line})`);
      if (!options) continue;
      if (actions.has(command!) && action) t.ok(actions.get(command!)!.has(action), `${file}: ${command} ${action} is an action (${line})`);
      for (const [, o] of line.matchAll(/(?<![\w-])--([a-z][a-z-]*)/g)) t.ok(o === 'help' || options.includes(o!), `${file}: ${command} ${action ?? ''} takes --${o} (${line})`);
      checked++;
    }
  }
  t.ok(checked >= 40, `${checked} command lines checked`);
});

t.test("an audit verify the docs show names no DIR/admin beside its DIR: audit verify DIR checks DIR/admin itself", async (t) => {
  const files = ['docs/operations.md', 'docker/k8s/README.md', 'README.md'];
  for (const file of files) {
    const text = readFileSync(file, 'utf8').replace(/\\\n\s*/g, ' ');
    for (const [line] of text.matchAll(/audit verify [^\n`]*/g)) {
      const words = line.split(/\s+/).filter((w) => !w.startsWith('-'));
      const twice = words.filter((w) => w.endsWith('/admin') && words.includes(w.slice(0, -'/admin'.length)));
      t.same(twice, [], `${file}: ${line}`);
    }
    t.notMatch(text, /does not include its `?admin/, `${file}: no directory is said to leave its admin trail out`);
  }
});
