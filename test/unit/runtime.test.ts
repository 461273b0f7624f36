import t from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TS_LOADER } from '../helpers/cli.js';

/** How many of nextTick's property stores V8 reports as megamorphic after idle full collections, and the async id. */
function tickShape(dir: string, kept: boolean): { megamorphic: number; promiseAsyncId: string | undefined } {
  // A file, not a pipe: V8 writes the description with C stdio, and a full pipe would drop part of it.
  const out = join(dir, kept ? 'kept.txt' : 'plain.txt');
  const fd = openSync(out, 'w');
  const args = ['--expose-gc', '--allow-natives-syntax', TS_LOADER, 'test/fixtures/tick-shape.ts', ...(kept ? ['kept'] : [])];
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', timeout: 60_000 });
  closeSync(fd);
  if (r.status !== 0) throw new Error(`tick-shape exited ${r.status}: ${r.stderr}`);
  const text = readFileSync(out, 'utf8');
  const lines = text.split('\n').filter((l) => l.includes('DefineKeyedOwnPropertyInLiteral'));
  if (lines.length === 0) throw new Error('no feedback of the tick object literal in the output');
  return { megamorphic: lines.filter((l) => l.includes('MEGAMORPHIC')).length, promiseAsyncId: /promise continuation async id: (\d+)/.exec(text)?.[1] };
}

t.test("the runtime module keeps the shape of Node's tick objects across idle full collections", async (t) => {
  const dir = t.testdir();
  // The control: should a Node version build tick objects differently, this fails, and src/runtime.ts's
  // keepTickShape may no longer be needed.
  t.ok(tickShape(dir, false).megamorphic > 0, 'without it, the tick object stores become megamorphic (the slow path)');
  const kept = tickShape(dir, true);
  t.equal(kept.megamorphic, 0, 'with it imported first, they stay monomorphic');
  t.equal(kept.promiseAsyncId, '0', 'and no async or promise hook is left running');
});
