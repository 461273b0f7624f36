// A file the gateway keeps reading (group map, CRL): changes are picked up, a broken one keeps the last good content.
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WatchedFile } from '../../../src/mechanisms/watched-file.js';
import { FakeClock } from '../../helpers/clock.js';

/** A JSON list of names, as a stand-in for the group map or the CRL: a half-written one does not parse. */
const parse = (text: string) => JSON.parse(text) as string[];

/** A watched file holding ["a"], with the errors and reloads it reported. */
function watched(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'watched-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'list.json');
  writeFileSync(path, '["a"]');
  const clock = new FakeClock();
  const errors: Error[] = [];
  const reloads: string[][] = [];
  const file = new WatchedFile(path, parse, clock, (err) => errors.push(err), (v) => reloads.push(v));
  return { path, clock, errors, reloads, file };
}

t.test('a change is read within a second; a file that does not parse keeps the last good content and is reported once', async (t) => {
  const { path, clock, errors, reloads, file } = watched(t);
  t.same(file.current(), ['a']);
  writeFileSync(path, '["a","b"]');
  utimesSync(path, 1000, 1000);
  t.same(file.current(), ['a'], 'not looked at again within the second');
  clock.advance(1000);
  t.same(file.current(), ['a', 'b'], 'changed: read again');
  t.same(reloads, [['a', 'b']]);
  writeFileSync(path, '["a",');
  utimesSync(path, 2000, 2000);
  clock.advance(1000);
  t.same(file.current(), ['a', 'b'], 'broken: the last good content');
  clock.advance(1000);
  file.current();
  t.equal(errors.length, 1, 'reported once');
  writeFileSync(path, '["c"]');
  renameSync(path, `${path}.tmp`);
  renameSync(`${path}.tmp`, path);
  utimesSync(path, 3000, 3000);
  clock.advance(1000);
  t.same(file.current(), ['c'], 'fixed: read again');
});

t.test('a file read while it was being written is read again once complete, though its modification time is the same', async (t) => {
  const { path, clock, errors, file } = watched(t);
  // The writer has emptied the file and written part of it, then the rest within the same clock tick of the kernel
  // (the same modification time, set here by hand).
  writeFileSync(path, '["a","b",');
  utimesSync(path, 5000, 5000);
  clock.advance(1000);
  t.same(file.current(), ['a'], 'half-written: the last good content');
  t.equal(errors.length, 1);
  writeFileSync(path, '["a","b","c"]');
  utimesSync(path, 5000, 5000);
  clock.advance(1000);
  t.same(file.current(), ['a', 'b', 'c'], 'complete: read');
  // A file replaced by a rename, of the same size and time.
  writeFileSync(`${path}.new`, '["x","y","z"]');
  utimesSync(`${path}.new`, 5000, 5000);
  renameSync(`${path}.new`, path);
  clock.advance(1000);
  t.same(file.current(), ['x', 'y', 'z'], 'replaced by a rename: read');
});

t.test('a file deleted keeps the last good content and is reported once; back, it is read again', async (t) => {
  const { path, clock, errors, file } = watched(t);
  rmSync(path);
  for (let i = 0; i < 3; i++) {
    clock.advance(1000);
    t.same(file.current(), ['a']);
  }
  t.equal(errors.length, 1, 'reported once, not every second');
  writeFileSync(path, '["d"]');
  clock.advance(1000);
  t.same(file.current(), ['d']);
});
