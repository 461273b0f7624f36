// The groups file: what it may hold, and what it refuses (keeping the last good content, see WatchedFile).
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WatchedFile } from '../../../src/mechanisms/watched-file.js';
import { GroupDirectory, groupFile, parseGroupMap, type GroupMap } from '../../../src/services/groups.js';
import { FakeClock } from '../../helpers/clock.js';

t.test('one entry per user, whatever the spelling', async (t) => {
  t.same(parseGroupMap('alice: [patients]\nbob: ["cn=staff,o=clinic", Ärzte]\n', 'lower').get('bob'), ['cn=staff,o=clinic', 'Ärzte']);
  // `Alice` and `alice` are one person with usernameCase lower: the later entry would silently replace the earlier.
  for (const text of ['alice: [restricted]\nAlice: [staff]\n', 'alice: [restricted]\n"alice ": [staff]\n', 'alice: [restricted]\nａｌｉｃｅ: [staff]\n']) {
    t.throws(() => parseGroupMap(text, 'lower'), /names the same user as an earlier one/, JSON.stringify(text));
  }
  t.equal(parseGroupMap('alice: [a]\nAlice: [b]\n', 'exact').size, 2, 'two users where case counts');
});

t.test('usernames as written, never read as numbers', async (t) => {
  // Staff and patient numbers: `007` is not user 7, nor `0x1A` user 26, nor `1e3` user 1000.
  const map = parseGroupMap('007: [staff]\n0x1A: [admin]\n1e3: [carers]\ntrue: [patients]\n"0042": [x]\n12: [y]\n', 'lower');
  t.same([...map.keys()], ['007', '0x1a', '1e3', 'true', '0042', '12']);
  t.equal(map.get('7'), undefined, 'user 7 gets nothing of 007');
  t.same(parseGroupMap('{"007": ["staff"]}', 'lower').get('007'), ['staff'], 'JSON as before');
  t.throws(() => parseGroupMap('[a]: [staff]\n', 'lower'), /must be a username/, 'a list is no username');
  t.same([...parseGroupMap('7: [a]\n007: [b]\n1000: [c]\n1e3: [d]\n', 'lower').keys()], ['7', '007', '1000', '1e3'], 'two people, not one number twice');
  t.throws(() => parseGroupMap('alice: [a]\nalice: [b]\n', 'exact'), /names the same user as an earlier one/, 'one name twice');
  t.throws(() => parseGroupMap('!!binary YWxpY2U=\n', 'lower'), /expected a mapping/, 'bytes are no mapping');
});

t.test('group names a header or an assertion can carry', async (t) => {
  for (const bad of ['""', '"staff\\ud800"', '"staff\\u0000"', '"staff\\n"', '"sta\\u200bff"', '1', 'null', `"${'x'.repeat(257)}"`]) {
    t.throws(() => parseGroupMap(`alice: [${bad}]\n`, 'lower'), /must be a username with a list of group names/, bad);
  }
});

t.test("groups the portal named at login count only while groups.loginHeader is set", async (t) => {
  const file = { current: () => parseGroupMap('alice: [patients]\n', 'lower') } as unknown as WatchedFile<GroupMap>;
  t.same(new GroupDirectory(file, true).groupsOf('alice', ['staff', 'patients']), ['patients', 'staff'], 'both sources, once each');
  t.same(new GroupDirectory(null, true).groupsOf('bob', ['staff']), ['staff']);
  // A session begun while the header was trusted (or on an instance that still trusts it, during a rollout) keeps
  // the groups it took: they no longer count once the header is taken out of the config.
  t.same(new GroupDirectory(file, false).groupsOf('alice', ['staff']), ['patients'], 'the header no longer trusted');
  t.same(new GroupDirectory(null, false).groupsOf('bob', ['staff']), []);
});

t.test('an emptied file (a writer caught half-way) is a broken one: the last good groups stay', async (t) => {
  for (const text of ['', '\n  \n', '# staff\n']) t.throws(() => parseGroupMap(text, 'lower'), /group file: empty/, JSON.stringify(text));
  t.equal(parseGroupMap('{}\n', 'lower').size, 0, 'a file that maps nobody says so');
  const path = join(mkdtempSync(join(tmpdir(), 'mfa-groups-')), 'groups.yaml');
  writeFileSync(path, 'alice: [staff]\n');
  const clock = new FakeClock();
  const errors: string[] = [];
  const file = groupFile(path, 'lower', clock, (err) => errors.push(err.message));
  writeFileSync(path, '');
  clock.advance(2000);
  t.same(file.current().get('alice'), ['staff'], 'emptied: kept');
  t.same(errors, ['group file: empty (write {} for a file that maps nobody)'], 'and reported');
  writeFileSync(path, 'alice: [patients]\n');
  clock.advance(2000);
  t.same(file.current().get('alice'), ['patients'], 'written again: read');
});
