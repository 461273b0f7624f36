// The groups file: what it may hold, and what it refuses (keeping the last good content, see WatchedFile).
import t from 'tap';
import type { WatchedFile } from '../../../src/mechanisms/watched-file.js';
import { GroupDirectory, parseGroupMap, type GroupMap } from '../../../src/services/groups.js';

t.test('one entry per user, whatever the spelling', async (t) => {
  t.same(parseGroupMap('alice: [patients]\nbob: ["cn=staff,o=clinic", Ärzte]\n', 'lower').get('bob'), ['cn=staff,o=clinic', 'Ärzte']);
  // `Alice` and `alice` are one person with usernameCase lower: the later entry would silently replace the earlier.
  for (const text of ['alice: [restricted]\nAlice: [staff]\n', 'alice: [restricted]\n"alice ": [staff]\n', 'alice: [restricted]\nａｌｉｃｅ: [staff]\n']) {
    t.throws(() => parseGroupMap(text, 'lower'), /names the same user as an earlier one/, JSON.stringify(text));
  }
  t.equal(parseGroupMap('alice: [a]\nAlice: [b]\n', 'exact').size, 2, 'two users where case counts');
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
