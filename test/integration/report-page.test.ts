// The report page over HTTP: a way back to the portal, the records yet to be signed as information, and one report
// built at a time: asking for several periods at once queues the builds (each reads the whole audit trail) instead of
// running them side by side.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signUpAndEnrol, startStack } from '../helpers/stack.js';

/** A gateway whose report page is for the group staff, and alice of that group signed in. */
async function staffStack(t: Tap.Test) {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-report-'));
  writeFileSync(join(dir, 'groups.yaml'), 'alice: [staff]\n');
  const s = await startStack({
    patch: (raw) => {
      raw.groups = { file: join(dir, 'groups.yaml') };
      raw.admin.report = { groups: ['staff'] };
    },
  });
  t.teardown(() => s.close());
  return { s, alice: await signUpAndEnrol(s) };
}

t.test('the page leads back to the portal, and names the records the gateway has yet to sign as information, not problems', async (t) => {
  const { alice } = await staffStack(t);
  const page = await alice.b.get('/_mfa/admin/report?days=1');
  t.equal(page.status, 200);
  t.match(page.body, '<nav><a href="/">Back to the portal</a></nav>', 'a way on, as on the other gateway pages');
  t.match(page.body, /records? written since [^<]* not signed yet, which is normal while the gateway runs: the next signature is due by/, 'the start is signed, the sign-in after it not yet');
  t.notMatch(page.body, 'Problems', 'no problem listed');
});

t.test('concurrent page requests for different periods are built one after another, each for its own period', async (t) => {
  const { s, alice } = await staffStack(t);

  // Each build takes a while (as a long trail does) and notes how many run alongside it.
  const report = s.app.gateway.report!;
  const build = report.build;
  let running = 0;
  let most = 0;
  const periods: number[] = [];
  report.build = async (period) => {
    running++;
    most = Math.max(most, running);
    periods.push(Math.round((period.to - period.from) / 86_400_000));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return await build(period);
    } finally {
      running--;
    }
  };

  const pages = await Promise.all([1, 2, 3, 4].map((days) => alice.b.get(`/_mfa/admin/report?days=${days}`)));
  t.same(pages.map((p) => p.status), [200, 200, 200, 200]);
  t.equal(most, 1, 'never two builds at once');
  t.same([...periods].sort(), [1, 2, 3, 4], 'one build per period');
  t.equal((await alice.b.get('/_mfa/admin/report?days=2')).body, pages[1]!.body, 'and each is kept as before');
  t.equal(periods.length, 4);
});

t.test('a few builds wait at most: one more period asked for meanwhile is refused, and asked again once they are done', async (t) => {
  const { s, alice } = await staffStack(t);
  const report = s.app.gateway.report!;
  const build = report.build;
  let builds = 0;
  report.build = async (period) => {
    builds++;
    await new Promise((resolve) => setTimeout(resolve, 200));
    return build(period);
  };

  const periods = [1, 2, 3, 4, 5, 6];
  const pages = await Promise.all(periods.map((days) => alice.b.get(`/_mfa/admin/report?days=${days}`)));
  const built = periods.filter((_d, i) => pages[i]!.status === 200);
  const refused = periods.filter((_d, i) => pages[i]!.status === 429);
  t.same([built.length, refused.length], [4, 2], 'four periods built, two refused');
  t.ok(pages.every((p) => p.status !== 429 || p.headers['retry-after'] === '60'), 'with the time to ask again');
  t.notOk(pages.some((p) => p.status === 429 && p.body.includes('/_mfa/step-up')), 'and no step-up offered: there is nothing to confirm');
  t.equal(builds, 4, 'the refused ones never built');
  t.equal((await alice.b.get(`/_mfa/admin/report?days=${built[0]}`)).status, 200, 'a period built is still shown meanwhile');
  t.equal((await alice.b.get(`/_mfa/admin/report?days=${refused[0]}`)).status, 200, 'and once the builds are done, a refused one is built');
  t.equal(builds, 5);
});
