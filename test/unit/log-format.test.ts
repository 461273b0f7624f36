// The log's format, for log shippers: what every line carries, and README's Logs entry naming every field the
// gateway writes. `pid` is the user's pseudonymous id only: the process id is left out of every line.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, requestLogger } from '../../src/log.js';

const root = join(import.meta.dirname, '../..');

/** README's Logs entry (a bullet of the Security model). */
function logsEntry(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('- **Logs.**');
  if (start < 0) throw new Error('README has no Logs entry');
  const end = readme.indexOf('\n- **', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** The field names the gateway's own log calls write (`log.info({ a, b: … }, 'msg')`), with where. */
function loggedFields(): Map<string, Set<string>> {
  const files = (d: string): string[] =>
    readdirSync(d).flatMap((n) => {
      const p = join(d, n);
      return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
    });
  const fields = new Map<string, Set<string>>();
  for (const file of files(join(root, 'src'))) {
    const src = readFileSync(file, 'utf8');
    for (const call of src.matchAll(/\blog(?:ger)?\.(?:trace|debug|info|warn|error|fatal)\(\s*\{([^;]*?)\}\s*,\s*['"`]/g)) {
      for (const [, name] of call[1]!.matchAll(/(?:^|[{,])\s*(\w+)\s*(?=[:,}]|$)/g)) {
        if (!fields.has(name!)) fields.set(name!, new Set());
        fields.get(name!)!.add(file.slice(root.length + 1));
      }
    }
  }
  return fields;
}

t.test('a line carries level (a number), time (epoch ms), hostname, msg and, for a request, reqId; never the process id', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger('info', stream);
  const before = Date.now();
  log.warn('plain');
  requestLogger(log, { reqId: 'r-9' }, {}).info({ pid: 'user-pseudonym' }, 'request');
  await new Promise((r) => setImmediate(r));
  t.same(Object.keys(lines[0]!).sort(), ['hostname', 'level', 'msg', 'time']);
  t.match(lines[0], { level: 40, hostname: hostname(), msg: 'plain' });
  t.ok(typeof lines[0]!.time === 'number' && (lines[0]!.time as number) >= before && (lines[0]!.time as number) <= Date.now(), 'epoch milliseconds');
  t.same(lines[1], { level: 30, time: lines[1]!.time, hostname: hostname(), reqId: 'r-9', pid: 'user-pseudonym', msg: 'request' }, 'pid: the user, once');
});

t.test("README's Logs entry names the line's own fields and every field the gateway writes", async (t) => {
  const entry = logsEntry();
  for (const own of ['level', 'time', 'hostname', 'msg', 'reqId']) t.match(entry, `\`${own}\``, own);
  const fields = loggedFields();
  t.ok(fields.size > 20, 'the log calls were found');
  for (const [name, where] of fields) t.match(entry, `\`${name}\``, `${name} (${[...where].join(', ')})`);
  t.match(entry, /`pid`[^.]*pseudonymous/, 'pid is said to be the pseudonymous user id');
  t.match(entry, /process id/, 'and not the process id');
});
