// policy explain: --user names a signed-in person, and only a name the login accepts can be one.
import t from 'tap';
import { explainPolicy } from '../../../src/cli/policy-explain.js';
import { UsageError } from '../../../src/cli/usage.js';
import { testConfig } from '../../helpers/config.js';

t.test('--user with a name outside portal.login.usernamePattern is wrong usage, as no sign-in can use it', async (t) => {
  const config = testConfig('http://127.0.0.1:1', (raw) => {
    raw.portal.login.usernamePattern = '[a-z]+';
  });
  t.throws(() => explainPolicy(config, { path: '/records', user: 'alice@clinic.example' }), { constructor: UsageError, message: /--user: not a usable username/ });
  t.match(explainPolicy(config, { path: '/records', user: 'Alice' }).join('\n'), 'decision:');
});

t.test('a denial says why in words, with the answer the browser gets', async (t) => {
  const config = testConfig('http://127.0.0.1:1', (raw) => {
    raw.networks = { clinic: ['10.0.0.0/8'] };
    raw.legacyAuth = { endpoints: ['/api/login'] };
    raw.policy.rules.unshift({ name: 'closed', paths: ['/closed/'], decision: 'deny' }, { name: 'clinic only', paths: ['/clinic/'], networks: ['clinic'], decision: 'mfa' });
  });
  const decision = (q: Parameters<typeof explainPolicy>[1]) => explainPolicy(config, q).at(-1);
  t.equal(decision({ path: '/closed/x', user: 'alice' }), 'decision: denied by "closed": the rule\'s decision is deny (403 GW_ERR_ACCESS_DENIED)');
  t.equal(
    decision({ path: '/records?username=alice&password=x' }),
    'decision: denied by "portal": legacy authentication, an Authorization header (Basic, Digest, NTLM, Negotiate) or the login fields in the query (403 GW_ERR_LEGACY_AUTH)',
  );
  t.equal(decision({ path: '/api/login' }), 'decision: denied by "legacy endpoints": a legacyAuth.endpoints path (403 GW_ERR_LEGACY_AUTH)');
  // Without --ip the address is unknown: the running gateway knows it, so the decision is not a denial but a question.
  t.equal(
    decision({ path: '/clinic/x', user: 'alice' }),
    'decision: unknown without --ip: "clinic only" tests the network; give --ip A to judge network rules (a client address the gateway cannot read is denied: 403 GW_ERR_ACCESS_DENIED)',
  );
  t.ok(explainPolicy(config, { path: '/clinic/x', user: 'alice' }).includes('  > clinic only: unknown without --ip (the rule tests the network: give --ip to judge it)'), 'its trace line says so too');
  t.equal(decision({ path: '/clinic/x', user: 'alice', ip: '10.1.2.3' }), 'decision: allowed by "clinic only" (mfa)', 'with --ip the rule is judged');
  t.equal(decision({ path: '/clinic/x', user: 'alice', ip: '192.0.2.7' }), 'decision: allowed by "portal" (mfa)', 'an address outside the network: the next rule');
  t.equal(decision({ path: '/records?_method=DELETE', user: 'alice' }), 'decision: denied by "method override": the query asks the portal for another method (403 GW_ERR_ACCESS_DENIED)');
});

t.test('a login page under a rule that asks for a sign-in is explained as the gateway answers it: refused', async (t) => {
  const config = testConfig('http://127.0.0.1:1', (raw) => (raw.policy.rules[0].paths = ['/static/']));
  const decision = (q: Parameters<typeof explainPolicy>[1]) => explainPolicy(config, q).at(-1);
  t.equal(
    decision({ path: '/login?next=%2Frecords' }),
    'decision: sign-in required by "portal", on the login page itself: refused to a signed-out browser opening it (403 GW_ERR_ACCESS_DENIED); add its path to a public rule',
  );
  t.equal(decision({ path: '/records' }), 'decision: sign-in required by "portal"', 'another page: sent to sign in');
});

t.test('a method portal.methods leaves out is refused before any rule; HEAD goes with GET', async (t) => {
  const explain = (config: ReturnType<typeof testConfig>, method: string) => explainPolicy(config, { path: '/records', method, user: 'alice' }).at(-1);
  const config = testConfig('http://127.0.0.1:1');
  t.equal(explain(config, 'PUT'), 'method PUT: refused before any rule (405): not one of portal.methods');
  t.equal(explain(config, 'PROPFIND'), 'method PROPFIND: refused before any rule (405): not one of portal.methods');
  t.match(explain(config, 'HEAD'), /^decision: /);
  const widened = testConfig('http://127.0.0.1:1', (raw) => (raw.portal.methods = ['GET', 'POST', 'PUT']));
  t.match(explain(widened, 'PUT'), /^decision: /, 'listed: judged by the rules');
});

t.test('a path refused before any rule (400 GW_ERR_BAD_PATH) is explained with its cause', async (t) => {
  const config = testConfig('http://127.0.0.1:1');
  const explain = (path: string) => explainPolicy(config, { path }).join('\n');
  t.equal(
    explain('/ADMINI~1/'),
    '/ADMINI~1/: refused before any rule (400 GW_ERR_BAD_PATH): a name shaped as a Windows 8.3 short name (ADMINI~1), which IIS may open as a longer name (/administration/)',
  );
  t.match(explain('/records%2f..%2fadmin'), /^\/records%2f\.\.%2fadmin: refused before any rule \(400 GW_ERR_BAD_PATH\): an encoded '\/' or '\\'/);
  t.match(explain('/ad%E2%80%8Bmin/'), /\(400 GW_ERR_BAD_PATH\): an invisible character/);
  t.match(explain('/admin./'), /\(400 GW_ERR_BAD_PATH\): a name ending in '\.' or ' ', which Windows drops/);
  // Names that only look like those: decided by the rules.
  for (const path of ['/ADMINISTRATOR~1/', '/a/./b/../records', '/caf%C3%A9']) t.notMatch(explain(path), 'refused before any rule', path);
});
