import t from 'tap';
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, configWarnings, loadConfigFile, resolveConfig } from '../../../src/config/load.js';
import { chainsTo } from '../../../src/mechanisms/certificates.js';
import { relyingParty } from '../../../src/mechanisms/webauthn.js';
import { randomKey, rawTestConfig } from '../../helpers/config.js';
import { TestCa } from '../../helpers/pki.js';

const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

t.test('defaults are filled in and the result is frozen', async (t) => {
  const c = resolveConfig(rawTestConfig('http://127.0.0.1:1'));
  t.equal(c.session.idleTimeoutSeconds, 900);
  t.equal(c.session.absoluteTimeoutSeconds, 43200);
  t.equal(c.mfa.maxAttemptsPerLogin, 5);
  t.equal(c.mfa.pendingTimeoutSeconds, 300);
  t.equal(c.store.type, 'memory');
  t.equal(c.server.prefix, '/_mfa');
  t.ok(Object.isFrozen(c.portal.login));
});

t.test('a sign-in in progress cannot be limited to less than its own time limit', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.mfa = { ...raw.mfa, pendingTimeoutSeconds: 900, pendingMaxSeconds: 600 };
  t.same(problemsOf(() => resolveConfig(raw)), ['mfa.pendingMaxSeconds: must be at least mfa.pendingTimeoutSeconds (900; the same: no more time is offered), found 600']);
  raw.mfa.pendingMaxSeconds = 900;
  t.equal(resolveConfig(raw).mfa.pendingMaxSeconds, 900, 'the same: no more time');
});

t.test('a rule name given twice is named, with the rule that has it first', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.policy.rules.push({ name: 'admin', paths: ['/admin/'], decision: 'deny' }, { name: 'sign-in page', paths: ['/help'], decision: 'public' });
  t.same(problemsOf(() => resolveConfig(raw)), ['policy.rules.3.name: the name of policy.rules.0 too; rule names must be unique, found "sign-in page"']);
});

t.test('the login page is a path on the gateway, never another site', async (t) => {
  for (const page of ['//evil.example/login', '/\\evil.example/login']) {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.portal.login.page = page;
    t.match(problemsOf(() => resolveConfig(raw)), [/^portal\.login\.page: must match pattern/], page);
  }
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.portal.login.page = '/Account/Login?ReturnUrl={target}';
  t.equal(resolveConfig(raw).portal.login.page, '/Account/Login?ReturnUrl={target}');
});

t.test('every problem is reported with its path, secrets never echoed', async (t) => {
  const raw = rawTestConfig('ftp://nope');
  raw.portal.login.bodyType = 'xml';
  raw.session = { idleTimeoutSeconds: -1 };
  raw.keys.pseudonym = 'short-secret-value';
  raw.surprise = true;
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('portal.url:') && p.includes('ftp://nope')), 'portal.url with what was found');
  t.ok(problems.some((p) => p.startsWith('portal.login.bodyType:')), 'bodyType');
  t.ok(problems.some((p) => p.startsWith('session.idleTimeoutSeconds:')), 'idle');
  t.ok(problems.some((p) => p.startsWith('keys.pseudonym:')), 'pseudonym');
  t.ok(problems.some((p) => p.includes("'surprise'")), 'unknown option');
  t.notOk(problems.join('\n').includes('short-secret-value'), 'secret value not printed');
});

t.test('a mis-shaped secret or a URL with credentials is not echoed either', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  // `keys.signing` indented without its `- `: an object where a list belongs, holding the key itself.
  const signing = raw.keys.signing[0];
  raw.keys.signing = signing;
  raw.store = { type: 'redis', redis: { url: 'redis//default:S3cretRedisPw@10.0.0.5:6379' } };
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('keys.signing:')), 'the problem is reported');
  t.ok(problems.some((p) => p.startsWith('store.redis.url:')), 'the URL problem is reported');
  t.notOk(problems.join('\n').includes(signing.secret), 'the key is not printed');
  t.notOk(problems.join('\n').includes('S3cretRedisPw'), 'the password is not printed');
});

t.test('nothing found under an option that holds secrets is echoed, whatever the option is called', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  const [signing, encryption] = [randomKey(), randomKey()];
  // Mis-indented lists: the key itself where a list, or an entry of one, belongs.
  raw.keys.signing = signing;
  raw.keys.encryption = [encryption];
  raw.identity = { assertion: { signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), keyId: 'pasted A1kEy+' } };
  raw.store = { type: 'redis', redis: { url: 'S3cretRedisPw' } };
  raw.audit.keyId = 'pasted Au0dit+';
  raw.enrolment = { proof: 'webhook', webhook: { url: 'vendor.example/hook/S3cretPathToken', secret: randomKey() } };
  raw.notify = { url: 'not a url?token=N0tifyToken', secret: randomKey() };
  const problems = problemsOf(() => resolveConfig(raw));
  for (const path of ['keys.signing', 'keys.encryption.0', 'identity.assertion.keyId', 'store.redis.url', 'audit.keyId', 'enrolment.webhook.url', 'notify.url']) {
    t.ok(problems.some((p) => p.startsWith(`${path}:`)), `${path}: the problem is reported`);
  }
  const secrets = { signing, encryption, assertion: 'A1kEy', redis: 'S3cretRedisPw', audit: 'Au0dit', webhook: 'S3cretPathToken', notify: 'N0tifyToken' };
  for (const [where, secret] of Object.entries(secrets)) t.notOk(problems.join('\n').includes(secret), `the ${where} secret is not printed`);
  t.notOk(problems.some((p) => p.includes('found')), 'nothing found is shown');
});

t.test('a value with a query or credentials is never echoed; a harmless one is', async (t) => {
  const raw = rawTestConfig('http://portal.internal/?token=P0rtalToken');
  raw.server = { ...raw.server, port: 70000 };
  let problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.includes('server.port: must be <= 65535, found 70000'), 'a wrong port is shown');
  t.ok(problems.some((p) => p.startsWith('portal.url:')), 'the URL problem is reported');
  t.notOk(problems.join('\n').includes('P0rtalToken'), 'the URL with a query is not printed');

  const semantic = rawTestConfig('http://127.0.0.1:1');
  semantic.server = { ...semantic.server, trustedProxies: ['10.0.0.300', 'proxy.internal?token=Pr0xyToken', '10.0.0.1\u202e\u009b31m'] };
  semantic.portal.login.success.location = '([';
  semantic.portal.login.success.body = '(?<=token=B0dyToken';
  semantic.portal.login.usernamePattern = '[a-z';
  semantic.admin = { ...semantic.admin, report: { groups: ['ops'], networks: ['vpn', 'ops@vpn'] } };
  problems = problemsOf(() => resolveConfig(semantic));
  t.ok(problems.includes('server.trustedProxies.0: not an address or CIDR, found "10.0.0.300"'), 'a wrong address is shown');
  t.ok(problems.includes('portal.login.success.location: not a valid regular expression, found "(["'), 'a wrong expression is shown');
  t.ok(problems.includes('portal.login.usernamePattern: not a valid regular expression, found "[a-z"'), 'the username pattern is checked too');
  t.ok(problems.includes('admin.report.networks.0: neither a network name nor an address, found "vpn"'), 'an unknown network is shown');
  t.ok(problems.includes('server.trustedProxies.1: not an address or CIDR'), 'an address with a query is not');
  t.ok(problems.includes('server.trustedProxies.2: not an address or CIDR, found "10.0.0.1\\u202e\\u009b31m"'), 'what a terminal would not show as itself is escaped');
  t.ok(problems.includes('portal.login.success.body: not a valid regular expression'), 'nor an expression with one');
  t.ok(problems.includes('admin.report.networks.1: neither a network name nor an address'), 'nor one with an @');
});

t.test('a pattern with a repetition inside a repetition is warned of: a crafted username could take exponential time', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.portal.login.usernamePattern = '([a-z0-9]+[._-]?)+';
  raw.portal.login.failure = { status: [200], body: '(Invalid|Wrong)( \\w+)*' };
  const slow = (c: ReturnType<typeof resolveConfig>) => configWarnings(c).filter((w) => w.includes('repetition inside a repetition'));
  t.same(
    slow(resolveConfig(raw)).map((w) => w.split(' has ')[0]),
    ['portal.login.usernamePattern', 'portal.login.failure.body'],
    'each such pattern is named',
  );
  t.notOk(slow(resolveConfig(raw)).join('\n').includes('Invalid|Wrong'), 'without printing it');
  raw.portal.login.usernamePattern = '^[a-z0-9._@-]+$';
  raw.portal.login.failure.body = 'Invalid username or password|Your form expired';
  raw.portal.login.success.location = '^/(?!login)';
  t.same(slow(resolveConfig(raw)), [], 'alternatives, lookaheads and single repetitions are not');
  raw.portal.login.success.location = '(?<!login)$';
  t.same(slow(resolveConfig(raw)), [], 'nor a lookbehind, which the check cannot read');
});

t.test('an empty listening address (a variable set but empty) is refused: it would listen on every interface', async (t) => {
  for (const at of ['server', 'admin'] as const) {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw[at] = { ...raw[at], host: '${GW_HOST}' };
    t.same(problemsOf(() => resolveConfig(raw, { env: { GW_HOST: '' } })), [`${at}.host: environment variable GW_HOST is empty`], at);
  }
});

t.test('a value from the environment or a file is never echoed: a secret given to the wrong option would be printed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'proxies'), 'Fi1eSecretValue');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, port: '${GW_KEY}', trustedProxies_FILE: join(dir, 'proxies'), hosts: ['${GW_HOST}'] } as never;
  const problems = problemsOf(() => resolveConfig(raw, { env: { GW_KEY: 'EnvSecretValue', GW_HOST: 'gateway example' } }));
  t.ok(problems.includes('server.port: must be integer, found text from an environment variable or a file (only a text option takes one)'), 'the problem is named');
  t.ok(problems.some((p) => p.startsWith('server.trustedProxies:')), 'the file one too');
  t.notMatch(problems.join('\n'), /EnvSecretValue|Fi1eSecretValue|gateway example/, 'neither value is printed');
  raw.server = { ...raw.server, port: 70000, hosts: ['gateway.example'] } as never;
  delete (raw.server as Record<string, unknown>).trustedProxies_FILE;
  t.ok(problemsOf(() => resolveConfig(raw, { env: {} })).includes('server.port: must be <= 65535, found 70000'), 'a value written in the file is');
});

t.test('a number or a true/false from the environment or a file is refused as the text it is, not as a value not shown', async (t) => {
  const dir = t.testdir({ enabled: 'true\n' });
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, port: '${GW_PORT}' } as never;
  raw.audit = { ...raw.audit, enabled_FILE: join(dir, 'enabled') } as never;
  raw.portal = { ...raw.portal, name: '${GW_NAME}' };
  const note = 'found text from an environment variable or a file (only a text option takes one)';
  t.same(problemsOf(() => resolveConfig(raw, { env: { GW_PORT: '8443', GW_NAME: 'Clinic' } })), [`server.port: must be integer, ${note}`, `audit.enabled: must be boolean, ${note}`], 'each said, the text option from the environment taken');
  // The negative: text written in the file is shown as found, as before.
  raw.server = { ...raw.server, port: '8443' } as never;
  delete (raw.audit as Record<string, unknown>).enabled_FILE;
  t.same(problemsOf(() => resolveConfig(raw, { env: { GW_NAME: 'Clinic' } })), ['server.port: must be integer, found "8443"']);
});

t.test('a file option from the environment that names no file: the path, which is the variable\'s value, is not printed', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.groups = { file: '/etc/mfa/${GW_KEY}' };
  raw.ui = { ...raw.ui, logoFile: '/nonexistent/logo.png' };
  const problems = problemsOf(() => resolveConfig(raw, { env: { GW_KEY: 'EnvSecretValue' } }));
  t.ok(problems.includes('groups.file: no such file'), 'the problem is named');
  t.notMatch(problems.join('\n'), 'EnvSecretValue', 'the value is not printed');
  t.ok(problems.includes('ui.logoFile: no such file: /nonexistent/logo.png'), 'a path written in the file is');
});

t.test('an encryption key id has no ".", which separates the parts of a sealed record; a signing key id may', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.keys.encryption[0].id = 'enc.2026';
  t.same(problemsOf(() => resolveConfig(raw)), ['keys.encryption.0.id: must match pattern "^[A-Za-z0-9_-]{1,32}$"'], 'enc.2026 is refused');
  raw.keys.encryption[0].id = 'enc-2026';
  raw.keys.signing[0].id = 'sig.2026';
  t.same(problemsOf(() => resolveConfig(raw)), [], 'enc-2026 and sig.2026 are fine');
});

t.test('one secret under two key ids is refused (a rotation to it would change nothing); one for two purposes warns', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  const old = raw.keys.encryption[0].secret;
  // The "new" key made by copying the old one's secret.
  raw.keys.encryption = [{ id: 'e2', secret: old }, raw.keys.encryption[0]];
  t.same(problemsOf(() => resolveConfig(raw)), ['keys.encryption.1.secret: the same key as keys.encryption.0.secret: every key needs a secret of its own (an old secret under a new id is no new key)']);
  // The same bytes spelt in base64 rather than base64url are the same key.
  raw.keys.encryption = [{ id: 'e2', secret: randomKey() }, { id: 'e1', secret: old }];
  raw.keys.signing = [{ id: 's2', secret: `${Buffer.from(raw.keys.signing[0].secret, 'base64url').toString('base64')}` }, raw.keys.signing[0]];
  t.same(problemsOf(() => resolveConfig(raw)), ['keys.signing.1.secret: the same key as keys.signing.0.secret: every key needs a secret of its own (an old secret under a new id is no new key)']);
  const problems = problemsOf(() => resolveConfig(raw)).join('\n');
  t.notOk(problems.includes(raw.keys.signing[0].secret), 'the secret is not printed');
  // One key for two purposes warns: an installation doing so could not start, and its pseudonym key cannot change.
  raw.keys.signing = [raw.keys.signing[1]];
  raw.keys.pseudonym = raw.keys.signing[0].secret;
  t.same(problemsOf(() => resolveConfig(raw)), [], 'one key for two purposes starts');
  const warnings = configWarnings(resolveConfig(raw)).filter((w) => w.includes('the same key'));
  t.match(warnings, [/^keys.pseudonym: the same key as keys.signing.0.secret: give each purpose a secret of its own/], 'and warns');
  t.notOk(warnings.join('\n').includes(raw.keys.pseudonym), 'the secret is not printed');
  raw.keys.pseudonym = randomKey();
  t.same([problemsOf(() => resolveConfig(raw)), configWarnings(resolveConfig(raw)).filter((w) => w.includes('the same key'))], [[], []], 'keys of their own are fine');
});

t.test('semantic checks', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.portal.login.success.location = '([';
  raw.keys.encryption[0].secret = Buffer.alloc(40).toString('base64');
  raw.portal.logoutPaths = ['/_mfa/x'];
  raw.session = { idleTimeoutSeconds: 50000, absoluteTimeoutSeconds: 40000 };
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('portal.login.success.location:')));
  t.ok(problems.some((p) => p.startsWith('keys.encryption.0.secret:')));
  t.ok(problems.some((p) => p.includes('gateway prefix')));
  t.ok(problems.some((p) => p.startsWith('session.idleTimeoutSeconds:')));
});

t.test('keys that are not random bytes in base64: refused, whatever their decoded length', async (t) => {
  const weak = {
    passphrase: 'riverbend patient portal session signing key 2026!',
    words: 'riverbend-health-pseudonym-key-do-not-change-2026-x',
    hex: 'a3f09c'.repeat(10),
    zeros: Buffer.alloc(32).toString('base64'),
    capitals: 'QWERTYUIOPASDFGHJKLZXCVBNM0123456789QWERTYU',
  };
  for (const [what, secret] of Object.entries(weak)) {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.keys.signing[0].secret = secret;
    raw.keys.pseudonym = secret;
    const problems = problemsOf(() => resolveConfig(raw));
    t.ok(problems.some((p) => p.startsWith('keys.signing.0.secret:')) && problems.some((p) => p.startsWith('keys.pseudonym:')), what);
    t.notOk(problems.join('\n').includes(secret), 'not echoed');
  }
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit = { enabled: true, signingKey: Buffer.alloc(32).toString('base64') };
  t.match(problemsOf(() => resolveConfig(raw)), [/^audit.signingKey: does not look like random bytes/], 'an audit seed of zeros');
  raw.audit.signingKey = randomKey();
  raw.keys.encryption[0].secret = randomBytes(48).toString('base64url');
  t.same(problemsOf(() => resolveConfig(raw)), ['keys.encryption.0.secret: must decode to 32 bytes, found 48'], 'random, but not an AES-256 key');
});

t.test('an unknown option named with its value (no space after the colon in a flow mapping) is not shown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-cfg-'));
  const secret = randomKey();
  const bare = `a${randomKey().slice(1)}`;
  writeFileSync(join(dir, 'gw.yaml'), `portal: { url: 'http://portal.internal:8080', colour: blue }\npolicy: { rules: [{ name: all, paths: [/], decision: mfa }] }\nkeys:\n  signing: [{ id: s, secret:${secret} }, { id: t, ${bare} }]\n  encryption: [{ id: e, secret: ${randomKey()}, colour: blue, url: x }]\n  pseudonym: ${randomKey()}\n`);
  const problems = problemsOf(() => loadConfigFile(join(dir, 'gw.yaml')));
  t.ok(problems.some((p) => p.startsWith('keys.signing.0: must NOT have additional properties (its name')), 'reported');
  t.ok(problems.some((p) => p.startsWith('keys.signing.1: must NOT have additional properties (its name')), 'a key without its option name too');
  t.notOk(problems.join('\n').includes(secret) || problems.join('\n').includes(bare), 'neither key is printed');
  t.ok(problems.some((p) => p.startsWith("keys.encryption.0: must NOT have additional properties 'url'")), 'under keys: an option name the config has elsewhere is');
  t.ok(problems.some((p) => p.startsWith('keys.encryption.0: must NOT have additional properties (its name')), 'another is not');
  t.ok(problems.some((p) => p.startsWith("portal: must NOT have additional properties 'colour'")), 'elsewhere, a name is');
});

t.test('keys that cannot be read and a port taken twice are problems by path, not failures at start', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.audit.signingKey = 'not-an-ed25519-key-but-long-enough-for-schema';
  raw.identity = { assertion: { signingKey: 'not-a-pem-but-long-enough-for-the-schema-check' } };
  raw.server = { ...raw.server, port: 8080 };
  raw.admin = { ...raw.admin, enabled: true, port: 8080 };
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('audit.signingKey: not an Ed25519')), 'audit key');
  t.ok(problems.some((p) => p.startsWith('identity.assertion.signingKey: not an EC P-256')), 'assertion key');
  t.ok(problems.some((p) => p.startsWith('admin.port:')), 'one port for both listeners');
  const wildcard = { ...raw, server: { ...raw.server, host: '0.0.0.0' } };
  t.ok(problemsOf(() => resolveConfig(wildcard)).some((p) => p.startsWith('admin.port:')), 'also when one listens on every address');
  raw.admin.port = 9090;
  raw.identity.assertion.signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  delete raw.audit.signingKey;
  raw.audit.enabled = false;
  t.same(problemsOf(() => resolveConfig(raw)), [], 'good keys and two ports: no problem');
});

t.test('each identity header once, and none the gateway sets itself', async (t) => {
  const withIdentity = (identity: Record<string, unknown>) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.identity = identity;
    return problemsOf(() => resolveConfig(raw));
  };
  const assertion = { signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  const twice = 'identity: userHeader, groupsHeader and assertion.header must name different headers';
  // The groups would replace the username: a member of `admin` would reach the portal as the user admin.
  t.same(withIdentity({ userHeader: 'X-Portal-User', groupsHeader: 'x-portal-user' }), [twice]);
  t.same(withIdentity({ userHeader: 'X-MFA-Assertion', assertion }), [twice]);
  const taken = (name: string) => [`identity: ${name} is a header the gateway sets itself for the portal, or one of the connection's own`];
  t.same(withIdentity({ userHeader: 'Cookie' }), taken('cookie'));
  t.same(withIdentity({ groupsHeader: 'X-Forwarded-For' }), taken('x-forwarded-for'));
  // undici refuses a request carrying one: every signed-in request would fail.
  t.same(withIdentity({ userHeader: 'Keep-Alive' }), taken('keep-alive'));
  t.same(withIdentity({ assertion: { ...assertion, header: 'Upgrade' } }), taken('upgrade'));
  t.same(withIdentity({ userHeader: 'X-MFA-User', groupsHeader: 'X-MFA-Groups', assertion }), [], 'three headers of their own');
  // An assertion outliving the session's idle timeout: warned of, as it is believed until its exp.
  const lasting = (lifetimeSeconds: number) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.identity = { assertion: { ...assertion, lifetimeSeconds } };
    raw.session = { idleTimeoutSeconds: 600 };
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('identity.assertion.lifetimeSeconds'));
  };
  t.same(lasting(900), ['identity.assertion.lifetimeSeconds (900) is longer than session.idleTimeoutSeconds (600): an assertion stays valid after the session it came from has timed out']);
  t.same(lasting(600), [], 'as long as the idle timeout: no warning');
});

t.test('a file the gateway reads at start must be there', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.groups = { ...raw.groups, file: '/nonexistent/groups.yaml' };
  raw.ui = { ...raw.ui, logoFile: '/nonexistent/logo.png' };
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.includes('groups.file: no such file: /nonexistent/groups.yaml'), 'groups.file');
  t.ok(problems.includes('ui.logoFile: no such file: /nonexistent/logo.png'), 'ui.logoFile');
  const dir = mkdtempSync(join(tmpdir(), 'mfa-files-'));
  writeFileSync(join(dir, 'groups.yaml'), 'alice: [patients]\n');
  raw.groups.file = join(dir, 'groups.yaml');
  delete raw.ui.logoFile;
  t.same(problemsOf(() => resolveConfig(raw)), [], 'there: no problem');
});

t.test('the audit trail is on unless turned off, and then needs its signing key', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  delete raw.audit.signingKey;
  t.ok(problemsOf(() => resolveConfig(raw)).includes('audit.signingKey: needed when audit.enabled'), 'no key: refused');
  raw.audit.enabled = false;
  t.same(problemsOf(() => resolveConfig(raw)), [], 'turned off explicitly: no key needed');
  delete raw.audit.enabled;
  raw.audit.signingKey = randomKey();
  t.equal(resolveConfig(raw).audit.enabled, true, 'on by default');
  raw.audit.redisStream = { enabled: true };
  t.ok(problemsOf(() => resolveConfig(raw)).includes('audit.redisStream: needs store.type redis'), 'a stream needs Redis');
});

t.test('replica acknowledgements: single and sentinel, not cluster', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.store = { type: 'redis', redis: { mode: 'sentinel', sentinels: [{ host: '10.0.0.1', port: 26379 }], masterName: 'm', replicaAcks: 1 } };
  t.equal(resolveConfig(raw).store.redis.replicaAcks, 1);
  raw.store.redis = { mode: 'cluster', nodes: [{ host: '10.0.0.1', port: 6379 }], replicaAcks: 1 };
  t.ok(problemsOf(() => resolveConfig(raw)).includes('store.redis.replicaAcks: not available in cluster mode'));
  raw.store.redis.replicaAcks = 0;
  t.same(problemsOf(() => resolveConfig(raw)), []);
});

t.test('store.redis.url: a port and a db number that Redis can take, checked at check time; credentials in one place', async (t) => {
  const withUrl = (url: string, more: Record<string, string> = {}) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.store = { type: 'redis', redis: { url, ...more } };
    return raw;
  };
  for (const url of ['redis://127.0.0.1:notaport', 'redis://h:6379/notadb', 'redis://h:70000', 'redis://h:0', 'redis://', 'redis://h:6379/1/2', 'rediss://:S3cretPw@h:x']) {
    const problems = problemsOf(() => resolveConfig(withUrl(url)));
    t.same(problems, ['store.redis.url: not a Redis URL (redis[s]://[user:password@]host[:port 1-65535][/db number])'], url);
  }
  for (const url of ['redis://127.0.0.1:6380', 'redis://h', 'redis://h/', 'redis://h:6379/2', 'rediss://user:pw@[::1]:6380/15']) t.same(problemsOf(() => resolveConfig(withUrl(url))), [], url);
  // ioredis takes a URL's credentials and ignores the options then (checked: its parseURL, then lodash defaults).
  const warned = (url: string, more: Record<string, string>) => configWarnings(resolveConfig(withUrl(url, more))).filter((w) => w.startsWith('store.redis.url'));
  t.equal(warned('redis://:urlPw@h:6379', { password: 'S3cretPw' }).length, 1, 'two passwords');
  t.equal(warned('redis://app@h:6379', { password: 'S3cretPw' }).length, 1, 'a user in the URL: the password option is ignored too');
  t.same(warned('redis://h:6379', { username: 'app', password: 'S3cretPw' }), [], 'the options alone');
  t.same(warned('redis://app:urlPw@h:6379', {}), [], 'the URL alone');
});

t.test('settings that would start a gateway nothing can reach: refused at check', async (t) => {
  const withHosts = (hosts: string[]) => problemsOf(() => resolveConfig({ ...rawTestConfig('http://127.0.0.1:1'), server: { ...rawTestConfig('http://127.0.0.1:1').server, hosts } }));
  for (const host of ['portal.example.org:443', '::1', '[::1]:8443']) t.ok(withHosts([host]).some((p) => p.startsWith('server.hosts.0:')), `${host}: a Host never equal to it`);
  t.same(withHosts(['portal.example.org', '[::1]', '127.0.0.1']), [], 'names, bracketed IPv6 and IPv4');

  const listeners = (serverHost: string, adminHost: string) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.server = { ...raw.server, host: serverHost, port: 18080 };
    raw.admin = { ...raw.admin, enabled: true, host: adminHost, port: 18080 };
    return problemsOf(() => resolveConfig(raw)).includes('admin.port: the same address as server.port');
  };
  t.ok(listeners('127.0.0.1', 'localhost'), 'localhost is 127.0.0.1');
  t.ok(listeners('::1', 'localhost'), 'and ::1');
  t.ok(listeners('0.0.0.0', '127.0.0.1'), 'a wildcard takes every address');
  t.notOk(listeners('127.0.0.1', '127.0.0.2'), 'two loopback addresses are two');

  const forwardAuth = rawTestConfig('http://127.0.0.1:1');
  forwardAuth.forwardAuth = { enabled: true };
  t.ok(problemsOf(() => resolveConfig(forwardAuth)).includes('forwardAuth.enabled: needs server.trustedProxies (the proxies that may ask)'));
  t.ok(problemsOf(() => resolveConfig(forwardAuth)).includes("forwardAuth.enabled: needs forwardAuth.sessionCookies (the names of the portal's session cookies)"));
  forwardAuth.server.trustedProxies = ['127.0.0.1'];
  forwardAuth.forwardAuth.sessionCookies = ['JSESSIONID'];
  t.doesNotThrow(() => resolveConfig(forwardAuth), 'with both');
  forwardAuth.forwardAuth.sessionCookies = ['JSESSIONID; x=1'];
  t.match(problemsOf(() => resolveConfig(forwardAuth)), [/^forwardAuth\.sessionCookies\.0: must match pattern/], 'a cookie name is a token');
});

t.test('${ENV} and *_FILE secrets', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-cfg-'));
  const enc = randomKey();
  writeFileSync(join(dir, 'enc.key'), `${enc}\n`);
  const sig = randomKey();
  writeFileSync(
    join(dir, 'gw.yaml'),
    `audit:\n  enabled: false\nportal:\n  url: \${PORTAL}\npolicy:\n  rules:\n    - { name: all, paths: [/], decision: mfa }\nkeys:\n  signing:\n    - id: s\n      secret: \${SIG}\n  encryption:\n    - id: e\n      secret_FILE: enc.key\n  pseudonym: \${PSEUDO}\n`,
  );
  const c = loadConfigFile(join(dir, 'gw.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: `${sig}\n`, PSEUDO: randomKey() });
  t.equal(c.portal.url, 'http://portal.internal:8080');
  t.equal(c.keys.signing[0]!.secret, sig, 'the variable, trimmed as a file is');
  t.equal(c.keys.encryption[0]!.secret, enc, 'file content, trimmed');
  const problems = problemsOf(() => loadConfigFile(join(dir, 'gw.yaml'), {}));
  t.ok(problems.some((p) => p.includes('environment variable PORTAL is not set')));
  // A secret given both ways: which one counted would depend on their order in the file.
  writeFileSync(join(dir, 'both.yaml'), readFileSync(join(dir, 'gw.yaml'), 'utf8').replace('  pseudonym: ${PSEUDO}\n', '  pseudonym: ${PSEUDO}\n  pseudonym_FILE: enc.key\n'));
  t.same(problemsOf(() => loadConfigFile(join(dir, 'both.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: sig, PSEUDO: randomKey() })), ['keys.pseudonym: give either pseudonym or pseudonym_FILE, not both']);
  t.match(problemsOf(() => loadConfigFile(join(dir, 'missing.yaml')))[0], /cannot read/);
  // The two variables swapped: the secret where its file's name belongs is not printed as a path.
  const swapped = randomKey();
  writeFileSync(join(dir, 'swapped.yaml'), readFileSync(join(dir, 'gw.yaml'), 'utf8').replace('  pseudonym: ${PSEUDO}\n', '  pseudonym_FILE: ${PSEUDO}\n'));
  const found = problemsOf(() => loadConfigFile(join(dir, 'swapped.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: sig, PSEUDO: swapped }));
  t.same(found, [`keys.pseudonym_FILE: cannot read the secret file it names (ENOENT; a relative path is read from ${dir})`], 'the option named, once');
  t.notOk(found.join('\n').includes(swapped.slice(0, 12)), 'the secret not shown');
  // A variable in the file's path that is not set: the variable named, no file tried.
  writeFileSync(join(dir, 'unset.yaml'), readFileSync(join(dir, 'gw.yaml'), 'utf8').replace('  pseudonym: ${PSEUDO}\n', '  pseudonym_FILE: /run/${SECRETS_DIR}/pseudonym\n'));
  t.same(problemsOf(() => loadConfigFile(join(dir, 'unset.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: sig })), ['keys.pseudonym_FILE: environment variable SECRETS_DIR is not set'], 'one line');
  // Nor is a path written in the file (it may be a secret written where its file belongs); where a relative one is
  // read from is named.
  writeFileSync(join(dir, 'gone.yaml'), readFileSync(join(dir, 'gw.yaml'), 'utf8').replace('secret_FILE: enc.key', 'secret_FILE: gone.key'));
  t.same(problemsOf(() => loadConfigFile(join(dir, 'gone.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: sig, PSEUDO: randomKey() })), [`keys.encryption.0.secret_FILE: cannot read the secret file it names (ENOENT; a relative path is read from ${dir})`]);
  writeFileSync(join(dir, 'folder.yaml'), readFileSync(join(dir, 'gw.yaml'), 'utf8').replace('secret_FILE: enc.key', `secret_FILE: ${dir}`));
  t.same(problemsOf(() => loadConfigFile(join(dir, 'folder.yaml'), { PORTAL: 'http://portal.internal:8080', SIG: sig, PSEUDO: randomKey() })), ['keys.encryption.0.secret_FILE: cannot read the secret file it names (EISDIR)']);
  writeFileSync(join(dir, 'bad.yaml'), 'portal: [');
  t.match(problemsOf(() => loadConfigFile(join(dir, 'bad.yaml')))[0], /not valid YAML \(\w+ at line 1, column \d+\)/);
  // An unquoted secret that YAML reads as an alias, or that breaks the syntax: the problem, never the value.
  writeFileSync(join(dir, 'alias.yaml'), 'store:\n  redis:\n    password: *Hunter2Redis\n');
  const alias = problemsOf(() => loadConfigFile(join(dir, 'alias.yaml')))[0]!;
  t.match(alias, /not valid YAML \(an alias/);
  t.notMatch(alias, 'Hunter2Redis');
  writeFileSync(join(dir, 'broken.yaml'), 'keys:\n  pseudonym: "S3cretPseudonymKey\n');
  const broken = problemsOf(() => loadConfigFile(join(dir, 'broken.yaml')))[0]!;
  t.match(broken, /not valid YAML \(MISSING_CHAR at line \d+, column \d+\)/);
  t.notMatch(broken, 'S3cret');
});

t.test('folders named in the config are relative to the config file, not to the working directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-cfg-'));
  const raw = rawTestConfig('http://portal.internal');
  mkdirSync(join(dir, 'locales'));
  writeFileSync(join(dir, 'gw.yaml'), JSON.stringify({ ...raw, audit: { ...raw.audit, dir: 'trail' }, ui: { localesDir: 'locales' } }));
  const c = loadConfigFile(join(dir, 'gw.yaml'));
  t.equal(c.audit.dir, join(dir, 'trail'));
  t.equal(c.ui.localesDir, join(dir, 'locales'));
  t.equal(resolveConfig({ ...rawTestConfig('http://portal.internal'), ui: { localesDir: dir } }, { baseDir: '/srv' }).ui.localesDir, dir, 'an absolute folder stays');
});

t.test('the shipped example and demo configs are valid', async (t) => {
  const env = {
    ...{ MFA_SIGNING_KEY: randomKey(), MFA_PSEUDONYM_KEY: randomKey(), MFA_AUDIT_KEY: randomKey(), MFA_DEMO_PORTAL_URL: 'http://127.0.0.1:8081' },
    ...{ MFA_DEMO_SIGNING_KEY: randomKey(), MFA_DEMO_ENCRYPTION_KEY: randomKey(), MFA_DEMO_PSEUDONYM_KEY: randomKey(), MFA_DEMO_AUDIT_KEY: randomKey(), MFA_DEMO_AUDIT_DIR: '/tmp/audit' },
  };
  t.doesNotThrow(() => loadConfigFile('config/demo.yaml', env));
  t.same(configWarnings(loadConfigFile('config/demo.yaml', env)).filter((w) => w.startsWith('portal.login')), [], 'its login rules tell a right password from a wrong one');
  t.same(configWarnings(loadConfigFile('config/demo.yaml', env)).filter((w) => w.startsWith('server.hosts')), [], 'plain http on loopback names, where browsers keep Secure cookies');
  // The example reads two keys from files that exist only in a deployment.
  t.same(problemsOf(() => loadConfigFile('config/gateway.example.yaml', env)).sort(), [
    'identity.assertion.signingKey_FILE: cannot read the secret file it names (ENOENT)',
    'keys.encryption.0.secret_FILE: cannot read the secret file it names (ENOENT)',
  ].sort());
  // Without the variables either: each secret missing is named once, with no schema error about its empty value.
  t.same(problemsOf(() => loadConfigFile('config/gateway.example.yaml', {})), [
    'keys.signing.0.secret: environment variable MFA_SIGNING_KEY is not set',
    'keys.encryption.0.secret_FILE: cannot read the secret file it names (ENOENT)',
    'keys.pseudonym: environment variable MFA_PSEUDONYM_KEY is not set',
    'audit.signingKey: environment variable MFA_AUDIT_KEY is not set',
    'identity.assertion.signingKey_FILE: cannot read the secret file it names (ENOENT)',
  ]);
  // With those two files in place it passes every check, those that run only once the values are valid too.
  const dir = mkdtempSync(join(tmpdir(), 'mfa-cfg-'));
  writeFileSync(join(dir, 'encryption.key'), randomKey());
  writeFileSync(join(dir, 'assertion.key'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const example = readFileSync('config/gateway.example.yaml', 'utf8');
  writeFileSync(join(dir, 'example.yaml'), example.replace('/run/secrets/mfa_encryption_key', join(dir, 'encryption.key')).replace('/run/secrets/mfa_assertion_key', join(dir, 'assertion.key')));
  t.doesNotThrow(() => loadConfigFile(join(dir, 'example.yaml'), env), 'the example with its secret files');
  t.same(configWarnings(loadConfigFile(join(dir, 'example.yaml'), env)).filter((w) => w.startsWith('portal.login')), [], 'its policy lets anyone reach its login');
  // The negative: a value given wrong (not missing) next to one missing is still refused.
  writeFileSync(join(dir, 'gw.yaml'), readFileSync('config/gateway.example.yaml', 'utf8').replace('${MFA_AUDIT_KEY}', 'short'));
  t.ok(problemsOf(() => loadConfigFile(join(dir, 'gw.yaml'), {})).includes('audit.signingKey: must NOT have fewer than 32 characters'), 'the short audit key');
});

t.test('the WebAuthn relying party is in lower case, as browsers send it, however the hosts are written', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  // Behind a TLS proxy: the default origins are https on 443.
  raw.server = { ...raw.server, hosts: ['Portal.Example.org'], trustedProxies: ['10.0.0.1'] };
  delete raw.webauthn;
  const rp = relyingParty(resolveConfig(raw));
  t.equal(rp.id, 'portal.example.org');
  t.same(rp.origins, ['https://portal.example.org']);
  raw.webauthn = { rpId: 'example.org', origins: ['https://Portal.Example.org:8443'] };
  t.same(relyingParty(resolveConfig(raw)).origins, ['https://portal.example.org:8443']);
  // A port written out where it is the scheme's own: browsers leave it out of the origin they report.
  raw.webauthn = { rpId: 'example.org', origins: ['https://Portal.Example.org:443', 'http://portal.example.org:80'] };
  t.same(relyingParty(resolveConfig(raw)).origins, ['https://portal.example.org', 'http://portal.example.org']);
  // The id set to the parent domain, no origins: the gateway's own names under it, not the parent's.
  raw.server = { ...raw.server, hosts: ['Portal.Example.org', 'other.test', 'staff.example.org'] };
  raw.webauthn = { rpId: 'example.org' };
  t.same(relyingParty(resolveConfig(raw)).origins, ['https://portal.example.org', 'https://staff.example.org']);
  raw.server = { ...raw.server, hosts: ['example.org', 'other.test'] };
  t.same(relyingParty(resolveConfig(raw)).origins, ['https://example.org'], 'the id itself, one of the names');
  // An id above none of the gateway's names: no page of it could use a passkey.
  const rpWarnings = () => configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('webauthn.rpId'));
  t.same(rpWarnings(), [], 'one of the names: no warning');
  raw.server = { ...raw.server, hosts: ['other.test'] };
  t.same(rpWarnings(), ['webauthn.rpId (example.org) is neither one of server.hosts nor a domain above one: browsers would refuse passkeys on every page of the gateway']);
  raw.server = { ...raw.server, hosts: ['badexample.org'] };
  t.equal(rpWarnings().length, 1, 'a name that only ends in the same letters is not under it');
});

t.test('with groups from the login header, a rule group the header cannot carry warns: only the group file could fill it', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.groups = { loginHeader: 'X-Portal-Groups' };
  raw.policy = {
    rules: [
      { name: 'doctors', paths: ['/prescriptions/'], groups: ['Ärzte', 'clinic staff', 'nurses ', 'staff\u202e'], decision: 'mfa' },
      { name: 'closed', paths: ['/prescriptions/'], decision: 'deny' },
      { name: 'portal', paths: ['/'], decision: 'mfa' },
    ],
  };
  const groupWarnings = () => configWarnings(resolveConfig(raw)).filter((w) => w.includes('groups.loginHeader cannot carry'));
  t.same(groupWarnings(), [
    'policy.rules.0.groups: "Ärzte" is a group name groups.loginHeader cannot carry (letters, digits, _ . : @ - and spaces between them, at most 64): only the group file can put anyone in it',
    'policy.rules.0.groups: "nurses " is a group name groups.loginHeader cannot carry (letters, digits, _ . : @ - and spaces between them, at most 64): only the group file can put anyone in it',
    'policy.rules.0.groups: "staff\\u202e" is a group name groups.loginHeader cannot carry (letters, digits, _ . : @ - and spaces between them, at most 64): only the group file can put anyone in it',
  ]);
  raw.groups = {};
  t.same(groupWarnings(), [], 'no login header: names are the group file\'s');
});

t.test('passkey origins outside the relying party id are refused; an IP address as the id warns', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, hosts: ['portal.example.org'] };
  raw.webauthn = { rpId: 'example.org', origins: ['https://portal.example.org', 'https://example.org:8443', 'https://example.com', 'https://badexample.org'] };
  t.same(
    problemsOf(() => resolveConfig(raw)).filter((p) => p.startsWith('webauthn.origins')),
    [
      'webauthn.origins.2: its host is neither the relying party id (example.org) nor a name under it; browsers refuse passkeys there, found "https://example.com"',
      'webauthn.origins.3: its host is neither the relying party id (example.org) nor a name under it; browsers refuse passkeys there, found "https://badexample.org"',
    ],
  );
  raw.webauthn = { rpId: 'example.org', origins: ['https://portal.example.org'] };
  t.same(configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('webauthn')), [], 'a host name as the id: no warning');
  raw.server = { ...raw.server, hosts: ['192.0.2.10'] };
  delete raw.webauthn;
  t.same(configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('webauthn')), ['webauthn.rpId (the first of server.hosts) is an IP address: browsers offer passkeys only on a host name']);
  raw.server = { ...raw.server, hosts: ['[2001:db8::1]'] };
  t.same(configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('webauthn')).length, 1, 'an IPv6 address too, and its default origin is no problem');
});

t.test('unsafe settings: proxy ranges wider than a network, TLS files that are not PEM; plain-http outbound URLs warn', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, trustedProxies: ['0.0.0.0/0', '::/0', '10.0.0.0/8', 'fc00::/7', '192.0.2.7', '::/8', '::ffff:0:0/96', '::ffff:10.0.0.0/104'] };
  raw.enrolment = { proof: 'webhook', webhook: { url: 'http://vendor.example/hook', secret: randomKey() } };
  raw.notify = { url: 'http://alerts.example/in', secret: randomKey() };
  const dir = mkdtempSync(join(tmpdir(), 'mfa-tls-'));
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
  raw.server.tls = { certFile: join(dir, 'junk.pem'), keyFile: join(dir, 'junk.pem') };
  const problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('server.trustedProxies.0: wider than any proxy network')), 'everyone as a proxy: refused');
  t.ok(problems.some((p) => p.startsWith('server.trustedProxies.1: wider than any proxy network')), 'IPv6 too');
  t.notOk(problems.some((p) => /trustedProxies\.[2347]/.test(p)), 'a private network or one address is fine (also IPv4 written as IPv6)');
  t.ok(problems.some((p) => p.startsWith('server.trustedProxies.5: wider')), 'an IPv6 range holding every IPv4-mapped address');
  t.ok(problems.some((p) => p.startsWith('server.trustedProxies.6: wider')), 'all of IPv4, written as IPv6');
  t.ok(problems.includes('server.tls.certFile: not a PEM certificate'));
  t.ok(problems.includes('server.tls.keyFile: not a PEM private key'));

  const plain = rawTestConfig('http://127.0.0.1:1');
  plain.enrolment = { proof: 'webhook', webhook: { url: 'http://vendor.example/hook', secret: randomKey() } };
  plain.notify = { url: 'http://alerts.example/in', secret: randomKey() };
  const warned = configWarnings(resolveConfig(plain));
  t.ok(warned.some((w) => w.startsWith('enrolment.webhook.url is plain http')), 'enrolment codes over plain http: a warning');
  t.ok(warned.some((w) => w.startsWith('notify.url is plain http')), 'notifications too');
  t.ok(warned.some((w) => w.startsWith('portal.login.failure is not set')), 'no rule for a refused login: a warning');
  plain.portal.login.failure = { status: [200], body: 'Invalid password' };
  t.notOk(configWarnings(resolveConfig(plain)).some((w) => w.startsWith('portal.login.failure')), 'with one: none');
  const loginWarnings = (login: Record<string, unknown>) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    Object.assign(raw.portal.login, { page: '/Account/Login?ReturnUrl={target}', paths: ['/Account/Login', '/j_security_check'] }, login);
    raw.policy.rules[0].paths = ['/Account/Login', '/j_security_check'];
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('portal.login.'));
  };
  const refused = { status: [200], body: 'Invalid password' };
  t.same(loginWarnings({ success: { status: [302], location: '^/home$' }, failure: refused }), [], 'a success anchored to where a sign-in lands, a refusal by its message: none');
  t.match(loginWarnings({ success: {}, failure: refused }), [/^portal\.login\.success has a status only: .*redirect/], 'the default success rule, status only: a warning');
  t.same(loginWarnings({ success: { status: [302], setCookie: 'AUTH' }, failure: refused }), [], 'a cookie set only on success: none');
  t.match(loginWarnings({ success: { status: [302], location: '^/' }, failure: refused }), [/^portal\.login\.success\.location matches \/Account\/Login: /], 'a location the redirect back to the login page also meets: a warning');
  t.match(loginWarnings({ success: { status: [302], location: 'Login\\?error' }, failure: refused }), [/^portal\.login\.success\.location matches \/Account\/Login\?error: /], '... with its error query too');
  t.same(loginWarnings({ success: { status: [302], location: '^/(?!Account)' }, failure: refused }), [], 'a login path that only takes the password (j_security_check): never where a refusal is sent');
  t.same(loginWarnings({ success: { status: [302], location: '^/', body: 'x' }, failure: refused }), [], 'with another rule beside it: none');
  t.match(loginWarnings({ success: { status: [302], location: '^/home$' }, failure: { status: [200, 403] } }), [/^portal\.login\.failure takes a 2xx answer by its status alone: /], 'a refusal by a 2xx status alone: a warning');
  t.match(loginWarnings({ success: { status: [302], location: '^/home$' }, failure: {} }), [/^portal\.login\.failure takes a 2xx/], '... or by nothing at all');
  t.same(loginWarnings({ success: { status: [302], location: '^/home$' }, failure: { status: [302, 303] } }), [], 'a refusal by a redirect status: none');
  t.same(loginWarnings({ success: { status: [200], body: 'Welcome' }, failure: { status: [200], location: 'x', setCookie: 'E' } }), [], 'a refusal with another rule: none');
  // A Location is matched as the path it leads to on the portal: a pattern written for it as sent may hold for none.
  const located = (success: string, failure = '^/Account/Login\\?error') => loginWarnings({ success: { status: [302], location: success, setCookie: 'AUTH' }, failure: { status: [302], location: failure } });
  t.match(located('^home\\.jsp'), [/^portal\.login\.success\.location starts with \^h, not \^\/: .*\/portal\/home\.jsp/], 'anchored to a relative Location as sent: a warning');
  t.match(located('^/home', '^\\?error'), [/^portal\.login\.failure\.location starts with \^\?, not \^\/: /], 'a refusal rule too');
  for (const path of ['^/portal/home', '^(/portal/)?home\\.jsp', '^home|/portal/home', '^[/]home', 'home\\.jsp', '^\\/home'])
    t.same(located(path), [], `${path}: it can match a path, none`);
  t.same(located('^/home', '^https://sso\\.example/login'), [], "another site's address: none");
  for (const absolute of ['^https?://localhost/home', '^http:\\/\\/127\\.0\\.0\\.1:1/home', '^https://(www\\.)?localhost(:\\d+)?/home'])
    t.match(located(absolute), [/^portal\.login\.success\.location is written for an absolute URL on the portal: /], `${absolute}: a host of the portal's, a warning`);
  // The host is compared as a whole name, whatever the port: a Location on the portal is matched as its path anyway.
  for (const absolute of ['^https://sso\\.localhost\\.example/home', '^https://localhost\\.example/home', '^https://my-localhost/home'])
    t.same(located(absolute), [], `${absolute}: another site whose name holds one of the portal's, none`);
  const onPortal = (success: string) => {
    const raw = rawTestConfig('http://portal.internal:8080');
    Object.assign(raw.portal.login, { success: { status: [302], location: success, setCookie: 'AUTH' }, failure: { status: [302], location: '^/login\\?error' } });
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('portal.login.'));
  };
  for (const absolute of ['^http://portal\\.internal', '^https?://portal\\.internal(:8080)?/home', '^http://Portal\\.Internal:8080/home', '^https?://(?:www\\.)?portal\\.internal$'])
    t.match(onPortal(absolute), [/^portal\.login\.success\.location is written for an absolute URL on the portal: /], `${absolute}: the portal's host without its port, a warning`);
  t.same(onPortal('^https://portal\\.internal\\.example/home'), [], "a name that begins with the portal's: none");
  const local = rawTestConfig('http://127.0.0.1:1');
  local.enrolment = { proof: 'webhook', webhook: { url: 'http://127.0.0.1:9999/hook', secret: randomKey() } };
  local.notify = { url: 'https://alerts.example/in', secret: randomKey() };
  t.same(problemsOf(() => resolveConfig(local)), []);
  t.notOk(configWarnings(resolveConfig(local)).some((w) => /url is plain http/.test(w)), 'https, or plain http on this machine: no warning');
  t.ok(configWarnings(resolveConfig(rawTestConfig('http://portal.internal:8080'))).some((w) => w.startsWith('portal.url is plain http')), 'a plain-http portal elsewhere: a warning');
  const userinfo = rawTestConfig('http://127.0.0.1:1');
  userinfo.enrolment = { proof: 'webhook', webhook: { url: 'https://vendor:Pa55word@vendor.example/hook', secret: randomKey() } };
  userinfo.notify = { url: 'https://:T0ken@alerts.example/in', secret: randomKey() };
  const credentialWarnings = configWarnings(resolveConfig(userinfo)).filter((w) => w.includes('user or password'));
  t.same(credentialWarnings.map((w) => w.split(' ')[0]), ['enrolment.webhook.url', 'notify.url'], 'a user or password in a webhook URL, which is never sent: a warning');
  t.notOk(credentialWarnings.join('\n').includes('Pa55word') || credentialWarnings.join('\n').includes('T0ken'), 'without the password');
  t.notOk(configWarnings(resolveConfig(local)).some((w) => w.includes('user or password')), 'none in the URL: no warning');
  const kiosk = rawTestConfig('http://127.0.0.1:1');
  kiosk.server.hosts = ['portal.example', 'kiosk.example'];
  kiosk.policy.rules.unshift({ name: 'kiosk pages', hosts: ['Kiosk.example'], paths: ['/records'], decision: 'public' }, { name: 'kiosk closed', hosts: ['kiosk.example'], paths: ['/admin/'], decision: 'deny' });
  const hostWarnings = configWarnings(resolveConfig(kiosk)).filter((w) => w.startsWith('policy.rules.'));
  t.same(hostWarnings.map((w) => w.split(':')[0]), ['policy.rules.0.hosts'], 'a public rule for one of the host names warns; a deny rule does not');
  kiosk.policy.rules[0].hosts = ['portal.example', 'KIOSK.example'];
  t.notOk(configWarnings(resolveConfig(kiosk)).some((w) => w.startsWith('policy.rules.')), 'one for every host name does not');
  // A rule naming a host with its port, with a trailing dot, or not one of server.hosts would never match: a deny rule
  // so written would let everything through.
  kiosk.policy.rules[1].hosts = ['kiosk.example:8443', 'kiosk.example.', 'other.example'];
  t.same(
    problemsOf(() => resolveConfig(kiosk)).filter((p) => p.includes('.hosts.')).map((p) => p.split(':')[0]),
    ['policy.rules.1.hosts.0', 'policy.rules.1.hosts.1', 'policy.rules.1.hosts.2'],
    'each name no request can carry is a problem',
  );
  kiosk.policy.rules[1].hosts = ['Kiosk.Example'];
  t.same(problemsOf(() => resolveConfig(kiosk)), [], 'a name of server.hosts in another case is fine');
  const byFingerprint = rawTestConfig('http://127.0.0.1:1');
  byFingerprint.server.trustedProxies = ['127.0.0.1'];
  byFingerprint.devices = { header: { name: 'X-Client-Cert', format: 'fingerprint' } };
  t.ok(configWarnings(resolveConfig(byFingerprint)).some((w) => w.startsWith('devices.header.format is fingerprint')), 'devices known by fingerprint alone: a warning');
  byFingerprint.devices.requireRegistration = true;
  t.notOk(configWarnings(resolveConfig(byFingerprint)).some((w) => w.startsWith('devices.header.format')), 'unless only registered ones count');
  const both = rawTestConfig('http://127.0.0.1:1');
  both.policy.rules = [{ name: 'staff', paths: ['/admin/'], decision: 'mfa', factors: ['webauthn', 'device-bound-passkey'] }, ...both.policy.rules];
  t.ok(configWarnings(resolveConfig(both)).some((w) => w.startsWith('policy.rules.0.factors: webauthn takes every passkey')), 'a rule that means device-bound but takes synced passkeys: a warning');
  both.policy.rules[0].factors = ['device-bound-passkey', 'totp'];
  t.notOk(configWarnings(resolveConfig(both)).some((w) => w.startsWith('policy.rules')), 'device-bound alone (or with an app): no warning');
  const deletes = rawTestConfig('http://127.0.0.1:1');
  deletes.portal.methods = ['GET', 'POST', 'PUT', 'DELETE'];
  deletes.policy.rules = [
    { name: 'no deleting', paths: ['/records/**'], methods: ['delete', 'PUT'], decision: 'deny' },
    { name: 'open deletes', paths: ['/drafts/**'], methods: ['DELETE'], decision: 'public' },
    ...deletes.policy.rules,
  ];
  const overrides = configWarnings(resolveConfig(deletes)).filter((w) => w.includes('.methods:'));
  t.same(overrides.map((w) => w.split(':')[0]), ['policy.rules.0.methods'], 'a rule for DELETE or PUT without POST: a warning (not a public one)');
  t.match(overrides[0], /for DELETE, PUT without POST/);
  deletes.policy.rules[0].methods = ['DELETE', 'POST', 'PUT'];
  t.notOk(configWarnings(resolveConfig(deletes)).some((w) => w.includes('.methods:')), 'with POST: no warning');
});

t.test('plain http under a name browsers keep no Secure cookie for warns: nobody could sign in', async (t) => {
  const plain = (server: Record<string, unknown>) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.server = { ...raw.server, ...server };
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('server.hosts'));
  };
  t.match(plain({ hosts: ['portal.other.test'] }), [/^server\.hosts: portal\.other\.test is served over plain http \(no server\.tls, no server\.trustedProxies\): a browser there keeps none of the gateway's Secure cookies and is offered no passkeys, so nobody can sign in\. .*server\.tls.*server\.trustedProxies.*credential-stuffing block/]);
  t.match(plain({ host: '0.0.0.0', hosts: ['localhost', 'Portal.other.test', '192.0.2.10'] }), [/^server\.hosts: Portal\.other\.test, 192\.0\.2\.10 are served over plain http/], 'listening everywhere: each name but the loopback ones');
  t.same(plain({ hosts: ['portal.other.test'], trustedProxies: ['10.0.0.10'] }), [], 'behind a proxy: none');
  const withTls = resolveConfig({ ...rawTestConfig('http://127.0.0.1:1'), server: { host: '127.0.0.1', port: 0, hosts: ['portal.other.test'] } });
  t.same(configWarnings({ ...withTls, server: { ...withTls.server, tls: { certFile: '/tls/gw.crt', keyFile: '/tls/gw.key' } } }).filter((w) => w.startsWith('server.hosts')), [], 'with TLS in the gateway: none');
  t.same(plain({ host: '0.0.0.0' }), [], 'the default names (localhost, 127.0.0.1): none');
  t.same(plain({ hosts: ['LOCALHOST', '127.0.0.2', '[::1]'] }), [], 'loopback names: none');
});

t.test('portal.methods: which methods reach the portal, and the rules that name only GET', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  t.same(resolveConfig(raw).portal.methods, ['GET', 'HEAD', 'POST'], 'GET, HEAD and POST by default');
  raw.portal.methods = ['POST'];
  raw.portal.login.methods = ['PUT'];
  t.same(problemsOf(() => resolveConfig(raw)), ['portal.methods: must hold GET (the login page and every page a browser opens)', 'portal.login.methods: PUT is not one of portal.methods, so the login could never reach the portal']);
  raw.portal.methods = ['GET', 'PUT'];
  t.same(resolveConfig(raw).portal.methods, ['GET', 'PUT'], 'with GET and the login method: valid');
  raw.portal.methods = ['GET', 'TRACE'];
  t.match(problemsOf(() => resolveConfig(raw)), [/^portal\.methods\.1: /], 'a method the gateway never passes: refused');

  const pages = rawTestConfig('http://127.0.0.1:1');
  pages.policy.rules = [
    { name: 'exports', paths: ['/records/export'], methods: ['get'], decision: 'step-up', maxAgeSeconds: 60 },
    { name: 'open exports', paths: ['/open/export'], methods: ['GET'], decision: 'public' },
    { name: 'written', paths: ['/drafts/'], methods: ['POST'], decision: 'step-up' },
    ...pages.policy.rules,
  ];
  const onlyGet = configWarnings(resolveConfig(pages)).filter((w) => w.includes('.methods:'));
  t.same(onlyGet.map((w) => w.split(':')[0]), ['policy.rules.0.methods'], 'a rule for GET alone: a warning (not a public one, not one for POST)');
  t.match(onlyGet[0], /a rule for GET without POST does not cover its paths asked for with that method/);
  pages.portal.methods = ['GET', 'POST', 'PUT', 'OPTIONS'];
  t.match(configWarnings(resolveConfig(pages)).find((w) => w.startsWith('policy.rules.0.methods')), /without POST, PUT, OPTIONS .* with those methods/, 'each method portal.methods passes and the rule leaves out');
  pages.policy.rules[0].methods = ['GET', 'POST', 'PUT', 'OPTIONS'];
  t.notOk(configWarnings(resolveConfig(pages)).some((w) => w.startsWith('policy.rules.0.methods')), 'every method the portal takes: no warning');
  delete pages.policy.rules[0].methods;
  t.notOk(configWarnings(resolveConfig(pages)).some((w) => w.startsWith('policy.rules.0.methods')), 'no methods (every method): no warning');
});

t.test('a rule for writes covers every write method portal.methods passes, and names none it refuses', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.policy.rules = [{ name: 'changes', paths: ['/prescriptions/'], methods: ['POST'], decision: 'step-up' }, ...raw.policy.rules];
  const warned = () => configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('policy.rules.0.methods'));
  t.same(warned(), [], 'POST, the one write method passed by default: no warning');
  raw.portal.methods = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'];
  t.same(warned(), ['policy.rules.0.methods: a rule for POST without PUT, DELETE does not cover the writes portal.methods passes with those methods: add them'], 'a write method passed and left out');
  raw.policy.rules[0].methods = ['POST', 'PUT', 'DELETE'];
  t.same(warned(), [], 'every write method passed (OPTIONS writes nothing): no warning');
  raw.portal.methods = ['GET', 'POST'];
  t.same(warned(), ['policy.rules.0.methods: PUT, DELETE get 405 before any rule, as portal.methods leaves them out: add them to portal.methods if the portal takes them, or take them out of the rule'], 'methods refused before any rule: named');
  raw.policy.rules[0].methods = ['POST', 'head'];
  t.same(warned(), [], 'HEAD passes with GET');
  raw.policy.rules[0].decision = 'public';
  raw.policy.rules[0].methods = ['PATCH'];
  t.match(warned(), [/^policy\.rules\.0\.methods: PATCH gets 405 before any rule/], 'a public rule too: it never applies');
});

t.test('config check builds what serve builds from files, and names a choice of values once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-files-'));
  writeFileSync(join(dir, 'groups.yaml'), '- just a list');
  writeFileSync(join(dir, 'ca.pem'), 'not a certificate');
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.ui = { defaultLanguage: 'de' };
  raw.groups = { file: join(dir, 'groups.yaml') };
  raw.devices = { caFile: join(dir, 'ca.pem') };
  let problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.includes('ui.defaultLanguage: no messages for the default language de'), 'a language without messages');
  t.ok(problems.some((p) => p.startsWith('groups.file: group file: expected a mapping')), 'a group file that does not parse');
  t.ok(problems.includes('devices.caFile: not a PEM certificate'), 'a CA file that is not one');
  raw.devices = { caFile: join(dir, 'ca.pem'), crlFile: join(dir, 'ca.pem'), header: { name: 'X-Client-Cert', format: 'fingerprint' } };
  t.ok(problemsOf(() => resolveConfig(raw)).some((p) => p.startsWith('devices.crlFile: cannot be checked with devices.header.format fingerprint')), 'a CRL with fingerprints only');
  raw.devices.header = { name: 'X-Client-Cert', format: 'pem' };
  t.notOk(problemsOf(() => resolveConfig(raw)).some((p) => p.startsWith('devices.crlFile: cannot')), 'a CRL with certificates');
  t.ok(problemsOf(() => resolveConfig(raw)).includes('devices.crlFile: no X509 CRL in file'), 'a CRL file that holds no CRL');
  // What serve would refuse at start, check finds: a key that is not the certificate's, a directory for a file, and
  // a network name that only an object's prototype has.
  const pki = new TestCa('check');
  const gw = pki.issue('gw.example', { server: true });
  const mismatched = rawTestConfig('http://127.0.0.1:1');
  mismatched.server.tls = { certFile: gw.certFile, keyFile: pki.issue('other.example', { server: true }).keyFile };
  mismatched.ui = { logoFile: dir };
  mismatched.admin = { report: { networks: ['hasOwnProperty'] } };
  mismatched.policy.rules.unshift({ name: 'odd', paths: ['/x'], networks: ['constructor'], decision: 'mfa' });
  const found = problemsOf(() => resolveConfig(mismatched));
  t.ok(found.includes("server.tls.keyFile: not the private key of server.tls.certFile's certificate"), "a key that is not the certificate's");
  t.ok(found.includes(`ui.logoFile: not a file: ${dir}`), 'a directory for the logo');
  t.ok(found.some((p) => p.startsWith('admin.report.networks.0: neither a network name nor an address')), 'hasOwnProperty is no network');
  t.ok(found.some((p) => p.startsWith('policy.rules.0.networks.0: neither a network name nor an address')), 'nor is constructor');
  mismatched.server.tls.keyFile = gw.keyFile;
  // A bundle of an intermediate CA alone: no device certificate chains to a root through it, as TLS verifies one.
  const site = pki.intermediate('check-site');
  mismatched.devices = { caFile: site.ca.certFile, header: { name: 'X-Client-Cert', format: 'pem' } };
  t.ok(problemsOf(() => resolveConfig(mismatched)).some((p) => p.startsWith('devices.caFile: no root CA')), 'a bundle without its root');
  mismatched.devices.caFile = pki.ca.certFile;
  t.notOk(problemsOf(() => resolveConfig(mismatched)).some((p) => p.startsWith('devices.caFile')), 'the root');
  delete mismatched.devices;
  t.notOk(problemsOf(() => resolveConfig(mismatched)).some((p) => p.startsWith('server.tls')), 'the pair that goes together');
  const odd = rawTestConfig('http://127.0.0.1:1');
  odd.portal.login.paths = ['/legacy/100%/login', '/caf\u00e9/login'];
  odd.portal.logoutPaths = ['/signout', '/Caf\u00e9/out', '/_mfa/out'];
  problems = problemsOf(() => resolveConfig(odd));
  t.ok(problems.some((p) => p.startsWith('portal.login.paths.0: path /legacy/100%/login can never match')), 'a stray % in a login path: refused, not a crash');
  t.ok(problems.includes('portal.login.paths.1: path /caf\u00e9/login is matched against the canonical (percent-encoded) path: write it as /caf%C3%A9/login'));
  t.ok(problems.includes('portal.logoutPaths.1: path /Caf\u00e9/out is matched against the canonical (percent-encoded) path: write it as /Caf%C3%A9/out'), 'a logout path named by its own option and place');
  t.ok(problems.includes('portal.logoutPaths.2: /_mfa/out lies under the gateway prefix /_mfa'));
  odd.portal.passwordForms = ['/register', '/Caf\u00e9/register', '/account/password?step=1'];
  problems = problemsOf(() => resolveConfig(odd));
  t.notOk(problems.some((p) => p.startsWith('portal.passwordForms.0')), 'a canonical path');
  t.ok(problems.includes('portal.passwordForms.1: path /Caf\u00e9/register is matched against the canonical (percent-encoded) path: write it as /Caf%C3%A9/register'));
  t.ok(problems.some((p) => p.startsWith('portal.passwordForms.2: a path without a query')), 'no query');
  raw.ui = { localesDir: join(dir, 'missing') };
  problems = problemsOf(() => resolveConfig(raw));
  t.ok(problems.some((p) => p.startsWith('ui.localesDir: ENOENT')), 'a missing locales folder');

  const choice = rawTestConfig('http://127.0.0.1:1');
  choice.log.level = 'quiet';
  problems = problemsOf(() => resolveConfig(choice));
  t.same(problems, ['log.level: must be one of fatal, error, warn, info, debug, trace, silent, found "quiet"'], 'one line with the values allowed');
});

t.test('a device CA under which no device certificate can count: a warning naming the certificate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-device-cas-'));
  const warned = (cas: TestCa[]) => {
    const file = join(dir, `bundle-${cas.map((c) => c.ca.fingerprint.slice(0, 8)).join('-')}.pem`);
    writeFileSync(file, cas.map((c) => c.ca.cert).join(''));
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.devices = { caFile: file };
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('devices.caFile'));
  };
  // Whether a device of the last CA of the bundle counts, as the gateway checks one on every request.
  const managed = (cas: TestCa[]) => chainsTo(new X509Certificate(cas.at(-1)!.issue('device').cert), cas.map((c) => new X509Certificate(c.ca.cert)), Date.now());
  const root = new TestCa('Clinic root');
  const caExt = (more = '') => `basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n${more}`;
  const roomy = new TestCa('Roomy root', 'P-256', { ext: 'basicConstraints=critical,CA:TRUE,pathlen:1' });
  const good: [string, TestCa[]][] = [
    ['a root', [root]],
    ['an intermediate made for TLS clients', [root, root.intermediate('Site', 'P-256', caExt('extendedKeyUsage=clientAuth\n'))]],
    ['one CA below a root with pathlen:1', [roomy, roomy.intermediate('Roomy site')]],
    ['a root of the first X.509 version (no CA flag)', [new TestCa('Old root', 'P-256', { v1: true })]],
  ];
  for (const [what, cas] of good) {
    t.same(warned(cas), [], `${what}: no warning`);
    t.ok(managed(cas), `${what}: its devices are managed`);
  }
  const last = new TestCa('Last root', 'P-256', { ext: 'basicConstraints=critical,CA:TRUE,pathlen:0' });
  const site = roomy.intermediate('Roomy site 2');
  const bad: [TestCa[], string][] = [
    [[root, root.intermediate('Unsigning', 'P-256', 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n')], '"CN=Unsigning" (certificate 2 in the file): its keyUsage does not allow signing certificates (no keyCertSign)'],
    [[root, root.intermediate('No flag', 'P-256', 'keyUsage=critical,keyCertSign\n')], '"CN=No flag" (certificate 2 in the file): not a CA (its basicConstraints do not say CA:TRUE)'],
    [[new TestCa('Leaf root', 'P-256', { ext: 'basicConstraints=critical,CA:FALSE' })], '"CN=Leaf root" (certificate 1 in the file): not a CA (its basicConstraints do not say CA:TRUE)'],
    [[root, root.intermediate('Servers', 'P-256', caExt('extendedKeyUsage=serverAuth\n'))], '"CN=Servers" (certificate 2 in the file): an intermediate CA whose extendedKeyUsage leaves out clientAuth'],
    [[root, root.intermediate('Unreadable', 'P-256', 'basicConstraints=critical,CA:TRUE\nkeyUsage=DER:04:01:00\n')], '"CN=Unreadable" (certificate 2 in the file): its keyUsage or basicConstraints cannot be read'],
    [[last, last.intermediate('Below last')], '"CN=Below last" (certificate 2 in the file): the first CA below "CN=Last root" (certificate 1 in the file), whose path length constraint (pathlen:0) allows none'],
    // Only the CA too far down: the one above it is within the constraint.
    [[roomy, site, site.intermediate('Too deep')], '"CN=Too deep" (certificate 3 in the file): the second CA below "CN=Roomy root" (certificate 1 in the file), whose path length constraint (pathlen:1) allows one'],
  ];
  for (const [cas, why] of bad) {
    t.same(warned(cas), [`devices.caFile: ${why}: no certificate it issues counts, so every device under it is unmanaged`], why);
    t.notOk(managed(cas), `${why}: its devices are not managed`);
  }
});

t.test('a catalogue that leaves messages out: a warning naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-locales-'));
  writeFileSync(join(dir, 'ar.json'), JSON.stringify({ verifyTitle: 'تأكيد' }));
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.ui = { localesDir: dir };
  t.ok(configWarnings(resolveConfig(raw)).some((w) => /^ui\.localesDir: ar\.json leaves out \d+ message\(s\) \([\w.-]+, [\w.-]+, [\w.-]+, …\)/.test(w)));
  writeFileSync(join(dir, 'ar.json'), readFileSync(new URL('../../../src/ui/locales/en.json', import.meta.url)));
  t.notOk(configWarnings(resolveConfig(raw)).some((w) => w.startsWith('ui.localesDir')), 'none for a whole one');
});

t.test('a timer option longer than a Node timer runs is refused: the timer would fire at once', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.server = { ...raw.server, keepAliveTimeoutSeconds: 30 * 86_400 };
  t.same(problemsOf(() => resolveConfig(raw)), ['server.keepAliveTimeoutSeconds: must be <= 2147483, found 2592000']);
  raw.server.keepAliveTimeoutSeconds = 2_147_483;
  t.equal(resolveConfig(raw).server.keepAliveTimeoutSeconds, 2_147_483, 'the longest is taken');
  raw.session = { idleTimeoutSeconds: 900, absoluteTimeoutSeconds: 30 * 86_400 };
  t.equal(resolveConfig(raw).session.absoluteTimeoutSeconds, 30 * 86_400, 'a duration that sets no timer may be longer');
});

t.test('notify.timeoutSeconds is at most 30 s: a person asking for an enrolment code waits that long', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.notify = { timeoutSeconds: 3600 };
  t.same(problemsOf(() => resolveConfig(raw)), ['notify.timeoutSeconds: must be <= 30'], 'refused (without the value: notify holds a secret)');
  raw.notify.timeoutSeconds = 30;
  t.equal(resolveConfig(raw).notify.timeoutSeconds, 30, 'the longest is taken');
});

t.test('a login the policy keeps from a signed-out browser is warned of: nobody could sign in', async (t) => {
  const closed = (patch: (raw: Record<string, any>) => void) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    // A single-page portal: its page at /app/login, its script posting the password to /api/session.
    raw.portal.login = { ...raw.portal.login, paths: ['/api/session'], page: '/app/login', bodyType: 'json' };
    raw.policy.rules[0].paths = ['/app/login', '/app/static/'];
    patch(raw);
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('portal.login.paths'));
  };
  t.same(closed(() => {}), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser to sign in first, so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page',
  ]);
  t.same(closed((raw) => (raw.policy.rules = [raw.policy.rules[0]])), [
    'portal.login.paths: POST /api/session: no rule matches it and policy.default is deny, so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page',
  ]);
  t.same(closed((raw) => raw.policy.rules[0].paths.push('/api/session')), [], 'public with the page: no warning');
  // A public rule for some networks: logins from there only when a deny rule refuses the rest; an mfa rule there is a mistake.
  const clinicOnly = { name: 'logins from the clinic only', paths: ['/api/session'], networks: ['10.0.0.0/8'], decision: 'public' };
  t.same(closed((raw) => raw.policy.rules.unshift(clinicOnly, { name: 'nobody else', paths: ['/api/session'], decision: 'deny' })), [], 'a public rule for an address, then a deny rule: taken as meant');
  t.same(closed((raw) => raw.policy.rules.unshift(clinicOnly)), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser outside the networks the rules name to sign in first, so no password from there reaches the portal and nobody there can sign in; add the login path to a public rule before it',
  ], 'a public rule for an address, then an mfa rule: a warning for everyone else');
  t.same(closed((raw) => raw.policy.rules.unshift({ name: 'closed for now', paths: ['/api/session'], decision: 'deny' })), [], 'a deny rule: taken as meant');
  t.same(closed((raw) => raw.policy.rules.unshift({ name: 'clinic computers only', paths: ['/api/session'], decision: 'managed-device' })), [], 'a rule for managed devices: taken as meant');
  // Every host name is judged: a rule may name some.
  const twoHosts = (raw: Record<string, any>) => (raw.server = { ...raw.server, hosts: ['portal.example', 'kiosk.example'] });
  t.same(
    closed((raw) => {
      twoHosts(raw);
      raw.policy.rules[0].paths.push('/api/session');
      raw.policy.rules.unshift({ name: 'kiosk', hosts: ['kiosk.example'], paths: ['/'], decision: 'mfa' });
    }),
    [
      'portal.login.paths: POST /api/session on kiosk.example: policy rule "kiosk" asks a signed-out browser to sign in first, so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page',
    ],
    'a rule for one host name that closes it there: a warning naming the host',
  );
  t.same(closed(twoHosts), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser to sign in first, so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page',
  ], 'closed on every host name: one warning naming none');
  // A rule for some networks asking for a sign-in closes it for their clients.
  t.same(closed((raw) => {
    raw.policy.rules[0].paths.push('/api/session');
    raw.policy.rules.unshift({ name: 'vpn', networks: ['10.0.0.0/8'], paths: ['/'], decision: 'mfa' });
  }), [
    'portal.login.paths: POST /api/session: policy rule "vpn" asks a signed-out browser in 10.0.0.0/8 to sign in first, so no password from there reaches the portal and nobody there can sign in; add the login path to a public rule before it',
  ], 'an mfa rule for a network before the public login rule: a warning naming the network');
  t.same(closed((raw) => {
    raw.networks = { clinic: ['10.1.0.0/16'], guests: ['2001:db8::/32'] };
    raw.policy.rules[0].paths.push('/api/session');
    raw.policy.rules.unshift({ name: 'clinic login', networks: ['clinic'], paths: ['/api/session'], decision: 'public' }, { name: 'outside', networks: ['clinic', 'guests', '192.0.2.0/24'], paths: ['/'], decision: 'mfa' });
  }).map((w) => w.split(' to sign in')[0]), [
    'portal.login.paths: POST /api/session: policy rule "outside" asks a signed-out browser in guests or in 192.0.2.0/24',
  ], '... in one warning naming each network it closes it for (not one a public rule before it opens)');
  t.same(closed((raw) => {
    raw.policy.rules[0].paths.push('/api/session');
    raw.policy.rules.push({ name: 'vpn', networks: ['10.0.0.0/8'], paths: ['/'], decision: 'mfa' });
  }), [], 'after the public login rule: none');
  const clinicLogin = (raw: Record<string, any>) => {
    raw.networks = { clinic: ['10.1.0.0/16'], guests: ['192.168.0.0/16'] };
    raw.policy.rules.unshift({ name: 'guest pages', networks: ['guests'], paths: ['/wifi/'], decision: 'public' }, { name: 'clinic login', networks: ['clinic'], paths: ['/api/session'], decision: 'public' });
  };
  t.same(closed((raw) => {
    clinicLogin(raw);
    raw.policy.rules.splice(2, 0, { name: 'no login elsewhere', paths: ['/api/session'], decision: 'deny' });
  }), [], 'logins from one network only, another network named elsewhere: taken as meant');
  t.same(closed(clinicLogin).map((w) => w.split(' to sign in')[0]), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser in guests or outside the networks the rules name',
  ], '... without the deny rule: one warning naming each client the mfa rule meets');
  t.same(closed((raw) => {
    raw.networks = { guests: ['192.168.0.0/16'] };
    raw.policy.rules.unshift({ name: 'guest pages', networks: ['guests'], paths: ['/wifi/'], decision: 'public' });
  }), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser to sign in first, so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page',
  ], 'a rule that meets every client, networks named elsewhere: one warning naming none');
  // Judged without an address, evaluation stops at the first rule for some networks: clients outside them all are judged too.
  t.same(closed((raw) => {
    raw.policy.rules.unshift(
      { name: 'guest wifi never', networks: ['10.99.0.0/16'], paths: ['/'], decision: 'deny' },
      { name: 'api', paths: ['/api/'], decision: 'mfa' },
    );
    raw.policy.rules[2].paths.push('/api/session');
  }), [
    'portal.login.paths: POST /api/session: policy rule "api" asks a signed-out browser outside the networks the rules name to sign in first, so no password from there reaches the portal and nobody there can sign in; add the login path to a public rule before it',
  ], 'an mfa rule after a deny rule for a network: a warning for everyone else');
  // Every entry of a network is judged, not only the first.
  t.same(closed((raw) => {
    raw.networks = { clinic: ['127.0.0.0/8', '::1'] };
    raw.policy.rules.unshift(
      { name: 'clinic pages', networks: ['clinic'], paths: ['/wifi/'], decision: 'public' },
      { name: 'logins over IPv4', networks: ['0.0.0.0/0'], paths: ['/api/session'], decision: 'public' },
      { name: 'guest wifi never', networks: ['2001:db8::/32'], paths: ['/'], decision: 'deny' },
    );
  }), [
    'portal.login.paths: POST /api/session: policy rule "portal" asks a signed-out browser in clinic to sign in first, so no password from there reaches the portal and nobody there can sign in; add the login path to a public rule before it',
  ], 'the second entry of a network (::1): judged');
});

t.test('a logout path that is also a login path is warned of: a script logout there is taken for a login', async (t) => {
  const logout = (paths: string[], logoutPaths: string[]) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.portal.login = { ...raw.portal.login, paths, bodyType: 'json' };
    raw.portal.logoutPaths = logoutPaths;
    raw.policy.rules[0].paths.push(...paths);
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('portal.logoutPaths'));
  };
  const also = (at: number, path: string) =>
    `portal.logoutPaths.${at}: ${path} is also a login path: a request to it other than a GET or HEAD is a login (a DELETE gets 405), so a script's logout there never reaches the portal and signs nobody out; name the logout page a browser opens (/signout) instead`;
  t.same(logout(['/api/session'], ['/signout', '/api/session']), [also(1, '/api/session')], 'a DELETE of the session resource');
  t.same(logout(['/api/session'], ['/API/Session/?all=1']), [also(0, '/API/Session/?all=1')], 'in another spelling, with a query');
  t.same(logout(['/login.php'], ['/login.php/out']), [also(0, '/login.php/out')], 'below a login script');
  t.same(logout(['/api/session'], ['/signout', '/api/session/all']), [], 'below a login route: another route');
  t.same(logout(['/login'], ['/logout']), [], 'a logout of its own');
});

t.test('a login page the policy keeps from a signed-out browser is warned of: refused to signed-out browsers, nobody could sign in', async (t) => {
  const page = (patch: (raw: Record<string, any>) => void) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    // A single-page portal: its page at /signin, its script posting the password to /api/session.
    raw.portal.login = { ...raw.portal.login, paths: ['/api/session'], page: '/signin?next={target}', bodyType: 'json' };
    raw.policy.rules[0].paths = ['/signin', '/assets/', '/api/session'];
    patch(raw);
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('portal.login.page'));
  };
  t.same(page(() => {}), [], 'a public rule for the page: no warning');
  t.same(page((raw) => (raw.policy.rules[0].paths = ['/assets/', '/api/session'])), [
    'portal.login.page: GET /signin: policy rule "portal" asks a signed-out browser to sign in first, so the gateway refuses this page (403) to every signed-out browser, rather than send it round to itself, and nobody can sign in; add the page\'s path to a public rule (with its scripts and styles)',
  ], 'under the mfa rule: the page, without its query');
  t.same(page((raw) => raw.policy.rules.unshift({ name: 'vpn', networks: ['10.0.0.0/8'], paths: ['/'], decision: 'mfa' })), [
    'portal.login.page: GET /signin: policy rule "vpn" asks a signed-out browser in 10.0.0.0/8 to sign in first, so the gateway refuses this page (403) to a signed-out browser from there, rather than send it round to itself, and nobody there can sign in; add the page\'s path to a public rule before it',
  ], 'a rule for a network before the public one: naming the network');
  t.same(page((raw) => (raw.policy.rules = [{ name: 'login', paths: ['/assets/', '/api/session'], decision: 'public' }])), [
    'portal.login.page: GET /signin: no rule matches it and policy.default is deny, so no signed-out browser gets the login page and nobody can sign in; add the page\'s path to a public rule (with its scripts and styles)',
  ], 'no rule for it and the default deny');
  t.same(page((raw) => raw.policy.rules.unshift({ name: 'closed for now', paths: ['/signin'], decision: 'deny' })), [], 'a deny rule: taken as meant');
  t.same(page((raw) => raw.policy.rules.unshift({ name: 'clinic computers only', paths: ['/signin'], decision: 'managed-device' })), [], 'a rule for managed devices: taken as meant');
});

t.test('a memory store with enrolment.proof: invite is warned of: the command line cannot issue codes into it', async (t) => {
  const memory = (w: string) => w.startsWith('store.type is memory');
  const warned = (proof: string, store: Record<string, unknown> = { type: 'memory' }) => {
    const raw = rawTestConfig('http://127.0.0.1:1');
    raw.store = store;
    raw.enrolment = { proof };
    return configWarnings(resolveConfig(raw)).filter(memory);
  };
  t.match(warned('invite'), [/enrolment.proof is invite, and the command line issues enrolment codes \(`enrol-codes issue`\) only into store.type: redis/], 'invite: said why');
  t.notMatch(warned('first-login').join(), /enrol-codes/, 'another proof: the memory warning alone');
  t.same(warned('invite', { type: 'redis', redis: { url: 'redis://redis.internal:6379' } }), [], 'a Redis store: none');
});

t.test('a delivered enrolment code is valid for at least two minutes', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.enrolment = { proof: 'webhook', webhook: { url: 'https://vendor.example/hook', secret: randomKey(), codeMinutes: 1 } };
  t.match(problemsOf(() => resolveConfig(raw)), [/^enrolment\.webhook\.codeMinutes: must be >= 2/]);
  raw.enrolment.webhook.codeMinutes = 2;
  t.equal(resolveConfig(raw).enrolment.webhook?.codeMinutes, 2);
});

t.test('a gateway listening on loopback only behind proxies on other machines is warned of: they could never reach it', async (t) => {
  const raw = rawTestConfig('http://127.0.0.1:1');
  const warned = (host: string | undefined, proxies: string[]) => {
    raw.server = { ...raw.server, trustedProxies: proxies };
    if (host === undefined) delete raw.server.host;
    else raw.server.host = host;
    return configWarnings(resolveConfig(raw)).filter((w) => w.startsWith('server.host'));
  };
  t.match(warned(undefined, ['10.0.0.0/8', '127.0.0.1']), [
    /^server\.host is 127\.0\.0\.1 \(loopback only\), but server\.trustedProxies names 10\.0\.0\.0\/8, on another machine or network: .* set server\.host to 0\.0\.0\.0/,
  ], 'the default listening address, with the proxies that cannot reach it');
  t.equal(warned('localhost', ['192.168.1.5', 'fd00::/8']).length, 1, 'localhost is loopback too');
  t.equal(warned('::1', ['10.1.2.3']).length, 1, 'so is ::1');
  t.same(warned('127.0.0.1', ['127.0.0.1', '::1']), [], 'a proxy on the same machine (nginx beside it) reaches it');
  t.same(warned('0.0.0.0', ['10.0.0.0/8']), [], 'every interface: reachable');
  t.same(warned('127.0.0.1', []), [], 'no proxy: the loopback default is the safe one');
});

t.test('a secret from an empty variable or an empty file is said to be so, not a length it falls short of (never the value)', async (t) => {
  const dir = t.testdir({ empty: '\n', blank: '  \n' });
  const raw = rawTestConfig('http://127.0.0.1:1');
  raw.keys.signing[0].secret = '${MFA_SIGNING_KEY}';
  raw.audit.signingKey = '${MFA_AUDIT_KEY}';
  delete raw.keys.encryption[0].secret;
  raw.keys.encryption[0].secret_FILE = join(dir, 'empty');
  delete raw.keys.pseudonym;
  raw.keys.pseudonym_FILE = join(dir, 'blank');
  t.same(problemsOf(() => resolveConfig(raw, { env: { MFA_SIGNING_KEY: '', MFA_AUDIT_KEY: '   ' } })).sort(), [
    'keys.signing.0.secret: environment variable MFA_SIGNING_KEY is empty',
    'keys.encryption.0.secret: the file named by keys.encryption.0.secret_FILE is empty',
    'keys.pseudonym: the file named by keys.pseudonym_FILE is empty',
    'audit.signingKey: environment variable MFA_AUDIT_KEY is empty',
  ].sort());
  // A variable that is not set is still said so; one set to a short value still gets its length.
  raw.keys = { ...raw.keys, encryption: [{ id: 'e1', secret: randomKey() }], pseudonym: randomKey() };
  delete raw.keys.pseudonym_FILE;
  t.same(problemsOf(() => resolveConfig(raw, { env: { MFA_SIGNING_KEY: 'short' } })).sort(), [
    'keys.signing.0.secret: must NOT have fewer than 43 characters',
    'audit.signingKey: environment variable MFA_AUDIT_KEY is not set',
  ].sort());
});
