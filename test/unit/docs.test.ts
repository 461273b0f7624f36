// The README keeps up with the code: every config option, every error code and every command is documented.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema } from '../../src/config/schema.js';
import { ERRORS } from '../../src/errors.js';

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
  const main = readFileSync('src/main.ts', 'utf8');
  const usage = /const USAGE = `([\s\S]+?)`;/.exec(main)![1]!;
  const commands = [...usage.matchAll(/^ {2}mfa-gateway ([a-z-]+(?: [a-z-]+)?)/gm)].map((m) => m[1]!);
  t.ok(commands.length >= 6);
  for (const c of commands) t.match(readme, `\`mfa-gateway ${c}`, c);
});
