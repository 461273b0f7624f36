// Conditional access as a table: each row is a request's facts and the outcome the policy must give.
import t from 'tap';
import { canonicalTarget, foldCase } from '../../../src/domain/canonical-path.js';
import { carriesMethodOverride, compilePolicy, decideAccess, explainAccess, pathPattern, type RequestFacts, type RuleConfig } from '../../../src/domain/policy.js';

const rules: RuleConfig[] = [
  { name: 'sign-in page', paths: ['/login', '/static/'], decision: 'public' },
  { name: 'health api', hosts: ['api.riverbend.example'], paths: ['/status'], methods: ['GET'], decision: 'public' },
  { name: 'lab upload', paths: ['/legacy/results'], networks: ['lab'], allowLegacyAuth: true, decision: 'public' },
  { name: 'staff admin', paths: ['/admin/'], groups: ['staff'], networks: ['office'], decision: 'managed-device', factors: ['webauthn'] },
  { name: 'admin closed', paths: ['/admin/'], decision: 'deny' },
  { name: 'prescriptions', paths: ['/prescriptions/**'], methods: ['POST', 'PUT'], decision: 'step-up', maxAgeSeconds: 300 },
  { name: 'controlled drugs', paths: ['/controlled/'], decision: 'step-up', maxAgeSeconds: 300, factors: ['device-bound-passkey'] },
  { name: 'reports', paths: ['/reports/*.pdf'], decision: 'step-up', maxAgeSeconds: 600, factors: ['totp', 'webauthn'] },
  { name: 'kiosk', paths: ['/kiosk/'], device: 'managed', decision: 'mfa' },
  { name: 'kiosk elsewhere', paths: ['/kiosk/'], decision: 'deny' },
  { name: 'portal', paths: ['/'], decision: 'mfa' },
];
const policy = compilePolicy({
  rules,
  default: 'deny',
  caseSensitivePaths: false,
  networks: { office: ['10.20.0.0/16'], lab: ['10.30.0.5'] },
  legacyEndpoints: ['/api/login', '/xmlrpc.php'],
});

const patient = { groups: [], factorAgeSeconds: 60, factor: 'totp' as const, deviceBound: false };
const staffKey = { groups: ['staff'], factorAgeSeconds: 60, factor: 'webauthn' as const, deviceBound: true };
const staffTotp = { groups: ['staff'], factorAgeSeconds: 60, factor: 'totp' as const, deviceBound: false };
const syncedPasskey = { groups: [], factorAgeSeconds: 60, factor: 'webauthn' as const, deviceBound: false };

function facts(over: Partial<RequestFacts>): RequestFacts {
  return { host: 'portal.riverbend.example', method: 'GET', path: '/records', clientIp: '203.0.113.9', legacyAuth: false, methodOverride: false, session: patient, device: { managed: false }, ...over };
}

// [description, facts, verdict, rule, detail (reason for deny, decision for allow)]
const cases: [string, Partial<RequestFacts>, string, string, string?][] = [
  ['login page, anonymous', { path: '/login', session: null }, 'allow', 'sign-in page', 'public'],
  ['login page, signed in', { path: '/login' }, 'allow', 'sign-in page', 'public'],
  ['login page in capitals matches case-insensitively', { path: '/LOGIN', session: null }, 'allow', 'sign-in page', 'public'],
  ['a sub-path of an exact public path is not public', { path: '/login/extra', session: null }, 'sign-in', 'portal'],
  ['static asset', { path: '/static/portal.css', session: null }, 'allow', 'sign-in page', 'public'],
  ['static folder itself', { path: '/static', session: null }, 'allow', 'sign-in page', 'public'],
  ['a look-alike prefix is not below /static/', { path: '/staticfoo', session: null }, 'sign-in', 'portal'],
  ['records, anonymous', { path: '/records', session: null }, 'sign-in', 'portal'],
  ['records, signed in', {}, 'allow', 'portal', 'mfa'],
  ['root, anonymous', { path: '/', session: null }, 'sign-in', 'portal'],
  ['host-specific public endpoint on its host', { host: 'api.riverbend.example', path: '/status', session: null }, 'allow', 'health api', 'public'],
  ['the same path on another host is not public', { path: '/status', session: null }, 'sign-in', 'portal'],
  ['host-specific rule ignores other methods', { host: 'api.riverbend.example', path: '/status', method: 'POST', session: null }, 'sign-in', 'portal'],
  ['Basic auth to a protected page is refused', { legacyAuth: 'request' }, 'deny', 'portal', 'legacy-auth'],
  ['Basic auth to the login page is refused', { path: '/login', legacyAuth: 'request', session: null }, 'deny', 'sign-in page', 'legacy-auth'],
  ['Basic auth from the lab host to its endpoint passes', { path: '/legacy/results', clientIp: '10.30.0.5', legacyAuth: 'request', session: null }, 'allow', 'lab upload', 'public'],
  ['NTLM from the lab host to its endpoint is refused (it signs in a shared portal connection)', { path: '/legacy/results', clientIp: '10.30.0.5', legacyAuth: 'connection', session: null }, 'deny', 'lab upload', 'legacy-auth'],
  ['Basic auth to the lab endpoint from elsewhere is refused', { path: '/legacy/results', clientIp: '10.30.0.6', legacyAuth: 'request', session: null }, 'deny', 'portal', 'legacy-auth'],
  ['lab endpoint with an unknown client address fails closed', { path: '/legacy/results', clientIp: null, legacyAuth: 'request', session: null }, 'deny', 'lab upload', 'unknown-address'],
  ['a method override in the query is refused before any rule, even on a public page', { path: '/login', methodOverride: true, session: null }, 'deny', 'method override', 'method-override'],
  ['legacy API login endpoint always refused', { path: '/api/login', method: 'POST', session: null }, 'deny', 'legacy endpoints', 'legacy-endpoint'],
  ['legacy endpoint refused even signed in', { path: '/xmlrpc.php', method: 'POST' }, 'deny', 'legacy endpoints', 'legacy-endpoint'],
  ['legacy endpoint with a trailing slash refused', { path: '/api/login/', method: 'POST', session: null }, 'deny', 'legacy endpoints', 'legacy-endpoint'],
  ['legacy endpoint with path info refused', { path: '/xmlrpc.php/x', method: 'POST' }, 'deny', 'legacy endpoints', 'legacy-endpoint'],
  ['a longer name is not the legacy endpoint', { path: '/api/loginhelp', method: 'GET' }, 'allow', 'portal', 'mfa'],
  ['legacy endpoint in capitals', { path: '/API/LOGIN', method: 'POST', session: null }, 'deny', 'legacy endpoints', 'legacy-endpoint'],
  ['admin, patient', { path: '/admin/users' }, 'deny', 'admin closed', 'rule'],
  ['admin without trailing slash, patient', { path: '/admin' }, 'deny', 'admin closed', 'rule'],
  ['admin in capitals, patient', { path: '/ADMIN/users' }, 'deny', 'admin closed', 'rule'],
  ['admin, anonymous: sign in first (the rule tests groups)', { path: '/admin/', session: null, clientIp: '10.20.1.1' }, 'sign-in', 'staff admin'],
  ['admin, anonymous from outside the office: closed', { path: '/admin/', session: null }, 'deny', 'admin closed', 'rule'],
  ['admin, staff from the office on a managed device with a passkey', { path: '/admin/', session: staffKey, clientIp: '10.20.1.1', device: { managed: true } }, 'allow', 'staff admin', 'managed-device'],
  ['admin, staff from the office, unmanaged device', { path: '/admin/', session: staffKey, clientIp: '10.20.1.1' }, 'managed-device', 'staff admin'],
  ['admin, staff from the office, managed, but TOTP only: step-up to a passkey', { path: '/admin/', session: staffTotp, clientIp: '10.20.1.1', device: { managed: true } }, 'step-up', 'staff admin'],
  ['admin, staff from home', { path: '/admin/', session: staffKey, clientIp: '198.51.100.7', device: { managed: true } }, 'deny', 'admin closed', 'rule'],
  ['admin, staff with an unknown client address: fail closed', { path: '/admin/', session: staffKey, clientIp: null, device: { managed: true } }, 'deny', 'staff admin', 'unknown-address'],
  ['admin, staff from the office over IPv4-mapped address (already normalised)', { path: '/admin/x', session: staffKey, clientIp: '10.20.255.255', device: { managed: true } }, 'allow', 'staff admin', 'managed-device'],
  ['prescription change with a fresh factor', { path: '/prescriptions/42', method: 'POST', session: { ...patient, factorAgeSeconds: 299 } }, 'allow', 'prescriptions', 'step-up'],
  ['prescription change exactly at the limit', { path: '/prescriptions/42', method: 'POST', session: { ...patient, factorAgeSeconds: 300 } }, 'allow', 'prescriptions', 'step-up'],
  ['prescription change with an old factor', { path: '/prescriptions/42', method: 'POST', session: { ...patient, factorAgeSeconds: 301 } }, 'step-up', 'prescriptions'],
  ['prescription list is only mfa', { path: '/prescriptions/', method: 'GET', session: { ...patient, factorAgeSeconds: 3000 } }, 'allow', 'portal', 'mfa'],
  ['prescription change, anonymous', { path: '/prescriptions/42', method: 'PUT', session: null }, 'sign-in', 'prescriptions'],
  ['deeply nested prescription path', { path: '/prescriptions/a/b/c', method: 'PUT', session: { ...patient, factorAgeSeconds: 9999 } }, 'step-up', 'prescriptions'],
  ['report pdf with a recent TOTP', { path: '/reports/2024.pdf', session: { ...patient, factorAgeSeconds: 100 } }, 'allow', 'reports', 'step-up'],
  ['a synced passkey never passes a rule for device-bound passkeys (R4)', { path: '/controlled/x', session: syncedPasskey }, 'step-up', 'controlled drugs'],
  ['an app code does not either', { path: '/controlled/x', session: staffTotp }, 'step-up', 'controlled drugs'],
  ['a device-bound passkey does', { path: '/controlled/x', session: staffKey }, 'allow', 'controlled drugs', 'step-up'],
  ['a synced passkey is a passkey', { path: '/reports/2024.pdf', session: syncedPasskey }, 'allow', 'reports', 'step-up'],
  ['a device-bound passkey is a passkey too', { path: '/reports/2024.pdf', session: staffKey }, 'allow', 'reports', 'step-up'],
  ['report pdf after a recovery code: another factor needed', { path: '/reports/2024.pdf', session: { ...patient, factor: 'recovery', factorAgeSeconds: 10 } }, 'step-up', 'reports'],
  ['* stays within one segment', { path: '/reports/2024/q1.pdf', session: patient }, 'allow', 'portal', 'mfa'],
  ['kiosk on a managed device', { path: '/kiosk/', device: { managed: true } }, 'allow', 'kiosk', 'mfa'],
  ['kiosk on an unmanaged device', { path: '/kiosk/' }, 'deny', 'kiosk elsewhere', 'rule'],
  ['kiosk, anonymous, managed device: sign in', { path: '/kiosk/x', session: null, device: { managed: true } }, 'sign-in', 'kiosk'],
];

t.test('policy table', async (t) => {
  t.ok(cases.length >= 40, 'at least 40 cases');
  for (const [desc, over, verdict, rule, detail] of cases) {
    const o = decideAccess(policy, facts(over));
    t.equal(o.verdict, verdict, `${desc}: verdict`);
    t.equal(o.rule, rule, `${desc}: rule`);
    if (o.verdict === 'deny') t.equal(o.reason, detail, `${desc}: reason`);
    if (o.verdict === 'allow') t.equal(o.decision, detail, `${desc}: decision`);
  }
});

t.test('no rule matches: the default decides, deny unless configured', async (t) => {
  const only = compilePolicy({ rules: [{ name: 'one', paths: ['/one'], decision: 'public' }], default: 'deny', caseSensitivePaths: false, networks: {}, legacyEndpoints: [] });
  t.same(decideAccess(only, facts({ path: '/other' })), { verdict: 'deny', rule: 'default', reason: 'rule' });
  const mfaDefault = compilePolicy({ rules: [{ name: 'one', paths: ['/one'], decision: 'public' }], default: 'mfa', caseSensitivePaths: false, networks: {}, legacyEndpoints: [] });
  t.same(decideAccess(mfaDefault, facts({ path: '/other' })), { verdict: 'allow', rule: 'default', decision: 'mfa' });
  t.same(decideAccess(mfaDefault, facts({ path: '/other', session: null })), { verdict: 'sign-in', rule: 'default' });
});

t.test('case-sensitive paths when configured', async (t) => {
  const p = compilePolicy({ rules: [{ name: 'admin', paths: ['/admin/'], decision: 'deny' }], default: 'mfa', caseSensitivePaths: true, networks: {}, legacyEndpoints: [] });
  t.equal(decideAccess(p, facts({ path: '/admin/x' })).verdict, 'deny');
  t.equal(decideAccess(p, facts({ path: '/ADMIN/x' })).verdict, 'allow');
});

t.test('regardless of case: letters beyond ASCII too, one character for one', async (t) => {
  const rules = [
    { name: 'archive', paths: ['/m%C4%81tauranga/'], decision: 'deny' as const },
    { name: 'info', paths: ['/info/'], decision: 'public' as const },
  ];
  const insensitive = compilePolicy({ rules, default: 'mfa', caseSensitivePaths: false, networks: {}, legacyEndpoints: ['/api/r%C3%A9sum%C3%A9'] });
  const path = (p: string) => canonicalTarget(p)!.path;
  const verdict = (path: string) => decideAccess(insensitive, facts({ path })).verdict;
  t.equal(verdict(path('/m%C4%81tauranga/x')), 'deny');
  t.equal(verdict(path('/M%C4%80TAURANGA/x')), 'deny', 'upper-case macron a: the same folder to a case-insensitive portal');
  t.equal(verdict(path('/M%C4%81tauranga/x')), 'deny');
  t.match(decideAccess(insensitive, facts({ path: path('/API/R%C3%89SUM%C3%89') })), { verdict: 'deny', reason: 'legacy-endpoint' }, 'a legacy endpoint in capitals');
  t.match(decideAccess(insensitive, facts({ path: path('/%C4%B0nfo/x'), session: null })), { verdict: 'allow', rule: 'info' }, 'İ is i to Java');
  t.match(decideAccess(insensitive, facts({ path: path('/stra%C3%9Fe/') })), { rule: 'default' }, 'ß is not ss');
  const sensitive = compilePolicy({ rules, default: 'mfa', caseSensitivePaths: true, networks: {}, legacyEndpoints: [] });
  t.equal(decideAccess(sensitive, facts({ path: path('/M%C4%80TAURANGA/x') })).verdict, 'allow', 'case-sensitive: another folder');
  t.equal(foldCase('/M%C4%80TAURANGA/%C3%89t%C3%A9;x'), '/M%C4%81TAURANGA/%C3%A9t%C3%A9;x', 'ASCII left to the case-insensitive match');
});

t.test('a name with a combining accent is the composed name, which a portal normalising Unicode reads it as', async (t) => {
  const rules = [
    { name: 'archive', paths: ['/m%C4%81tauranga/'], decision: 'deny' as const },
    { name: 'decomposed pattern', paths: ['/Mu%CC%88ller/'], decision: 'deny' as const },
  ];
  const path = (p: string) => canonicalTarget(p)!.path;
  for (const caseSensitivePaths of [false, true]) {
    const p = compilePolicy({ rules, default: 'mfa', caseSensitivePaths, networks: {}, legacyEndpoints: ['/api/r%C3%A9sum%C3%A9'] });
    const outcome = (raw: string) => decideAccess(p, facts({ path: path(raw) }));
    t.match(outcome('/m%C4%81tauranga/x'), { verdict: 'deny', rule: 'archive' }, `composed (case-sensitive: ${caseSensitivePaths})`);
    t.match(outcome('/ma%CC%84tauranga/x'), { verdict: 'deny', rule: 'archive' }, `decomposed (case-sensitive: ${caseSensitivePaths})`);
    t.match(outcome('/M%C3%BCller/x'), { verdict: 'deny', rule: 'decomposed pattern' }, 'a pattern written decomposed covers the composed name');
    t.match(outcome('/api/re%CC%81sume%CC%81'), { verdict: 'deny', reason: 'legacy-endpoint' }, 'a legacy endpoint decomposed');
    t.match(outcome('/matauranga/x'), { verdict: 'allow', rule: 'default' }, 'the accent still counts');
  }
});

t.test('path patterns', async (t) => {
  const m = (pattern: string, path: string) => pathPattern(pattern).test(path);
  t.ok(m('/', '/anything/at/all'));
  t.ok(m('/a/', '/a') && m('/a/', '/a/') && m('/a/', '/a/b/c'));
  t.notOk(m('/a/', '/ab'));
  t.ok(m('/a/**', '/a') && m('/a/**', '/a/b'));
  for (const pattern of ['/a/**/', '/a/**/**', '/a/**/**/'])
    t.ok(m(pattern, '/a') && m(pattern, '/a/') && m(pattern, '/a/b/c'), `${pattern}: the path itself and everything below, as /a/**`);
  t.ok(m('/**/', '/') && m('/**/', '/x/y'));
  t.ok(m('/a/*/c', '/a/b/c'));
  t.notOk(m('/a/*/c', '/a/b/x/c'));
  t.ok(m('/a/**/c', '/a/b/x/c'));
  t.ok(m('/a/**/c', '/a/c'), '** may stand for no segment');
  t.notOk(m('/a/**/c', '/ac') || m('/a/**/c', '/a/xc'), 'but the slashes stay');
  t.ok(m('/x', '/x') && m('/x', '/x/'), 'an exact path, with or without a trailing slash');
  t.notOk(m('/x', '/x/y') || m('/x', '/xy'), 'nothing below an exact path');
  t.ok(m('/x.css', '/x.css'));
  t.notOk(m('/x.css', '/xacss'), 'dots are literal');
  t.notOk(m('/a+b', '/aab'), 'regex characters are literal');
});

t.test('a rule for GET covers HEAD, which servers answer with the GET handler', async (t) => {
  const p = compilePolicy({
    rules: [
      { name: 'no downloads', paths: ['/export/'], methods: ['get'], decision: 'deny' },
      { name: 'changes', paths: ['/export/'], methods: ['POST'], decision: 'step-up' },
      { name: 'portal', paths: ['/'], decision: 'mfa' },
    ],
    default: 'deny',
    caseSensitivePaths: false,
    networks: {},
    legacyEndpoints: [],
  });
  for (const method of ['GET', 'HEAD']) t.equal(decideAccess(p, facts({ path: '/export/x', method })).rule, 'no downloads', method);
  t.equal(decideAccess(p, facts({ path: '/export/x', method: 'OPTIONS' })).rule, 'portal', 'other methods are not covered');
  t.equal(decideAccess(p, facts({ path: '/export/x', method: 'HEAD', session: { ...patient, factorAgeSeconds: 9999 } })).verdict, 'deny', 'HEAD is not a POST');
});

t.test('a method override in the query is recognised in the spellings portals read', async (t) => {
  for (const q of ['_method=DELETE', 'a=1&_method=put', '_METHOD=delete', 'a=1;_method=DELETE', '.method=DELETE', '%5Fmethod=DELETE', '_method[]=DELETE', ' _method=DELETE', '_method', 'X-HTTP-Method-Override=DELETE', 'x-http-method-override=put', 'X_HTTP_Method_Override=DELETE', 'x.http.method.override=DELETE', 'X-HTTP-Method=DELETE', 'X-Method-Override=DELETE', '%58-HTTP-Method-Override=DELETE', '%u0058-HTTP-Method-Override=DELETE', '%u005Fmethod=PUT']) {
    t.ok(carriesMethodOverride(q), q);
  }
  for (const q of ['', 'method=card', 'payment_method=card', '_methods=x', 'q=_method', '_method_x=1', 'x-http-method-overrides=1', 'http-method-override=DELETE', 'q=X-HTTP-Method-Override']) t.notOk(carriesMethodOverride(q), q);
});

t.test('a path pattern with more wildcards than a long path can be matched against quickly is refused', async (t) => {
  const compile = (paths: string[], legacyEndpoints: string[] = []) =>
    compilePolicy({ rules: [{ name: 'x', paths, decision: 'deny' }], default: 'deny', caseSensitivePaths: false, networks: {}, legacyEndpoints });
  for (const p of ['/records/**/documents/**/files/**/download', '/a/*x*y*z', '/**/a*b/**', '/x/a**b*c**d', '/**/a*b*c'])
    t.throws(() => compile([p]), /rule x: path .* has more wildcards than a long path can be matched against quickly/, p);
  for (const p of ['/x/*****y', '/x/***/***y', '/x/***']) t.throws(() => compile([p]), /three or more '\*' in a row/, p);
  t.throws(() => compile([], ['/**/x/**/y/**']), /legacy endpoint path .* more wildcards/);
  const p = compile(['/a/**/b/**', '/api/*/records/*/files/**', '/reports/*-*.pdf', '/**/*.pdf']);
  t.equal(decideAccess(p, facts({ path: '/api/1/records/2/files/x/y' })).rule, 'x', 'two of each, and one per name in many names');
  t.equal(decideAccess(p, facts({ path: '/reports/2024-06.pdf' })).rule, 'x');
  // As README advises for portals that take a format suffix for the same route (Rails, older Spring).
  const suffixed = compile(['/export*/']);
  for (const path of ['/export', '/export.csv', '/export/x']) t.equal(decideAccess(suffixed, facts({ path })).rule, 'x', path);
});

t.test('a path pattern the canonical form would spell differently is refused, with the spelling to use', async (t) => {
  const compile = (paths: string[], legacyEndpoints: string[] = []) =>
    compilePolicy({ rules: [{ name: 'x', paths, decision: 'deny' }], default: 'deny', caseSensitivePaths: false, networks: {}, legacyEndpoints });
  t.throws(() => compile(['/mātauranga/']), /rule x: path \/mātauranga\/ is matched against the canonical \(percent-encoded\) path: write it as \/m%C4%81tauranga\//);
  t.throws(() => compile(['/my docs/**']), /write it as \/my%20docs\/\*\*/);
  t.throws(() => compile(['/a|b']), /write it as \/a%7Cb/);
  t.throws(() => compile(['/{id}/*']), /write it as \/%7Bid%7D\/\*/);
  t.throws(() => compile(['/m%c4%81tauranga/']), /write it as \/m%C4%81tauranga\//, 'lower-case escapes');
  t.throws(() => compile(['/%41dmin/']), /write it as \/Admin\//, 'an escape the canonical form decodes');
  t.throws(() => compile(['/a/../admin/']), /write it as \/admin\//);
  t.throws(() => compile(['/admin;x']), /can never match a canonical path: ';', as rules match the path without its parameters/);
  t.throws(() => compile(['/ａdmin/']), /can never match/, 'a character NFKC changes');
  t.throws(() => compile(['/ADMINI~1/']), /can never match a canonical path: a name shaped as a Windows 8.3 short name/, 'a Windows short name: named as the cause');
  t.throws(() => compile(['/ad%E2%80%8Bmin/']), /can never match a canonical path: an invisible character/, 'an invisible character: named as the cause');
  t.throws(() => compile(['/x'], ['/api/lögin']), /legacy endpoint path \/api\/lögin .* write it as \/api\/l%C3%B6gin/);
  const p = compile(['/m%C4%81tauranga/', '/reports/*.pdf', '/a/**/c', "/x-y_z.~!$&'()+,=:@/"]);
  t.equal(decideAccess(p, facts({ path: '/m%C4%81tauranga/x' })).rule, 'x', 'the encoded spelling matches');
});

t.test('configuration mistakes are caught at compile time', async (t) => {
  const base = { default: 'deny' as const, caseSensitivePaths: false, networks: {}, legacyEndpoints: [] };
  t.throws(() => compilePolicy({ ...base, rules: [{ name: 'x', paths: ['/x'], networks: ['nowhere'], decision: 'mfa' }] }), /unknown network nowhere/);
  t.throws(() => compilePolicy({ ...base, rules: [{ name: 'x', paths: ['/x'], allowLegacyAuth: true, decision: 'public' }] }), /networks restriction/);
  t.throws(() => compilePolicy({ ...base, rules: [{ name: 'x', networks: ['10.0.0.0/8'], allowLegacyAuth: true, decision: 'public' }] }), /paths/);
  t.throws(() => compilePolicy({ ...base, rules: [{ name: 'x', paths: ['/x'], networks: ['10.0.0.0/99'], decision: 'mfa' }] }), /not an address/);
});

t.test("a device registered to a user, with nobody signed in: signing in tells whether it is managed, as for groups", async (t) => {
  const p = compilePolicy({
    rules: [
      { name: 'clinic workstation', paths: ['/admin/'], decision: 'managed-device' },
      { name: 'kiosk', paths: ['/kiosk/'], device: 'managed', decision: 'mfa' },
      { name: 'kiosk elsewhere', paths: ['/kiosk/'], decision: 'deny' },
      { name: 'no exports on unmanaged devices', paths: ['/export/'], device: 'unmanaged', decision: 'deny' },
      { name: 'portal', paths: ['/'], decision: 'mfa' },
    ],
    default: 'deny',
    caseSensitivePaths: false,
    networks: {},
    legacyEndpoints: [],
  });
  const bound = { managed: false, bound: true };
  for (const path of ['/admin/', '/kiosk/x', '/export/x']) {
    t.match(decideAccess(p, facts({ path, session: null, device: bound })), { verdict: 'sign-in' }, `${path}: its owner signs in first`);
  }
  t.match(decideAccess(p, facts({ path: '/admin/', session: null, device: { managed: false } })), { verdict: 'managed-device', rule: 'clinic workstation' }, 'an unmanaged device is refused at once, as before');
  t.match(decideAccess(p, facts({ path: '/kiosk/x', session: null, device: { managed: false } })), { verdict: 'deny', rule: 'kiosk elsewhere' });
  t.match(decideAccess(p, facts({ path: '/export/x', session: null, device: { managed: false } })), { verdict: 'deny', rule: 'no exports on unmanaged devices' });
  t.match(decideAccess(p, facts({ path: '/records', session: null, device: bound })), { verdict: 'sign-in', rule: 'portal' }, 'a rule that does not test the device is not affected');
  t.match(explainAccess(p, facts({ path: '/admin/', session: null, device: bound })).trace, [{ rule: 'clinic workstation', result: 'match' }]);
  t.match(explainAccess(p, facts({ path: '/kiosk/x', session: null, device: bound })).trace, [{ rule: 'clinic workstation' }, { rule: 'kiosk', result: 'needs sign-in', why: 'the device is registered to a user and there is no session' }]);
});

t.test('explain gives the rule that decided and why the others did not', async (t) => {
  const { outcome, trace } = explainAccess(policy, facts({ path: '/admin/', session: staffKey, clientIp: '198.51.100.7' }));
  t.equal(outcome.rule, 'admin closed');
  t.match(trace.find((l) => l.rule === 'staff admin'), { result: 'no match', why: /198\.51\.100\.7 is in none of office/ });
  t.match(trace.find((l) => l.rule === 'sign-in page'), { result: 'no match', why: /matches none of/ });
  t.equal(trace.at(-1)!.rule, 'admin closed');
  t.equal(policy.usesDevices, true);
});
